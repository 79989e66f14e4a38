"""Which values leadflow should write: desired (scores) against current (the CRM, as last pulled).

Pure functions over DataFrames; no I/O. The rules:
- a field is sent only when its desired value differs from the CRM's current one;
- score changes smaller than `min_score_delta` are ignored unless grade or stage change too;
- the lifecycle stage only moves forward and never leaves or enters a sales-owned stage;
- the lead status is set only while it is empty or one leadflow itself sets: a status a
  salesperson chose (in progress, connected, ...) wins;
- `scored_at` and `model_version` travel with any other change, never alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadflow.schema import CRM_VALUE_PREFIX, SALES_OWNED_STAGES, STAGE_RANK, LeadStatus

NUMERIC_FIELDS = ("score", "fit_score", "engagement_score", "bant_count")
TEXT_FIELDS = ("grade", "reasons", "disqualification_reason")
# Fields that never justify a write on their own.
PASSENGER_FIELDS = ("model_version", "scored_at")
LEADFLOW_STATUSES = frozenset(
    {LeadStatus.NEW.value, LeadStatus.OPEN.value, LeadStatus.NURTURE.value, LeadStatus.UNQUALIFIED.value}
)


@dataclass(frozen=True)
class DiffSettings:
    min_score_delta: float = 2.0
    push_stage: bool = True
    push_status: bool = True


def _num(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)


def _text(series: pd.Series) -> np.ndarray:
    values = series.astype(object).where(series.notna(), "")
    return values.map(lambda v: str(v).strip()).to_numpy(dtype=object)


def _stage_rank(series: pd.Series) -> np.ndarray:
    return series.map(lambda s: STAGE_RANK.get(s, -1) if isinstance(s, str) else -1).to_numpy(dtype=int)


def compute_changes(
    desired: pd.DataFrame, current: pd.DataFrame, settings: DiffSettings = DiffSettings()
) -> pd.DataFrame:
    """One row per (record_id, field) to write, with `before` and `after` as strings.

    `desired`: score rows (schema.SCORE_COLUMNS). `current`: lead rows with `record_id`,
    `lifecycle_stage`, `lead_status` and the `crm_<field>` current values of owned fields.
    """
    cur_cols = ["record_id", "lifecycle_stage", "lead_status"] + [
        f"{CRM_VALUE_PREFIX}{f}" for f in NUMERIC_FIELDS + TEXT_FIELDS + PASSENGER_FIELDS
    ]
    for col in cur_cols:
        if col not in current.columns:
            current = current.assign(**{col: None})
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

    # Small score moves alone are noise: skip them unless the grade or stage also moves.
    score_delta = np.abs(_num(merged["score"]) - _num(merged[f"{CRM_VALUE_PREFIX}score"]))
    small = ~np.isnan(score_delta) & (score_delta < settings.min_score_delta)

    cur_rank = _stage_rank(merged["cur_stage"])
    want_rank = _stage_rank(merged["stage"])
    cur_owned = merged["cur_stage"].isin(SALES_OWNED_STAGES).to_numpy()
    want_owned = merged["stage"].isin(SALES_OWNED_STAGES).to_numpy()
    stage_change = (
        settings.push_stage & (want_rank > cur_rank) & ~cur_owned & ~want_owned & (want_rank >= 0)
    )
    cur_status = _text(merged["cur_status"])
    want_status = _text(merged["lead_status"])
    status_ours = np.isin(cur_status, list(LEADFLOW_STATUSES)) | (cur_status == "")
    status_change = settings.push_status & status_ours & (want_status != cur_status) & (want_status != "")

    grade_change = changed["grade"]
    for field in ("score", "fit_score", "engagement_score"):
        changed[field] = changed[field] & ~(small & ~grade_change & ~stage_change)
    # The reasons explain the score: they move with it, not on their own when it did not.
    changed["reasons"] = changed["reasons"] & (changed["score"] | grade_change | stage_change)
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
        **{f: f"{CRM_VALUE_PREFIX}{f}" for f in NUMERIC_FIELDS + TEXT_FIELDS + PASSENGER_FIELDS},
    }
    after_cols = {"lifecycle_stage": "stage", **{f: f for f in before_cols if f != "lifecycle_stage"}}
    parts = []
    for field, mask in changed.items():
        if not mask.any():
            continue
        sel = merged.loc[mask]
        parts.append(
            pd.DataFrame(
                {
                    "record_id": sel["record_id"].to_numpy(),
                    "field": field,
                    "before": [_fmt(v) for v in sel[before_cols[field]].to_numpy()],
                    "after": [_fmt(v) for v in sel[after_cols[field]].to_numpy()],
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["record_id", "field", "before", "after"])
    return pd.concat(parts, ignore_index=True).sort_values(["record_id", "field"], kind="stable")


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
