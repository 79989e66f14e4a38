"""Sales' verdict on a handed-over lead, row by row: the stage and status as the CRM holds them x
who set them x when, against the handoff time and the SLA."""

from __future__ import annotations

import pytest

from leadflow.ownership import Observed, Writer
from leadflow.qualify.config import HandoffRules
from leadflow.verdicts.classify import Decided, HandedOver, Verdict, classify

DAY = 86_400_000
HANDED = 1_800_000_000_000  # fixed: no test depends on today's date
RULES = HandoffRules()  # sla_days 3, the default statuses and stages
P, WF, LF, IN, DF, UN = Writer.PERSON, Writer.WORKFLOW, Writer.LEADFLOW, Writer.INTEGRATION, Writer.DEFAULT, Writer.UNKNOWN
ACC, REJ, CON, IGN = Verdict.ACCEPTED, Verdict.REJECTED, Verdict.CONVERTED, Verdict.IGNORED


def seen(value, writer=UN, days_after=None, by=None, known=True):
    """A field as observed; `days_after` the handoff it was set (negative: before)."""
    at = None if days_after is None else HANDED + int(days_after * DAY)
    return Observed(value, known=known, writer=writer, changed_at=at, changed_by=by)


MQL_BY_LEADFLOW = seen("mql", LF, -1, "app:1")
OPEN_BY_LEADFLOW = seen("open", LF, -1, "app:1")

# (case, stage, status, days since the handoff now, stage in the pull, expected verdict, by, field)
ROWS = [
    ("nothing happened yet", MQL_BY_LEADFLOW, OPEN_BY_LEADFLOW, 1, None, None, None, None),
    ("rep works it: in progress", MQL_BY_LEADFLOW, seen("in_progress", P, 0.5, "user:7"), 1, None, ACC, "user:7",
     "lead_status"),
    ("rep connected", MQL_BY_LEADFLOW, seen("connected", P, 2, "user:7"), 5, None, ACC, "user:7", "lead_status"),
    ("rep attempted to contact", MQL_BY_LEADFLOW, seen("attempted_to_contact", P, 1, "user:8"), 2, None, ACC,
     "user:8", "lead_status"),
    ("rep moves it to SQL", seen("sql", P, 1, "user:7"), OPEN_BY_LEADFLOW, 2, None, ACC, "user:7", "lifecycle_stage"),
    ("rep moves it to opportunity", seen("opportunity", P, 1, "user:9"), OPEN_BY_LEADFLOW, 2, None, ACC, "user:9",
     "lifecycle_stage"),
    ("rep rejects: unqualified", MQL_BY_LEADFLOW, seen("unqualified", P, 1, "user:7"), 2, None, REJ, "user:7",
     "lead_status"),
    ("rep rejects: bad timing (nurture)", MQL_BY_LEADFLOW, seen("nurture", P, 1, "user:7"), 2, None, REJ, "user:7",
     "lead_status"),
    ("rep moves the stage back below MQL", seen("lead", P, 1, "005U1"), OPEN_BY_LEADFLOW, 2, None, REJ, "005U1",
     "lifecycle_stage"),
    ("rep moves the stage to subscriber", seen("subscriber", P, 1, "005U1"), OPEN_BY_LEADFLOW, 2, None, REJ, "005U1",
     "lifecycle_stage"),
    ("worked, then rejected: the latest answer counts", seen("sql", P, 1, "u1"),
     seen("unqualified", P, 2, "u2"), 3, None, REJ, "u2", "lead_status"),
    ("rejected, then moved to SQL: the latest answer counts", seen("sql", P, 2, "u1"),
     seen("unqualified", P, 1, "u2"), 3, None, ACC, "u1", "lifecycle_stage"),
    ("same moment: a rejection outweighs", seen("sql", P, 1, "u1"), seen("unqualified", P, 1, "u2"), 3, None, REJ,
     "u2", "lead_status"),
    ("customer: converted, whoever set it", seen("customer", WF, 4, "wf:3"), OPEN_BY_LEADFLOW, 5, None, CON, "wf:3",
     "lifecycle_stage"),
    ("evangelist by a person: converted", seen("evangelist", P, 4, "u1"), OPEN_BY_LEADFLOW, 5, None, CON, "u1",
     "lifecycle_stage"),
    ("Salesforce conversion: the pull says customer, the status by the converting rep", MQL_BY_LEADFLOW,
     seen("Closed - Converted", P, 2, "005R", known=False), 3, "customer", CON, "005R", "lifecycle_stage"),
    ("workflow set in progress: no verdict", MQL_BY_LEADFLOW, seen("in_progress", WF, 1, "wf:1"), 2, None, None,
     None, None),
    ("another integration rejected: no verdict", MQL_BY_LEADFLOW, seen("unqualified", IN, 1, "app:9"), 2, None,
     None, None, None),
    ("leadflow's own unqualified: never a verdict", MQL_BY_LEADFLOW, seen("unqualified", LF, 1, "app:1"), 2, None,
     None, None, None),
    ("the creation default: no verdict", seen("lead", DF, -30), seen("new", DF, -30), 2, None, None, None, None),
    ("history unknown: no verdict", seen("lead", UN), seen("unqualified", UN), 2, None, None, None, None),
    ("a person's change before the handoff is no answer to it", MQL_BY_LEADFLOW, seen("in_progress", P, -2, "u1"),
     1, None, None, None, None),
    ("workflow moved the stage back: no verdict", seen("lead", WF, 1, "wf:2"), OPEN_BY_LEADFLOW, 2, None, None,
     None, None),
    ("untouched past the SLA: ignored", MQL_BY_LEADFLOW, OPEN_BY_LEADFLOW, 3, None, IGN, None, None),
    ("only a workflow touched it past the SLA: ignored", MQL_BY_LEADFLOW, seen("open", WF, 1, "wf:1"), 4, None, IGN,
     None, None),
    ("a person set an unmapped status: touched, no verdict, not ignored", MQL_BY_LEADFLOW,
     seen("PARTNER_REFERRAL", P, 1, "u1", known=False), 10, None, None, None, None),
    ("a person cleared the status: touched, not ignored", MQL_BY_LEADFLOW, seen(None, P, 1, "u1"), 10, None, None,
     None, None),
    ("accepted late, past the SLA: accepted", MQL_BY_LEADFLOW, seen("in_progress", P, 5, "u1"), 6, None, ACC, "u1",
     "lead_status"),
    ("record without the fields (nothing observed) past the SLA: ignored", None, None, 4, None, IGN, None, None),
]


@pytest.mark.parametrize("stage, status, days_now, stage_now, verdict, by, field", [r[1:] for r in ROWS],
                         ids=[r[0] for r in ROWS])
def test_verdict_table(stage, status, days_now, stage_now, verdict, by, field):
    observed = {k: v for k, v in (("lifecycle_stage", stage), ("lead_status", status)) if v is not None}
    lead = HandedOver("1", HANDED, score=82.0, reason="score 82 >= 70")
    decided = classify(lead, observed, RULES, now_ms=HANDED + days_now * DAY, stage_now=stage_now)
    if verdict is None:
        assert decided is None
        return
    assert (decided.verdict, decided.by, decided.field) == (verdict, by, field)
    if verdict is Verdict.IGNORED:
        assert decided == Decided(IGN, at=HANDED + 3 * DAY)
    elif stage_now is None:
        assert decided.writer in (P, WF) and decided.at > HANDED


def test_given_configured_statuses_and_sla_then_they_decide():
    rules = HandoffRules(sla_days=7, accepted_statuses=["open_deal"], rejected_statuses=["unqualified"],
                         accepted_stages=["opportunity"])
    lead = HandedOver("1", HANDED)
    worked = {"lead_status": seen("in_progress", P, 1, "u1")}
    assert classify(lead, worked, rules, now_ms=HANDED + 2 * DAY) is None  # not an answer under these rules
    assert classify(lead, {"lead_status": seen("nurture", P, 1, "u1")}, rules, now_ms=HANDED + 2 * DAY) is None
    assert classify(lead, {"lifecycle_stage": seen("sql", P, 1, "u1")}, rules, now_ms=HANDED + 2 * DAY) is None
    assert classify(lead, {"lead_status": seen("open_deal", P, 1, "u1")}, rules,
                    now_ms=HANDED + 2 * DAY).verdict is Verdict.ACCEPTED
    untouched = {"lead_status": OPEN_BY_LEADFLOW}
    assert classify(lead, untouched, rules, now_ms=HANDED + 6 * DAY) is None
    assert classify(lead, untouched, rules, now_ms=HANDED + 7 * DAY).verdict is Verdict.IGNORED
