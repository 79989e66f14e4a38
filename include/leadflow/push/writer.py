"""Batched write-back with an audit log.

Every intended change is logged as `pending` before any call, then resolved to `confirmed`,
`rejected` (the CRM refused it; retried on later runs), `failed` (refused too often) or left
for the next run when the outcome stayed unknown. Confirmed values are copied onto the lead rows
so that re-running the push without a new pull sends nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd
from sqlalchemy import Engine, bindparam, func, select, update

from leadflow.crm.base import CrmConnector, CrmError, RecordResult, RecordUpdate
from leadflow.schema import CRM_VALUE_PREFIX, OWNED_FIELDS, PUSHED_FIELDS
from leadflow.warehouse.repo import now_ms
from leadflow.warehouse.tables import leads, push_log

log = logging.getLogger(__name__)

PREVIEW_SAMPLES = 20
PASSENGER_FIELDS = ("scored_at", "model_version")  # never a change on their own
REPORT_IDS = 100  # record ids kept per outcome list
CURRENT_STAGE = f"{CRM_VALUE_PREFIX}lifecycle_stage"  # option key understood by connectors


@dataclass(frozen=True)
class PushSettings:
    max_attempts: int = 3  # runs in which a rejected value is tried before it is `failed`
    transient_retries: int = 3  # in-run retries of records answered with a transient error
    transient_backoff_s: float = 2.0


@dataclass
class PushOutcome:
    changed_records: int = 0
    changed_values: int = 0
    pushed: int = 0  # records confirmed
    rejected: int = 0
    failed: int = 0
    unknown: int = 0
    write_calls: int = 0
    # Record ids for the run report (the first REPORT_IDS of each).
    rejected_ids: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}


def preview(changes: pd.DataFrame) -> dict[str, Any]:
    """What a push would do: counts per field and per stage transition, sample records."""
    per_field = changes.groupby("field").size().to_dict() if len(changes) else {}
    stage = changes[changes["field"] == "lifecycle_stage"]
    transitions = Counter(
        f"{_text_or(b, '(empty)')} -> {_text_or(a, '(empty)')}" for b, a in zip(stage["before"], stage["after"])
    )
    samples = []
    for record_id, group in list(changes.groupby("record_id", sort=True))[:PREVIEW_SAMPLES]:
        samples.append(
            {
                "record_id": record_id,
                "changes": {
                    f: {"before": _text_or(b, None), "after": _text_or(a, None)}
                    for f, b, a in zip(group["field"], group["before"], group["after"])
                    if f != "reasons"
                },
            }
        )
    return {
        "records": int(changes["record_id"].nunique()) if len(changes) else 0,
        "per_field": {k: int(v) for k, v in per_field.items()},
        "stage_transitions": dict(transitions),
        "samples": samples,
    }


def _text_or(value: Any, default: Any) -> Any:
    return value if isinstance(value, str) and value != "" else default


def _previous_attempts(engine: Engine, crm: str) -> dict[tuple[str, str, str | None], int]:
    """Attempts already spent on each (record, field, value) the CRM refused in earlier runs."""
    query = (
        select(push_log.c.record_id, push_log.c.field, push_log.c.after, func.max(push_log.c.attempts))
        .where(push_log.c.crm == crm, push_log.c.status.in_(("rejected", "failed")))
        .group_by(push_log.c.record_id, push_log.c.field, push_log.c.after)
    )
    with engine.connect() as conn:
        return {(r[0], r[1], r[2]): int(r[3] or 0) for r in conn.execute(query)}


def push_changes(
    engine: Engine,
    connector: CrmConnector,
    crm: str,
    run_id: str,
    changes: pd.DataFrame,
    model_version: str | None,
    settings: PushSettings = PushSettings(),
    sleep: Callable[[float], None] = time.sleep,
) -> PushOutcome:
    """Write `changes` (record_id, field, before, after) to the CRM in batches."""
    outcome = PushOutcome()
    if changes.empty:
        return outcome
    stamp = now_ms()
    previous = _previous_attempts(engine, crm)
    frame = changes[["record_id", "field", "before", "after"]]
    # A record is refused as a whole: its attempts are those of its real changes. `scored_at`
    # (and `model_version`) travel along with a new value each run and must not reset the count.
    record_attempts: dict[str, int] = {}
    for rec, field, _before, after in frame.itertuples(index=False):
        if field not in PASSENGER_FIELDS:
            record_attempts[rec] = max(record_attempts.get(rec, 0), previous.get((rec, field, after), 0))
    rows: list[dict[str, Any]] = []
    for rec, field, before, after in frame.itertuples(index=False):
        attempts = record_attempts.get(rec, previous.get((rec, field, after), 0))
        status = "failed" if attempts >= settings.max_attempts else "pending"
        rows.append(
            {
                "run_id": run_id,
                "crm": crm,
                "record_id": rec,
                "field": field,
                "before": before,
                "after": after,
                "model_version": model_version,
                "status": status,
                "attempts": attempts,
                "error": "gave up after repeated rejections" if status == "failed" else None,
                "created_at": stamp,
                "updated_at": stamp,
            }
        )
    with engine.begin() as conn:
        # Entries a killed or retried attempt left pending: their outcome is decided by this
        # attempt's diff (it sees the CRM as it is now), so they are closed, not deleted. Only
        # earlier runs' entries and this run's entries for *these* records: a sibling shard of
        # this run may be pushing other records right now, its pending entries are live.
        conn.execute(
            update(push_log)
            .where(push_log.c.crm == crm, push_log.c.status == "pending", push_log.c.run_id != run_id)
            .values(status="superseded", updated_at=stamp)
        )
        conn.execute(
            update(push_log)
            .where(push_log.c.crm == crm, push_log.c.status == "pending", push_log.c.run_id == run_id,
                   push_log.c.record_id == bindparam("b_rec"))
            .values(status="superseded", updated_at=stamp),
            [{"b_rec": rec} for rec in dict.fromkeys(r["record_id"] for r in rows)],
        )
        conn.execute(push_log.insert(), rows)
    failed_ids = sorted({r["record_id"] for r in rows if r["status"] == "failed"})
    outcome.failed = len(failed_ids)
    outcome.failed_ids = failed_ids[:REPORT_IDS]
    todo: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["status"] == "pending":
            values = todo.setdefault(r["record_id"], {})
            values[r["field"]] = r["after"]
            if r["field"] == "lifecycle_stage":
                # The connector needs the current stage to refuse accidental backward moves.
                values[CURRENT_STAGE] = r["before"]
    outcome.changed_records = len(todo)
    outcome.changed_values = sum(len(v) for v in todo.values())
    updates = [RecordUpdate(record_id=rec, values=vals) for rec, vals in todo.items()]
    size = connector.max_batch_size
    for start in range(0, len(updates), size):
        _push_batch(engine, connector, crm, run_id, updates[start : start + size], settings, sleep, outcome)
        _beat(engine, crm, run_id)
    log.info(
        "push %s run %s: %d records changed, %d confirmed, %d rejected, %d failed, %d unknown, %d calls",
        crm, run_id, outcome.changed_records, outcome.pushed, outcome.rejected, outcome.failed,
        outcome.unknown, outcome.write_calls,
    )
    return outcome


def _push_batch(
    engine: Engine,
    connector: CrmConnector,
    crm: str,
    run_id: str,
    batch: Sequence[RecordUpdate],
    settings: PushSettings,
    sleep: Callable[[float], None],
    outcome: PushOutcome,
) -> None:
    pending = list(batch)
    for attempt in range(settings.transient_retries + 1):
        outcome.write_calls += 1
        results = connector.push(pending)
        by_status: dict[str, list[tuple[RecordUpdate, RecordResult]]] = {}
        for upd, res in zip(pending, results):
            by_status.setdefault(res.status, []).append((upd, res))
        unknown = by_status.pop("unknown", [])
        if unknown:
            # The call timed out: the CRM may or may not hold the values. Read back, decide.
            confirmed_now, still, undecided = _resolve_unknown(connector, unknown)
            by_status.setdefault("confirmed", []).extend(confirmed_now)
            by_status.setdefault("retryable", []).extend(still)
            _record(engine, crm, run_id, undecided, "unknown", outcome)
        _record(engine, crm, run_id, by_status.get("confirmed", []), "confirmed", outcome)
        _record(engine, crm, run_id, by_status.get("rejected", []), "rejected", outcome)
        pending = [upd for upd, _ in by_status.get("retryable", [])]
        if not pending:
            return
        if attempt < settings.transient_retries:
            sleep(settings.transient_backoff_s * (2**attempt))
    # Still transient after the retries: leave them for the next run, which re-diffs.
    _record(engine, crm, run_id, [(u, RecordResult(u.record_id, "unknown")) for u in pending], "unknown", outcome)


def _beat(engine: Engine, crm: str, run_id: str) -> None:
    """Tell the push lease this process is alive (a killed one loses it fast; see lease.py)."""
    from leadflow.push.lease import renew

    try:
        renew(engine, crm, run_id)
    except Exception as exc:  # the lease is a guard, not a reason to stop a push half-way
        log.warning("push %s run %s: lease renewal failed (%s)", crm, run_id, type(exc).__name__)


def _resolve_unknown(
    connector: CrmConnector, items: list[tuple[RecordUpdate, RecordResult]]
) -> tuple[list[tuple[RecordUpdate, RecordResult]], list[tuple[RecordUpdate, RecordResult]],
           list[tuple[RecordUpdate, RecordResult]]]:
    """(confirmed, retryable, still unknown): read the records back to decide. A record that
    holds the values was written; one that does not was not (the call never reached it). When
    the read itself fails the outcome stays unknown: the write is NOT repeated (it may have
    been applied), the next run pulls the CRM's state and re-diffs."""
    try:
        current = {row["record_id"]: row for row in connector.read([u.record_id for u, _ in items])}
    except CrmError as exc:
        log.warning("read-back of %d records with an unknown write outcome failed (%s): left for the next run",
                    len(items), type(exc).__name__)
        return [], [], items
    done, retry = [], []
    for upd, res in items:
        now = current.get(upd.record_id, {})
        holds = all(
            same_value(now.get(field), value)
            for field, value in upd.values.items()
            if field in PUSHED_FIELDS and field != "scored_at"
        )
        (done if holds else retry).append((upd, RecordResult(upd.record_id, "confirmed" if holds else "retryable")))
    return done, retry, []


def same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return (a in (None, "")) and (b in (None, ""))
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return str(a).strip() == str(b).strip()


def _record(
    engine: Engine,
    crm: str,
    run_id: str,
    items: list[tuple[RecordUpdate, RecordResult]],
    status: str,
    outcome: PushOutcome,
) -> None:
    """Resolve the pending log entries of `items` to `status` (one executemany per statement,
    not one statement per record: a 100,000-record push must not spend minutes here)."""
    if not items:
        return
    stamp = now_ms()
    increment = 1 if status in ("confirmed", "rejected") else 0
    log_stmt = (
        update(push_log)
        .where(
            push_log.c.crm == bindparam("b_crm"),
            push_log.c.run_id == bindparam("b_run"),
            push_log.c.record_id == bindparam("b_rec"),
            push_log.c.status == "pending",
        )
        .values(
            status=bindparam("b_status"),
            attempts=push_log.c.attempts + increment,
            error=bindparam("b_error"),
            updated_at=bindparam("b_at"),
        )
    )
    log_params = [
        {"b_crm": crm, "b_run": run_id, "b_rec": upd.record_id, "b_status": status, "b_error": res.error,
         "b_at": stamp}
        for upd, res in items
    ]
    lead_groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    if status == "confirmed":
        for upd, _ in items:
            values = _lead_values(upd.values)
            if values:
                params = {"b_crm": crm, "b_rec": upd.record_id, **{f"v_{k}": v for k, v in values.items()}}
                lead_groups.setdefault(tuple(sorted(values)), []).append(params)
    with engine.begin() as conn:
        conn.execute(log_stmt, log_params)
        for columns, params in lead_groups.items():
            lead_stmt = (
                update(leads)
                .where(leads.c.crm == bindparam("b_crm"), leads.c.record_id == bindparam("b_rec"))
                .values({col: bindparam(f"v_{col}") for col in columns})
            )
            conn.execute(lead_stmt, params)
    if status == "confirmed":
        outcome.pushed += len(items)
    elif status == "rejected":
        outcome.rejected += len(items)
        room = REPORT_IDS - len(outcome.rejected_ids)
        outcome.rejected_ids.extend(upd.record_id for upd, _ in items[: max(room, 0)])
        for upd, res in items:
            log.warning("push %s record %s rejected: %s", crm, upd.record_id, res.category or "error")
    else:
        outcome.unknown += len(items)


def _lead_values(values: dict[str, Any]) -> dict[str, Any]:
    """Confirmed values as the lead row stores the CRM's current state."""
    out: dict[str, Any] = {}
    for field, value in values.items():
        if field in OWNED_FIELDS:
            out[f"{CRM_VALUE_PREFIX}{field}"] = value
        elif field in ("lifecycle_stage", "lead_status"):
            out[field] = value
    return out
