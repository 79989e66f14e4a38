"""The batch gate from added-up figures (what a sharded run's `validate_gate` evaluates) says
exactly what `check_batch` says of the whole batch, however the batch is split."""

from __future__ import annotations

import numpy as np
import pytest
from quality_helpers import DAY_MS, NOW, NOW_MS, good_lead, leads_frame

from leadflow.quality.batch_checks import batch_figures, check_batch, check_batch_figures, row_results
from leadflow.quality.row_checks import validate_rows
from leadflow.quality.settings import BatchSettings
from leadflow.warehouse.repo import _combine, shard_key


def _batches():
    yield "healthy", leads_frame([good_lead(i) for i in range(40)])
    yield "quarantined", leads_frame([good_lead(i, employees=-1.0 if i < 5 else 10.0) for i in range(40)])
    yield "stale", leads_frame([good_lead(i, updated_at=NOW_MS - 10 * DAY_MS) for i in range(30)])
    yield "all_quarantined", leads_frame([good_lead(i, employees=-1.0) for i in range(30)])
    yield "duplicates", leads_frame([good_lead(i) for i in range(30)] + [good_lead(0)])
    sparse = leads_frame([good_lead(i) for i in range(40)]).assign(industry=None, country="  ", employees=np.nan)
    sparse.loc[:4, "industry"] = "Software"
    yield "sparse", sparse
    yield "bare", leads_frame([good_lead(i) for i in range(40)]).drop(columns=["industry", "country", "employees"])
    yield "small", leads_frame([good_lead(0, employees=-1.0), good_lead(1)])
    yield "empty", leads_frame([good_lead(0)]).iloc[0:0]


def _parts(frame, count):
    """Split like the shards do: every row of one record id in the same part."""
    key = np.array([shard_key(str(r)) for r in frame["record_id"]], dtype="int64") % count
    return [frame[key == i].reset_index(drop=True) for i in range(count)]


@pytest.mark.parametrize("name,frame", list(_batches()), ids=[n for n, _ in _batches()])
def test_the_gate_from_shard_figures_equals_the_gate_over_the_whole_batch(name, frame, options, settings):
    parts = 3  # some parts hold none of the bad rows (or no rows): their figures must add up too
    whole_rows = validate_rows(frame, options, NOW)
    expected = check_batch(frame, whole_rows, settings, NOW)
    figures: dict = {}
    for part in _parts(frame, parts):
        figures = _combine(figures, batch_figures(part, validate_rows(part, options, NOW), settings))
    got = check_batch_figures(figures, settings, NOW, "hubspot")
    assert [(r.name, r.success, r.observed, r.threshold) for r in got] == \
        [(r.name, r.success, r.observed, r.threshold) for r in expected]
    assert [(r.name, r.success, r.observed, r.unexpected_count) for r in row_results(figures)] == \
        [(r.name, r.success, r.observed, r.unexpected_count) for r in whole_rows.results]


def test_small_batches_skip_the_share_checks_from_figures_too(options):
    frame = leads_frame([good_lead(0, employees=-1.0), good_lead(1)])
    settings = BatchSettings(min_rows_for_shares=20)
    figures = batch_figures(frame, validate_rows(frame, options, NOW), settings)
    run = check_batch_figures(figures, settings, NOW, "hubspot")
    assert [r.observed for r in run][:1] == ["skipped (2 rows < 20)"]
