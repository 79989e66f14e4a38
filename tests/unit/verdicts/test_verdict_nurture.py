"""Rejected leads go to nurture with the rep's reason kept; a later, clearly higher score hands
them over again, once (`handoff.rehandoff_min_score_gain`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadflow.qualify.handoff import hold_back_rejected
from leadflow.verdicts.read import load_events, store_events

DAY = 86_400_000
T1 = 1_800_000_000_000  # the first handoff (2027-01-15 UTC)
NOW = T1 + 10 * DAY
GAIN = 15.0


def _scores(score, since=T1, ready=True, status="open"):
    """One scored lead "1" after carry_since: sales-ready since `since`."""
    return pd.DataFrame({
        "record_id": ["1"], "score": [float(score)], "sales_ready": [ready],
        "sales_ready_since": [float(since) if ready else np.nan],
        "sales_ready_reason": ["score %d >= 70" % score if ready else None], "lead_status": [status],
    })


def _event(verdict, handed=T1, score=80.0, value="nurture", decided=T1 + DAY):
    return {"crm": "hubspot", "record_id": "1", "handed_over_at": handed, "verdict": verdict, "decided_at": decided,
            "value": value, "score": score}


def _hold(scores, *events, gain=GAIN):
    fresh = pd.Series(np.where(scores["sales_ready"], float(NOW), np.nan), index=scores.index)
    return hold_back_rejected(scores, pd.DataFrame(list(events)), gain, fresh)


def test_given_a_rejected_lead_with_the_same_score_then_it_is_held_back_with_the_reps_reason():
    out, counts = _hold(_scores(80), _event("rejected"))
    row = out.iloc[0]
    assert not row["sales_ready"] and np.isnan(row["sales_ready_since"])
    assert row["sales_ready_reason"] == "rejected by sales (nurture) on 2027-01-16; held back until score > 95"
    assert row["lead_status"] == "nurture"
    assert counts == {"held_back_after_rejection": 1, "handed_over_again": 0}


def test_given_a_rejected_lead_with_score_up_to_the_margin_then_it_stays_held_back():
    out, counts = _hold(_scores(95, since=NOW), _event("rejected"))
    assert not out.iloc[0]["sales_ready"] and counts["held_back_after_rejection"] == 1


def test_given_a_rejected_lead_whose_score_passed_the_margin_then_it_is_handed_over_again_as_a_new_handoff():
    scores = _scores(96)
    out, counts = _hold(scores, _event("rejected"))
    row = out.iloc[0]
    assert row["sales_ready"] and row["sales_ready_since"] == NOW
    assert row["sales_ready_reason"] == "score 96 >= 70" and row["lead_status"] == "open"
    assert counts == {"held_back_after_rejection": 0, "handed_over_again": 1}
    assert scores.iloc[0]["sales_ready_since"] == T1  # the input frame is left as it was


def test_given_the_second_handoff_still_open_then_it_keeps_its_time():
    t2 = T1 + 5 * DAY
    out, counts = _hold(_scores(96, since=t2), _event("rejected"))
    assert out.iloc[0]["sales_ready"] and out.iloc[0]["sales_ready_since"] == t2
    assert counts == {"held_back_after_rejection": 0, "handed_over_again": 0}


def test_given_a_second_rejection_then_the_lead_is_held_back_for_good():
    t2 = T1 + 5 * DAY
    out, counts = _hold(_scores(100, since=t2), _event("rejected"),
                        _event("rejected", handed=t2, score=96.0, value="unqualified", decided=t2 + DAY))
    row = out.iloc[0]
    assert not row["sales_ready"]
    assert row["sales_ready_reason"] == "rejected by sales (unqualified) on 2027-01-21; not handed over again"
    assert counts == {"held_back_after_rejection": 1, "handed_over_again": 0}


def test_given_the_second_handoff_ended_without_a_verdict_then_the_lead_is_not_handed_over_a_third_time():
    t2 = T1 + 5 * DAY  # handed over again, then no longer sales-ready before sales answered
    made = pd.DataFrame({"record_id": ["1", "1"], "handed_over_at": [T1, t2]})
    scores = _scores(100)
    fresh = pd.Series([float(NOW)], index=scores.index)
    out, counts = hold_back_rejected(scores, pd.DataFrame([_event("rejected")]), GAIN, fresh, made)
    assert not out.iloc[0]["sales_ready"] and out.iloc[0]["sales_ready_reason"].endswith("not handed over again")
    assert counts == {"held_back_after_rejection": 1, "handed_over_again": 0}
    # Without that second handoff on record the lead would get its one more chance.
    out, counts = hold_back_rejected(scores, pd.DataFrame([_event("rejected")]), GAIN, fresh, made.iloc[:1])
    assert out.iloc[0]["sales_ready"] and counts["handed_over_again"] == 1


def test_given_the_current_handoff_is_the_one_after_the_rejection_then_it_stays_open():
    t2 = T1 + 5 * DAY
    made = pd.DataFrame({"record_id": ["1", "1"], "handed_over_at": [T1, t2]})
    scores = _scores(96, since=t2)
    fresh = pd.Series([float(NOW)], index=scores.index)
    out, counts = hold_back_rejected(scores, pd.DataFrame([_event("rejected")]), GAIN, fresh, made)
    assert out.iloc[0]["sales_ready"] and out.iloc[0]["sales_ready_since"] == t2
    assert counts == {"held_back_after_rejection": 0, "handed_over_again": 0}


def test_given_no_margin_then_a_rejected_lead_is_never_handed_over_again():
    out, counts = _hold(_scores(100), _event("rejected", value=None), gain=None)
    assert not out.iloc[0]["sales_ready"]
    assert out.iloc[0]["sales_ready_reason"] == "rejected by sales on 2027-01-16; not handed over again"
    assert counts["held_back_after_rejection"] == 1


@pytest.mark.parametrize("verdict", ["accepted", "ignored", "converted"])
def test_given_an_accepted_ignored_or_converted_lead_then_it_is_unaffected(verdict):
    scores = _scores(80)
    out, counts = _hold(scores, _event(verdict, value="in_progress"))
    pd.testing.assert_frame_equal(out, scores)
    assert counts == {"held_back_after_rejection": 0, "handed_over_again": 0}


def test_given_a_later_handoff_with_another_verdict_then_the_old_rejection_does_not_hold_it_back():
    t2 = T1 + 5 * DAY
    out, counts = _hold(_scores(80, since=NOW), _event("rejected"), _event("ignored", handed=t2, decided=t2 + 3 * DAY))
    assert out.iloc[0]["sales_ready"] and counts["held_back_after_rejection"] == 0


def test_given_a_rejected_lead_that_is_not_sales_ready_then_nothing_changes():
    scores = _scores(40, ready=False)
    out, counts = _hold(scores, _event("rejected"))
    pd.testing.assert_frame_equal(out, scores)
    assert counts["held_back_after_rejection"] == 0


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_given_rejections_stored_in_the_warehouse_then_qualify_holds_the_lead_back_from_them(warehouse):
    common = {"writer": "person", "changed_by": "user:8", "field": "lead_status", "reason": "score 80 >= 70",
              "stage": "mql", "status": "nurture", "run_id": "r2", "seen_at": T1 + DAY}
    store_events(warehouse, [{**_event("rejected"), **common},
                             {**_event("accepted", value="in_progress"), "record_id": "2", **common}])
    scores = pd.concat([_scores(80), _scores(80).assign(record_id="2")], ignore_index=True)
    out, counts = _hold(scores, *load_events(warehouse, "hubspot").to_dict("records"))
    assert out["sales_ready"].tolist() == [False, True]
    assert out.iloc[0]["sales_ready_reason"].startswith("rejected by sales (nurture) on 2027-01-16")
    assert counts == {"held_back_after_rejection": 1, "handed_over_again": 0}
