"""Undo one run's writes: restore the before-values where the CRM still holds leadflow's value.

A record somebody changed since (any field the run wrote no longer holds the run's value, or the
CRM's history says someone else wrote a shared field last, even the same value) is skipped and
reported: leadflow does not overwrite a human's later decision. Fields a connector
wrote along with the values (the Salesforce Rating set with the stage) are in the push log as
well, so they are checked and restored the same way. The rollback's own
writes go to the push log under the run id `rollback__<run id>`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select

from leadflow.crm.base import CrmConnector, RecordUpdate
from leadflow.ownership import SHARED_FIELDS, Writer
from leadflow.push.lease import push_lease
from leadflow.push.writer import same_value
from leadflow.schema import PUSHED_FIELDS
from leadflow.warehouse.db import insert_many
from leadflow.warehouse.repo import now_ms
from leadflow.warehouse.tables import leads, push_log

log = logging.getLogger(__name__)

PASSENGERS = ("scored_at",)  # restored with the rest but not compared: leadflow's own timestamp


@dataclass
class RollbackReport:
    run_id: str
    records: int = 0
    restored: int = 0
    rejected: int = 0
    skipped_changed: list[str] = field(default_factory=list)
    dry_run: bool = False
    write_calls: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "records": self.records, "restored": self.restored,
            "rejected": self.rejected, "skipped_changed_since": len(self.skipped_changed),
            "skipped_record_ids": self.skipped_changed[:100], "dry_run": self.dry_run,
            "write_calls": self.write_calls,
        }


def confirmed_writes(engine: Engine, crm: str, run_id: str) -> pd.DataFrame:
    query = select(push_log.c.record_id, push_log.c.field, push_log.c.before, push_log.c.after).where(
        push_log.c.crm == crm, push_log.c.run_id == run_id, push_log.c.status == "confirmed"
    )
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).fetchall(), columns=["record_id", "field", "before", "after"])
    # An empty before-value is None, not NaN (pandas' text dtype): restoring it clears the field,
    # where NaN read as the text "nan" and the CRM refused the whole record.
    return frame.astype(object).where(frame.notna(), None)


def rollback_run(
    engine: Engine, connector: CrmConnector, crm: str, run_id: str, dry_run: bool = False
) -> RollbackReport:
    writes = confirmed_writes(engine, crm, run_id)
    report = RollbackReport(run_id=run_id, dry_run=dry_run)
    if writes.empty:
        return report
    by_record = {rid: grp for rid, grp in writes.groupby("record_id", sort=True)}
    report.records = len(by_record)
    updates: list[RecordUpdate] = []
    size = connector.max_batch_size
    ids = list(by_record)
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        current = {row["record_id"]: row for row in connector.read(chunk)}
        writers = _shared_writers(connector, [r for r in chunk if set(by_record[r]["field"]) & set(SHARED_FIELDS)])
        for rid in chunk:
            grp = by_record[rid]
            now = current.get(rid, {})
            still_ours = all(
                same_value(now.get(f), after) for f, after in zip(grp["field"], grp["after"]) if f not in PASSENGERS
            ) and all(writers.get((rid, f), Writer.UNKNOWN) in (Writer.LEADFLOW, Writer.UNKNOWN)
                      for f in grp["field"] if f in SHARED_FIELDS)
            if not still_ours:
                report.skipped_changed.append(rid)
                continue
            values: dict[str, Any] = {f: before for f, before in zip(grp["field"], grp["before"])}
            if "lifecycle_stage" in values:  # restoring an earlier stage moves it backwards
                updates.append(RecordUpdate(rid, values, current_stage=now.get("lifecycle_stage"), allow_backward=True))
            else:
                updates.append(RecordUpdate(rid, values))
    if dry_run or not updates:
        report.restored = 0 if dry_run else report.restored
        log.info("rollback %s of %s: %d records to restore, %d skipped (changed since), dry run %s",
                 crm, run_id, len(updates), len(report.skipped_changed), dry_run)
        if dry_run:
            report.records = len(by_record)
            report.restored = len(updates)
        return report
    rollback_id = f"rollback__{run_id}"
    with push_lease(engine, crm, holder=rollback_id) as lease:
        for start in range(0, len(updates), size):
            batch = updates[start : start + size]
            lease.check()  # another run took the lease: write nothing more
            report.write_calls += 1
            results = connector.push(batch)
            _log_rollback(engine, crm, rollback_id, batch, results, by_record)
            for upd, res in zip(batch, results):
                if res.status == "confirmed":
                    report.restored += 1
                else:
                    report.rejected += 1
    log.info("rollback %s of %s: %d restored, %d refused, %d skipped (changed since)",
             crm, run_id, report.restored, report.rejected, len(report.skipped_changed))
    return report


def _shared_writers(connector: CrmConnector, ids: list[str]) -> dict[tuple[str, str], Writer]:
    """(record, shared field) -> who last wrote it, per the CRM's history (nothing for a
    connector that cannot read it: the value comparison alone decides then)."""
    observe = getattr(connector, "observe", None)
    if observe is None or not ids:
        return {}
    return {(rid, name): seen.writer for rid, fields in observe(ids).items() for name, seen in fields.items()}


def _log_rollback(engine, crm, rollback_id, batch, results, by_record) -> None:
    stamp = now_ms()
    rows = []
    for upd, res in zip(batch, results):
        grp = by_record[upd.record_id]
        for f, before, after in zip(grp["field"], grp["before"], grp["after"]):
            rows.append({
                "run_id": rollback_id, "crm": crm, "record_id": upd.record_id, "field": f,
                "before": after, "after": before, "model_version": None,
                "status": res.status if res.status in ("confirmed", "rejected") else "unknown",
                "attempts": 1, "error": res.error, "created_at": stamp, "updated_at": stamp,
            })
    with engine.begin() as conn:
        insert_many(conn, push_log, rows)
        for upd, res in zip(batch, results):
            if res.status != "confirmed":
                continue
            grp = by_record[upd.record_id]
            values = {}
            for f, before in zip(grp["field"], grp["before"]):
                if f not in PUSHED_FIELDS:
                    continue  # a connector's side write (Salesforce Rating): no lead column holds it
                key = f if f in ("lifecycle_stage", "lead_status") else f"crm_{f}"
                values[key] = before
            if values:
                conn.execute(leads.update().where(leads.c.crm == crm, leads.c.record_id == upd.record_id)
                             .values(**values))
