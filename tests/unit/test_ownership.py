"""The ownership rule, row by row: current value x leadflow's last write x last writer x whether
the history was read x reclaim config -> write / leave / override / verify."""

from __future__ import annotations

import pytest

from leadflow.ownership import Decision, Observed, ReclaimPolicy, Writer, decide

NOW = 1_800_000_000_000
DAY = 86_400_000
W, L, O, V = Decision.WRITE, Decision.LEAVE, Decision.OVERRIDE, Decision.VERIFY
RECLAIM_30 = ReclaimPolicy(after_days=30)
P, WF, LF, UN, DF, IN = Writer.PERSON, Writer.WORKFLOW, Writer.LEADFLOW, Writer.UNKNOWN, Writer.DEFAULT, Writer.INTEGRATION

# (case, current, known, last_written, writer, changed_days_ago, verified, reclaim, desired, expected)
ROWS = [
    ("empty field, never written", None, True, None, UN, None, False, None, "open", W),
    ("empty string is empty", "", True, None, UN, None, True, None, "open", W),
    ("person cleared what leadflow wrote: handed back", None, True, "open", P, 1, True, None, "open", W),
    ("already holds the wanted value", "open", True, "open", LF, 3, True, None, "open", L),
    ("a person set the very value leadflow wants", "open", True, None, P, 3, True, None, "open", L),
    ("nothing to write", "open", True, "open", LF, 3, True, None, None, L),
    ("nothing to write into an empty field", None, True, None, UN, None, False, None, "", L),
    ("still leadflow's value, history agrees", "open", True, "open", LF, 3, True, None, "nurture", W),
    ("still leadflow's value, no history read yet", "open", True, "open", UN, None, False, None, "nurture", W),
    ("leadflow was the last writer per history (log lost the confirmation)", "new", True, "open", LF, 1, True,
     None, "open", W),
    ("creation default (form, import, the CRM's default)", "subscriber", True, None, DF, 90, True, None, "lead", W),
    ("rep rejected a lead leadflow opened (snapshot)", "unqualified", True, "open", UN, None, False, None, "open", O),
    ("rep rejected a lead leadflow opened (history)", "unqualified", True, "open", P, 1, True, None, "open", O),
    ("rep works a lead leadflow marked new", "in_progress", True, "new", P, 1, True, None, "open", O),
    ("same value re-set by a person is their decision", "open", True, "open", P, 1, True, None, "nurture", O),
    ("workflow changed leadflow's value", "bad_timing", True, "open", WF, 2, True, None, "open", O),
    ("other integration set it", "new", True, "open", IN, 2, True, None, "open", O),
    ("value leadflow never wrote, snapshot only: history must tell", "new", True, None, UN, None, False, None,
     "open", V),
    ("value leadflow never wrote, no history even when read: safe side", "new", True, None, UN, None, True, None,
     "open", O),
    ("value leadflow never wrote, set by a person", "connected", True, None, P, 5, True, None, "open", O),
    ("value outside the mapping", "PARTNER_REFERRAL", False, None, UN, None, False, None, "open", O),
    ("unmapped value even if leadflow wrote last", "open", False, "open", LF, 3, True, None, "new", O),
    ("stage a person moved back", "lead", True, "mql", P, 1, True, None, "mql", O),
    ("reclaim: workflow value quiet long enough", "new", True, "open", WF, 31, True, RECLAIM_30, "open", W),
    ("reclaim: workflow value too recent", "new", True, "open", WF, 29, True, RECLAIM_30, "open", O),
    ("reclaim: never takes a person's value", "new", True, "open", P, 365, True, RECLAIM_30, "open", O),
    ("reclaim: never an unmapped value", "X", False, "open", WF, 365, True, RECLAIM_30, "open", O),
    ("reclaim: needs a change time", "new", True, "open", WF, None, True, RECLAIM_30, "open", O),
    ("reclaim off by default", "new", True, "open", WF, 365, True, ReclaimPolicy(), "open", O),
]


@pytest.mark.parametrize(
    "current, known, last_written, writer, changed_days_ago, verified, reclaim, desired, expected",
    [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_ownership_rule_table(current, known, last_written, writer, changed_days_ago, verified, reclaim, desired,
                              expected):
    changed_at = None if changed_days_ago is None else NOW - changed_days_ago * DAY
    observed = Observed(current, known=known, writer=writer, changed_at=changed_at)
    assert decide(observed, desired, last_written, now_ms=NOW, verified=verified, reclaim=reclaim) is expected


def test_every_writer_and_decision_appears_in_the_table():
    assert {row[4] for row in ROWS} == set(Writer)
    assert {row[9] for row in ROWS} == set(Decision)


def test_reclaim_policy_rejects_a_zero_day_quiet_period():
    with pytest.raises(ValueError, match="after_days"):
        ReclaimPolicy(after_days=0)
