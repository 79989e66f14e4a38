"""Warehouse behaviour on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select

from leadflow.pulled import RecordIssue, Watermark
from leadflow.warehouse import repo
from leadflow.warehouse.db import insert_many, update_by_key, upsert
from leadflow.warehouse.tables import lead_issues, leads, push_log, watermarks


def _lead(record_id: str, **values) -> dict:
    base = {"record_id": record_id, "email": f"{record_id}@example.com", "updated_at": 1_700_000_000_000}
    base.update(values)
    return base


def test_given_same_page_twice_when_landing_then_rows_are_upserted_not_duplicated(warehouse):
    page = [_lead("1", job_title="CEO"), _lead("2")]
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", page, [], [])
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-2", [_lead("1", job_title="CTO")], [], [])
    frame = repo.load_leads(warehouse, "hubspot")
    assert sorted(frame["record_id"]) == ["1", "2"]
    assert frame.set_index("record_id").loc["1", "job_title"] == "CTO"


def test_given_watermark_written_in_failed_transaction_then_it_does_not_advance(warehouse):
    with warehouse.begin() as conn:
        repo.set_watermark(conn, "hubspot", Watermark(100))
    try:
        with warehouse.begin() as conn:
            repo.land_page(conn, "hubspot", "run-1", [_lead("1")], [], [])
            repo.set_watermark(conn, "hubspot", Watermark(200))
            raise RuntimeError("crash between landing and commit")
    except RuntimeError:
        pass
    assert repo.get_watermark(warehouse, "hubspot") == Watermark(100)
    assert repo.load_leads(warehouse, "hubspot").empty


def test_given_input_issues_then_they_are_kept_with_truncated_values(warehouse):
    issue = RecordIssue("7", "created_at", "unparseable date", "x" * 1000)
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead("7")], [], [issue])
    with warehouse.connect() as conn:
        row = conn.execute(select(lead_issues)).mappings().one()
    assert row["field"] == "created_at" and len(row["value"]) == 200


def test_given_full_refresh_then_unseen_leads_are_marked_deleted(warehouse):
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead("1"), _lead("2")], [], [])
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-2", [_lead("1")], [], [])
    assert repo.mark_unseen_deleted(warehouse, "hubspot", "run-2") == 1
    assert list(repo.load_leads(warehouse, "hubspot")["record_id"]) == ["1"]
    assert repo.count_leads(warehouse, "hubspot") == 1


def test_insert_many_stores_every_row_as_given_and_a_left_out_column_gets_its_default(warehouse):
    rows = [{"run_id": "r1", "crm": "hubspot", "record_id": str(i), "field": "score", "before": None,
             "after": f"{i}.5", "model_version": "v1", "status": "pending", "error": None,
             "created_at": 1_700_000_000_000 + i, "updated_at": 1_700_000_000_000 + i} for i in range(3)]
    with warehouse.begin() as conn:
        assert insert_many(conn, push_log, rows) == 3
        assert insert_many(conn, push_log, []) == 0
    with warehouse.connect() as conn:
        stored = conn.execute(select(push_log.c.id, push_log.c.record_id, push_log.c.before, push_log.c.after,
                                     push_log.c.attempts, push_log.c.created_at).order_by(push_log.c.id)).all()
    assert [tuple(r)[1:] for r in stored] == [(str(i), None, f"{i}.5", 0, 1_700_000_000_000 + i) for i in range(3)]
    assert len({r.id for r in stored}) == 3  # the database numbered them


def test_update_by_key_sets_each_rows_own_columns_and_touches_no_other_row(warehouse):
    rows = [{"crm": crm, "stream": s, "modified_ms": 1, "last_id": "a", "updated_at": 0}
            for crm in ("hubspot", "salesforce") for s in ("x", "y", "z")]
    with warehouse.begin() as conn:
        upsert(conn, watermarks, rows)
        assert update_by_key(conn, watermarks, ("crm", "stream"), [
            {"crm": "hubspot", "stream": "x", "modified_ms": 5},
            {"crm": "hubspot", "stream": "y", "last_id": None, "updated_at": 9},
            {"crm": "hubspot", "stream": "z"},  # nothing to set: left alone
        ]) == 3
    with warehouse.connect() as conn:
        stored = {(r.crm, r.stream): (r.modified_ms, r.last_id, r.updated_at) for r in conn.execute(
            select(watermarks.c.crm, watermarks.c.stream, watermarks.c.modified_ms, watermarks.c.last_id,
                   watermarks.c.updated_at))}
    assert stored.pop(("hubspot", "x")) == (5, "a", 0)
    assert stored.pop(("hubspot", "y")) == (1, None, 9)
    assert set(stored.values()) == {(1, "a", 0)}  # hubspot z and every salesforce row as they were


def test_given_more_rows_than_one_statement_allows_then_upsert_chunks(warehouse):
    rows = [{"crm": "hubspot", "stream": f"s{i}", "modified_ms": i, "last_id": None, "updated_at": 0}
            for i in range(7000)]
    with warehouse.begin() as conn:
        upsert(conn, watermarks, rows)
        upsert(conn, watermarks, rows)
    with warehouse.connect() as conn:
        assert conn.execute(select(func.count()).select_from(watermarks)).scalar_one() == 7000


def test_run_summary_merges_steps_and_adds_up_shards(warehouse):
    repo.start_run(warehouse, "hubspot", "run-1", dry_run=False)
    repo.record_step(warehouse, "hubspot", "run-1", "extract", {"pulled": 5})
    repo.record_step(warehouse, "hubspot", "run-1", "qualify", {"scored": 4, "stages": {"mql": 1}}, shard=0)
    repo.record_step(warehouse, "hubspot", "run-1", "qualify", {"scored": 3, "stages": {"mql": 2}}, shard=1)
    repo.record_step(warehouse, "hubspot", "run-1", "qualify", {"scored": 3, "stages": {"mql": 2}}, shard=1)
    repo.finish_run(warehouse, "hubspot", "run-1", "success")
    [run] = repo.latest_runs(warehouse, "hubspot")
    assert run["summary"] == {"pulled": 5, "scored": 7, "stages": {"mql": 3}} and run["status"] == "success"


def test_run_summary_keeps_each_tasks_peak_memory_instead_of_adding_them_up(warehouse):
    repo.start_run(warehouse, "hubspot", "run-1", False)
    repo.record_step(warehouse, "hubspot", "run-1", "extract", {"peak_rss_mib": {"extract": 300.0}})
    for shard, mib in enumerate((410.5, 420.0)):
        repo.record_step(warehouse, "hubspot", "run-1", "push", {"peak_rss_mib": {f"push[{shard}]": mib}}, shard=shard)
    repo.record_step(warehouse, "hubspot", "run-1", "report", {"peak_rss_mib": {"report": 250.0}})
    assert repo.get_run_summary(warehouse, "hubspot", "run-1")["peak_rss_mib"] == {
        "extract": 300.0, "push[0]": 410.5, "push[1]": 420.0, "report": 250.0}


def test_scores_replace_previous_scores_of_the_crm(warehouse):
    frame = pd.DataFrame({
        "crm": "hubspot", "record_id": ["1", "2"], "model_version": "v1", "score": [10.0, 20.0],
        "fit_score": 1.0, "engagement_score": 2.0, "grade": "A1", "bant_budget": True,
        "bant_authority": False, "bant_need": True, "bant_timeline": None, "bant_count": 2.0,
        "disqualification_reason": None, "stage": "lead", "lead_status": "open", "reasons": "+10 x",
        "sales_ready": False, "sales_ready_since": None, "sales_ready_reason": None,
    })
    repo.save_scores(warehouse, "hubspot", "run-1", frame)
    repo.save_scores(warehouse, "hubspot", "run-2", frame.iloc[:1])
    stored = repo.load_scores(warehouse, "hubspot")
    assert list(stored["record_id"]) == ["1"] and stored["run_id"].iloc[0] == "run-2"


def test_given_some_leads_rescored_without_replace_then_theirs_are_updated_and_the_rest_kept(warehouse):
    frame = pd.DataFrame({
        "crm": "hubspot", "record_id": ["1", "2", "3"], "model_version": "v1", "score": [10.0, 20.0, 30.0],
        "fit_score": 1.0, "engagement_score": 2.0, "grade": "A1", "bant_budget": True,
        "bant_authority": False, "bant_need": True, "bant_timeline": None, "bant_count": 2.0,
        "disqualification_reason": None, "stage": "lead", "lead_status": "open", "reasons": "+10 x",
        "sales_ready": False, "sales_ready_since": None, "sales_ready_reason": None,
    })
    repo.save_scores(warehouse, "hubspot", "run-1", frame)
    again = frame.iloc[1:2].assign(score=25.0, sales_ready=True, sales_ready_since=1_700_000_000_000)
    assert repo.save_scores(warehouse, "hubspot", "run-2", again, replace=False) == 1
    stored = repo.load_scores(warehouse, "hubspot").set_index("record_id")
    assert stored["score"].to_dict() == {"1": 10.0, "2": 25.0, "3": 30.0}
    assert stored["run_id"].to_dict() == {"1": "run-1", "2": "run-2", "3": "run-1"}
    assert bool(stored.loc["2", "sales_ready"]) is True and int(stored.loc["2", "sales_ready_since"]) == 1_700_000_000_000


def test_given_scores_with_numpy_values_and_gaps_then_each_is_stored_as_its_column_type(warehouse):
    # Object columns mixing numpy scalars, Python values and missing ones (as concatenated
    # frames hold them): the drivers bind none of numpy's types.
    import numpy as np

    frame = pd.DataFrame({
        "crm": "hubspot", "record_id": ["1", "2", "3"], "model_version": "v1",
        "score": pd.Series([np.float64(10.5), 20, None], dtype=object), "fit_score": [1.0, np.nan, 3.0],
        "engagement_score": 2.0, "grade": ["A1", None, "C3"],
        "bant_budget": pd.Series([np.bool_(True), None, False], dtype=object), "bant_authority": False,
        "bant_need": True, "bant_timeline": None, "bant_count": pd.Series([np.int64(2), 1, None], dtype=object),
        "disqualification_reason": None, "stage": "lead", "lead_status": "open", "reasons": "+10 x",
        "sales_ready": [True, False, None],
        "sales_ready_since": pd.Series([np.float64(1.7e12), None, None], dtype=object), "sales_ready_reason": None,
    })
    assert repo.save_scores(warehouse, "hubspot", "run-1", frame) == 3
    stored = repo.load_scores(warehouse, "hubspot").set_index("record_id")
    assert stored.loc["1", "score"] == 10.5 and stored.loc["2", "score"] == 20 and pd.isna(stored.loc["3", "score"])
    assert pd.isna(stored.loc["2", "fit_score"]) and pd.isna(stored.loc["2", "grade"])
    assert bool(stored.loc["1", "bant_budget"]) is True and pd.isna(stored.loc["2", "bant_budget"])
    assert stored.loc["1", "bant_count"] == 2 and pd.isna(stored.loc["3", "bant_count"])
    assert int(stored.loc["1", "sales_ready_since"]) == 1_700_000_000_000 and pd.isna(stored.loc["2", "sales_ready_since"])
    assert list(stored["run_id"]) == ["run-1"] * 3
    assert list(stored["shard_key"]) == [repo.shard_key(i) for i in stored.index]


def test_shards_partition_the_leads_and_replace_only_their_own_scores(warehouse):
    ids = [str(i) for i in range(40)]
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead(i) for i in ids], [], [])
    parts = [set(repo.load_leads(warehouse, "hubspot", shard=s, shards=3)["record_id"]) for s in range(3)]
    assert set().union(*parts) == set(ids) and sum(map(len, parts)) == len(ids)
    frame = pd.DataFrame({
        "crm": "hubspot", "record_id": ids, "model_version": "v1", "score": 1.0, "fit_score": 1.0,
        "engagement_score": 1.0, "grade": "D4", "bant_budget": False, "bant_authority": False,
        "bant_need": False, "bant_timeline": False, "bant_count": 0.0, "disqualification_reason": None,
        "stage": "lead", "lead_status": "new", "reasons": "+1 x",
        "sales_ready": False, "sales_ready_since": None, "sales_ready_reason": None,
    })
    repo.save_scores(warehouse, "hubspot", "run-1", frame)
    shard0 = frame[frame["record_id"].isin(parts[0])].assign(score=9.0)
    repo.save_scores(warehouse, "hubspot", "run-2", shard0, shard=0, shards=3)
    stored = repo.load_scores(warehouse, "hubspot").set_index("record_id")["score"]
    assert len(stored) == 40
    assert all(stored[i] == (9.0 if i in parts[0] else 1.0) for i in ids)


def test_watermark_never_moves_backwards(warehouse):
    with warehouse.begin() as conn:
        repo.set_watermark(conn, "hubspot", Watermark(500))
        repo.set_watermark(conn, "hubspot", Watermark(100))
    assert repo.get_watermark(warehouse, "hubspot") == Watermark(500)


def test_given_text_columns_then_read_frame_gives_what_pandas_infers_from_the_rows(warehouse):
    page = [_lead("1", job_title="CEO", industry=""), _lead("2"), _lead("3", job_title="Ana Müller")]
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", page, [], [])
    query = select(leads.c.record_id, leads.c.job_title, leads.c.industry, leads.c.employees).order_by(leads.c.record_id)
    with warehouse.connect() as conn:
        rows = conn.execute(query).fetchall()
    expected = pd.DataFrame.from_records([tuple(r) for r in rows], columns=["record_id", "job_title", "industry", "employees"])
    frame = repo.read_frame(warehouse, query)
    assert frame.dtypes.to_dict() == expected.dtypes.to_dict()
    pd.testing.assert_frame_equal(frame, expected)


@pytest.mark.parametrize(
    "values",
    [["a", None, "", "b"], [None, "x", None], [float("nan"), "a"], [None, None], ["a", 1, None], [1, None, 3],
     [True, None], [b"a", None]],
    ids=["text", "leading-none", "nan", "all-none", "mixed", "numbers", "booleans", "bytes"],
)
def test_given_any_column_then_the_text_fast_path_matches_pandas_inference(values):
    fast = pd.DataFrame({"c": repo._text_column(values)})
    inferred = pd.DataFrame({"c": values})
    assert fast["c"].dtype == inferred["c"].dtype
    pd.testing.assert_frame_equal(fast, inferred)
