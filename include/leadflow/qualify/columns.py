"""Column access for the engine: each lead column as numpy arrays, text as codes + distinct values.

Text columns are factorised once (``codes`` per row, ``uniques`` per distinct value) so that text
rules — regexes, word counts, list membership — run on the few thousand distinct values instead
of a million rows, and map back with one array lookup. Missing columns read as all-missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from leadflow.qualify.text import is_blank, list_tokens, normalize, word_count

NAT_NS = np.iinfo(np.int64).min  # how NaT looks as int64 nanoseconds


@dataclass(eq=False)
class TextColumn:
    """A factorised text column: ``codes[i]`` indexes ``uniques`` (-1 for missing).

    Per-distinct-value facts (normalised form, blankness, word counts, list tokens) are computed
    once on first use and shared by every rule that reads the column.
    """

    codes: np.ndarray  # int32, -1 for None/NaN
    uniques: list[str]
    _cache: dict = field(default_factory=dict, repr=False)

    @cached_property
    def normalized(self) -> list[str]:
        return [normalize(v) for v in self.uniques]

    @cached_property
    def blank(self) -> np.ndarray:
        return np.fromiter((is_blank(v) for v in self.uniques), dtype=bool, count=len(self.uniques))

    @cached_property
    def words(self) -> np.ndarray:
        return np.fromiter((word_count(v) for v in self.uniques), dtype=np.int64, count=len(self.uniques))

    @cached_property
    def tokens(self) -> list[frozenset[str]]:
        return [list_tokens(v) for v in self.uniques]

    def objects(self) -> np.ndarray:
        """The column as an object array of str / None (cheap: a take from the distinct values)."""
        values = np.empty(len(self.uniques) + 1, dtype=object)
        values[:-1] = self.uniques
        values[-1] = None
        return values[self.codes]

    def lookup(self, per_unique: np.ndarray, missing_value: object) -> np.ndarray:
        """Map a per-distinct-value array to rows; rows with code -1 get `missing_value`."""
        lut = np.empty(len(per_unique) + 1, dtype=per_unique.dtype)
        lut[:-1] = per_unique
        lut[-1] = missing_value  # code -1 indexes the last element
        return lut[self.codes]


def _factorize(series: pd.Series) -> TextColumn:
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Already factorised: reuse the codes, no hashing of a million strings.
        codes = series.cat.codes.to_numpy().astype(np.int32, copy=False)
        uniques = [_as_text(v) for v in series.cat.categories]
        return TextColumn(codes, uniques)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    # Iterating an Index of arrow strings is slow element by element; go through numpy.
    values = uniques.to_numpy(dtype=object).tolist()
    return TextColumn(codes.astype(np.int32, copy=False), [_as_text(v) for v in values])


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


class LeadColumns:
    """Typed, cached views of a leads frame's columns (only the ones the model reads)."""

    def __init__(self, leads: pd.DataFrame) -> None:
        self._leads = leads
        self.n = len(leads)
        self._text: dict[str, TextColumn] = {}
        self._num: dict[str, np.ndarray] = {}
        self._ts: dict[str, np.ndarray] = {}
        self._bool: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def has(self, name: str) -> bool:
        return name in self._leads.columns

    def text(self, name: str) -> TextColumn:
        """Codes and distinct values of a text column (all missing when absent)."""
        col = self._text.get(name)
        if col is None:
            if self.has(name):
                col = _factorize(self._leads[name])
            else:
                col = TextColumn(np.full(self.n, -1, dtype=np.int32), [])
            self._text[name] = col
        return col

    def set_text(self, name: str, column: TextColumn) -> None:
        """Register a derived text column (persona, seniority, authority)."""
        self._text[name] = column

    def number(self, name: str) -> np.ndarray:
        """float64 values, NaN when missing."""
        arr = self._num.get(name)
        if arr is None:
            if self.has(name):
                s = self._leads[name]
                if s.dtype == np.float64:
                    arr = s.to_numpy()
                else:
                    arr = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                arr = np.full(self.n, np.nan)
            self._num[name] = arr
        return arr

    def timestamp_ns(self, name: str) -> np.ndarray:
        """UTC epoch nanoseconds as int64, `NAT_NS` when missing."""
        arr = self._ts.get(name)
        if arr is None:
            if self.has(name):
                s = self._leads[name]
                if not isinstance(s.dtype, pd.DatetimeTZDtype) and s.dtype.kind != "M":
                    s = pd.to_datetime(s, utc=True, errors="coerce")
                # to_numpy on tz-aware data gives UTC wall times; datetime64[ns] fixes the unit.
                if isinstance(s.dtype, pd.DatetimeTZDtype):
                    s = s.dt.tz_convert("UTC").dt.tz_localize(None)
                arr = s.to_numpy(dtype="datetime64[ns]").view(np.int64)
            else:
                arr = np.full(self.n, NAT_NS, dtype=np.int64)
            self._ts[name] = arr
        return arr

    def boolean(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(is_true, is_missing) masks of a yes/no column."""
        pair = self._bool.get(name)
        if pair is None:
            if self.has(name):
                s = self._leads[name]
                if s.dtype == np.bool_:
                    pair = (s.to_numpy(), np.zeros(self.n, dtype=bool))
                elif isinstance(s.dtype, pd.BooleanDtype):
                    missing = s.isna().to_numpy()
                    pair = (s.fillna(False).to_numpy(dtype=bool), missing)
                else:
                    missing = s.isna().to_numpy()
                    values = s.to_numpy(dtype=object)
                    # Only a real True counts (True, np.True_); strings and numbers do not.
                    is_true = np.frompyfunc(lambda v: v is True or v is np.True_, 1, 1)(values)
                    pair = (is_true.astype(bool) & ~missing, missing)
            else:
                pair = (np.zeros(self.n, dtype=bool), np.ones(self.n, dtype=bool))
            self._bool[name] = pair
        return pair
