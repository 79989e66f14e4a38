"""Who decides a shared CRM field: the ownership rule, one for every CRM and for rollback.

leadflow owns its own properties (score, grade, reasons, ...). The lifecycle stage and the lead
status (Salesforce: Status, and the Rating written with it) are shared with sales reps,
workflows and other integrations. leadflow writes such a field only while the CRM holds
nothing there, a value nobody decided (the one the record was created with by a form, an import
or the CRM's default), or exactly what leadflow itself last wrote and nobody has written since.
Anything else is someone else's decision: leadflow leaves it and records an *override*, and does
not fight it on later runs unless a reclaim policy (off by default) hands the field back after a
quiet period. A value outside leadflow's mapping is always someone else's.

The rule is applied twice: by the diff against the warehouse snapshot (the push log says what
leadflow last wrote; the CRM's history is not in the snapshot, so a value leadflow never wrote
is only a candidate, `VERIFY`), and right before each write batch against values read fresh
from the CRM with their history (`Observed.writer`), which settles every candidate.

Pure functions and value types; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

DAY_MS = 86_400_000
# Canonical fields leadflow shares with the CRM's people (schema.PUSHED_FIELDS minus owned ones).
SHARED_FIELDS: tuple[str, ...] = ("lifecycle_stage", "lead_status")


class Writer(str, Enum):
    """Who last wrote a field's current value, as the CRM's own history tells it."""

    LEADFLOW = "leadflow"
    PERSON = "person"  # HubSpot CRM_UI and other in-app sources; a Salesforce user
    WORKFLOW = "workflow"
    INTEGRATION = "integration"  # another app, a later import
    DEFAULT = "default"  # set when the record was created (form, import, API, the CRM's default)
    UNKNOWN = "unknown"  # the CRM gave no history for the field


class Decision(str, Enum):
    WRITE = "write"  # leadflow may set the field
    LEAVE = "leave"  # nothing to do: no desired value, or the CRM already holds it
    OVERRIDE = "override"  # someone else decided: leave it, record the override
    VERIFY = "verify"  # a candidate write: only the CRM's history can tell (pre-write read)


class ReclaimPolicy(BaseModel):
    """When leadflow may take a field back from someone else's value. The default never does:
    a decision stands until somebody hands the field back by clearing it."""

    model_config = ConfigDict(extra="forbid")

    after_days: int | None = Field(
        None, ge=1, description="take back a value these writers set and nobody touched for this many days")
    from_writers: frozenset[Writer] = Field(
        frozenset({Writer.WORKFLOW}), description="whose values may be taken back (never an unmapped value)")


@dataclass(frozen=True)
class Observed:
    """One shared field of one record as the CRM holds it.

    `value`: the canonical value when `known`, else the CRM's raw value (outside the mapping);
    None or "" when empty. `writer`, `changed_at` (epoch ms), `changed_by` (a user or app id, for
    the override record): the most recent history entry of the field, when the CRM gave one.
    """

    value: str | None
    known: bool = True
    writer: Writer = Writer.UNKNOWN
    changed_at: int | None = None
    changed_by: str | None = None


def is_empty(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value) or str(value).strip() == ""


def decide(observed: Observed, desired: str | None, last_written: str | None, *, now_ms: int,
           verified: bool = False, reclaim: ReclaimPolicy | None = None) -> Decision:
    """May leadflow write `desired` over `observed`? `last_written`: the value of leadflow's
    last confirmed write of this field (push log), None when it never wrote it. `verified`: the
    observation was read fresh with the CRM's history, so an undecidable case is an override
    (the safe side) instead of a candidate."""
    if is_empty(desired):
        return Decision.LEAVE
    current = None if is_empty(observed.value) else str(observed.value).strip()
    if current is not None and observed.known and current == str(desired).strip():
        return Decision.LEAVE
    if current is None:
        return Decision.WRITE
    if not observed.known:
        return Decision.OVERRIDE
    mine = last_written is not None and current == str(last_written).strip()
    if observed.writer in (Writer.LEADFLOW, Writer.DEFAULT):
        return Decision.WRITE
    if observed.writer is Writer.UNKNOWN:
        if mine:
            return Decision.WRITE
        if last_written is None and not verified:
            return Decision.VERIFY
        return Decision.OVERRIDE
    if _reclaimable(observed, now_ms, reclaim):
        return Decision.WRITE
    return Decision.OVERRIDE


def _reclaimable(observed: Observed, now_ms: int, reclaim: ReclaimPolicy | None) -> bool:
    return (reclaim is not None and reclaim.after_days is not None and observed.writer in reclaim.from_writers
            and observed.changed_at is not None and now_ms - observed.changed_at >= reclaim.after_days * DAY_MS)
