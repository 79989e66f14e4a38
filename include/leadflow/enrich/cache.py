"""The warehouse cache of provider answers: the first provider of the chain.

Reads are bulk, because the hot path asks for every distinct company domain of a million leads
at once: `IN` lists of a few thousand domains per statement, or a single scan of the fresh
entries when the request covers most of the table.
Entries carry an absolute `expires_at`; "not found" answers get a shorter TTL than matches.
Pending and error answers are never cached: they must be asked again next run.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, delete, func, select

from leadflow.enrich.providers import (
    EMPLOYEE_BANDS,
    MATCHED,
    NOT_FOUND,
    RECORD_COLUMNS,
    REVENUE_BANDS,
    bands_of,
    coerce_records,
    empty_records,
)
from leadflow.enrich.tables import enrichment_cache
from leadflow.warehouse.db import upsert_many

log = logging.getLogger(__name__)

# Domains per SELECT: far below SQLite's 32,766 bound-parameter limit, large enough that a
# hundred thousand domains take a few dozen statements.
READ_CHUNK = 5_000
# Columns of the table that mirror RECORD_COLUMNS one to one.
_SHARED = [c for c in RECORD_COLUMNS if c in enrichment_cache.c and c != "source"]
# What a lookup reads: bands are cheaper to recompute than to transfer.
_READ = [c for c in _SHARED if c not in ("employee_band", "revenue_band")]


class WarehouseCache:
    """Provider answers cached in the warehouse with a TTL (positive and negative).

    `lookup` returns fresh entries only, with `source="cache"`; the provider that originally
    answered is kept in the `origin` column. `store` upserts matched / not-found answers.
    """

    name = "cache"
    remote = False

    def __init__(self, engine: Engine, ttl_ms: int, negative_ttl_ms: int) -> None:
        if ttl_ms <= 0 or negative_ttl_ms <= 0:
            raise ValueError("cache TTLs must be positive")
        self.engine = engine
        self.ttl_ms = int(ttl_ms)
        self.negative_ttl_ms = int(negative_ttl_ms)

    def lookup(self, domains: Sequence[str], now_ms: int) -> pd.DataFrame:
        """Fresh cached answers (matched or not_found) for `domains`."""
        wanted = list(dict.fromkeys(d for d in domains if d))
        if not wanted:
            return empty_records()
        columns = [enrichment_cache.c[c] for c in _READ]
        fresh = enrichment_cache.c.expires_at > int(now_ms)
        rows: list[Any] = []
        with self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(enrichment_cache)).scalar_one()
            if 2 * len(wanted) >= total:
                # Asking for most of the cache: one scan beats tens of thousands of IN probes.
                rows = _fetch_plain(conn, select(*columns).where(fresh))
            else:
                for start in range(0, len(wanted), READ_CHUNK):
                    chunk = wanted[start : start + READ_CHUNK]
                    query = select(*columns).where(enrichment_cache.c.domain.in_(chunk), fresh)
                    rows.extend(_fetch_plain(conn, query))
        frame = _frame_from_rows(rows)
        if len(frame) > len(wanted):
            keep = pc.is_in(
                pa.array(frame["domain"], type=pa.large_string()),
                value_set=pa.array(wanted, type=pa.large_string()),
            )
            frame = frame[keep.to_numpy(zero_copy_only=False)]
        log.debug("cache: %d of %d domains fresh", len(frame), len(wanted))
        return coerce_records(frame)

    def store(self, answers: pd.DataFrame, now_ms: int) -> int:
        """Upsert matched and not-found answers; returns the number of rows written."""
        if answers.empty:
            return 0
        keep = answers[answers["status"].isin([MATCHED, NOT_FOUND])]
        if keep.empty:
            return 0
        # Sorted: parallel shards upsert overlapping domains in one order, so PostgreSQL's row
        # locks are taken in the same order and two shards cannot deadlock.
        keep = keep.drop_duplicates("domain", keep="last").sort_values("domain", kind="stable")
        columns = _cache_columns(keep, int(now_ms), self.ttl_ms, self.negative_ttl_ms)
        with self.engine.begin() as conn:
            written = upsert_many(conn, enrichment_cache, columns)
        log.info("cache: stored %d answers", written)
        return written

    def purge_expired(self, now_ms: int) -> int:
        """Delete expired entries (housekeeping; lookups already ignore them)."""
        with self.engine.begin() as conn:
            result = conn.execute(delete(enrichment_cache).where(enrichment_cache.c.expires_at <= now_ms))
        return int(result.rowcount or 0)


def _frame_from_rows(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """Cache rows -> a RECORD_COLUMNS frame, built column-wise through Arrow (bands derived)."""
    columns = list(zip(*rows)) if rows else [()] * len(_READ)
    data: dict[str, Any] = {}
    for name, values in zip(_READ, columns):
        if RECORD_COLUMNS[name] == "float":
            data[name] = pa.array(values, type=pa.float64()).to_numpy(zero_copy_only=False)
        else:
            data[name] = pd.Series(pa.array(values, type=pa.large_string()), dtype="str")
    frame = pd.DataFrame(data)
    frame["employee_band"] = bands_of(frame["employee_count"], EMPLOYEE_BANDS)
    frame["revenue_band"] = bands_of(frame["annual_revenue_usd"], REVENUE_BANDS)
    frame["source"] = WarehouseCache.name
    return frame


def _fetch_plain(conn: Any, query: Any) -> list[tuple[Any, ...]]:
    """Rows of `query` as plain tuples straight from the driver.

    The statement is rendered with its IN-list expanded and run with exec_driver_sql: for
    100,000 domains SQLAlchemy's result-row machinery would cost more than the query itself.
    """
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.params  # a property that rebuilds the mapping: read it once
    if compiled.positional:
        params: Any = tuple(values[name] for name in compiled.positiontup or [])
    else:
        params = dict(values)
    cursor = conn.exec_driver_sql(str(compiled), params)
    return [tuple(row) for row in cursor.cursor.fetchall()] if cursor.cursor is not None else []


def _cache_columns(
    frame: pd.DataFrame, now_ms: int, ttl_ms: int, negative_ttl_ms: int
) -> dict[str, list[Any]]:
    """Column-wise rows of `enrichment_cache` for answers (None for missing values)."""
    out: dict[str, list[Any]] = {}
    for name in _SHARED:
        values = frame[name]
        out[name] = values.astype(object).where(values.notna(), None).tolist()
    fetched = frame["fetched_at"].fillna(now_ms).astype("int64")
    found = (frame["status"] == MATCHED).to_numpy()
    out["fetched_at"] = fetched.tolist()
    out["founded_year"] = [None if v is None else int(v) for v in out["founded_year"]]
    out["origin"] = frame["source"].fillna("unknown").astype(object).tolist()
    # The TTL counts from when the answer was obtained, not from when it was stored.
    out["expires_at"] = (fetched + np.where(found, ttl_ms, negative_ttl_ms)).tolist()
    return out
