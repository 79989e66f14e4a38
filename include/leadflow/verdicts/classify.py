"""What sales did with a handed-over lead, from who last set its stage and status in the CRM.

Only a person's change made after the handoff is a verdict: leadflow's own writes, workflows and
other integrations say nothing about whether sales wanted the lead (issue 14: the labels must not
be leadflow's own output). A converted lead counts whoever set it: a won deal is a won deal, and
Salesforce's conversion or a HubSpot deal workflow sets it by automation.

Pure functions and value types; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Mapping

from leadflow.ownership import DAY_MS, Observed, Writer, is_empty
from leadflow.qualify.config import HandoffRules
from leadflow.schema import STAGE_RANK


class Verdict(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CONVERTED = "converted"
    IGNORED = "ignored"


# After these nothing sales does to the same handoff changes the outcome; accepted and ignored
# leads are still watched (an accepted lead may convert, an ignored one be picked up late).
FINAL_VERDICTS: frozenset[Verdict] = frozenset({Verdict.REJECTED, Verdict.CONVERTED})


@dataclass(frozen=True)
class HandedOver:
    """A lead leadflow handed over: when (epoch ms) and with what score and reason."""

    record_id: str
    handed_over_at: int
    score: float | None = None
    reason: str | None = None


@dataclass(frozen=True)
class Decided:
    """A verdict: when it was given (epoch ms), by whom (the CRM's user or app id, None for
    ignored), and the change that gave it (field and its canonical value)."""

    verdict: Verdict
    at: int
    writer: Writer | None = None
    by: str | None = None
    field: str | None = None
    value: str | None = None


def _value(observed: Observed | None) -> str | None:
    if observed is None or not observed.known or is_empty(observed.value):
        return None
    return str(observed.value).strip()


def _since_handoff(observed: Observed | None, handed_over_at: int) -> bool:
    return observed is not None and observed.changed_at is not None and observed.changed_at >= handed_over_at


def _person_verdict(field: str, value: str | None, rules: HandoffRules) -> Verdict | None:
    if value is None:  # cleared, or a value outside the mapping: a touch, not an answer
        return None
    if field == "lead_status":
        if value in rules.rejected_statuses:
            return Verdict.REJECTED
        if value in rules.accepted_statuses:
            return Verdict.ACCEPTED
        return None
    if value in rules.accepted_stages:
        return Verdict.ACCEPTED
    if value in STAGE_RANK and STAGE_RANK[value] < STAGE_RANK["mql"]:
        return Verdict.REJECTED  # moved back below MQL
    return None


def classify(lead: HandedOver, observed: Mapping[str, Observed], rules: HandoffRules, *, now_ms: int,
             stage_now: str | None = None) -> Decided | None:
    """The verdict on `lead` given its shared fields as the CRM holds them now (`observed`:
    field -> Observed, from `connector.observe`), or None while sales has not answered and the
    SLA has not run out. `stage_now`: the stage of the pulled snapshot, where a connector
    tells a conversion the fields do not show (a converted Salesforce lead)."""
    stage, status = observed.get("lifecycle_stage"), observed.get("lead_status")
    changes = [(field, seen) for field, seen in (("lifecycle_stage", stage), ("lead_status", status))
               if _since_handoff(seen, lead.handed_over_at)]

    if stage is not None and _value(stage) in rules.converted_stages:
        return Decided(Verdict.CONVERTED, at=stage.changed_at or now_ms, writer=stage.writer, by=stage.changed_by,
                       field="lifecycle_stage", value=_value(stage))
    if stage_now in rules.converted_stages:
        # Converted where the fields do not show it: the latest change since the handoff
        # (Salesforce closes the status as it converts) tells who did it.
        latest = max((seen for _, seen in changes), key=lambda seen: seen.changed_at or 0, default=None)
        return Decided(Verdict.CONVERTED, at=(latest.changed_at or now_ms) if latest else now_ms,
                       writer=latest.writer if latest else None, by=latest.changed_by if latest else None,
                       field="lifecycle_stage", value=stage_now)

    answers = []
    for field, seen in changes:
        if seen.writer is not Writer.PERSON:
            continue
        verdict = _person_verdict(field, _value(seen), rules)
        if verdict is not None:
            # The latest answer counts; at the same moment a rejection outweighs an acceptance.
            answers.append(((seen.changed_at, verdict is Verdict.REJECTED),
                            Decided(verdict, at=int(seen.changed_at or 0), writer=seen.writer, by=seen.changed_by,
                                    field=field, value=_value(seen))))
    if answers:
        return max(answers, key=lambda a: a[0])[1]

    touched = any(seen.writer is Writer.PERSON for _, seen in changes)
    due = lead.handed_over_at + rules.sla_days * DAY_MS
    if not touched and now_ms >= due:
        return Decided(Verdict.IGNORED, at=due)
    return None
