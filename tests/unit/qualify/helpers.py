"""Helpers for the qualification tests: build lead frames, tweak models, compare with the reference."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import yaml

from leadflow.qualify import model_from_dict
from leadflow.qualify.config import DEFAULT_MODEL_PATH, QualificationModel
from leadflow.qualify.engine import Evaluation
from leadflow.qualify.fields import ENRICHED_COLUMNS
from leadflow.qualify.reasons import reason_pairs
from leadflow.schema import LEAD_COLUMNS

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
ALL_COLUMNS: dict[str, str] = {**LEAD_COLUMNS, **ENRICHED_COLUMNS}

# A lead that fits well but does nothing special: the base for focused tests.
BASE_LEAD: dict[str, Any] = {
    "job_title": "Marketing Manager",
    "industry": "Retail",
    "employees": 30.0,
    "annual_revenue": 5_000_000.0,
    "country": "BR",
}


def days_ago(days: float) -> pd.Timestamp:
    return pd.Timestamp(NOW - timedelta(days=days))


def make_leads(rows: list[dict[str, Any]], text_dtype: str = "object") -> pd.DataFrame:
    """A frame with every lead and enrichment column; unspecified values are missing."""
    n = len(rows)
    data: dict[str, pd.Series] = {}
    for name, kind in ALL_COLUMNS.items():
        values = [row.get(name) for row in rows]
        if name == "record_id":
            values = [v if v is not None else str(i + 1) for i, v in enumerate(values)]
        if name == "crm":
            values = [v if v is not None else "hubspot" for v in values]
        if kind in ("str", "list"):
            s = pd.Series(values, dtype=object)
            if text_dtype != "object":
                s = s.astype(text_dtype)
        elif kind == "float":
            s = pd.Series([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        elif kind == "ts":
            s = pd.Series(pd.to_datetime(values, utc=True)).astype("datetime64[ns, UTC]")
        else:  # bool: object with None for missing, like a frame read from a database
            s = pd.Series(values, dtype=object)
        data[name] = s
    frame = pd.DataFrame(data)
    frame.index = pd.RangeIndex(n)
    return frame


def lead(**overrides: Any) -> dict[str, Any]:
    """BASE_LEAD with overrides (None removes a value)."""
    row = dict(BASE_LEAD)
    row.update(overrides)
    return row


def default_dict() -> dict[str, Any]:
    """A fresh, editable copy of the shipped default model document."""
    return copy.deepcopy(_DEFAULT_DOC)


_DEFAULT_DOC = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))


def model_from(doc: dict[str, Any]) -> QualificationModel:
    return model_from_dict(copy.deepcopy(doc))


def reasons_of(evaluation: Evaluation, i: int) -> list[tuple[str, int]]:
    return reason_pairs(evaluation.points, evaluation.compiled.slots, i)


COMPARED = (
    "score", "fit_score", "engagement_score", "grade", "bant_budget", "bant_authority",
    "bant_need", "bant_timeline", "bant_count", "disqualification_reason", "stage",
    "lead_status", "sales_ready", "persona",
)


def assert_agrees(frame: pd.DataFrame, evaluation: Evaluation, reference: list[dict[str, Any]],
                  leads: pd.DataFrame) -> None:
    """Engine output == reference output for every lead and every compared field + reasons."""
    records = frame.to_dict("records")
    assert len(records) == len(reference)
    for i, (got, want) in enumerate(zip(records, reference)):
        for key in COMPARED:
            g, w = got[key], want[key]
            if isinstance(g, float) and not isinstance(w, float) and w is not None:
                g = int(g) if g == int(g) else g
            assert _same(g, w), (
                f"lead {i} field {key}: engine {g!r} != reference {w!r}\n"
                f"lead: {leads.iloc[i].to_dict()}\nreasons {reasons_of(evaluation, i)} vs {want['reasons']}"
            )
        assert reasons_of(evaluation, i) == want["reasons"], f"lead {i} reasons differ"
        assert bool(evaluation.bant_advanced[i]) == want["bant_advanced"]


def _same(a: Any, b: Any) -> bool:
    a_missing = a is None or (isinstance(a, float) and np.isnan(a))
    b_missing = b is None or (isinstance(b, float) and np.isnan(b))
    if a_missing or b_missing:
        return a_missing and b_missing
    return bool(a == b)
