"""Which values leadflow should write: desired (scores) against current (the CRM, as last pulled).

Pure functions over DataFrames; no I/O. The rules:
- a field is sent only when its desired value differs from the CRM's current one;
- score changes smaller than `min_score_delta` are ignored unless grade or stage change too;
- the lifecycle stage only moves forward and never leaves or enters a sales-owned stage
  (`leadflow.stage_rule`);
- the lifecycle stage and the lead status are shared with people: `leadflow.ownership` decides
  whether leadflow may write them. Someone else's value is an *override* (left alone, reported);
  a value leadflow never wrote is a candidate (`verify`) that the writer settles with the CRM's
  history right before the write;
- `scored_at` and `model_version` travel with any other change, never alone;
- the handoff fields (`sales_ready`, its `since` and `reason`) are compared as the CRM renders
  them; an empty flag counts as false, so that turning the handoff on writes only the leads
  that are sales-ready, not a `false` to every lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from leadflow.crm.values import format_owned_value
from leadflow.ownership import SHARED_FIELDS, Decision, Observed, ReclaimPolicy, decide
from leadflow.schema import CRM_RAW_PREFIX, CRM_VALUE_PREFIX
from leadflow.stage_rule import moves_forward, rank_codes

NUMERIC_FIELDS = ("score", "fit_score", "engagement_score", "bant_count")
TEXT_FIELDS = ("grade", "reasons", "disqualification_reason")
# Fields that never justify a write on their own.
PASSENGER_FIELDS = ("model_version", "scored_at")
# The handoff to sales (leadflow-owned, see qualify/handoff.py).
HANDOFF_FIELDS = ("sales_ready", "sales_ready_since", "sales_ready_reason")
CHANGE_COLUMNS = ["record_id", "field", "before", "after", "verify"]
# `standing`: the same value was already recorded as an override (counted, not recorded again).
OVERRIDE_COLUMNS = ["record_id", "field", "current", "wanted", "last_written", "standing"]


@dataclass(frozen=True)
class DiffSettings:
    min_score_delta: float = 2.0
    push_stage: bool = True
    push_status: bool = True
    reclaim: ReclaimPolicy | None = None


@dataclass
class Diff:
    """`changes`: one row per (record_id, field) to write; `verify` marks a shared field the
    writer must settle against the CRM's history first. `overrides`: shared fields leadflow
    would change but someone else decided (their `current` value, what leadflow `wanted`)."""

    changes: pd.DataFrame
    overrides: pd.DataFrame = dataclass_field(default_factory=lambda: pd.DataFrame(columns=OVERRIDE_COLUMNS))


def _num(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _text(series: pd.Series) -> np.ndarray:
    """Values as stripped text, '' when missing."""
    return _each_distinct(series, lambda v: str(v).strip(), "")


def _each_distinct(series: pd.Series, convert: Callable[[Any], Any], missing: Any) -> np.ndarray:
    """`convert` of each value (`missing` for a missing one), as an object array. A text or number
    column's values repeat (stages, grades, reasons, scores): those are converted once per
    distinct value, a Python call per cell being most of a 100,000-record diff's time (numbers
    equal as numbers are one value: -0.0 is 0.0). Other columns value by value, since pandas
    would take 1, 1.0 and True for one value."""
    if isinstance(series.dtype, pd.StringDtype) or pd.api.types.is_float_dtype(series.dtype) \
            or pd.api.types.is_integer_dtype(series.dtype):
        codes, distinct = pd.factorize(series, use_na_sentinel=True)
        converted = np.empty(len(distinct) + 1, dtype=object)
        converted[:-1] = [convert(v) for v in distinct]
        converted[-1] = missing  # code -1: a missing value
        return converted[codes]
    values = series.to_numpy(dtype=object)
    present = pd.notna(series).to_numpy()
    out = np.full(len(values), missing, dtype=object)
    out[present] = [convert(v) for v in values[present]]
    return out


def compute_changes(
    desired: pd.DataFrame, current: pd.DataFrame, settings: DiffSettings = DiffSettings(),
    last_written: Mapping[tuple[str, str], str | None] | None = None, now_ms: int = 0,
) -> pd.DataFrame:
    """The changes of `diff_leads` (the overrides left out)."""
    return diff_leads(desired, current, settings, last_written, now_ms=now_ms).changes


def current_columns() -> list[str]:
    """The columns of the lead rows `diff_leads` reads (its `current`): a caller loads only these."""
    return ["record_id", "lifecycle_stage", "lead_status", *(f"{CRM_RAW_PREFIX}{f}" for f in SHARED_FIELDS),
            *(f"{CRM_VALUE_PREFIX}{f}" for f in NUMERIC_FIELDS + TEXT_FIELDS + PASSENGER_FIELDS + HANDOFF_FIELDS)]


def desired_columns() -> list[str]:
    """The columns of the score rows `diff_leads` reads (its `desired`) and the push sends along
    (`model_version`): a caller loads only these."""
    return ["record_id", "stage", "lead_status",
            *dict.fromkeys(NUMERIC_FIELDS + TEXT_FIELDS + PASSENGER_FIELDS + HANDOFF_FIELDS)]


def diff_leads(
    desired: pd.DataFrame, current: pd.DataFrame, settings: DiffSettings = DiffSettings(),
    last_written: Mapping[tuple[str, str], str | None] | None = None,
    standing: Mapping[tuple[str, str], str | None] | None = None, now_ms: int = 0,
) -> Diff:
    """What to write, one row per (record_id, field) with `before` and `after` as strings, and
    the overrides.

    `desired`: score rows (schema.SCORE_COLUMNS). `current`: lead rows with `record_id`,
    `lifecycle_stage`, `lead_status` (canonical), their raw CRM values `crm_raw_<field>` when
    known (a raw value without a canonical one is outside the mapping) and the `crm_<field>`
    current values of owned fields. `last_written`: (record_id, field) -> the value of
    leadflow's last confirmed write of a shared field (push log). `standing`: (record_id,
    field) -> someone else's value found at the last override; while the CRM still holds it,
    the decision stands and is not read again.
    """
    cur_cols = current_columns()
    for col in cur_cols:
        if col not in current.columns:
            current = current.assign(**{col: None})
    for col in HANDOFF_FIELDS:  # score rows from before the handoff: nobody is sales-ready
        if col not in desired.columns:
            desired = desired.assign(**{col: None})
    merged = desired.merge(
        current[cur_cols].rename(
            columns={"lifecycle_stage": "cur_stage", "lead_status": "cur_status"}
        ),
        on="record_id",
        how="left",
    )
    changed: dict[str, np.ndarray] = {}
    for field in NUMERIC_FIELDS:
        want = _num(merged[field])
        have = _num(merged[f"{CRM_VALUE_PREFIX}{field}"])
        missing_now = np.isnan(have) & ~np.isnan(want)
        differs = ~np.isnan(want) & (np.abs(want - np.nan_to_num(have, nan=np.inf)) > 1e-9)
        changed[field] = missing_now | differs
    for field in TEXT_FIELDS:
        changed[field] = _text(merged[field]) != _text(merged[f"{CRM_VALUE_PREFIX}{field}"])
    want_ready = merged["sales_ready"].isin([True]).to_numpy()
    merged["want_sales_ready"] = np.where(want_ready, "true", "false")
    changed["sales_ready"] = want_ready != (_text(merged[f"{CRM_VALUE_PREFIX}sales_ready"]) == "true")
    merged["want_sales_ready_since"] = _datetime_text(merged["sales_ready_since"])
    changed["sales_ready_since"] = merged["want_sales_ready_since"].to_numpy() != _datetime_text(
        merged[f"{CRM_VALUE_PREFIX}sales_ready_since"])

    # Small score moves alone are noise: skip them unless the grade or stage also moves.
    score_delta = np.abs(_num(merged["score"]) - _num(merged[f"{CRM_VALUE_PREFIX}score"]))
    small = ~np.isnan(score_delta) & (score_delta < settings.min_score_delta)

    cur_rank = rank_codes(merged["cur_stage"].to_numpy(dtype=object))
    want_rank = rank_codes(merged["stage"].to_numpy(dtype=object))
    stage_change = settings.push_stage & moves_forward(cur_rank, want_rank)
    cur_status = _text(merged["cur_status"])
    want_status = _text(merged["lead_status"])
    status_change = settings.push_status & (want_status != cur_status) & (want_status != "")
    # An unmapped raw value has no canonical one: the wanted change must face it, not an empty field.
    stage_change |= settings.push_stage & _unmapped(merged, "lifecycle_stage", "cur_stage") & (want_rank >= 0)
    status_change |= settings.push_status & _unmapped(merged, "lead_status", "cur_status") & (want_status != "")
    verify: dict[str, np.ndarray] = {}
    override_parts: list[pd.DataFrame] = []
    for name, mask, cur_col, want_col in (("lifecycle_stage", stage_change, "cur_stage", "stage"),
                                          ("lead_status", status_change, "cur_status", "lead_status")):
        allowed, verify[name], overridden = _ownership(merged, mask, name, cur_col, want_col, settings,
                                                       last_written or {}, standing or {}, now_ms)
        mask &= allowed
        if overridden is not None:
            override_parts.append(overridden)

    grade_change = changed["grade"]
    for field in ("score", "fit_score", "engagement_score"):
        changed[field] = changed[field] & ~(small & ~grade_change & ~stage_change)
    # The reasons explain the score: they move with it, not on their own when it did not.
    changed["reasons"] = changed["reasons"] & (changed["score"] | grade_change | stage_change)
    # The handoff reason quotes the score: the same, and it comes and goes with the handoff.
    want_reason, have_reason = _text(merged["sales_ready_reason"]), _text(merged[f"{CRM_VALUE_PREFIX}sales_ready_reason"])
    changed["sales_ready_reason"] = (want_reason != have_reason) & (
        changed["score"] | grade_change | stage_change | changed["sales_ready"] | changed["sales_ready_since"]
        | ((want_reason == "") != (have_reason == "")))
    changed["lifecycle_stage"] = stage_change
    changed["lead_status"] = status_change
    any_change = np.zeros(len(merged), dtype=bool)
    for mask in changed.values():
        any_change |= mask
    for field in PASSENGER_FIELDS:
        changed[field] = any_change

    before_cols = {
        "lifecycle_stage": "cur_stage",
        "lead_status": "cur_status",
        **{f: f"{CRM_VALUE_PREFIX}{f}" for f in NUMERIC_FIELDS + TEXT_FIELDS + PASSENGER_FIELDS + HANDOFF_FIELDS},
    }
    after_cols = {"lifecycle_stage": "stage", **{f: f for f in before_cols if f != "lifecycle_stage"},
                  "sales_ready": "want_sales_ready", "sales_ready_since": "want_sales_ready_since"}
    parts = []
    for field, mask in changed.items():
        if not mask.any():
            continue
        # Only the three columns a change row needs: a copy of every merged column per field was
        # most of the diff's peak memory on a first push.
        sel = merged.loc[mask, list(dict.fromkeys(["record_id", before_cols[field], after_cols[field]]))]
        parts.append(
            pd.DataFrame(
                {
                    "record_id": sel["record_id"].to_numpy(),
                    "field": field,
                    "before": _each_distinct(sel[before_cols[field]], _fmt, None),
                    "after": _each_distinct(sel[after_cols[field]], _fmt, None),
                    "verify": verify[field][mask] if field in verify else False,
                }
            )
        )
    overrides = (pd.concat(override_parts, ignore_index=True) if override_parts
                 else pd.DataFrame(columns=OVERRIDE_COLUMNS))
    if not parts:
        return Diff(pd.DataFrame(columns=CHANGE_COLUMNS), overrides)
    changes = pd.concat(parts, ignore_index=True).sort_values(["record_id", "field"], kind="stable")
    return Diff(changes.reset_index(drop=True), overrides)


def _datetime_text(series: pd.Series) -> np.ndarray:
    """Timestamps (epoch ms, or text as pulled) as the CRM renders them ('' when empty); only the
    few sales-ready rows hold one."""
    out = np.full(len(series), "", dtype=object)
    values = series.to_numpy(dtype=object)
    for i in np.flatnonzero(pd.notna(series).to_numpy()):
        try:
            out[i] = format_owned_value("datetime", values[i])
        except (TypeError, ValueError, OverflowError):
            out[i] = str(values[i]).strip()  # kept verbatim: differs, and is overwritten
    return out


def _unmapped(merged: pd.DataFrame, name: str, cur_col: str) -> np.ndarray:
    raw = _text(merged[f"{CRM_RAW_PREFIX}{name}"])
    return (raw != "") & (_text(merged[cur_col]) == "")


def _ownership(merged: pd.DataFrame, mask: np.ndarray, name: str, cur_col: str, want_col: str,
               settings: DiffSettings, last_written: Mapping[tuple[str, str], str | None],
               standing: Mapping[tuple[str, str], str | None], now_ms: int
               ) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """For the rows of `mask` (leadflow wants `name` changed): (may write, must verify,
    overrides frame). Only those rows go through the rule: a handful per night."""
    allowed = np.zeros(len(merged), dtype=bool)
    verify = np.zeros(len(merged), dtype=bool)
    rows = np.flatnonzero(mask)
    if not len(rows):
        return allowed, verify, None
    ids = merged["record_id"].to_numpy(dtype=object)
    canonical = _text(merged[cur_col])
    raw = _text(merged[f"{CRM_RAW_PREFIX}{name}"])
    wanted = _text(merged[want_col])
    found: list[dict[str, Any]] = []
    for i in rows:
        known = canonical[i] != "" or raw[i] == ""
        observed = Observed(canonical[i] if known else raw[i], known=known)
        key = (str(ids[i]), name)
        mine = last_written.get(key)
        decision = decide(observed, wanted[i], mine, now_ms=now_ms, reclaim=settings.reclaim)
        if decision is Decision.VERIFY and key in standing and standing[key] == observed.value:
            decision = Decision.OVERRIDE
        if decision is Decision.OVERRIDE:
            found.append({"record_id": ids[i], "field": name, "current": observed.value, "wanted": wanted[i],
                          "last_written": mine, "standing": key in standing and standing[key] == observed.value})
        allowed[i] = decision in (Decision.WRITE, Decision.VERIFY)
        verify[i] = decision is Decision.VERIFY
    return allowed, verify, pd.DataFrame(found, columns=OVERRIDE_COLUMNS) if found else None


def _fmt(value: Any) -> str | None:
    """Values as the push log and the CRM see them: integers without '.0', no NaN."""
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else f"{float(value):.2f}"
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return str(int(value))
    text = str(value)
    return text if text != "" else None
