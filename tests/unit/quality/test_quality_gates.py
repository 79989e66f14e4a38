"""Batch and score gates, the gate error, results storage and Data Docs."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from quality_helpers import DAY_MS, NOW, NOW_MS, good_frame, good_lead, leads_frame
from sqlalchemy import select

from leadflow.quality.batch_checks import check_batch, check_scores
from leadflow.quality.data_docs import render_data_docs, run_folder_name
from leadflow.quality.results import (
    CheckResult,
    QualityGateError,
    failed_count,
    raise_if_failed,
    store_results,
)
from leadflow.quality.row_checks import validate_rows
from leadflow.quality.settings import BatchSettings, QualitySettings, ScoreSettings
from leadflow.quality.tables import dq_results


def _by_name(run):
    return {r.name: r for r in run}


@pytest.fixture(scope="module")
def healthy():
    from leadflow.quality.row_checks import RowCheckOptions

    frame = good_frame(40)
    return frame, validate_rows(frame, RowCheckOptions(crm="hubspot"), NOW)


def test_a_healthy_batch_passes_every_batch_check(healthy, settings):
    frame, rows = healthy
    run = check_batch(frame, rows, settings, NOW)
    assert run.success, [r.describe() for r in run.failed]
    assert list(_by_name(run)) == ["quarantine_share", "duplicate_ids", "freshness:updated_at",
                                   "enrichment_coverage"]
    assert _by_name(run)["quarantine_share"].observed.startswith("0 (0 of 40 rows)")
    raise_if_failed(run)  # does not raise


def test_too_many_quarantined_rows_fail_the_batch(options, settings):
    frame = leads_frame([good_lead(i, employees=-1.0 if i < 5 else 10.0) for i in range(40)])
    rows = validate_rows(frame, options, NOW)
    result = _by_name(check_batch(frame, rows, settings, NOW))["quarantine_share"]
    assert not result.success
    assert result.observed == "0.125 (5 of 40 rows)"


def test_stale_data_fails_freshness(options, settings):
    frame = leads_frame([good_lead(i, updated_at=NOW_MS - 10 * DAY_MS) for i in range(30)])
    rows = validate_rows(frame, options, NOW)
    result = _by_name(check_batch(frame, rows, settings, NOW))["freshness:updated_at"]
    assert not result.success
    assert "240.0 h old" in result.observed


def test_low_enrichment_coverage_fails_and_missing_columns_are_named(healthy, settings):
    frame, rows = healthy
    sparse = frame.assign(industry=None, country="  ", employees=np.nan)
    sparse.loc[:4, "industry"] = "Software"
    result = _by_name(check_batch(sparse, rows, settings, NOW))["enrichment_coverage"]
    assert not result.success and result.observed == "0.125"
    bare = frame.drop(columns=["industry", "country", "employees"])
    result = _by_name(check_batch(bare, rows, settings, NOW))["enrichment_coverage"]
    assert not result.success and "missing" in result.observed
    skipped = check_batch(bare, rows, settings, NOW, check_enrichment=False)
    assert "enrichment_coverage" not in _by_name(skipped)


def test_duplicate_ids_fail_the_batch(options, settings):
    frame = leads_frame([good_lead(i) for i in range(30)] + [good_lead(0)])
    rows = validate_rows(frame, options, NOW)
    result = _by_name(check_batch(frame, rows, settings, NOW))["duplicate_ids"]
    assert not result.success and result.observed == "2 rows"


def test_small_batches_skip_the_share_checks(options):
    frame = leads_frame([good_lead(0, employees=-1.0), good_lead(1)])
    rows = validate_rows(frame, options, NOW)
    run = check_batch(frame, rows, BatchSettings(min_rows_for_shares=20), NOW)
    assert _by_name(run)["quarantine_share"].success
    assert "skipped" in _by_name(run)["quarantine_share"].observed


def _scores(n: int, rng: np.random.Generator, shift: float = 0.0) -> pd.DataFrame:
    score = np.clip(rng.normal(50 + shift, 12, n), 0, 100)
    return pd.DataFrame({
        "crm": "hubspot", "record_id": [str(i) for i in range(n)], "model_version": "v1",
        "score": score, "fit_score": score, "engagement_score": score / 2,
        "stage": np.where(score > 60, "mql", "lead"), "reasons": "+10 title is VP",
    })


def test_healthy_scores_pass_and_drift_is_measured():
    rng = np.random.default_rng(3)
    run = check_scores(_scores(500, rng), _scores(500, rng), QualitySettings())
    assert run.success, [r.describe() for r in run.failed]
    psi = _by_name(run)["score_psi"]
    assert float(psi.observed) < 0.1 and psi.threshold == "<= 0.25"


def test_bad_scores_fail_with_the_offending_values_named():
    scores = _scores(200, np.random.default_rng(4))
    scores.loc[0, "score"] = 120.0
    scores.loc[1, "stage"] = "vip"
    scores.loc[2, "reasons"] = " "
    scores.loc[3, "score"] = np.nan
    run = _by_name(check_scores(scores, None, ScoreSettings()))
    assert not run["score_range:score"].success
    assert run["score_range:score"].observed == "1 of 200 rows, e.g. 120"
    assert not run["allowed_stage:stage"].success and "vip" in run["allowed_stage:stage"].observed
    assert not run["has_reasons:reasons"].success
    assert not run["required:score"].success
    assert run["score_psi"].success and "no previous run" in run["score_psi"].observed


def test_score_drift_beyond_the_threshold_fails():
    rng = np.random.default_rng(5)
    run = _by_name(check_scores(_scores(1000, rng, shift=30), _scores(1000, rng), ScoreSettings()))
    assert not run["score_psi"].success and float(run["score_psi"].observed) > 0.25


def test_gate_error_names_each_failed_check_and_its_observed_value():
    results = [
        CheckResult("batch", "quarantine_share", False, "0.12 (12 of 100 rows)", "<= 0.05"),
        CheckResult("batch", "duplicate_ids", True, "0 rows", "<= 0"),
        CheckResult("scores", "score_psi", False, "0.4100", "<= 0.25"),
    ]
    with pytest.raises(QualityGateError) as err:
        raise_if_failed(results)
    message = str(err.value)
    assert "batch/quarantine_share: observed 0.12 (12 of 100 rows) (threshold <= 0.05)" in message
    assert "scores/score_psi: observed 0.4100" in message
    assert "duplicate_ids" not in message
    assert [r.name for r in err.value.failed] == ["quarantine_share", "score_psi"]
    assert failed_count(results) == 2


def test_results_are_stored_per_run_and_replaced_on_rerun(sqlite_warehouse, healthy, settings):
    frame, rows = healthy
    batch = check_batch(frame, rows, settings, NOW)
    assert store_results(sqlite_warehouse, "hubspot", "run-1", [*rows.results, *batch], now=NOW) \
        == len(rows.results) + len(batch)
    store_results(sqlite_warehouse, "hubspot", "run-1", list(batch), now=NOW + timedelta(minutes=1))
    with sqlite_warehouse.connect() as conn:
        stored = conn.execute(select(dq_results.c.stage, dq_results.c.expectation,
                                     dq_results.c.success, dq_results.c.observed)).all()
    assert len(stored) == len(rows.results) + len(batch)
    assert ("batch", "quarantine_share", True, "0 (0 of 40 rows)") in stored


def test_data_docs_are_written_to_a_folder_per_run(tmp_path, healthy, settings):
    frame, rows = healthy
    batch = check_batch(frame, rows, settings, NOW)
    run_id = "manual__2026-11-24T12:00:00+00:00"
    index = render_data_docs(tmp_path, run_id, "hubspot",
                             {"rows": (rows.results, rows.gx_result),
                              "batch": (batch.results, batch.gx_result)},
                             now=NOW, extra={"quarantined": 0})
    assert index == tmp_path / run_folder_name(run_id) / "index.html"
    page = index.read_text()
    assert "quarantine_share" in page and "email_syntax:email" in page and "https://" not in page
    assert (index.parent / "gx" / "rows.html").read_text().count("expect_column_values") > 0 or \
        "Expectation" in (index.parent / "gx" / "rows.html").read_text()
    # The batch gate is computed from counts (a sharded run's parts add up): no GX page of its
    # own; its results are on the index (above).
    assert not (index.parent / "gx" / "batch.html").exists()
