"""Population stability index (PSI): how far a distribution moved from a reference one.

    PSI = sum over bins of (actual_share - expected_share) * ln(actual_share / expected_share)

Conventional reading: < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift. Shares are
floored at `epsilon` so an empty bin contributes a large but finite amount instead of infinity.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

DEFAULT_EPSILON = 1e-4


def fixed_edges(low: float, high: float, bins: int) -> np.ndarray:
    """`bins` equal-width bins over [low, high]; the outer edges are open so values outside the
    range still land in the first or last bin."""
    if bins < 1 or not high > low:
        raise ValueError(f"need bins >= 1 and high > low (got {bins}, {low}, {high})")
    edges = np.linspace(low, high, bins + 1)
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def quantile_edges(reference: Sequence[float] | np.ndarray, bins: int) -> np.ndarray:
    """Edges at the reference's quantiles (duplicates merged), outer edges open."""
    values = _finite(reference)
    if values.size == 0:
        raise ValueError("reference distribution has no finite values")
    inner = np.unique(np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1]))
    return np.concatenate(([-np.inf], inner, [np.inf]))


def shares(values: Sequence[float] | np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the finite `values` in each bin of `edges` (right-closed bins, open ends)."""
    finite = _finite(values)
    if finite.size == 0:
        return np.zeros(len(edges) - 1)
    # Bins are (e[i-1], e[i]]; searchsorted with side="left" returns i for such a value.
    index = np.searchsorted(edges, finite, side="left") - 1
    index = np.clip(index, 0, len(edges) - 2)
    counts = np.bincount(index, minlength=len(edges) - 1)
    return counts / finite.size


def psi_from_shares(expected: np.ndarray, actual: np.ndarray,
                    epsilon: float = DEFAULT_EPSILON) -> float:
    """PSI of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype="float64"), epsilon)
    a = np.maximum(np.asarray(actual, dtype="float64"), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def population_stability_index(
    expected: Sequence[float] | np.ndarray,
    actual: Sequence[float] | np.ndarray,
    *,
    edges: np.ndarray | None = None,
    bins: int = 10,
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """PSI of `actual` against the reference `expected` (NaN/inf values ignored).

    Without `edges`, bins are the reference's quantiles, so each holds about 1/bins of it.
    """
    if edges is None:
        edges = quantile_edges(expected, bins)
    return psi_from_shares(shares(expected, edges), shares(actual, edges), epsilon)


def _finite(values: Sequence[float] | np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype="float64").ravel()
    return array[np.isfinite(array)]


def score_counts(scores: pd.Series) -> list[int]:
    """How many leads hold each integer score 0..100: the exact distribution in 101 numbers (a
    run's shards add theirs up; the drift check compares two of them)."""
    values = np.clip(np.rint(pd.to_numeric(scores, errors="coerce").dropna().to_numpy()), 0, 100).astype(int)
    return [int(c) for c in np.bincount(values, minlength=101)]


def scores_from_counts(counts: Sequence[int]) -> pd.DataFrame | None:
    """The `score` column that `score_counts` came from (None for no scores)."""
    if not counts or sum(counts) == 0:
        return None
    return pd.DataFrame({"score": np.repeat(np.arange(len(counts), dtype=float), counts)})
