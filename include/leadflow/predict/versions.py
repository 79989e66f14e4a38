"""Point in time: a version of each lead's model inputs whenever they change.

qualify stores, for the leads it scores, their inputs (the fields the rules and the predictive
mapping read, enrichment included) when they differ from the lead's latest stored version. A
version is valid from the time it was seen until the next one. Training and backtests take the
version that was current when the lead was handed over, so nothing learnt later leaks in.

Only changed leads are written: a nightly run stores the leads whose inputs moved since, and a
lead's history is a few rows. The comparison is a 64-bit hash of the inputs.
"""

from __future__ import annotations

import json
import logging
from typing import Iterable

import msgspec
import numpy as np
import pandas as pd
from sqlalchemy import Engine, func, select

from leadflow.predict.tables import lead_versions
from leadflow.schema import COMPANY_COLUMNS, LEAD_COLUMNS
from leadflow.warehouse import repo
from leadflow.warehouse.db import insert_many
from leadflow.warehouse.repo import shard_filter, shard_key

log = logging.getLogger(__name__)

# What the label is made of, or what only exists after an outcome (the CRM's stage and status,
# leadflow's own output, removal marks): never a model input, never versioned.
LABEL_SOURCES: frozenset[str] = frozenset({
    "lifecycle_stage", "lead_status", "crm_raw_lifecycle_stage", "crm_raw_lead_status", "crm_score",
    "crm_lead_status", "is_deleted", "merged_into", "score", "fit_score", "engagement_score", "grade",
    "sales_ready", "sales_ready_since", "sales_ready_reason", "disqualification_reason", "stage", "reasons",
    "outcome",
})


_EPOCH = pd.Timestamp(0, tz="UTC")
# Which lead a version belongs to, not what the lead is: columns of the version row, never inputs.
IDENTITY: frozenset[str] = frozenset({"crm", "record_id"})


def input_columns(frame_columns: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """The columns of `wanted` that `frame_columns` has, label sources and identity left out,
    sorted."""
    present = set(frame_columns)
    return sorted({c for c in wanted if c in present and c not in LABEL_SOURCES | IDENTITY})


def _normalised(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The columns in one form per kind, so the hash of the same values is the same whichever
    database or step they came from: numbers and times as float64 (times in epoch ms), the rest
    as text."""
    out = {}
    for column in columns:
        values = frame[column]
        if pd.api.types.is_datetime64_any_dtype(values):
            # Whatever the resolution (pandas 3 makes microseconds by default): epoch ms.
            stamps = pd.to_datetime(values, utc=True)
            out[column] = ((stamps - _EPOCH) // pd.Timedelta(milliseconds=1)).astype("float64")
        elif isinstance(values.dtype, pd.StringDtype):
            # Already text: the same values as the branch below gives, without a Python call per
            # value (1.2 million of them at 100,000 leads).
            out[column] = values.astype("str")
        elif pd.api.types.is_bool_dtype(values) or values.dtype == object:
            out[column] = values.astype(object).where(values.notna(), None).map(
                lambda v: None if v is None else str(v))
        else:
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=frame.index)


# Keys sorted, NaN and infinities as null; numbers in their shortest exact form (as `json.dumps`).
_INPUTS_JSON = msgspec.json.Encoder(order="sorted")


def _json_rows(normalised: pd.DataFrame) -> list[str]:
    """Each row's inputs as a JSON object. Built from one list per column and encoded by msgspec:
    a dict and `json.dumps` per lead took 6 s of a 100,000-lead first run's qualify."""
    columns = list(normalised.columns)
    values = [normalised[c].astype(object).where(normalised[c].notna(), None).tolist() for c in columns]
    return [_INPUTS_JSON.encode(dict(zip(columns, row))).decode() for row in zip(*values)]


def _hashes(normalised: pd.DataFrame) -> np.ndarray:
    hashed = pd.util.hash_pandas_object(normalised, index=False).to_numpy(dtype=np.uint64)
    return hashed.view(np.int64)  # the warehouse's BIGINT is signed


def latest_hashes(engine: Engine, crm: str, shard: int | None = None, shards: int = 1) -> dict[str, int]:
    """record -> hash of its latest stored version (of the shard)."""
    v = lead_versions
    newest = (select(func.max(v.c.id)).where(v.c.crm == crm, shard_filter(v, shard, shards))
              .group_by(v.c.record_id).scalar_subquery())
    with engine.connect() as conn:
        return {str(r): int(h) for r, h in conn.execute(select(v.c.record_id, v.c.inputs_hash).where(v.c.id.in_(newest)))}


def record_versions(engine: Engine, crm: str, run_id: str, frame: pd.DataFrame, columns: list[str], now_ms: int,
                    shard: int | None = None, shards: int = 1) -> int:
    """Store a version for each lead of `frame` whose `columns` differ from its latest version
    (or that has none); returns how many were stored."""
    if frame.empty or not columns:
        return 0
    normalised = _normalised(frame, columns)
    hashes = _hashes(normalised)
    ids = frame["record_id"].astype(str).to_numpy()
    known = latest_hashes(engine, crm, shard, shards)
    changed = np.array([known.get(rid) != int(h) for rid, h in zip(ids, hashes)], dtype=bool)
    if not changed.any():
        return 0
    rows = [{"crm": crm, "record_id": rid, "valid_from": int(now_ms), "inputs_hash": int(h), "inputs": inputs,
             "run_id": run_id, "shard_key": shard_key(rid)}
            for rid, h, inputs in zip(ids[changed], hashes[changed], _json_rows(normalised[changed]))]
    with engine.begin() as conn:
        insert_many(conn, lead_versions, rows)
    log.info("lead versions %s shard %s: %d of %d leads' inputs changed, stored", crm, shard, len(rows), len(frame))
    return len(rows)


def versions_at(engine: Engine, crm: str, points: pd.DataFrame) -> pd.DataFrame:
    """For each (record_id, at) of `points`, the inputs of the version current at `at` (the
    latest with valid_from <= at) as columns, plus `valid_from`; a point with no version then
    gets NaN valid_from. Values come back as stored: numbers and times (epoch ms) as floats,
    the rest as text (see `typed_inputs`)."""
    if points.empty:
        return points.assign(valid_from=pd.Series(dtype=float))
    stored = repo.read_frame(engine, select(lead_versions.c.id, lead_versions.c.record_id, lead_versions.c.valid_from,
                                            lead_versions.c.inputs)
                             .where(lead_versions.c.crm == crm,
                                    lead_versions.c.record_id.in_(sorted(set(points["record_id"].astype(str))))))
    left = points.assign(record_id=points["record_id"].astype(str), at=pd.to_numeric(points["at"]).astype(np.int64))
    if stored.empty:
        return left.assign(valid_from=np.nan)
    stored = stored.assign(record_id=stored["record_id"].astype(str),
                           valid_from=pd.to_numeric(stored["valid_from"]).astype(np.int64))
    order = left.reset_index().sort_values("at")
    # Two versions from the same scoring day: the later stored (higher id) wins the tie.
    matched = pd.merge_asof(order, stored.sort_values(["valid_from", "id"]).drop(columns=["id"]), left_on="at",
                            right_on="valid_from", by="record_id", direction="backward",
                            allow_exact_matches=True).set_index("index").sort_index()
    # Versions stored before identity was left out carry it among their inputs: once is enough.
    inputs = pd.DataFrame([json.loads(text) if isinstance(text, str) else {} for text in matched["inputs"]],
                          index=matched.index).drop(columns=list(IDENTITY), errors="ignore")
    return pd.concat([matched.drop(columns=["inputs"]), inputs], axis=1)


def typed_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """Stored inputs back to the qualify frame's types: times (epoch ms) to UTC datetimes,
    flags to booleans; numbers and text are stored as they are used."""
    out = frame.copy()
    for column, kind in {**COMPANY_COLUMNS, **LEAD_COLUMNS}.items():
        if column not in out:
            continue
        if kind == "ts":
            out[column] = pd.to_datetime(pd.to_numeric(out[column], errors="coerce"), unit="ms", utc=True)
        elif kind == "bool":
            out[column] = out[column].map({"True": True, "False": False, True: True, False: False})
        elif kind == "float":
            out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    return out
