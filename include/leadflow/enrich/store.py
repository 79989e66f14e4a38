"""Persist enrichment results in `lead_enrichment` (keyed by crm + record_id) and read them back.

Writes are bulk upserts given column-wise (`leadflow.warehouse.db.upsert_many`), in chunks.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, select

from leadflow.enrich.tables import LEAD_ENRICHMENT_COLUMNS, lead_enrichment
from leadflow.warehouse.db import upsert_many
from leadflow.warehouse.repo import driver_columns, read_frame, shard_filter
from leadflow.warehouse.tables import leads

log = logging.getLogger(__name__)

# Rows converted and sent per executemany; bounds memory for a million leads.
WRITE_BATCH = 20_000


def store_enrichment(
    engine: Engine, crm: str, run_id: str, frame: pd.DataFrame, *, now_ms: int | None = None
) -> int:
    """Upsert one row per lead of `frame` (an `EnrichmentResult.frame`) for `crm`.

    Rows of other CRMs in the frame are ignored. Returns the number of rows written.
    """
    return _store(engine, crm, run_id, frame, now_ms, keep=False)[0]


def store_and_read_back(
    engine: Engine, crm: str, run_id: str, frame: pd.DataFrame, *, now_ms: int | None = None
) -> pd.DataFrame:
    """`store_enrichment`, returning the rows stored as `load_enrichment` reads them back: a
    run in one process hands them to validate and qualify instead of reading them again."""
    return _store(engine, crm, run_id, frame, now_ms, keep=True)[1]


def _store(engine: Engine, crm: str, run_id: str, frame: pd.DataFrame, now_ms: int | None,
           keep: bool) -> tuple[int, pd.DataFrame]:
    part = frame[frame["crm"] == crm] if "crm" in frame else frame.iloc[0:0]
    stamp = int(time.time() * 1000) if now_ms is None else int(now_ms)
    columns = list(LEAD_ENRICHMENT_COLUMNS)
    written, kept = 0, []
    with engine.begin() as conn:
        for start in range(0, len(part), WRITE_BATCH):
            chunk = part.iloc[start : start + WRITE_BATCH]
            record_ids = chunk["record_id"].astype(str)
            constants = {"crm": crm, "run_id": run_id, "enriched_at": stamp}
            data = driver_columns(chunk, LEAD_ENRICHMENT_COLUMNS, constants)
            data["record_id"] = record_ids.tolist()
            written += upsert_many(conn, lead_enrichment, data)
            if keep:  # from the frame's own columns: typing the lists sent took longer than a read
                values = {**{c: chunk[c] for c in columns}, "record_id": record_ids}
                kept.append(_typed(pd.DataFrame({c.name: constants[c.name] if c.name in constants else
                                                 values[c.name].reset_index(drop=True)
                                                 for c in lead_enrichment.columns})))
    if written:
        log.info("lead_enrichment: %d rows upserted for %s (run %s)", written, crm, run_id)
    if not keep:
        return written, pd.DataFrame()
    if not kept:  # no row of this CRM: the empty frame load_enrichment would read
        kept.append(_typed(pd.DataFrame({c.name: [] for c in lead_enrichment.columns})))
    return written, pd.concat(kept, ignore_index=True)


def load_enrichment(engine: Engine, crm: str, shard: int | None = None, shards: int = 1) -> pd.DataFrame:
    """Every stored enrichment row of `crm` (of the leads of one shard), with typed columns
    (str / float64 / bool)."""
    query = select(lead_enrichment).where(lead_enrichment.c.crm == crm)
    if shard is not None and shards > 1:
        # The shard key is the lead's: a shard's task reads only its leads' rows.
        query = query.select_from(lead_enrichment.join(leads, and_(
            leads.c.crm == lead_enrichment.c.crm, leads.c.record_id == lead_enrichment.c.record_id,
        ))).where(shard_filter(leads, shard, shards))
    return _typed(read_frame(engine, query))


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """`lead_enrichment` rows with typed columns (str / float64 / bool), whether read or kept."""
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
