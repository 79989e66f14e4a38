"""The ownership rule at the push: what leadflow last wrote, the check right before each write
batch, and the record of overrides.

`settle` is the pre-write check: given the values read from the CRM a moment before the write
(with their history), it keeps each shared field only where `ownership.decide` still allows it
and reports the rest, so an edit made between the pull and the push is never lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
from sqlalchemy import Engine, func, select

from leadflow.batching import chunks
from leadflow.crm.base import RecordUpdate
from leadflow.ownership import SHARED_FIELDS, Decision, Observed, ReclaimPolicy, decide
from leadflow.push.tables import push_overrides
from leadflow.warehouse.tables import push_log

log = logging.getLogger(__name__)

LastWritten = Mapping[tuple[str, str], "str | None"]
PASSENGERS = frozenset({"scored_at", "model_version"})  # never a write on their own
IDS_PER_QUERY = 500


@dataclass(frozen=True)
class Finding:
    """A shared field the check took out of an update: `status` is "overridden" (someone
    else's value) or "skipped" (the CRM already holds it, or the record is gone)."""

    record_id: str
    field: str
    status: str
    reason: str
    override: dict[str, Any] | None = None  # a push_overrides row (without crm/run_id/seen_at)


@dataclass
class Settled:
    updates: list[RecordUpdate]  # what may be sent, shared fields that no longer hold removed
    findings: list[Finding] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # records with nothing left to write


def last_written(engine: Engine, crm: str, record_ids: Iterable[str] | None = None) -> dict[tuple[str, str], str | None]:
    """(record_id, field) -> the value of leadflow's last confirmed write of each shared field
    (a rollback's restore counts: it is leadflow's write too)."""
    latest = (
        select(func.max(push_log.c.id).label("id"))
        .where(push_log.c.crm == crm, push_log.c.status == "confirmed", push_log.c.field.in_(SHARED_FIELDS))
        .group_by(push_log.c.record_id, push_log.c.field)
    )
    out: dict[tuple[str, str], str | None] = {}
    groups = [None] if record_ids is None else list(chunks(sorted(set(record_ids)), IDS_PER_QUERY))
    with engine.connect() as conn:
        for ids in groups:
            sub = latest if ids is None else latest.where(push_log.c.record_id.in_(ids))
            query = select(push_log.c.record_id, push_log.c.field, push_log.c.after).where(
                push_log.c.id.in_(sub.scalar_subquery()))
            for rec, name, after in conn.execute(query):
                out[(rec, name)] = after
    return out


def settle(updates: Sequence[RecordUpdate], observed: Mapping[str, Mapping[str, Observed]],
           written: LastWritten, *, now_ms: int, reclaim: ReclaimPolicy | None = None) -> Settled:
    """Apply the ownership rule to fresh CRM values (`observed`: record -> field -> Observed;
    a record missing from it is gone from the CRM). An update that still writes the stage
    carries the record's current stage as just read (`RecordUpdate.current_stage`)."""
    out = Settled(updates=[])
    for upd in updates:
        shared = [f for f in SHARED_FIELDS if f in upd.values]
        if not shared:
            out.updates.append(upd)
            continue
        fresh = observed.get(upd.record_id)
        values = dict(upd.values)
        current_stage = upd.current_stage
        for name in shared:
            if fresh is None:
                out.findings.append(Finding(upd.record_id, name, "skipped", "the record is no longer in the CRM"))
                values.pop(name)
                continue
            seen = fresh.get(name, Observed(None))
            mine = written.get((upd.record_id, name))
            decision = decide(seen, values[name], mine, now_ms=now_ms, verified=True, reclaim=reclaim)
            if decision is Decision.WRITE:
                if name == "lifecycle_stage" and seen.known:
                    current_stage = seen.value
                continue
            values.pop(name)
            if decision is Decision.LEAVE:
                out.findings.append(Finding(upd.record_id, name, "skipped", "the CRM already holds the value"))
            else:
                out.findings.append(Finding(upd.record_id, name, "overridden", f"set by {seen.writer.value}", {
                    "record_id": upd.record_id, "field": name, "current": seen.value, "wanted": upd.values[name],
                    "last_written": mine, "writer": seen.writer.value, "changed_by": seen.changed_by,
                    "changed_at": seen.changed_at}))
        if any(k not in PASSENGERS for k in values):
            out.updates.append(replace(upd, values=values, current_stage=current_stage))
        else:
            out.dropped.append(upd.record_id)
    return out


def record_overrides(conn: Any, crm: str, run_id: str, rows: Sequence[Mapping[str, Any]], seen_at: int) -> int:
    """Append override rows (inside the caller's transaction); returns how many."""
    if not rows:
        return 0
    conn.execute(push_overrides.insert(), [
        {"crm": crm, "run_id": run_id, "seen_at": seen_at, "writer": None, "changed_by": None,
         "changed_at": None, **{k: _text(v) if k in ("current", "wanted", "last_written") else v
                                for k, v in row.items()}}
        for row in rows])
    return len(rows)


def overrides_frame_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of the diff's overrides frame that are new (not standing), ready for
    `record_overrides`: a decision seen night after night is recorded once, counted each run."""
    if frame is None or frame.empty:
        return []
    return [{"record_id": str(r.record_id), "field": r.field, "current": r.current, "wanted": r.wanted,
             "last_written": r.last_written} for r in frame.itertuples(index=False) if not r.standing]


def standing_overrides(engine: Engine, crm: str) -> dict[tuple[str, str], str | None]:
    """(record_id, field) -> someone else's value at the latest override of each field."""
    latest = (select(func.max(push_overrides.c.id)).where(push_overrides.c.crm == crm)
              .group_by(push_overrides.c.record_id, push_overrides.c.field))
    query = select(push_overrides.c.record_id, push_overrides.c.field, push_overrides.c.current).where(
        push_overrides.c.id.in_(latest.scalar_subquery()))
    with engine.connect() as conn:
        return {(rec, name): current for rec, name, current in conn.execute(query)}


def count_overrides(engine: Engine, crm: str, run_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(push_overrides).where(
            push_overrides.c.crm == crm, push_overrides.c.run_id == run_id)).scalar_one())


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return text if text else None
