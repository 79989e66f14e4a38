"""The warehouse queries behind the Leadflow page, on SQLite and PostgreSQL."""

from __future__ import annotations

from leadflow_ui_seed import CRM, RUN_1, RUN_2, seed

from leadflow.views import queries


def test_queries_aggregate_the_seeded_warehouse_on_each_database(warehouse):
    seed(warehouse)
    assert queries.list_crms(warehouse) == [CRM]

    runs = queries.recent_runs(warehouse, CRM)
    assert [r["run_id"] for r in runs] == [RUN_2, RUN_1]  # newest first
    assert runs[0]["dry_run"] is True and runs[1]["dry_run"] is False
    assert runs[1]["counts"] == {"pulled": 120, "enriched": 100, "quarantined": 7, "scored": 110,
                                 "changed": 40, "pushed": 38, "rejected": 2, "overrides": None}
    assert runs[1]["duration_s"] == 65.0

    hist = queries.score_histogram(warehouse, CRM)
    assert [b["count"] for b in hist] == [2] * 9 + [3]  # 100 falls into the last bin
    assert sum(b["count"] for b in hist) == 21

    grades = queries.grade_matrix(warehouse, CRM)
    assert grades["cells"] == {"A1": 6, "B2": 5, "C3": 5, "D4": 5}
    assert grades["total"] == 21

    assert queries.top_disqualification_reasons(warehouse, CRM) == [
        {"reason": "student", "records": 5}, {"reason": "competitor", "records": 2}]
    assert queries.top_quarantine_reasons(warehouse, CRM) == [
        {"expectation": "email_syntax", "column": "email", "records": 3},
        {"expectation": "range", "column": "employees", "records": 1}]  # released row ignored

    dq = queries.dq_checks_by_run(warehouse, CRM, [RUN_1, RUN_2])
    assert (dq[RUN_1]["checks"], dq[RUN_1]["failed"]) == (2, 1)
    assert dq[RUN_1]["failures"][0]["check"] == "quarantine_share"
    assert (dq[RUN_2]["checks"], dq[RUN_2]["failed"]) == (1, 0)

    failed = queries.failed_pushes(warehouse, CRM)
    assert [(p["record_id"], p["status"]) for p in failed] == [("c-3", "failed"), ("c-2", "rejected")]
    assert queries.push_status_counts(warehouse, CRM) == {"confirmed": 1, "failed": 1, "rejected": 1}
    assert queries.current_stages(warehouse, CRM) == {"lead": 6, "mql": 3, "customer": 1, "(none)": 1}


def test_funnel_lists_runs_oldest_first_with_stages_in_funnel_order(sqlite_warehouse):
    seed(sqlite_warehouse)
    funnel = queries.funnel_by_run(queries.recent_runs(sqlite_warehouse, CRM))
    assert funnel["stages"] == ["subscriber", "lead", "mql", "sql"]
    assert [r["run_id"] for r in funnel["runs"]] == [RUN_1, RUN_2]
    assert funnel["runs"][1]["counts"] == {"subscriber": 48, "lead": 41, "mql": 16, "sql": 6}


def test_latest_preview_comes_from_the_newest_run_that_has_one(sqlite_warehouse):
    seed(sqlite_warehouse)
    preview = queries.latest_preview(queries.recent_runs(sqlite_warehouse, CRM))
    assert preview["run_id"] == RUN_2 and preview["dry_run"] is True
    assert preview["records"] == 9
    assert preview["stage_transitions"] == {"lead -> mql": 3, "subscriber -> lead": 1}


def test_score_histogram_and_grades_filter_by_run(sqlite_warehouse):
    seed(sqlite_warehouse)
    assert sum(b["count"] for b in queries.score_histogram(sqlite_warehouse, CRM, RUN_1)) == 0
    assert queries.grade_matrix(sqlite_warehouse, CRM, RUN_2)["total"] == 21


def test_queries_return_empty_results_on_a_warehouse_without_tables(tmp_path):
    from leadflow.warehouse.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert queries.list_crms(engine) == []
    assert queries.recent_runs(engine, CRM) == []
    assert queries.top_quarantine_reasons(engine, CRM) == []
    assert queries.dq_checks_by_run(engine, CRM, ["x"]) == {}
    assert queries.grade_matrix(engine, CRM)["total"] == 0
    assert [b["count"] for b in queries.score_histogram(engine, CRM)] == [0] * 10
    page = queries.page_data(engine, CRM)
    assert page["runs"] == [] and page["preview"] is None


def test_latest_preview_prefers_the_newest_dry_run_over_a_newer_real_run(sqlite_warehouse):
    seed(sqlite_warehouse)
    rows = queries.recent_runs(sqlite_warehouse, CRM)
    rows[0], rows[1] = rows[1], rows[0]  # pretend the real run is the newer one
    assert queries.latest_preview(rows)["run_id"] == RUN_2
    assert queries.latest_preview(rows, prefer_dry_run=False)["run_id"] == RUN_1


def test_accounts_overview_is_empty_before_any_account_view(tmp_path):
    from leadflow.warehouse.db import get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    assert queries.accounts_overview(engine, CRM) == {}
