"""Verdict events in the warehouse: which handoffs a run looks at in the CRM's history, and each
verdict stored once however often the run repeats (SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import insert

from leadflow.ownership import Observed, Writer
from leadflow.qualify.config import HandoffRules
from leadflow.verdicts.read import load_events, read_verdicts, store_events
from leadflow.warehouse.tables import leads, push_log, scores

DAY = 86_400_000
HANDED = 1_800_000_000_000
RULES = HandoffRules()


class FakeConnector:
    """Answers `observe` from a dict and remembers which ids it was asked for."""

    def __init__(self, fields):
        self.fields = fields
        self.asked: list[list[str]] = []

    def observe(self, ids):
        self.asked.append(sorted(ids))
        return {rid: self.fields[rid] for rid in ids if rid in self.fields}


def _seed(engine, run_id="r2"):
    """Four handed-over leads (1-4) and one that is not (5); leadflow wrote MQL/open to each."""
    with engine.begin() as conn:
        for rid, stage, status, pulled in [("1", "mql", "in_progress", run_id), ("2", "mql", "unqualified", run_id),
                                           ("3", "mql", "open", "r1"), ("4", "mql", "open", run_id),
                                           ("5", "lead", "new", run_id)]:
            conn.execute(insert(leads).values(crm="hubspot", record_id=rid, lifecycle_stage=stage, lead_status=status,
                                              pulled_at=0, pull_run_id=pulled, shard_key=0))
            ready = rid != "5"
            conn.execute(insert(scores).values(
                crm="hubspot", record_id=rid, score=80.0 if ready else 30.0, stage="mql", lead_status="open",
                sales_ready=ready, sales_ready_since=HANDED if ready else None,
                sales_ready_reason="score 80 >= 70" if ready else None, run_id="r1", scored_at=0, shard_key=0))
            for field, after in (("lifecycle_stage", "mql"), ("lead_status", "open")):
                conn.execute(insert(push_log).values(run_id="r1", crm="hubspot", record_id=rid, field=field,
                                                     after=after, status="confirmed", created_at=0, updated_at=0))


def _observed(status, writer, by, days_after=1):
    return {"lifecycle_stage": Observed("mql", writer=Writer.LEADFLOW, changed_at=HANDED - DAY),
            "lead_status": Observed(status, writer=writer, changed_at=HANDED + days_after * DAY, changed_by=by)}


def test_given_sales_answers_then_each_verdict_is_stored_once_with_who_and_the_handoff(warehouse):
    _seed(warehouse)
    fake = FakeConnector({"1": _observed("in_progress", Writer.PERSON, "user:7"),
                          "2": _observed("unqualified", Writer.PERSON, "user:8"),
                          "4": _observed("open", Writer.LEADFLOW, None, -1)})
    first = read_verdicts(warehouse, fake, "hubspot", "r2", RULES, now_ms=HANDED + 2 * DAY)
    # 1 and 2 changed in this run's pull; 3 was not pulled again; 4 holds what leadflow wrote.
    assert fake.asked == [["1", "2"]]
    assert first["verdicts"] == {"accepted": 1, "rejected": 1, "converted": 0, "ignored": 0}
    assert first["handoffs_watched"] == 4 and first["handoffs_looked_at"] == 2
    events = load_events(warehouse, "hubspot").set_index("record_id")
    assert events.loc["1", ["verdict", "changed_by", "writer", "field", "value"]].tolist() == [
        "accepted", "user:7", "person", "lead_status", "in_progress"]
    assert events.loc["2", ["verdict", "changed_by"]].tolist() == ["rejected", "user:8"]
    assert int(events.loc["2", "handed_over_at"]) == HANDED and events.loc["2", "score"] == 80.0
    assert events.loc["2", "reason"] == "score 80 >= 70" and events.loc["2", "run_id"] == "r2"

    # The same run again: nothing new is looked at twice, nothing stored twice.
    again = read_verdicts(warehouse, fake, "hubspot", "r2", RULES, now_ms=HANDED + 2 * DAY)
    assert again["verdicts"] == {"accepted": 0, "rejected": 0, "converted": 0, "ignored": 0}
    assert len(fake.asked) == 1
    assert len(load_events(warehouse, "hubspot")) == 2


def test_given_the_sla_ran_out_then_untouched_leads_are_ignored_once_and_rejected_ones_are_done(warehouse):
    _seed(warehouse)
    fake = FakeConnector({"1": _observed("in_progress", Writer.PERSON, "user:7"),
                          "2": _observed("unqualified", Writer.PERSON, "user:8"),
                          "3": _observed("open", Writer.LEADFLOW, None, -1),
                          "4": _observed("open", Writer.WORKFLOW, "wf:1")})
    read_verdicts(warehouse, fake, "hubspot", "r2", RULES, now_ms=HANDED + 4 * DAY)
    assert {r: v for r, v in load_events(warehouse, "hubspot")[["record_id", "verdict"]].itertuples(index=False)} \
        == {"1": "accepted", "2": "rejected", "3": "ignored", "4": "ignored"}
    # Next run (nothing pulled anew): the rejected one is final, the others have their verdict
    # and unchanged values, so nothing needs the CRM's history.
    fake.asked.clear()
    later = read_verdicts(warehouse, fake, "hubspot", "r3", RULES, now_ms=HANDED + 5 * DAY)
    assert fake.asked == [] and later["handoffs_watched"] == 3 and later["handoffs_looked_at"] == 0
    assert len(load_events(warehouse, "hubspot")) == 4


def test_store_events_keeps_one_event_per_handoff_and_verdict(warehouse):
    row = {"crm": "hubspot", "record_id": "1", "handed_over_at": HANDED, "verdict": "accepted",
           "decided_at": HANDED + DAY, "writer": "person", "changed_by": "user:7", "field": "lead_status",
           "value": "in_progress", "score": 80.0, "reason": "r", "stage": "mql", "status": "in_progress",
           "run_id": "r2", "seen_at": HANDED + DAY}
    store_events(warehouse, [row])
    store_events(warehouse, [dict(row, run_id="r3", changed_by="user:9"), dict(row, verdict="converted")])
    store_events(warehouse, [dict(row, handed_over_at=HANDED + 10 * DAY)])  # handed over anew
    events = load_events(warehouse, "hubspot")
    assert sorted(zip(events["verdict"], events["handed_over_at"].astype(int), events["run_id"])) == [
        ("accepted", HANDED, "r2"), ("accepted", HANDED + 10 * DAY, "r2"), ("converted", HANDED, "r2")]


def test_given_nothing_handed_over_yet_then_nothing_is_asked_of_the_crm(warehouse):
    fake = FakeConnector({})
    out = read_verdicts(warehouse, fake, "hubspot", "r1", RULES, now_ms=HANDED)
    assert fake.asked == [] and out["handoffs_watched"] == 0
    assert out["verdicts"] == {"accepted": 0, "rejected": 0, "converted": 0, "ignored": 0}


def test_given_a_handoff_that_stopped_being_sales_ready_unanswered_then_a_later_answer_is_still_its_verdict(warehouse):
    from leadflow.verdicts.tables import handoffs

    _seed(warehouse)
    with warehouse.begin() as conn:  # lead 5 was handed over earlier and is no longer sales-ready
        conn.execute(insert(handoffs).values(crm="hubspot", record_id="5", handed_over_at=HANDED - DAY, score=75.0,
                                             run_id="r0"))
    fake = FakeConnector({"5": {"lifecycle_stage": Observed("customer", writer=Writer.PERSON, changed_at=HANDED,
                                                            changed_by="user:9"),
                                "lead_status": Observed("new", writer=Writer.LEADFLOW, changed_at=HANDED - 2 * DAY)}})
    read_verdicts(warehouse, fake, "hubspot", "r2", RULES, now_ms=HANDED + DAY)
    events = load_events(warehouse, "hubspot")
    assert any("5" in ids for ids in fake.asked)
    assert events[["record_id", "handed_over_at", "verdict", "changed_by"]].to_dict("records") == [
        {"record_id": "5", "handed_over_at": HANDED - DAY, "verdict": "converted", "changed_by": "user:9"}]
    # Final: the next run does not look at it again.
    fake.asked.clear()
    read_verdicts(warehouse, fake, "hubspot", "r3", RULES, now_ms=HANDED + 5 * DAY)
    assert all("5" not in ids for ids in fake.asked)
