"""Lead qualification: the versioned model config and its vectorised scoring engine.

Public API (what the pipeline calls):

- `load_model(path=None)` -> `QualificationModel` (None: include/config/model/default.yaml);
  raises `ModelConfigError` naming each bad key.
- `score_leads(leads, model, now, predictive=None, *, render=True)` -> frame with
  `leadflow.schema.SCORE_COLUMNS` (+ extras).
- `evaluate(...)` -> `Evaluation` (arrays, reasons as rule ids + points) and `to_frame(evaluation,
  render=...)` for callers that render reason text only for the rows they write.
- `render_reasons(evaluation, rows=None)` -> reason texts; `reason_table(evaluation)` -> long
  frame of (row, reason_id, points).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadflow.qualify.config import (
    DEFAULT_MODEL_PATH,
    ModelConfigError,
    QualificationModel,
    export_json_schema,
    json_schema,
    load_model,
    model_from_dict,
)
from leadflow.qualify.engine import Evaluation, evaluate, score_leads, to_frame


def render_reasons(evaluation: Evaluation, rows: np.ndarray | None = None) -> np.ndarray:
    """Reason texts ("+15 decider title: VP Sales; -30 competitor domain") per lead.

    `rows` (positional indices or a boolean mask) restricts rendering to the leads that will be
    written or shown; the result is an object array aligned with `rows` (or all leads).
    """
    if rows is not None:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
    return evaluation.render_reasons(rows)


def reason_table(evaluation: Evaluation) -> pd.DataFrame:
    """Reasons in long form: one row per (lead, non-zero reason) with its integer points.

    Columns: crm, record_id, reason_id, points; ordered by lead then slot (config order).
    """
    slot_idx, lead_idx = np.nonzero(evaluation.points)  # (slot, lead) pairs
    order = np.lexsort((slot_idx, lead_idx))
    slot_idx, lead_idx = slot_idx[order], lead_idx[order]
    ids = np.array([s.id for s in evaluation.compiled.slots], dtype=object)
    return pd.DataFrame(
        {
            "crm": pd.Series(evaluation.crm.to_numpy(dtype=object)[lead_idx], dtype=object),
            "record_id": pd.Series(evaluation.record_id.to_numpy(dtype=object)[lead_idx], dtype=object),
            "reason_id": pd.Series(ids[slot_idx], dtype=object),
            "points": evaluation.points[slot_idx, lead_idx].astype(np.int64),
        }
    )


__all__ = [
    "DEFAULT_MODEL_PATH",
    "Evaluation",
    "ModelConfigError",
    "QualificationModel",
    "evaluate",
    "export_json_schema",
    "json_schema",
    "load_model",
    "model_from_dict",
    "reason_table",
    "render_reasons",
    "score_leads",
    "to_frame",
]
