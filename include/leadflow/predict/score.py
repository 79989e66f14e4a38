"""Scoring: calibrated probability, 0-100 score and the top factors of each lead.

score = round(100 x calibrated probability). The reasons name the features that moved this
lead's score most, e.g. "+12 predictive: Last Activity = SMS Sent": per feature, the linear
explainer's contribution (coefficient x standardised value, summed over the feature's design
columns; zero for a lead at the training average) is converted into score points as the drop
the score would see if that feature alone were at its average. For the logistic champion this
is exact on the raw logit; for boosting or the blend the explainer is a linear surrogate of
the champion (its R² is in the model's metrics), so the points are an approximation.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from leadflow.predict.features import MISSING
from leadflow.predict.train import TrainedModel, _logit, _sigmoid

log = logging.getLogger(__name__)

SCORE_COLUMNS: tuple[str, ...] = ("probability", "score", "reasons")
REASON_PREFIX = "predictive"
# Rows per chunk: bounds memory of the dense design matrix (~170 columns) on big tables.
_CHUNK_ROWS = 100_000


def probability_to_score(probability: np.ndarray) -> np.ndarray:
    """0-100 integer scores: round(100 x probability), half away from zero."""
    return np.floor(np.clip(probability, 0.0, 1.0) * 100.0 + 0.5).astype(int)


def _format_value(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return MISSING
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return f"{v:,.0f}" if v.is_integer() else f"{v:,.2f}".rstrip("0").rstrip(".")
    text = str(value).strip()
    return text[:60] if text else MISSING


def _display_values(model: TrainedModel, frame: pd.DataFrame) -> list[list[str]]:
    """Per feature (encoder order), the lead's own value as shown in a reason."""
    enc = model.encoder
    numbers = enc.numeric_frame(frame)
    keys = enc.category_keys(frame)
    shown: list[list[str]] = []
    for spec in enc.numbers:
        shown.append([_format_value(v) for v in numbers[spec.name].to_numpy()])
    for spec in enc.categories:
        raw = frame[spec.name].astype("string").str.strip()
        missing = keys[spec.name].isna().to_numpy()
        shown.append([MISSING if m else _format_value(v) for v, m in zip(raw.to_numpy(), missing)])
    return shown


def factor_points(model: TrainedModel, frame: pd.DataFrame, probability: np.ndarray) -> np.ndarray:
    """Signed score points per (row, feature): how much each feature moved this lead's score."""
    enc = model.encoder
    design = enc.design(frame)
    n_features = len(enc.feature_names)
    groups = np.zeros((design.shape[1], n_features))
    groups[np.arange(design.shape[1]), enc.design_groups] = 1.0
    contributions = (design * model.explainer_coef) @ groups  # logit units per feature
    # Map logit contributions to the calibrated scale with the calibration slope.
    contributions = contributions * model.calibration[0]
    z = _logit(probability)[:, None]
    return 100.0 * (probability[:, None] - _sigmoid(z - contributions))


def _top_factors(points: np.ndarray, top: int) -> list[list[tuple[int, int]]]:
    """Per row, [(feature, rounded points), ...]: the `top` largest by absolute points, zeros left out."""
    rounded = np.rint(points).astype(int)
    order = np.argsort(-np.abs(points), axis=1, kind="stable")[:, :top]
    out = []
    for i in range(points.shape[0]):
        row = []
        for j in order[i]:
            if rounded[i, j] == 0:
                break
            row.append((int(j), int(rounded[i, j])))
        out.append(row)
    return out


def render_reasons(points: np.ndarray, names: list[str], shown: list[list[str]], top: int = 3) -> list[str]:
    """'; '-joined top factors per row, largest absolute points first; tiny ones left out."""
    return ["; ".join(f"{pts:+d} {REASON_PREFIX}: {names[j]} = {shown[j][i]}" for j, pts in row)
            for i, row in enumerate(_top_factors(points, top))]


def render_factors(points: np.ndarray, names: list[str], shown: list[list[str]], top: int = 3) -> list[str]:
    """The same top factors as one compact phrase per row ("Last Activity = SMS Sent +12, ..."),
    for the rules engine's blend reason: no "; ", which separates the reasons of a lead."""
    return [", ".join(f"{names[j]} = {shown[j][i].replace(';', ',')} {pts:+d}" for j, pts in row)
            for i, row in enumerate(_top_factors(points, top))]


def _score_chunk(model: TrainedModel, frame: pd.DataFrame, top: int) -> pd.DataFrame:
    probability = model.predict_proba(frame)
    points = factor_points(model, frame, probability)
    names, shown = model.encoder.feature_names, _display_values(model, frame)
    return pd.DataFrame(
        {"probability": probability, "score": probability_to_score(probability),
         "reasons": render_reasons(points, names, shown, top),
         "factors": render_factors(points, names, shown, top)},
        index=frame.index,
    )


def score_frame(model: TrainedModel, frame: pd.DataFrame, top_factors: int = 3) -> pd.DataFrame:
    """Score every row of `frame` (same index): probability in [0, 1], score 0-100, reasons, and
    the same top factors as one phrase (`factors`, what the rules engine's blend reason shows).

    The frame needs the mapping's feature columns; unknown categories, missing or
    non-numeric numbers and the mapping's missing tokens are all scored, never rejected.
    """
    model.mapping.check_columns(frame.columns, where="table to score", with_id=False)
    if frame.empty:
        return pd.DataFrame({"probability": pd.Series(dtype="float64"),
                             "score": pd.Series(dtype="int64"),
                             "reasons": pd.Series(dtype="object"),
                             "factors": pd.Series(dtype="object")}, index=frame.index)
    with threadpool_limits(limits=1):
        parts = [
            _score_chunk(model, frame.iloc[start : start + _CHUNK_ROWS], top_factors)
            for start in range(0, len(frame), _CHUNK_ROWS)
        ]
    out = pd.concat(parts)
    log.info("scored %d rows with model %s (mean score %.1f)", len(out), model.version,
             float(out["score"].mean()))
    return out


def score_table(model: TrainedModel, frame: pd.DataFrame, top_factors: int = 3) -> pd.DataFrame:
    """The SCORES.csv shape: the mapping's id column, probability, score, reasons."""
    id_col = model.mapping.id_column
    model.mapping.check_columns(frame.columns, where="table to score")
    scored = score_frame(model, frame, top_factors)
    out = pd.DataFrame({id_col: frame[id_col].to_numpy()}, index=frame.index)
    return out.join(scored[list(SCORE_COLUMNS)]).reset_index(drop=True)

