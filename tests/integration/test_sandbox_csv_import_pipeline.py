"""The whole pipeline runs on an imported lead export: `leadflow sandbox import` loads the first rows of
the X Education file into a fresh sandbox db, the sandbox serves it, and one in-process run pulls,
scores and pushes those contacts."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from leadflow.connections import Connection
from leadflow.pipeline import RunContext, run_all
from leadflow.sandbox import cli
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo

ROWS = 150


def _head_of_real_file(source: Path, tmp_path: Path) -> tuple[Path, list[dict[str, str]]]:
    with source.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        head = list(itertools.islice(reader, ROWS))
        columns = list(reader.fieldnames or [])
    path = tmp_path / "x_education_head.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(head)
    return path, head


def test_pipeline_runs_on_contacts_imported_from_the_x_education_file(tmp_path, capsys, x_education_csv):
    path, head = _head_of_real_file(x_education_csv, tmp_path)
    db = tmp_path / "crm.db"
    assert cli.main(["sandbox", "import", "--csv", str(path), "--mapping", "x_education", "--db", str(db)]) == 0
    assert f"created {ROWS}, updated 0, skipped 0" in capsys.readouterr().out

    # The db now holds an (imported) world: the sandbox serves it without seeding synthetic contacts.
    with running_sandbox(db_path=db, contacts=500, rate_limit="off", search_rate_limit="off") as sb:
        assert sb.store.count("contacts") == ROWS
        ctx = RunContext(
            crm="hubspot", run_id="csv-import-1", warehouse_url=f"sqlite:///{tmp_path / 'wh.db'}",
            connection=Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port,
                                  schema="http", password=sb.token),
        )
        summary = run_all(ctx)
        contacts = sb.store.list_page("contacts", after_id=0, limit=ROWS + 1)

    assert summary["status"] == "success"
    assert summary["pulled"] == summary["total"] == ROWS
    assert summary["scored"] + summary["quarantined"] + summary["skipped_owned"] == ROWS
    assert summary["quarantined"] == 0  # synthetic emails pass the email checks
    converted = sum(1 for row in head if row["Converted"] == "1")
    # Customers (Converted = 1) belong to sales: left alone; every open lead is scored and pushed.
    assert summary["skipped_owned"] == converted
    assert summary["scored"] == summary["pushed"] == ROWS - converted > 0
    scored = [c for c in contacts if c.props["lifecyclestage"] == "lead"]
    assert len(scored) == ROWS - converted and all("leadflow_score" in c.props for c in scored)
    leads = repo.load_leads(ctx.engine, "hubspot")
    assert len(leads) == ROWS
    assert leads["email"].str.endswith("@xeducation.example.com").all()
    by_email = leads.set_index("email")
    first = head[1]  # a lead with 5 visits of 2.5 pages each
    email = f"prospect-{first['Prospect ID'].lower()}@xeducation.example.com"
    assert float(by_email.loc[email, "visits"]) == round(float(first["TotalVisits"]))
    assert float(by_email.loc[email, "page_views"]) == round(float(first["TotalVisits"])
                                                             * float(first["Page Views Per Visit"]))
