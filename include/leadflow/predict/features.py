"""Turning mapped columns into model inputs (pure pandas/numpy; no I/O).

`FeatureEncoder` is fitted on training rows and then applied unchanged to any later table:
- numbers: coerced to float (text that is not a number counts as missing), optionally log1p;
- derived numbers: ratios, products and "has a value" flags (see `mapping.DerivedFeature`);
- categories: trimmed, optionally case-folded; the mapping's missing tokens become a MISSING
  level; values seen fewer than `min_category_count` times in training, and values never seen
  at all, become an OTHER level. So unknown categories and missing numbers never fail scoring.

Two encodings are produced from the same cleaned values:
- `tabular()`: one float column per feature with categories as integer codes, for
  HistGradientBoosting's native categorical support (missing numbers stay NaN);
- `design()`: a standardised dense matrix for the linear model (median-imputed numbers with a
  missing indicator, a cubic spline basis per number, one-hot categories), together with the
  source feature of every design column so that linear contributions can be summed per feature.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.preprocessing import SplineTransformer

from leadflow.predict.mapping import Mapping, MappingError

log = logging.getLogger(__name__)

MISSING = "(missing)"
OTHER = "(other)"
# HistGradientBoosting accepts at most 255 categories per feature (one bin stays for NaN).
MAX_LEVELS = 250
_SPLINE_KNOTS = 5


def normalise_text(values: pd.Series, missing_values: list[str], case_insensitive: bool) -> pd.Series:
    """Trimmed (and case-folded) text with the mapping's missing tokens turned into NA."""
    text = values.astype("string").str.strip()
    if case_insensitive:
        text = text.str.casefold()
        tokens = {t.strip().casefold() for t in missing_values}
    else:
        tokens = {t.strip() for t in missing_values}
    return text.mask(text.isin(tokens) | text.isna())


def to_number(values: pd.Series, missing_values: list[str]) -> pd.Series:
    """Floats; missing tokens, blanks and text that is not a number become NaN."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("float64")
    text = normalise_text(values, missing_values, case_insensitive=True)
    return pd.to_numeric(text, errors="coerce").astype("float64")


def has_value(values: pd.Series, missing_values: list[str]) -> pd.Series:
    """1.0 where the cell holds something other than a missing token, else 0.0."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.notna().astype("float64")
    return normalise_text(values, missing_values, case_insensitive=True).notna().astype("float64")


@dataclass
class NumberSpec:
    """What training taught about one numeric feature."""

    name: str
    log: bool
    median: float
    had_missing: bool
    spline: SplineTransformer | None = None
    # Never observed in training (e.g. a CRM that does not fill the field): carries no
    # information, and HistGradientBoosting cannot bin an all-NaN column.
    never_observed: bool = False


@dataclass
class CategorySpec:
    """The kept levels of one categorical feature, in code order (MISSING and OTHER last)."""

    name: str
    levels: list[str]

    def codes(self, keys: pd.Series) -> np.ndarray:
        index = {level: i for i, level in enumerate(self.levels)}
        other = index[OTHER]
        filled = keys.fillna(MISSING)
        return filled.map(index).fillna(other).to_numpy(dtype="float64")


@dataclass
class FeatureEncoder:
    """Cleans a mapped table and encodes it for the learners; see the module docstring."""

    mapping: Mapping
    numbers: list[NumberSpec] = field(default_factory=list)
    categories: list[CategorySpec] = field(default_factory=list)
    design_names: list[str] = field(default_factory=list)
    design_groups: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    design_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    design_scale: np.ndarray = field(default_factory=lambda: np.ones(0))

    # --- cleaning -------------------------------------------------------------------------
    def numeric_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Raw numbers and derived features as floats, NaN where missing (no log, no impute)."""
        m = self.mapping
        out = pd.DataFrame(index=frame.index)
        for name in m.numbers:
            out[name] = to_number(frame[name], m.missing_values)
        for d in m.derived:
            if d.op == "present":
                out[d.name] = has_value(frame[d.columns[0]], m.missing_values)
                continue
            a, b = out[d.columns[0]], out[d.columns[1]]
            if d.op == "product":
                out[d.name] = a * b
            else:  # ratio: undefined when nothing to divide by
                out[d.name] = a / b.where(b != 0)
        return out

    def category_keys(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Normalised category text per categorical feature, NA where missing."""
        m = self.mapping
        return pd.DataFrame(
            {c: normalise_text(frame[c], m.missing_values, m.case_insensitive) for c in m.categories},
            index=frame.index,
        )

    # --- fitting --------------------------------------------------------------------------
    def fit(self, frame: pd.DataFrame) -> FeatureEncoder:
        """Learn medians, log choices, kept levels, spline knots and design scaling."""
        self.mapping.check_columns(frame.columns, where="training table", with_id=False)
        if frame.empty:
            raise MappingError("training table has no rows")
        nums = self.numeric_frame(frame)
        self.numbers = []
        for name in nums.columns:
            col = nums[name]
            observed = col.dropna()
            # log1p only makes sense for non-negative, non-binary quantities.
            use_log = bool(
                self.mapping.log_numbers and len(observed) and observed.min() >= 0
                and observed.nunique() > 2
            )
            values = np.log1p(observed) if use_log else observed
            median = float(values.median()) if len(values) else 0.0
            self.numbers.append(
                NumberSpec(name, use_log, median, bool(col.isna().any()), None, observed.empty)
            )
        keys = self.category_keys(frame)
        self.categories = []
        for name in keys.columns:
            counts = keys[name].value_counts()
            kept = counts[counts >= self.mapping.min_category_count].index.tolist()
            kept = [str(v) for v in kept[: MAX_LEVELS - 2] if v not in (MISSING, OTHER)]
            self.categories.append(CategorySpec(name, sorted(kept) + [MISSING, OTHER]))
        self._fit_design(nums, keys)
        log.debug("feature encoder fitted: %d numbers, %d categories, %d design columns",
                  len(self.numbers), len(self.categories), len(self.design_names))
        return self

    def _transformed_numbers(self, nums: pd.DataFrame) -> dict[str, np.ndarray]:
        out = {}
        for spec in self.numbers:
            values = nums[spec.name].to_numpy(dtype="float64")
            if spec.log:
                values = np.log1p(np.clip(values, 0, None))
            out[spec.name] = values
        return out

    def _raw_design(self, nums: pd.DataFrame, keys: pd.DataFrame) -> tuple[np.ndarray, list[str], list[int]]:
        blocks: list[np.ndarray] = []
        names: list[str] = []
        groups: list[int] = []
        transformed = self._transformed_numbers(nums)
        for g, spec in enumerate(self.numbers):
            values = transformed[spec.name]
            missing = np.isnan(values)
            filled = np.where(missing, spec.median, values)
            blocks.append(filled[:, None])
            names.append(spec.name)
            groups.append(g)
            if spec.had_missing:
                blocks.append(missing.astype("float64")[:, None])
                names.append(f"{spec.name} is missing")
                groups.append(g)
            if spec.spline is not None:
                basis = spec.spline.transform(filled[:, None])
                blocks.append(basis)
                names += [f"{spec.name} spline {i}" for i in range(basis.shape[1])]
                groups += [g] * basis.shape[1]
        offset = len(self.numbers)
        for j, spec in enumerate(self.categories):
            codes = spec.codes(keys[spec.name]).astype(int)
            onehot = np.zeros((len(codes), len(spec.levels)))
            onehot[np.arange(len(codes)), codes] = 1.0
            blocks.append(onehot)
            names += [f"{spec.name} = {level}" for level in spec.levels]
            groups += [offset + j] * len(spec.levels)
        matrix = np.hstack(blocks) if blocks else np.zeros((len(nums), 0))
        return matrix, names, groups

    def _fit_design(self, nums: pd.DataFrame, keys: pd.DataFrame) -> None:
        transformed = self._transformed_numbers(nums)
        for spec in self.numbers:
            values = transformed[spec.name]
            filled = np.where(np.isnan(values), spec.median, values)
            spec.spline = None
            if len(np.unique(filled)) > _SPLINE_KNOTS:
                # Uniform knots over the (log) range: robust to heavy ties at zero, and
                # "constant" extrapolation keeps unseen extremes at the edge value.
                spec.spline = SplineTransformer(
                    n_knots=_SPLINE_KNOTS, degree=3, knots="uniform", extrapolation="constant"
                ).fit(filled[:, None])
        matrix, names, groups = self._raw_design(nums, keys)
        self.design_names = names
        self.design_groups = np.asarray(groups, dtype=int)
        self.design_mean = matrix.mean(axis=0)
        scale = matrix.std(axis=0)
        self.design_scale = np.where(scale > 1e-12, scale, 1.0)

    # --- encodings ------------------------------------------------------------------------
    @property
    def feature_names(self) -> list[str]:
        """Source features in encoder order: numbers (incl. derived), then categories."""
        return [s.name for s in self.numbers] + [s.name for s in self.categories]

    @property
    def categorical_mask(self) -> np.ndarray:
        """Which `tabular()` columns are categorical (for HistGradientBoosting)."""
        return np.array([False] * len(self.numbers) + [True] * len(self.categories))

    def _check(self, frame: pd.DataFrame) -> None:
        if not self.numbers and not self.categories:
            raise RuntimeError("FeatureEncoder used before fit()")
        self.mapping.check_columns(frame.columns, where="table to score", with_id=False)

    def tabular(self, frame: pd.DataFrame) -> np.ndarray:
        """Float matrix: numbers (NaN kept) then category codes; columns = feature_names."""
        self._check(frame)
        nums = self.numeric_frame(frame)
        transformed = self._transformed_numbers(nums)
        keys = self.category_keys(frame)
        cols = [np.zeros(len(frame)) if s.never_observed else transformed[s.name] for s in self.numbers]
        cols += [s.codes(keys[s.name]) for s in self.categories]
        return np.column_stack(cols) if cols else np.zeros((len(frame), 0))

    def design(self, frame: pd.DataFrame) -> np.ndarray:
        """Standardised matrix for the linear model; columns = design_names."""
        self._check(frame)
        matrix, _, _ = self._raw_design(self.numeric_frame(frame), self.category_keys(frame))
        return (matrix - self.design_mean) / self.design_scale
