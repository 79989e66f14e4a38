"""The quarantine's storage, which the warehouse owns: the `quarantine` table, its upsert and
release, and `hold_unstorable`, which extract calls while landing a page. The quality gate's
rules for entering and leaving the quarantine are `leadflow.quality.quarantine`'s.

`quarantine`: one row per (crm, record, failed expectation, column). A row is active while
`released_at` is NULL; when a later version of the record passes (or stops failing that
expectation) the row is kept with `released_at` set, as an audit trail. A record that fails
again after release re-opens its row with a fresh `first_seen`.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import BigInteger, Column, Index, String, Table, Text, bindparam, case, select, update

from leadflow.batching import chunks
from leadflow.warehouse.db import dialect_insert
from leadflow.warehouse.tables import metadata
from leadflow.warehouse.values import PROBLEM_CODES, Unstorable

log = logging.getLogger(__name__)

quarantine = Table(
    "quarantine",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("expectation", String(64), primary_key=True),
    Column("column", String(64), primary_key=True),  # "" for row-level checks
    Column("run_id", String(250), nullable=False),  # the last run that saw the failure
    Column("value", Text, nullable=True),  # offending value, truncated
    Column("first_seen", BigInteger, nullable=False),  # epoch ms
    Column("last_seen", BigInteger, nullable=False),
    Column("released_at", BigInteger, nullable=True),
    Column("released_run_id", String(250), nullable=True),
    Index("ix_quarantine_active", "crm", "released_at"),
)

# SQLite refuses statements with more than 32,766 bound parameters; stay well below.
_MAX_PARAMS = 30_000
_UPSERT_COLUMNS = ("crm", "record_id", "expectation", "column", "run_id", "value",
                   "first_seen", "last_seen", "released_at", "released_run_id")
_KEY = ("crm", "record_id", "expectation", "column")


def hold_unstorable(
    conn: Any,
    crm: str,
    run_id: str,
    held: Mapping[str, Sequence[Unstorable]],
    landed_ids: Iterable[str],
    now_ms: int,
) -> None:
    """Quarantine the leads of a landed page whose values the warehouse could not store, and
    release the entries of the page's leads (`landed_ids`) that no longer apply (their CRM
    value was fixed).

    Runs inside the page's transaction, so the entries commit with the rows and the watermark.
    The entry's expectation is the problem code and its column the field; no value is kept
    (it may be personal data).
    """
    rows = [
        {"crm": crm, "record_id": record_id, "expectation": problem.code, "column": problem.column,
         "run_id": run_id, "value": None, "first_seen": now_ms, "last_seen": now_ms,
         "released_at": None, "released_run_id": None}
        for record_id, problems in held.items()
        for problem in problems
    ]
    failing = {(r["record_id"], r["expectation"], r["column"]) for r in rows}
    clean_ids = [str(record_id) for record_id in landed_ids]
    to_release: list[tuple[str, str, str]] = []
    for chunk in chunks(clean_ids, 1_000):
        active = conn.execute(
            select(quarantine.c.record_id, quarantine.c.expectation, quarantine.c.column)
            .where(quarantine.c.crm == crm, quarantine.c.released_at.is_(None),
                   quarantine.c.expectation.in_(sorted(PROBLEM_CODES)),
                   quarantine.c.record_id.in_(list(chunk)))
        ).all()
        to_release.extend(tuple(key) for key in active if tuple(key) not in failing)
    release_entries(conn, crm, run_id, to_release, now_ms)
    upsert_entries(conn, rows)
    if rows or to_release:
        log.info("quarantine (%s, run %s): %d leads held for values the warehouse cannot store, "
                 "%d such entries released", crm, run_id, len(held), len(to_release))


def release_entries(conn: Any, crm: str, run_id: str, keys: list[tuple[str, str, str]],
             now_ms: int) -> None:
    """Mark entries released, one executemany by primary key (a long tuple IN list overflows
    PostgreSQL's expression stack and SQLite's parameter limit)."""
    if not keys:
        return
    stmt = (
        update(quarantine)
        .where(
            quarantine.c.crm == bindparam("k_crm"),
            quarantine.c.record_id == bindparam("k_record_id"),
            quarantine.c.expectation == bindparam("k_expectation"),
            quarantine.c.column == bindparam("k_column"),
            quarantine.c.released_at.is_(None),
        )
        .values(released_at=bindparam("k_released_at"), released_run_id=bindparam("k_run_id"))
    )
    params = [
        {"k_crm": crm, "k_record_id": r, "k_expectation": e, "k_column": c,
         "k_released_at": now_ms, "k_run_id": run_id}
        for r, e, c in keys
    ]
    for chunk in chunks(params, 5_000):
        conn.execute(stmt, list(chunk))


def upsert_entries(conn: Any, rows: list[dict[str, Any]]) -> None:
    """Insert or refresh quarantine entries (a released one re-opens), in chunks under SQLite's
    parameter limit."""
    if not rows:
        return
    insert_fn = dialect_insert(conn)
    per_chunk = max(1, _MAX_PARAMS // len(_UPSERT_COLUMNS))
    for chunk in chunks(rows, per_chunk):
        stmt = insert_fn(quarantine).values(list(chunk))
        excluded = stmt.excluded
        was_released = quarantine.c.released_at.is_not(None)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(_KEY),
            set_={
                "run_id": excluded.run_id,
                "value": excluded.value,
                "last_seen": excluded.last_seen,
                # A released entry that fails again starts a new episode.
                "first_seen": case((was_released, excluded.first_seen),
                                   else_=quarantine.c.first_seen),
                "released_at": None,
                "released_run_id": None,
            },
        )
        conn.execute(stmt)
