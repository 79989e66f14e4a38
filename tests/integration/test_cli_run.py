"""`leadflow run` against a real sandbox over HTTP: a line per step and the compact summary with
exit 0; a wrong token names the failing step, says what to fix and exits 1; in one process the
leads are read and the push diffed once, with the results of separate tasks."""

from __future__ import annotations

import json

import pytest

from leadflow import cli
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", f"sqlite:///{tmp_path / 'wh.db'}")
    monkeypatch.setenv("LEADFLOW_VAR_DIR", str(tmp_path / "var"))
    with running_sandbox(contacts=120, seed=7, rate_limit="off", search_rate_limit="off") as sb:
        yield sb


def _connect(monkeypatch, sb, token: str) -> None:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": sb.port, "schema": "http", "password": token}
    monkeypatch.setenv("AIRFLOW_CONN_LEADFLOW_HUBSPOT", json.dumps(conn))


def test_run_prints_each_step_and_the_summary_and_exits_0(sandbox, monkeypatch, capsys):
    _connect(monkeypatch, sandbox, sandbox.token)

    assert cli.main(["run", "--crm", "hubspot", "--run-id", "cli-ok"]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:10]] == ["extract", "enrich", "validate", "validate_gate", "qualify",
                                                        "accounts", "validate_scores", "plan_push", "push",
                                                        "push_accounts"]
    assert lines[0].split()[-2:] == ["pulled", "120"]
    assert lines[10].startswith("hubspot run cli-ok: success in ")
    assert any(line.startswith("  run report   ") and line.endswith(".html") for line in lines)
    assert len(lines) < 25
    assert cli.main(["report", "--crm", "hubspot"]) == 0


def test_given_a_wrong_token_then_run_names_the_step_and_the_fix_and_exits_1(sandbox, monkeypatch, capsys):
    _connect(monkeypatch, sandbox, "pat-wrong")

    assert cli.main(["run", "--crm", "hubspot", "--run-id", "cli-bad-token"]) == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "FAILED in step extract: HubSpot rejected the token (401)" in captured.err
    assert "what to do: the CRM refused the token" in captured.err
    assert "Traceback" not in captured.err
    engine = get_engine()
    assert repo.latest_runs(engine, "hubspot")[0]["status"] == "failed"
    engine.dispose()
    assert cli.main(["report", "--crm", "hubspot"]) == 1


def test_given_no_crm_connection_then_run_fails_saying_where_to_define_it(sandbox, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_LEADFLOW_HUBSPOT", raising=False)

    assert cli.main(["run", "--crm", "hubspot", "--run-id", "cli-no-connection"]) == 2  # a configuration error

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "connection 'leadflow_hubspot' is not defined" in captured.err
    assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in captured.err
    engine = get_engine()
    assert repo.latest_runs(engine, "hubspot")[0]["status"] == "failed"
    engine.dispose()


def test_given_a_run_then_the_push_writes_the_diff_plan_push_made_without_diffing_again(sandbox, monkeypatch):
    from leadflow import pipeline
    from leadflow.sandbox.history import LEADFLOW_APP

    _connect(monkeypatch, sandbox, sandbox.token)
    diffed = []
    changes = pipeline._changes
    monkeypatch.setattr(pipeline, "_changes", lambda ctx, *a, **k: diffed.append(a) or changes(ctx, *a, **k))
    monkeypatch.setattr(pipeline, "PUSH_FIRST_PART", 50)  # the kept diff written in two parts

    assert cli.main(["run", "--crm", "hubspot", "--run-id", "cli-one-diff"]) == 0

    assert diffed == [(None, 1, diffed[0][2])]  # plan_push's only
    engine = get_engine()
    summary = repo.get_run_summary(engine, "hubspot", "cli-one-diff")
    engine.dispose()
    assert summary["pushed"] == summary["changed"] > 50
    with sandbox.store._lock:
        written = sandbox.store._conn.execute(
            "SELECT object_id, property FROM writes WHERE object_type = 'contacts' AND source_type = ? "
            "AND source_id = ?", (LEADFLOW_APP.source_type, LEADFLOW_APP.source_id)).fetchall()
    # Each changed record written, each value once.
    assert len({contact for contact, _ in written}) == summary["pushed"]
    assert len(set(written)) == len(written)


def test_given_a_run_then_enrich_validate_and_qualify_read_the_leads_once_and_score_as_separate_tasks_do(
        sandbox, monkeypatch, tmp_path):
    from leadflow import pipeline

    _connect(monkeypatch, sandbox, sandbox.token)
    reads = {"open_leads": 0, "load_enrichment": 0}
    for name in reads:
        real = getattr(pipeline, name)
        monkeypatch.setattr(pipeline, name, lambda *a, _real=real, _name=name, **k: reads.__setitem__(
            _name, reads[_name] + 1) or _real(*a, **k))

    assert cli.main(["run", "--crm", "hubspot", "--run-id", "cli-one-read", "--dry-run"]) == 0
    # The enrichment is not read at all: enrich hands validate and qualify the rows it stored.
    assert reads == {"open_leads": 1, "load_enrichment": 0}

    # The same steps as tasks of their own (a DAG run's), each reading from the warehouse, in a
    # warehouse of their own: the same scores.
    engine = get_engine()
    one_process = repo.load_scores(engine, "hubspot").drop(columns=["run_id", "scored_at"])
    engine.dispose()
    separate_url = f"sqlite:///{tmp_path / 'separate.db'}"
    started = pipeline.RunContext(crm="hubspot", run_id="separate").now
    for step in ("extract", "enrich", "validate", "validate_gate", "qualify"):
        task = pipeline.RunContext(crm="hubspot", run_id="separate", warehouse_url=separate_url, dry_run=True,
                                   started=started)
        getattr(pipeline, step)(task)
    assert reads["open_leads"] == 4  # enrich, validate and qualify of the separate tasks read them again
    separate = repo.load_scores(task.engine, "hubspot").drop(columns=["run_id", "scored_at"])
    key = ["record_id"]
    assert len(one_process) > 50
    assert one_process.sort_values(key).reset_index(drop=True).equals(separate.sort_values(key).reset_index(drop=True))
