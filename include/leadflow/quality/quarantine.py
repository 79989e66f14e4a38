"""The quarantine table: failing leads are held here with the expectation that caught them.

`update_quarantine` is idempotent for a run and works the same on SQLite and PostgreSQL:

- each failure (crm, record, expectation, column) is upserted: new ones get `first_seen = now`,
  known ones refresh `last_seen`, `run_id` and the value; a released one re-opens (fresh
  `first_seen`);
- an active entry of a record that was validated in this batch but no longer fails that
  expectation is released (`released_at`, `released_run_id`), kept as an audit trail;
- records absent from the batch (an incremental pull) keep their entries untouched;
- entries of values the warehouse could not store (`leadflow.warehouse.values` problem codes,
  written by `hold_unstorable` while a page is landed) belong to the extract step: only a later
  pull of the record with a storable value releases them.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Iterable

import pandas as pd
from sqlalchemy import Engine, func, select

from leadflow.warehouse.quarantine_store import quarantine, release_entries, upsert_entries
from leadflow.warehouse.values import PROBLEM_CODES

log = logging.getLogger(__name__)

def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def failure_rows(crm: str, run_id: str, failures: pd.DataFrame, now_ms: int,
                 value_max_chars: int = 200) -> list[dict[str, Any]]:
    """Deduplicated quarantine rows for `failures` (columns of row_checks.FAILURE_COLUMNS)."""
    if failures.empty:
        return []
    frame = failures.loc[:, ["record_id", "expectation", "column", "value"]].copy()
    frame["column"] = frame["column"].fillna("").astype(str)
    frame["record_id"] = frame["record_id"].astype(str)
    frame = frame.drop_duplicates(subset=["record_id", "expectation", "column"], keep="first")
    rows = []
    for record_id, expectation, column, value in frame.itertuples(index=False, name=None):
        rows.append({
            "crm": crm,
            "record_id": record_id,
            "expectation": str(expectation),
            "column": column,
            "run_id": run_id,
            "value": None if value is None or value != value else str(value)[:value_max_chars],
            "first_seen": now_ms,
            "last_seen": now_ms,
            "released_at": None,
            "released_run_id": None,
        })
    return rows


def update_quarantine(
    engine: Engine,
    crm: str,
    run_id: str,
    failures: pd.DataFrame,
    passed_ids: Iterable[str],
    now: datetime,
) -> dict[str, int]:
    """Record this batch's failures and release what now passes, in one transaction.

    Returns counts: `quarantined` (failure entries upserted), `released`, `active` (entries
    active for the CRM afterwards).
    """
    now_ms = _ms(now)
    rows = failure_rows(crm, run_id, failures, now_ms)
    failing = {(r["record_id"], r["expectation"], r["column"]) for r in rows}
    validated = set(map(str, passed_ids)) | {r["record_id"] for r in rows}
    # Active entries are few compared with leads, so read them all and diff in memory. Read
    # before the write transaction: parallel shards validate disjoint records, so another
    # shard's writes never change what this one releases, and on SQLite a transaction that
    # reads first cannot take the write lock after another shard committed ("database is
    # locked" at once instead of waiting out the busy timeout).
    with engine.connect() as conn:
        active = conn.execute(
            select(quarantine.c.record_id, quarantine.c.expectation, quarantine.c.column)
            .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None))
        ).all()
    with engine.begin() as conn:
        to_release = [
            (record_id, expectation, column)
            for record_id, expectation, column in active
            if record_id in validated and (record_id, expectation, column) not in failing
            and expectation not in PROBLEM_CODES  # the record's stored value is the cleared one
        ]
        release_entries(conn, crm, run_id, to_release, now_ms)
        upsert_entries(conn, rows)
        active_count = conn.execute(
            select(func.count()).select_from(quarantine)
            .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None))
        ).scalar_one()
    log.info("quarantine (%s, run %s): %d entries upserted, %d released, %d active",
             crm, run_id, len(rows), len(to_release), active_count)
    return {"quarantined": len(rows), "released": len(to_release), "active": int(active_count)}


def quarantined_ids(engine: Engine, crm: str) -> set[str]:
    """Record ids with at least one active quarantine entry."""
    with engine.connect() as conn:
        result = conn.execute(
            select(quarantine.c.record_id).distinct()
            .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None))
        )
        return {row[0] for row in result}


def quarantine_count(engine: Engine, crm: str) -> int:
    """Number of records (not entries) currently quarantined."""
    with engine.connect() as conn:
        return int(conn.execute(
            select(func.count(func.distinct(quarantine.c.record_id)))
            .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None))
        ).scalar_one())


def top_quarantine_reasons(engine: Engine, crm: str, n: int = 10) -> list[dict[str, Any]]:
    """The `n` most frequent active reasons: expectation, column, records."""
    records = func.count(func.distinct(quarantine.c.record_id)).label("records")
    with engine.connect() as conn:
        result = conn.execute(
            select(quarantine.c.expectation, quarantine.c.column, records)
            .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None))
            .group_by(quarantine.c.expectation, quarantine.c.column)
            .order_by(records.desc(), quarantine.c.expectation, quarantine.c.column)
            .limit(n)
        )
        return [{"expectation": e, "column": c, "records": int(r)} for e, c, r in result]


def quarantine_entries(engine: Engine, crm: str, *, include_released: bool = False) -> pd.DataFrame:
    """The quarantine rows of a CRM as a frame (active only unless `include_released`)."""
    query = select(quarantine).where(quarantine.c.crm == crm)
    if not include_released:
        query = query.where(quarantine.c.released_at.is_(None))
    query = query.order_by(quarantine.c.record_id, quarantine.c.expectation, quarantine.c.column)
    with engine.connect() as conn:
        result = conn.execute(query)
        return pd.DataFrame(result.all(), columns=list(result.keys()))


__all__ = [
    "failure_rows",
    "hold_unstorable",
    "quarantine_count",
    "quarantine_entries",
    "quarantined_ids",
    "top_quarantine_reasons",
    "update_quarantine",
]
