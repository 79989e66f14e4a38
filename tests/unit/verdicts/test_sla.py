"""The SLA's figures from handoffs and verdict events: one outcome per handoff, acceptance rate
over sales' answers, time to first touch from a person's earliest verdict, segments, rejection
reasons, weeks and one run; and the handoffs qualify records once."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from leadflow.verdicts.read import load_handoffs
from leadflow.verdicts.sla import ignored_alert, measure, outcomes, record_handoffs
from leadflow.verdicts.tables import handoffs
from leadflow.warehouse.db import ensure_schema, get_engine

HOUR = 3_600_000
DAY = 24 * HOUR
MONDAY = 1_800_230_400_000  # 2027-01-18 00:00 UTC, a Monday: fixed, no test depends on today's date
NOW = MONDAY + 2 * DAY


def handoff(rid, at, score=75.0, grade="A1", persona="director", run_id="r1"):
    return {"record_id": rid, "handed_over_at": at, "score": score, "grade": grade, "persona": persona,
            "run_id": run_id}


def event(rid, at, verdict, decided_at, writer="person", field="lead_status", value=None, run_id="r2"):
    return {"record_id": rid, "handed_over_at": at, "verdict": verdict, "decided_at": decided_at, "writer": writer,
            "field": field, "value": value, "run_id": run_id}


T0 = MONDAY - 7 * DAY  # last week
HANDED = pd.DataFrame([
    handoff("a", T0, 91, "A1", "executive"),       # accepted after 2 h
    handoff("b", T0, 72, "B2", "director"),        # rejected (unqualified) after 4 h
    handoff("c", T0, 78, "A2", "director"),        # ignored, then accepted late: accepted, SLA missed
    handoff("d", T0, 65, "B1", None),              # ignored, still unanswered
    handoff("e", T0, 88, "A1", "executive"),       # converted by automation, no person's touch
    handoff("f", MONDAY + DAY, 70, "B2", "manager", run_id="r2"),  # this week, nothing yet: pending
    handoff("g", T0, 60, "C1", "manager"),         # accepted, then rejected: rejected
])
EVENTS = pd.DataFrame([
    event("a", T0, "accepted", T0 + 2 * HOUR, value="in_progress"),
    event("b", T0, "rejected", T0 + 4 * HOUR, value="unqualified"),
    event("c", T0, "ignored", T0 + 3 * DAY, writer=None),
    event("c", T0, "accepted", T0 + 5 * DAY, value="connected"),
    event("d", T0, "ignored", T0 + 3 * DAY, writer=None),
    event("e", T0, "converted", T0 + 1 * DAY, writer="workflow", field="lifecycle_stage", value="customer"),
    event("g", T0, "accepted", T0 + 6 * HOUR, value="in_progress", run_id="r1"),
    event("g", T0, "rejected", T0 + 10 * HOUR, field="lifecycle_stage", value="lead"),
])


def test_given_several_verdicts_then_the_strongest_is_the_outcome_and_outcomes_add_up():
    frame = outcomes(HANDED, EVENTS).set_index("record_id")
    assert frame["outcome"].to_dict() == {"a": "accepted", "b": "rejected", "c": "accepted", "d": "ignored",
                                          "e": "converted", "f": "pending", "g": "rejected"}
    assert frame["sla_missed"].to_dict() == {"a": False, "b": False, "c": True, "d": True, "e": False, "f": False,
                                             "g": False}
    figures = measure(HANDED, EVENTS, now_ms=NOW)
    assert {k: figures[k] for k in ("handed_over", "accepted", "converted", "rejected", "ignored", "pending")} == {
        "handed_over": 7, "accepted": 2, "converted": 1, "rejected": 2, "ignored": 1, "pending": 1}
    assert figures["sla_missed"] == 2


def test_acceptance_rate_counts_sales_answers_only_not_ignored_or_pending():
    figures = measure(HANDED, EVENTS, now_ms=NOW)
    assert figures["acceptance_rate"] == pytest.approx(3 / 5, abs=1e-4)  # a, c, e of a, b, c, e, g


def test_first_touch_is_a_persons_earliest_verdict_and_automation_is_no_touch():
    figures = measure(HANDED, EVENTS, now_ms=NOW)
    # a 2 h, b 4 h, c 120 h (late), g 6 h; e was converted by a workflow: no touch
    assert figures["median_hours_to_first_touch"] == pytest.approx(5.0)


def test_segments_by_score_band_grade_and_persona_each_add_up_to_the_handoffs():
    figures = measure(HANDED, EVENTS, now_ms=NOW)
    for segment in ("by_score_band", "by_grade", "by_persona"):
        assert sum(s["handed_over"] for s in figures[segment].values()) == 7
    assert figures["by_score_band"]["90-100"] == {"handed_over": 1, "accepted": 1, "converted": 0, "rejected": 0,
                                                  "ignored": 0, "pending": 0, "acceptance_rate": 1.0}
    assert figures["by_grade"]["A1"]["converted"] == 1 and figures["by_grade"]["A1"]["accepted"] == 1
    assert figures["by_persona"]["unknown"]["ignored"] == 1
    assert figures["by_persona"]["director"]["acceptance_rate"] == 0.5


def test_rejection_reasons_are_what_the_reps_set_most_frequent_first():
    figures = measure(HANDED, EVENTS, now_ms=NOW)
    assert figures["rejection_reasons"] == [{"field": "lead_status", "value": "unqualified", "count": 1},
                                            {"field": "lifecycle_stage", "value": "lead", "count": 1}]


def test_weeks_start_on_monday_utc_and_hold_the_handoffs_made_in_them():
    figures = measure(HANDED, EVENTS, now_ms=NOW, weeks=3)
    assert [w["week_start_ms"] for w in figures["weekly"]] == [MONDAY, MONDAY - 7 * DAY, MONDAY - 14 * DAY]
    assert [w["handed_over"] for w in figures["weekly"]] == [1, 6, 0]
    assert figures["weekly"][0]["pending"] == 1 and figures["weekly"][2]["acceptance_rate"] is None


def test_this_run_counts_its_handoffs_and_the_verdicts_it_saw():
    figures = measure(HANDED, EVENTS, now_ms=NOW, run_id="r2")
    assert figures["this_run"] == {"handed_over": 1, "verdicts": {"accepted": 2, "rejected": 2, "converted": 1,
                                                                  "ignored": 2}}


def test_given_no_handoffs_then_every_figure_is_zero_or_none():
    figures = measure(HANDED.iloc[0:0], EVENTS.iloc[0:0], now_ms=NOW, run_id="r1")
    assert figures["handed_over"] == 0 and figures["acceptance_rate"] is None
    assert figures["median_hours_to_first_touch"] is None and figures["by_grade"] == {}
    assert figures["this_run"]["handed_over"] == 0 and len(figures["weekly"]) == 12


@pytest.mark.parametrize("threshold, ignored, alerts", [(None, 100, False), (5, 5, False), (5, 6, True),
                                                         (0, 1, True), (0, 0, False)])
def test_ignored_alert_fires_only_above_its_threshold(threshold, ignored, alerts):
    text = ignored_alert({"ignored": ignored, "handed_over": 200}, threshold)
    assert (text is not None) is alerts
    if alerts:
        assert f"{ignored} sales-ready leads ignored" in text


def test_handoffs_are_recorded_once_with_what_the_lead_was_then(tmp_path):
    engine = get_engine(f"sqlite:///{tmp_path / 'wh.db'}")
    ensure_schema(engine)
    scores = pd.DataFrame({"record_id": ["1", "2", "3"], "sales_ready": [True, True, False],
                           "sales_ready_since": [T0, None, None], "score": [80.0, 75.0, 40.0],
                           "grade": ["A1", "B1", "D4"], "persona": ["director", None, None],
                           "sales_ready_reason": ["score 80", "score 75", None]})
    assert record_handoffs(engine, "hubspot", "r1", scores) == 1
    later = scores.assign(score=[95.0, 75.0, 40.0], grade=["A1", "B1", "D4"])
    record_handoffs(engine, "hubspot", "r2", later)  # the same handoff again: kept as first seen
    stored = load_handoffs(engine, "hubspot")
    assert stored[["record_id", "handed_over_at", "score", "persona", "run_id"]].to_dict("records") == [
        {"record_id": "1", "handed_over_at": T0, "score": 80.0, "persona": "director", "run_id": "r1"}]
    engine.dispose()


@pytest.mark.parametrize("threshold, alerts", [(0, 1), (1, 0)])
def test_given_more_ignored_handoffs_than_the_threshold_then_the_runs_one_alert_says_so_with_counts(
        tmp_path, monkeypatch, threshold, alerts):
    import yaml

    from leadflow.alerts import run_alert
    from leadflow.pipeline import RunContext, report
    from leadflow.qualify.config import DEFAULT_MODEL_PATH
    from leadflow.verdicts.read import store_events
    from leadflow.warehouse import repo

    monkeypatch.setenv("LEADFLOW_VAR_DIR", str(tmp_path / "var"))
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    doc["handoff"]["alert_ignored_over"] = threshold
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump(doc), encoding="utf-8")
    sent = []
    monkeypatch.setattr("leadflow.alerts.send", lambda message: sent.append(message) or ["webhook"])
    ctx = RunContext(crm="hubspot", run_id="r2", warehouse_url=f"sqlite:///{tmp_path / 'wh.db'}",
                     model_path=str(model), now=pd.Timestamp(NOW, unit="ms", tz="UTC").to_pydatetime())
    repo.start_run(ctx.engine, "hubspot", "r2", dry_run=False)
    with ctx.engine.begin() as conn:
        conn.execute(handoffs.insert(), [{"crm": "hubspot", **h} for h in HANDED.to_dict("records")])
    store_events(ctx.engine, [{"crm": "hubspot", "seen_at": NOW, **e} for e in EVENTS.to_dict("records")])

    summary = report(ctx)

    assert summary["sla"]["ignored"] == 1  # d; c was answered late
    assert sent == []  # `report` records it: the run's one alert goes out once the run has ended
    assert ("sla_alert" in summary) is bool(alerts)
    message = run_alert("hubspot", "leadflow_hubspot", "r2", repo.get_run_summary(ctx.engine, "hubspot", "r2"),
                        status=summary["status"])
    assert (message is not None) is bool(alerts)
    if alerts:
        assert message["reasons"] == ["sla_ignored"] and message["kind"] == "warning"
        assert message["sla"]["ignored"] == 1 and "1 sales-ready leads ignored" in message["text"]
        assert "@" not in json.dumps(message)  # counts only, no lead's values
    ctx.engine.dispose()
