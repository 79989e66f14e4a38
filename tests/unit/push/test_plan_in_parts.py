"""plan_push diffs the records a part at a time (the whole diff of a first push of 1,000,000
records does not fit a task): its figures and its preview are those of the whole diff."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadflow.push.diff import diff_leads
from leadflow.push.plan import PlanTally
from leadflow.push.writer import preview

STAGES = [None, "subscriber", "lead", "mql", "sql", "opportunity"]


def _world(n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = [str(i) for i in rng.permutation(10 * n)[:n]]  # ids whose text order is not their number's
    desired = pd.DataFrame({
        "record_id": ids, "model_version": "v2", "score": rng.integers(0, 100, n).astype(float),
        "fit_score": rng.integers(0, 100, n).astype(float), "engagement_score": rng.integers(0, 100, n).astype(float),
        "grade": rng.choice(["A1", "B2", "C3"], n), "bant_count": rng.integers(0, 4, n).astype(float),
        "reasons": [f"+{k} fit" for k in rng.integers(0, 50, n)],
        "disqualification_reason": rng.choice([None, "student"], n, p=[0.9, 0.1]),
        "stage": rng.choice(["lead", "mql", "sql"], n), "lead_status": rng.choice(["new", "open"], n),
        "scored_at": 2000,
    })
    known = rng.random(n) < 0.6  # the rest: a first push, nothing of leadflow's in the CRM yet
    current = pd.DataFrame({
        "record_id": ids, "lifecycle_stage": rng.choice(STAGES, n), "lead_status": rng.choice([None, "new", "open"], n),
        "crm_score": np.where(known, desired["score"].map(lambda v: str(int(v))), None),
        "crm_grade": np.where(known & (rng.random(n) < 0.8), desired["grade"], None),
        "crm_reasons": None, "crm_model_version": np.where(known, "v1", None), "crm_scored_at": None,
    })
    return desired, current


def _part(frame: pd.DataFrame, part: int, parts: int) -> pd.DataFrame:
    return frame[frame["record_id"].map(lambda r: int(r) % parts) == part]


@pytest.mark.parametrize("parts", [1, 3, 8])
def test_given_the_records_diffed_in_parts_then_the_plan_is_the_whole_diffs(parts):
    desired, current = _world(600, seed=parts)
    written = {(rid, "lifecycle_stage"): "mql" for rid in desired["record_id"][:40]}  # some overrides
    whole = diff_leads(desired, current, last_written=written, now_ms=10**13)
    assert len(whole.overrides) > 0 and len(whole.changes) > 0
    plan = PlanTally()
    for part in range(parts):
        plan.add(diff_leads(_part(desired, part, parts), _part(current, part, parts), last_written=written,
                            now_ms=10**13))
    expected = preview(whole.changes)
    assert plan.changed == whole.changes["record_id"].nunique() == expected["records"]
    assert plan.overrides == len(whole.overrides)
    got = plan.preview()
    assert got == expected
    # The same order of stage transitions too (the report and the console list them so).
    assert list(got["stage_transitions"]) == list(expected["stage_transitions"])
    assert len(expected["stage_transitions"]) > 3 and len(expected["samples"]) == 20


def test_given_no_changes_in_any_part_then_the_plan_is_empty():
    plan = PlanTally()
    desired, current = _world(5, seed=1)
    plan.add(diff_leads(desired.iloc[:0], current.iloc[:0]))
    assert (plan.changed, plan.overrides) == (0, 0)
    assert plan.preview() == preview(diff_leads(desired.iloc[:0], current.iloc[:0]).changes)
