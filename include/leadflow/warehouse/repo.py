"""Reads and writes of the core warehouse tables: watermarks, runs, leads, companies, scores."""

from __future__ import annotations

import json
import logging
import math
import time
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import Engine, and_, func, select, update

from leadflow.pulled import RecordIssue, RemovedRecord, Watermark
from leadflow.warehouse.quarantine_store import hold_unstorable
from leadflow.schema import (
    COMPANY_COLUMNS,
    COMPANY_OWNED_KNOWN_AT,
    CRM_COMPANY_OWNED_COLUMNS,
    CRM_OWNED_VALUE_COLUMNS,
    CRM_RAW_VALUE_COLUMNS,
    LEAD_REMOVAL_COLUMNS,
    LEAD_COLUMNS,
    SCORE_COLUMNS,
    SCORE_PERSONA_COLUMNS,
)
from leadflow.warehouse.db import upsert, upsert_many
from leadflow.warehouse.tables import (
    companies,
    lead_issues,
    leads,
    push_log,
    run_steps,
    runs,
    scores,
    watermarks,
)
from leadflow.warehouse.values import Unstorable, clear_unstorable, storable_text

log = logging.getLogger(__name__)

LEAD_STREAM = "leads"


def shard_key(record_id: str) -> int:
    """Stable across processes and machines (unlike hash()): crc32 of the id."""
    return zlib.crc32(str(record_id).encode("utf-8"))


def shard_filter(table: Any, shard: int | None, shards: int) -> Any:
    """SQL condition selecting one shard's rows (True when unsharded)."""
    if shard is None or shards <= 1:
        return True
    return (table.c.shard_key % shards) == shard


def now_ms() -> int:
    return int(time.time() * 1000)


# --- watermarks ---------------------------------------------------------------------------------
def get_watermark(engine: Engine, crm: str, stream: str = LEAD_STREAM) -> Watermark | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(watermarks.c.modified_ms, watermarks.c.last_id).where(
                watermarks.c.crm == crm, watermarks.c.stream == stream
            )
        ).first()
    return Watermark(modified_ms=row.modified_ms, last_id=row.last_id) if row else None


def set_watermark(conn: Any, crm: str, mark: Watermark, stream: str = LEAD_STREAM) -> None:
    """Store the watermark; call inside the transaction that committed the rows it covers.

    It only moves forward: a pull started from an earlier point (`since`) re-lands rows but does
    not make the next run pull them again."""
    row = conn.execute(
        select(watermarks.c.modified_ms, watermarks.c.last_id).where(
            watermarks.c.crm == crm, watermarks.c.stream == stream
        )
    ).first()
    if row is not None and (row.modified_ms, row.last_id or "") > (int(mark.modified_ms), mark.last_id or ""):
        return
    upsert(
        conn,
        watermarks,
        [
            {
                "crm": crm,
                "stream": stream,
                "modified_ms": int(mark.modified_ms),
                "last_id": mark.last_id,
                "updated_at": now_ms(),
            }
        ],
    )


# --- runs -----------------------------------------------------------------------------------------
def start_run(engine: Engine, crm: str, run_id: str, dry_run: bool) -> None:
    """Record the run (idempotent: a retried task keeps the summary gathered so far)."""
    with engine.begin() as conn:
        exists = conn.execute(
            select(runs.c.run_id).where(runs.c.crm == crm, runs.c.run_id == run_id)
        ).first()
        if exists:
            conn.execute(
                update(runs)
                .where(runs.c.crm == crm, runs.c.run_id == run_id)
                .values(status="running", dry_run=dry_run)
            )
        else:
            conn.execute(
                runs.insert().values(
                    run_id=run_id,
                    crm=crm,
                    started_at=now_ms(),
                    status="running",
                    dry_run=dry_run,
                    summary="{}",
                )
            )


def record_step(
    engine: Engine, crm: str, run_id: str, step: str, summary: dict[str, Any], shard: int | None = None
) -> None:
    """Store one step's (or one shard's) figures; re-running the step replaces them."""
    with engine.begin() as conn:
        upsert(
            conn,
            run_steps,
            [
                {
                    "crm": crm,
                    "run_id": run_id,
                    "step": step,
                    "shard": -1 if shard is None else int(shard),
                    "summary": json.dumps(summary, default=_json_default, sort_keys=True),
                    "updated_at": now_ms(),
                }
            ],
        )
    refresh_run_summary(engine, crm, run_id)


def _combine(a: Any, b: Any) -> Any:
    """Shards of one step add up: numbers are summed, lists joined, dicts merged key by key."""
    if isinstance(a, bool) or isinstance(b, bool):
        return b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a + b
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _combine(out[key], value) if key in out else value
        return out
    return b


def _step_summaries(engine: Engine, crm: str, run_id: str, step: str | None = None) -> dict[str, dict[str, Any]]:
    """Each recorded step's summary (of `step` only, if given), its shards combined."""
    query = select(run_steps.c.step, run_steps.c.shard, run_steps.c.summary).where(
        run_steps.c.crm == crm, run_steps.c.run_id == run_id)
    if step is not None:
        query = query.where(run_steps.c.step == step)
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(run_steps.c.updated_at, run_steps.c.step, run_steps.c.shard)).all()
    per_step: dict[str, dict[str, Any]] = {}
    for name, _shard, text in rows:
        per_step[name] = _combine(per_step.get(name, {}), json.loads(text))
    return per_step


def step_summary(engine: Engine, crm: str, run_id: str, step: str) -> dict[str, Any]:
    """One step's summary, its shards combined, with its `_` keys (inputs of a later step)."""
    return _step_summaries(engine, crm, run_id, step).get(step, {})


# Summary keys whose value is a dict keyed by step or task: each step's own figures (seconds, peak
# memory), merged across steps instead of the last step's replacing the others'.
_PER_STEP_KEYS = ("durations_s", "peak_rss_mib")


def get_run_summary(engine: Engine, crm: str, run_id: str) -> dict[str, Any]:
    """The run's figures: every step's summary, shards combined, flattened into one dict. Keys
    starting with `_` are a step's inputs of a later step (`step_summary`), not figures."""
    per_step = _step_summaries(engine, crm, run_id)
    merged: dict[str, Any] = {}
    for part in per_step.values():
        merged.update({k: v for k, v in part.items() if not k.startswith("_")})
    for key in _PER_STEP_KEYS:  # keyed by step (or task) inside: every step's entries are kept
        if key in merged:
            merged[key] = {}
            for part in per_step.values():
                merged[key].update(part.get(key, {}))
    return merged


def refresh_run_summary(engine: Engine, crm: str, run_id: str) -> dict[str, Any]:
    """Copy the merged figures onto the run row (what the UI and `leadflow report` read)."""
    summary = get_run_summary(engine, crm, run_id)
    with engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.crm == crm, runs.c.run_id == run_id)
            .values(summary=json.dumps(summary, default=_json_default, sort_keys=True))
        )
    return summary


def finish_run(engine: Engine, crm: str, run_id: str, status: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(runs)
            .where(runs.c.crm == crm, runs.c.run_id == run_id)
            .values(status=status, finished_at=now_ms())
        )


def run_status(engine: Engine, crm: str, run_id: str) -> str | None:
    """The run's status (`running`, `success`, `warning`, `failed`), None for a run never recorded."""
    with engine.connect() as conn:
        return conn.execute(select(runs.c.status).where(runs.c.crm == crm, runs.c.run_id == run_id)).scalar()


def latest_runs(engine: Engine, crm: str | None = None, limit: int = 1) -> list[dict[str, Any]]:
    query = select(runs).order_by(runs.c.started_at.desc()).limit(limit)
    if crm:
        query = query.where(runs.c.crm == crm)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    out = []
    for row in rows:
        item = dict(row)
        item["summary"] = json.loads(item["summary"] or "{}")
        out.append(item)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- leads and companies ------------------------------------------------------------------------
_LEAD_KINDS = {**LEAD_COLUMNS, **CRM_OWNED_VALUE_COLUMNS, **CRM_RAW_VALUE_COLUMNS, **LEAD_REMOVAL_COLUMNS}
_LEAD_FIELDS = list(_LEAD_KINDS)
_COMPANY_KINDS = {**COMPANY_COLUMNS, **CRM_COMPANY_OWNED_COLUMNS}
# A connector that did not read the owned company values leaves them, and when they were known, None.
_COMPANY_FIELDS = [*_COMPANY_KINDS, COMPANY_OWNED_KNOWN_AT]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


@dataclass(frozen=True)
class LandedPage:
    """What `land_page` stored: the number of leads, and the ids of those held in quarantine
    because a value could not be stored (they are landed with that field cleared)."""

    leads: int
    held_ids: tuple[str, ...] = ()


def _unstorable_issue(record_id: str, problem: Unstorable) -> dict[str, Any]:
    return {"record_id": record_id, "field": problem.column, "value": None,
            "problem": f"{problem.description}; the field was cleared and the record quarantined "
                       "until the CRM value is fixed"}


def land_page(
    conn: Any,
    crm: str,
    run_id: str,
    lead_rows: Sequence[dict[str, Any]],
    company_rows: Sequence[dict[str, Any]],
    issues: Iterable[RecordIssue],
) -> LandedPage:
    """Upsert one pulled page of leads and companies, and record their problems.

    A value the warehouse cannot store (`leadflow.warehouse.values`) does not fail the page: the
    field is cleared, an issue is recorded without the value, and a lead is quarantined
    (`hold_unstorable`) in the same transaction, so the rest of the page lands and the
    watermark can advance.
    """
    pulled_at = now_ms()
    lead_batch = []
    held: dict[str, list[Unstorable]] = {}
    extra_issues: list[dict[str, Any]] = []
    for row in lead_rows:
        item = {name: _clean(row.get(name)) for name in _LEAD_FIELDS}
        item["crm"] = crm
        item["is_deleted"] = bool(row.get("is_deleted") or False)
        item["pulled_at"] = pulled_at
        item["pull_run_id"] = run_id
        item["shard_key"] = shard_key(item["record_id"])
        problems = clear_unstorable(item, _LEAD_KINDS)
        if problems:
            held[str(item["record_id"])] = problems
            extra_issues.extend(_unstorable_issue(item["record_id"], p) for p in problems)
        lead_batch.append(item)
    upsert(conn, leads, lead_batch)
    company_batch = []
    for row in company_rows:
        item = {name: _clean(row.get(name)) for name in _COMPANY_FIELDS}
        item["crm"] = crm
        item["pulled_at"] = pulled_at
        # A company is not scored, so it is not quarantined: the field is cleared and reported.
        extra_issues.extend(_unstorable_issue(item["company_id"], p)
                            for p in clear_unstorable(item, _COMPANY_KINDS))
        company_batch.append(item)
    upsert(conn, companies, company_batch)
    issue_rows = [
        {
            "crm": crm,
            "record_id": issue.record_id,
            "run_id": run_id,
            "field": issue.field,
            "problem": issue.problem,
            # The connector's copy of a bad value can itself be unstorable (a NUL in a date).
            "value": storable_text((issue.value or "")[:200] if issue.value is not None else None),
            "seen_at": pulled_at,
        }
        for issue in issues
    ]
    issue_rows.extend({"crm": crm, "run_id": run_id, "seen_at": pulled_at, **extra} for extra in extra_issues)
    if issue_rows:
        conn.execute(lead_issues.insert(), issue_rows)
    hold_unstorable(conn, crm, run_id, held, [item["record_id"] for item in lead_batch], pulled_at)
    if held:
        log.warning("landing %s page: %d of %d leads quarantined for values the warehouse cannot store "
                    "(ids %s)", crm, len(held), len(lead_batch), sorted(held)[:20])
    return LandedPage(leads=len(lead_batch), held_ids=tuple(sorted(held)))


def mark_removed(conn: Any, crm: str, removed: Sequence[RemovedRecord]) -> dict[str, int]:
    """Mark leads the CRM archived, deleted or merged away (inside the page's transaction): they
    leave the population, so they are neither scored nor pushed from this run on. Returns how
    many known leads were newly marked, per kind."""
    counts = {"deleted": 0, "merged": 0}
    for item in removed:
        result = conn.execute(
            update(leads)
            .where(leads.c.crm == crm, leads.c.record_id == item.record_id, leads.c.is_deleted.is_not(True))
            .values(is_deleted=True, merged_into=item.merged_into)
        )
        counts["merged" if item.merged_into else "deleted"] += result.rowcount or 0
    return counts


def mark_unseen_deleted(engine: Engine, crm: str, run_id: str) -> int:
    """After a full refresh, leads the CRM no longer returned are gone (archived/merged)."""
    with engine.begin() as conn:
        result = conn.execute(
            update(leads)
            .where(leads.c.crm == crm, leads.c.pull_run_id != run_id, leads.c.is_deleted.is_not(True))
            .values(is_deleted=True)
        )
    return result.rowcount or 0


# Rows fetched and turned into columns at a time: the whole result as Python row objects was most
# of a large read's peak (the scores of 1,000,000 leads: about 2.7 GB for a moment).
READ_CHUNK_ROWS = 20_000


def read_frame(engine: Engine, query: Any, chunk_rows: int = READ_CHUNK_ROWS) -> pd.DataFrame:
    """The rows of `query` as a frame (dtypes inferred per column, as pandas does for records).

    Built from one list per column: pandas' records path probes every row object first, about
    twice as slow for the 100k-row tables of a nightly run. Read `chunk_rows` at a time, each
    chunk's columns made arrays before the next is fetched; the chunks of a column are joined
    with the dtype the whole column would have been given.
    """
    with engine.connect() as conn:
        # A server-side cursor where the driver has one (PostgreSQL): its client would otherwise
        # hold the whole result before the first chunk is read. SQLite steps through rows anyway.
        result = conn.execution_options(stream_results=True).execute(query)
        keys = list(result.keys())
        parts: list[list[pa.Array | pd.Series]] = [[] for _ in keys]
        while rows := result.fetchmany(chunk_rows):
            for part, values in zip(parts, map(list, zip(*rows))):
                part.append(_chunk(values))
            del rows
    if not keys or not parts[0]:
        return pd.DataFrame(columns=keys)
    return pd.DataFrame({key: _joined(part) for key, part in zip(keys, parts)})


# Arrow memory of the text columns read: from the system allocator, which hands a freed frame's
# memory back; Arrow's default pool (mimalloc) held about twice the text's size in RSS.
_TEXT_POOL = pa.system_memory_pool()
_STR_DTYPE = pd.StringDtype("pyarrow", na_value=np.nan)  # what pandas infers for text


def _chunk(values: list[Any]) -> pa.Array | pd.Series:
    """A chunk of a column: text as an Arrow array (`_text_array`), anything else as pandas
    infers it; a chunk of NULLs only as an object Series of None."""
    array = _text_array(values)
    return pd.Series(values) if array is None else array


def _joined(parts: list[pa.Array | pd.Series]) -> pd.Series:
    """One column from its chunks, with the dtype inferred from all its values at once."""
    nulls = [isinstance(p, pd.Series) and p.dtype == object and p.isna().all() for p in parts]
    texts = [isinstance(p, pa.Array) for p in parts]
    if any(texts) and all(t or n for t, n in zip(texts, nulls)):
        # Text, and NULL-only chunks: the whole column's first value is text, so Arrow reads it all.
        arrays = [p if t else pa.nulls(len(p), pa.large_string()) for p, t in zip(parts, texts)]
        return pd.Series(pd.array(pa.chunked_array(arrays, type=pa.large_string()), dtype=_STR_DTYPE), copy=False)
    series = [pd.Series(pd.array(p, dtype=_STR_DTYPE), copy=False) if t else p for p, t in zip(parts, texts)]
    if len({s.dtype for s in series}) == 1:
        return series[0] if len(series) == 1 else pd.concat(series, ignore_index=True)
    # Chunks inferred apart (ints, and ints with a NULL; a chunk of NULLs only): the values as
    # fetched, NULL as None, inferred together.
    values = [v for s in series for v in s.astype(object).where(s.notna(), None).tolist()]
    column = _text_column(values)
    return column if isinstance(column, pd.Series) else pd.Series(column)


def _text_column(values: list[Any]) -> pd.Series | list[Any]:
    """Text values as a text Series (`_text_array`); any other column as given."""
    array = _text_array(values)
    return values if array is None else pd.Series(pd.array(array, dtype=_STR_DTYPE), copy=False)


def _text_array(values: list[Any]) -> pa.Array | None:
    """A text column built by Arrow straight from the strings (None when it is not text).

    Same dtype and values as pandas' own inference for str/None lists, about 3x faster
    (measured 36 vs 97 ms for 1M values); mixed or non-text lists are left to pandas.
    """
    first = next((v for v in values if v is not None), None)
    if not isinstance(first, str):
        return None
    try:
        array = pa.array(values, from_pandas=True, memory_pool=_TEXT_POOL)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if not pa.types.is_string(array.type):
        return None
    return array.cast(pa.large_string(), memory_pool=_TEXT_POOL)


def load_leads(
    engine: Engine, crm: str, include_deleted: bool = False, shard: int | None = None, shards: int = 1,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The CRM's lead rows (of a shard); `columns`: only those of them the table has."""
    picked = leads.c if columns is None else [leads.c[c] for c in dict.fromkeys(columns) if c in leads.c]
    query = select(*picked).where(leads.c.crm == crm, shard_filter(leads, shard, shards))
    if not include_deleted:
        query = query.where(leads.c.is_deleted.is_not(True))
    return read_frame(engine, query)


def load_companies(engine: Engine, crm: str) -> pd.DataFrame:
    """The CRM's companies as pulled (COMPANY_COLUMNS and `pulled_at`; not leadflow's own values)."""
    return read_frame(engine, select(*(companies.c[n] for n in (*COMPANY_COLUMNS, "pulled_at")))
                      .where(companies.c.crm == crm))


def count_leads(engine: Engine, crm: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(leads).where(
                and_(leads.c.crm == crm, leads.c.is_deleted.is_not(True))
            )
        ).scalar_one()


# --- scores ----------------------------------------------------------------------------------------
def count_scores(engine: Engine, crm: str) -> int:
    """Records of `crm` with a current score."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(scores).where(scores.c.crm == crm)).scalar_one()


def save_scores(
    engine: Engine,
    crm: str,
    run_id: str,
    frame: pd.DataFrame,
    shard: int | None = None,
    shards: int = 1,
    replace: bool = True,
) -> int:
    """Store `frame`'s scores (and its persona and authority, when it has them). With `replace`,
    the scores of the CRM (or of the shard) that are not in `frame` are removed: a record no
    longer scored has no current score."""
    scored_at = now_ms()
    missing = [c for c in SCORE_PERSONA_COLUMNS if c not in frame.columns]
    if missing:
        frame = frame.assign(**{c: None for c in missing})
    cols = [*SCORE_COLUMNS, *SCORE_PERSONA_COLUMNS, *(c for c in ("predictive_version", "rules_version") if c in frame)]
    columns = driver_columns(frame, {c: SCORE_COLUMNS.get(c, "str") for c in cols},
                             {"crm": crm, "run_id": run_id, "scored_at": scored_at})
    columns["shard_key"] = [shard_key(record_id) for record_id in columns["record_id"]]
    with engine.begin() as conn:
        if replace:
            conn.execute(scores.delete().where(scores.c.crm == crm, shard_filter(scores, shard, shards)))
        upsert_many(conn, scores, columns)
    return len(frame)


def driver_values(values: pd.Series, kind: str) -> list[Any]:
    """A column as plain Python values with None for missing (what the DB drivers bind: numpy's
    types they refuse, PostgreSQL a float for BIGINT). `kind` as in `leadflow.schema`: "float",
    "bool", "ts" (epoch ms, an integer), anything else as it is."""
    if kind == "float":
        arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        return np.where(np.isnan(arr), None, arr).tolist()
    plain = values.astype(object).where(values.notna(), None).tolist()
    if kind == "bool":
        return [None if v is None else bool(v) for v in plain]
    if kind == "ts":
        return [None if v is None else int(v) for v in plain]
    return plain


def driver_columns(frame: pd.DataFrame, kinds: Mapping[str, str], constants: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The columns `kinds` names (column -> kind, as `driver_values`) of `frame` as lists of the
    Python values the drivers bind, and one list per constant: what `upsert_many` takes."""
    out = {col: driver_values(frame[col], kind) for col, kind in kinds.items()}
    out.update({name: [value] * len(frame) for name, value in constants.items()})
    return out


def load_scores(engine: Engine, crm: str, shard: int | None = None, shards: int = 1,
                columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The CRM's current scores (of a shard); `columns`: only those of them the table has (the
    whole table at 1,000,000 leads is over a GB as a frame, most of it text no caller reads)."""
    picked = scores.c if columns is None else [scores.c[c] for c in dict.fromkeys(columns) if c in scores.c]
    return read_frame(engine, select(*picked).where(scores.c.crm == crm, shard_filter(scores, shard, shards)))


SCORE_IDS_PER_QUERY = 500  # bound parameters per statement: well under SQLite's and PostgreSQL's limits


def load_score_rows(engine: Engine, crm: str, record_ids: Iterable[str]) -> pd.DataFrame:
    """The whole score rows of `record_ids` (those that have one), in id order."""
    ids = sorted(set(map(str, record_ids)))
    parts = [read_frame(engine, select(scores).where(scores.c.crm == crm, scores.c.record_id.in_(chunk)))
             for chunk in (ids[i:i + SCORE_IDS_PER_QUERY] for i in range(0, len(ids), SCORE_IDS_PER_QUERY))]
    parts = [p for p in parts if len(p)]
    if not parts:
        return read_frame(engine, select(scores).where(scores.c.crm == crm, scores.c.record_id.in_([])))
    return pd.concat(parts, ignore_index=True).sort_values("record_id", kind="stable").reset_index(drop=True)


def has_finished_push(engine: Engine, crm: str) -> bool:
    """Whether a run of this CRM ever finished a real push (its first one is exempt from the
    change guard, and so is a re-run after a first push that was killed)."""
    query = (
        select(runs.c.run_id)
        .join(run_steps, (run_steps.c.crm == runs.c.crm) & (run_steps.c.run_id == runs.c.run_id))
        .where(runs.c.crm == crm, runs.c.status.in_(("success", "warning")), runs.c.dry_run.is_(False),
               run_steps.c.step == "push")
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).first() is not None
