"""Persist enrichment results in `lead_enrichment` (keyed by crm + record_id) and read them back.

Writes are bulk upserts: one single-row `INSERT ... ON CONFLICT DO UPDATE` statement (SQLite and
PostgreSQL dialects), compiled once and sent with the driver's executemany in chunks. Each
execution binds one row's parameters, far below SQLite's 32,766 limit, and no giant multi-row
VALUES statement has to be compiled (that costs seconds per few thousand rows).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Table, and_, select
from sqlalchemy.dialects import postgresql, sqlite

from leadflow.enrich.tables import LEAD_ENRICHMENT_COLUMNS, lead_enrichment
from leadflow.warehouse.repo import driver_values, read_frame, shard_filter
from leadflow.warehouse.tables import leads

log = logging.getLogger(__name__)

# Rows converted and sent per executemany; bounds memory for a million leads.
WRITE_BATCH = 20_000


def upsert_many(conn: Any, table: Table, columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert rows given column-wise (equal-length value lists, None for NULL), or update the
    non-key columns of rows whose primary key exists. Returns the number of rows.

    The statement is compiled once and handed to the driver's executemany with plain tuples:
    SQLAlchemy's per-row parameter processing would otherwise dominate (several times slower).
    """
    names = list(columns)
    count = len(columns[names[0]]) if names else 0
    if not count:
        return 0
    dialects = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
    insert = dialects.get(conn.dialect.name)
    if insert is None:  # pragma: no cover - the warehouse only runs on these two
        raise ValueError(f"unsupported warehouse dialect {conn.dialect.name!r}")
    keys = [c.name for c in table.primary_key.columns]
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys,
        set_={c: stmt.excluded[c] for c in names if c not in keys},
    )
    compiled = stmt.compile(dialect=conn.dialect, column_keys=names)
    if compiled.positional:
        order = list(compiled.positiontup or [])
        params: list[Any] = list(zip(*(columns[name] for name in order)))
    else:
        params = [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]
    conn.exec_driver_sql(str(compiled), params)
    return count


def store_enrichment(
    engine: Engine, crm: str, run_id: str, frame: pd.DataFrame, *, now_ms: int | None = None
) -> int:
    """Upsert one row per lead of `frame` (an `EnrichmentResult.frame`) for `crm`.

    Rows of other CRMs in the frame are ignored. Returns the number of rows written.
    """
    part = frame[frame["crm"] == crm] if "crm" in frame else frame.iloc[0:0]
    if part.empty:
        return 0
    stamp = int(time.time() * 1000) if now_ms is None else int(now_ms)
    columns = list(LEAD_ENRICHMENT_COLUMNS)
    written = 0
    with engine.begin() as conn:
        for start in range(0, len(part), WRITE_BATCH):
            chunk = part.iloc[start : start + WRITE_BATCH]
            data: dict[str, list[Any]] = {
                "crm": [crm] * len(chunk),
                "record_id": chunk["record_id"].astype(str).tolist(),
                **{c: driver_values(chunk[c], LEAD_ENRICHMENT_COLUMNS[c]) for c in columns},
                "run_id": [run_id] * len(chunk),
                "enriched_at": [stamp] * len(chunk),
            }
            written += upsert_many(conn, lead_enrichment, data)
    log.info("lead_enrichment: %d rows upserted for %s (run %s)", written, crm, run_id)
    return written


def load_enrichment(engine: Engine, crm: str, shard: int | None = None, shards: int = 1) -> pd.DataFrame:
    """Every stored enrichment row of `crm` (of the leads of one shard), with typed columns
    (str / float64 / bool)."""
    query = select(lead_enrichment).where(lead_enrichment.c.crm == crm)
    if shard is not None and shards > 1:
        # The shard key is the lead's: a shard's task reads only its leads' rows.
        query = query.select_from(lead_enrichment.join(leads, and_(
            leads.c.crm == lead_enrichment.c.crm, leads.c.record_id == lead_enrichment.c.record_id,
        ))).where(shard_filter(leads, shard, shards))
    frame = read_frame(engine, query)
    for name, kind in LEAD_ENRICHMENT_COLUMNS.items():
        if kind == "float":
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        elif kind == "bool":
            frame[name] = frame[name].fillna(False).astype(bool)
        else:
            frame[name] = frame[name].astype("str")
    for name in ("crm", "record_id", "run_id"):
        frame[name] = frame[name].astype("str")
    frame["enriched_at"] = pd.to_numeric(frame["enriched_at"]).astype("int64")
    return frame


def apply_enrichment(leads: pd.DataFrame, enriched: pd.DataFrame) -> pd.DataFrame:
    """Leads with the resolved firmographics of `enriched` (`load_enrichment` rows); a lead
    without a row keeps its own firmographics and has no domain columns."""
    frame = leads.copy()
    if enriched.empty:
        return frame
    enriched = enriched.drop_duplicates("record_id").set_index("record_id")
    # One hash lookup of the ids, then positional takes per column (Series.map + isin per
    # column hashed the ids again for each and walked Arrow strings in Python).
    pos = enriched.index.get_indexer(frame["record_id"])
    found = pd.Series(pos >= 0, index=frame.index)
    at = np.maximum(pos, 0)

    def column(col: str) -> pd.Series:
        return enriched[col].iloc[at].set_axis(frame.index)

    for col in ("industry", "employees", "annual_revenue", "country"):
        if col in enriched:
            frame[col] = column(col).where(found, frame[col])
    for col in ("technologies", "email_domain", "company_domain", "is_free_email", "is_disposable_email"):
        if col in enriched:
            frame[col] = column(col).where(found)
    return frame


def with_enrichment(engine: Engine, crm: str, frame: pd.DataFrame, shard: int | None = None,
                    shards: int = 1) -> pd.DataFrame:
    """Leads (`frame`, of one shard) with resolved firmographics from the enrich step (lead
    values where it did not run)."""
    return apply_enrichment(frame, load_enrichment(engine, crm, shard, shards))
