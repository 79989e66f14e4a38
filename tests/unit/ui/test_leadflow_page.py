"""The Leadflow page and its JSON twin, rendered from a seeded warehouse.

Authentication is replaced by a stub user here (FastAPI dependency override); the real check
against Airflow's auth manager is covered by test_leadflow_auth.py.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from leadflow_ui_seed import CRM, RUN_1, RUN_2

from leadflow.ui.app import create_app
from leadflow.ui.auth import require_user


class _User:
    def get_name(self) -> str:
        return "ada"


@pytest.fixture
def client(seeded, tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_REPORTS_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("LEADFLOW_DATA_DOCS_DIR", str(tmp_path / "docs"))
    app = create_app(lambda: seeded)
    app.dependency_overrides[require_user] = _User
    return TestClient(app)


class _Rows(HTMLParser):
    """Cells of the table with the given id, as lists of text."""

    def __init__(self, table_id: str):
        super().__init__()
        self.table_id, self.depth, self.rows, self.cell = table_id, 0, [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == self.table_id:
            self.depth = 1
        elif self.depth and tag == "tr":
            self.rows.append([])
        elif self.depth and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if self.depth and tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join(self.cell.split()))
            self.cell = None
        elif self.depth and tag == "table":
            self.depth = 0

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _table(html: str, table_id: str) -> list[list[str]]:
    parser = _Rows(table_id)
    parser.feed(html)
    return parser.rows


def test_page_shows_runs_table_with_counts_per_run(client):
    html = client.get("/").text
    rows = _table(html, "runs-table")
    header, newest, older = rows
    assert header[:4] == ["run", "status", "started", "duration s"]
    assert header[4:12] == ["pulled", "enriched", "quarantined", "scored", "changed", "pushed", "rejected", "overrides"]
    assert newest[0].startswith(RUN_2) and "dry run" in newest[0]
    assert newest[4:11] == ["30", "25", "1", "111", "9", "0", "0"]
    assert older[0] == RUN_1 and older[4:11] == ["120", "100", "7", "110", "40", "38", "2"]
    assert "1/2 passed" in older[12] and "1/1 passed" in newest[12]


def test_page_shows_funnel_chart_and_table_per_run(client):
    html = client.get("/").text
    assert re.search(r"<svg[^>]*class='chart funnel-chart'", html)
    assert html.count("class='bar'") >= 8  # 4 stages x 2 runs in the funnel alone
    funnel = re.search(r"<table class=\"funnel-table\">(.*?)</table>", html, re.S).group(1)
    assert ">48<" in funnel and ">50<" in funnel and ">sql<" in funnel


def test_page_shows_histogram_grades_reasons_failed_pushes_and_preview(client):
    html = client.get("/").text
    assert "histogram-chart" in html and "grade-matrix" in html
    assert "data-key='A1' data-value='6'" in html
    assert "student" in html and "competitor" in html  # disqualification reasons
    assert "email_syntax" in html  # quarantine reasons
    assert "PROPERTY_DOESNT_EXIST" in html and "gave up after 3 attempts" in html
    preview = html[html.index("id=\"preview\""):html.index("id=\"scores\"")]
    assert RUN_2 in preview and "dry run" in preview
    assert "lead -&gt; mql" in preview and "c-42" in preview
    assert "quarantine_share" in html  # the failed DQ check of RUN_1


def test_page_links_each_run_to_its_report_and_existing_data_docs(client, tmp_path):
    from leadflow.views.paths import run_folder_name

    docs = tmp_path / "docs" / run_folder_name(RUN_1)
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("<html>docs of run 1</html>")
    html = client.get("/").text
    assert f"/docs/{CRM}/{run_folder_name(RUN_1)}/index.html" in html
    assert f"/docs/{CRM}/{run_folder_name(RUN_2)}/" not in html  # no docs on disk for run 2
    assert html.count("/report?crm=hubspot&amp;run_id=") == 2
    page = client.get(f"/docs/{CRM}/{run_folder_name(RUN_1)}/index.html")
    assert page.status_code == 200 and "docs of run 1" in page.text


def test_data_docs_route_refuses_paths_outside_the_run_folder(client, tmp_path):
    from leadflow.views.paths import run_folder_name

    docs = tmp_path / "docs" / run_folder_name(RUN_1)
    docs.mkdir(parents=True)
    (docs / "index.html").write_text("ok")
    (tmp_path / "docs" / "secret.txt").write_text("secret")
    resp = client.get(f"/docs/{CRM}/{run_folder_name(RUN_1)}/..%2Fsecret.txt")
    assert resp.status_code == 404
    assert client.get(f"/docs/{CRM}/nope/index.html").status_code == 404


def test_report_route_renders_from_the_warehouse_then_serves_the_written_file(client, seeded, tmp_path):
    from leadflow.report import write_run_report

    resp = client.get("/report", params={"crm": CRM, "run_id": RUN_1})
    assert resp.status_code == 200 and RUN_1 in resp.text
    path = write_run_report(seeded, CRM, RUN_1, tmp_path / "reports")
    path.write_text("<html>the written report</html>")
    assert "the written report" in client.get("/report", params={"crm": CRM, "run_id": RUN_1}).text
    assert client.get("/report", params={"crm": CRM, "run_id": "nope"}).status_code == 404


def test_api_data_returns_the_page_data_as_json(client):
    body = client.get("/api/data", params={"crm": CRM}).json()
    assert body["crms"] == [CRM]
    assert [r["run_id"] for r in body["data"]["runs"]] == [RUN_2, RUN_1]
    assert body["data"]["preview"]["records"] == 9
    assert client.get("/api/data", params={"crm": "salesforce"}).status_code == 404


def test_page_without_runs_says_so(tmp_path):
    from leadflow.warehouse.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    app = create_app(lambda: engine)
    app.dependency_overrides[require_user] = _User
    resp = TestClient(app).get("/")
    assert resp.status_code == 200 and "No runs yet" in resp.text


def test_page_has_no_external_assets(client):
    html = client.get("/").text
    assert "<script" not in html
    assert not re.search(r"(src|href)=['\"]https?://", html)
    assert "<link" not in html


def test_overrides_are_paged_and_filtered_by_field(client, seeded):
    from leadflow.push.overrides import record_overrides

    rows = [{"record_id": f"o-{i:03d}", "field": "lead_status" if i % 3 else "lifecycle_stage",
             "current": "IN_PROGRESS", "wanted": "OPEN"} for i in range(120)]
    with seeded.begin() as conn:
        record_overrides(conn, CRM, RUN_1, rows, 5_000)
    html = client.get("/", params={"crm": CRM}).text
    assert "1&ndash;50 of <span data-overrides-total>120</span>" in html and 'rel="next"' in html
    last = client.get("/", params={"crm": CRM, "overrides_page": 3}).text
    assert "101&ndash;120 of" in last and 'rel="prev"' in last and 'rel="next"' not in last
    assert last.count("<td>o-") == 20
    stages = client.get("/", params={"crm": CRM, "overrides_field": "lifecycle_stage"}).text
    assert "of <span data-overrides-total>40</span>" in stages
    assert {m for m in re.findall(r"<td>o-\d+</td><td>(\w+)</td>", stages)} == {"lifecycle_stage"}
    beyond = client.get("/", params={"crm": CRM, "overrides_page": 99}).text
    assert "101&ndash;120 of" in beyond  # a page past the end shows the last one


def test_page_shows_the_account_view_top_companies_first(client, seeded):
    import pandas as pd

    from leadflow.accounts.store import save_accounts
    from leadflow.warehouse import repo

    with seeded.begin() as conn:
        repo.land_page(conn, CRM, RUN_2, [], [{"crm": CRM, "company_id": "c-9", "name": "Acme Analytics"}], [])
    save_accounts(seeded, CRM, RUN_2, pd.DataFrame([
        {"company_id": "c-1", "leads": 1, "engaged": 0, "roles": None, "personas": None, "best_record_id": "7",
         "best_score": 40.0, "company_score": 40, "committee": "0 engaged of 1 lead; best lead 40"},
        {"company_id": "c-9", "leads": 5, "engaged": 3, "roles": "decider;influencer", "personas": "executive;manager",
         "best_record_id": "42", "best_score": 88.0, "company_score": 98,
         "committee": "3 engaged of 5 leads: decider (executive), influencer (manager); best lead 88"},
    ]))
    html = client.get("/").text
    header, first, second = _table(html, "accounts-table")
    assert header[:5] == ["company", "company score", "engaged", "leads", "roles covered"]
    assert first[:6] == ["Acme Analytics", "98", "3", "5", "decider, influencer", "42 (88)"]
    assert first[6].startswith("3 engaged of 5 leads: decider (executive)")
    assert second[0] == "c-1" and second[4] == "-"
    assert "2 companies with scored leads, 1 with engaged leads, 1 with engaged leads in two or more" in \
        " ".join(html.split())
    assert client.get("/api/data", params={"crm": CRM}).json()["data"]["accounts"]["total"] == 2


def test_page_shows_the_newest_runs_account_figures_as_the_run_report_does(client, seeded):
    import pandas as pd

    from leadflow.accounts.store import save_accounts
    from leadflow.qualify.accounts import account_figures
    from leadflow.warehouse import repo

    view = pd.DataFrame([{"company_id": "c-9", "leads": 5, "engaged": 3, "roles": "decider;influencer",
                          "personas": "executive;manager", "best_record_id": "42", "best_score": 88.0,
                          "company_score": 98, "committee": "3 engaged of 5 leads"}])
    save_accounts(seeded, CRM, RUN_2, view)
    repo.record_step(seeded, CRM, RUN_2, "accounts", {"accounts": account_figures(view, committee_waits=2)})
    repo.refresh_run_summary(seeded, CRM, RUN_2)
    html = client.get("/").text
    cards = dict(re.findall(r'data-accounts="(\w+)">([^<]*)<', html))
    assert cards == {"companies": "1", "with_engaged_leads": "1", "committees": "1", "engaged_leads": "3",
                     "committee_waits": "2"}
    assert dict(re.findall(r'data-accounts-persona="(\w+)">([^<]*)<', html)) == {"executive": "1", "manager": "1"}


def test_page_shows_the_published_rules_model_and_the_candidate_the_gate_kept_out(client, seeded):
    from dataclasses import replace

    from leadflow.predict.rules import read_candidate, record_rules

    shipped = read_candidate(None)
    record_rules(seeded, CRM, shipped, "bootstrap", now_ms=1_000)
    waiting = replace(shipped, version="2026.01@0123456789ab")
    record_rules(seeded, CRM, waiting, "kept champion", now_ms=2_000,
                 backtest={"holdout": 80, "candidate_auc": 0.43, "champion_auc": 0.5184})
    header, first, second = _table(client.get("/").text, "rules-models-table")
    assert header[:3] == ["rules model", "decision", "scores leads"]
    assert first[:3] == ["2026.01@0123456789ab", "kept champion", "no"] and first[4:] == ["80", "0.430", "0.518"]
    assert second[:3] == [shipped.version, "bootstrap", "yes"] and second[4:] == ["-", "-", "-"]
