"""Column access for the engine: each lead column as numpy arrays, text as codes + distinct values.

Text columns are factorised once (``codes`` per row, ``uniques`` per distinct value) so that text
rules — regexes, word counts, list membership — run on the few thousand distinct values instead
of a million rows, and map back with one array lookup. Missing columns read as all-missing.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from threading import Lock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadflow.env import leadflow_env
from leadflow.qualify.text import is_blank, list_tokens, normalize, word_count

NAT_NS = np.iinfo(np.int64).min  # how NaT looks as int64 nanoseconds


@dataclass(eq=False)
class TextColumn:
    """A factorised text column: ``index[i]`` is the row's slot among the distinct values.

    There are ``len(uniques) + 1`` slots: the distinct values in order, with one slot for
    "missing" inserted at ``missing_at`` (default: last). Arrow's hash kernel puts nulls where it
    first sees one, and keeping that position saves a pass over every row. The index is intp
    and never negative, so a per-slot lookup table (`lut`) maps back to rows with one `np.take`
    (intp because `take` converts narrower indices on every call, about 4x slower, and a column
    is taken from once per rule). Per-distinct-value facts (normalised form, blankness, word
    counts, list tokens) are computed once on first use and shared by every rule.
    """

    index: np.ndarray  # intp slot per row
    uniques: list[str]
    missing_at: int | None = None  # slot of missing rows; None: len(uniques)
    _cache: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_codes(cls, codes: np.ndarray, uniques: list[str]) -> TextColumn:
        """From pandas-style codes (-1 for missing)."""
        index = codes.astype(np.intp)
        index[codes < 0] = len(uniques)
        return cls(index, uniques)

    @property
    def missing_slot(self) -> int:
        return len(self.uniques) if self.missing_at is None else self.missing_at

    def lut(self, per_unique: np.ndarray, missing_value: object) -> np.ndarray:
        """Per-slot table: `per_unique` with `missing_value` at the missing slot."""
        m = self.missing_slot
        table = np.empty(len(per_unique) + 1, dtype=per_unique.dtype)
        table[:m] = per_unique[:m]
        table[m] = missing_value
        table[m + 1:] = per_unique[m:]
        return table

    def lookup(self, per_unique: np.ndarray, missing_value: object) -> np.ndarray:
        """Map a per-distinct-value array to rows; missing rows get `missing_value`."""
        return np.take(self.lut(per_unique, missing_value), self.index)

    @cached_property
    def slot_values(self) -> np.ndarray:
        """Object array of the slots: the distinct values, None at the missing slot."""
        values = np.empty(len(self.uniques), dtype=object)
        values[:] = self.uniques
        return self.lut(values, None)

    @cached_property
    def codes(self) -> np.ndarray:
        """pandas-style codes: int32, -1 for missing."""
        m = self.missing_slot
        codes = self.index.astype(np.int32)
        if m < len(self.uniques):
            codes -= codes > m
        codes -= (self.index == m) * np.int32(m + 1)  # the missing slot m -> -1
        return codes

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
        """The column as an object array of str / None (cheap: a take from the slots)."""
        return np.take(self.slot_values, self.index)

    def relabel(self, labels: list[str]) -> TextColumn:
        """The same rows under other names per distinct value (the index is shared)."""
        if len(labels) != len(self.uniques):
            raise ValueError("relabel needs one label per distinct value")
        return TextColumn(self.index, labels, self.missing_at)


def _arrow_strings(series: pd.Series) -> pa.Array | None:
    """The column as one Arrow string array when it is Arrow-backed text (zero copy), else None."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype):
        if dtype.storage != "pyarrow":
            return None
    elif not (isinstance(dtype, pd.ArrowDtype) and (
        pa.types.is_string(dtype.pyarrow_dtype) or pa.types.is_large_string(dtype.pyarrow_dtype)
    )):
        return None
    try:
        data = pa.array(series.array)  # __arrow_array__: no copy of the strings
    except (TypeError, ValueError, pa.ArrowException):  # pragma: no cover - defensive
        return None
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks() if data.num_chunks != 1 else data.chunk(0)
    if not (pa.types.is_string(data.type) or pa.types.is_large_string(data.type)):
        return None
    return data


def _factorize(series: pd.Series) -> TextColumn:
    data = _arrow_strings(series)
    if data is not None:
        # Arrow's hash kernel straight on the string buffers: same first-seen order of the
        # distinct values as pd.factorize, without pandas' extra passes. Nulls are encoded as a
        # dictionary entry, which becomes the missing slot: no null indices to fill.
        encoded = pc.dictionary_encode(data, null_encoding="encode")
        values = encoded.dictionary.to_pylist()
        index = encoded.indices.to_numpy().astype(np.intp)
        if encoded.dictionary.null_count == 0:
            return TextColumn(index, values)
        null_at = values.index(None)
        return TextColumn(index, values[:null_at] + values[null_at + 1:], null_at)
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Already factorised: reuse the codes, no hashing of a million strings.
        codes = series.cat.codes.to_numpy()
        # Iterating arrow-backed categories element by element is slow; go through numpy.
        uniques = [_as_text(v) for v in series.cat.categories.to_numpy(dtype=object).tolist()]
        return TextColumn.from_codes(codes, uniques)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    # Iterating an Index of arrow strings is slow element by element; go through numpy.
    values = uniques.to_numpy(dtype=object).tolist()
    return TextColumn.from_codes(codes, [_as_text(v) for v in values])


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


_POOL_LOCK = Lock()
_POOL: ThreadPoolExecutor | None = None
PARALLEL_MIN_ROWS = 50_000  # below this, threads cost more than they save


def factorize_threads() -> int:
    """Threads that factorise the text columns up front (LEADFLOW_FACTORIZE_THREADS, default 0).

    Off by default: on the 2-vCPU runners two hashing threads each ran at about half speed
    (12 columns of 1M rows: 0.35-0.44 s wall and 0.6-0.8 s CPU in two threads against ~0.33 s
    in one), so nothing was gained. Worth trying on machines with idle physical cores.
    """
    return leadflow_env().factorize_threads


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers != workers:  # noqa: SLF001
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="leadflow-factorize")
        return _POOL


class LeadColumns:
    """Typed, cached views of a leads frame's columns (only the ones the model reads)."""

    def __init__(self, leads: pd.DataFrame) -> None:
        self._leads = leads
        self.n = len(leads)
        self._text: dict[str, TextColumn] = {}
        self._derived: dict[str, Callable[[], TextColumn]] = {}
        self._num: dict[str, np.ndarray] = {}
        self._ts: dict[str, np.ndarray] = {}
        self._bool: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def has(self, name: str) -> bool:
        return name in self._leads.columns

    def factorize_text(self, names: list[str]) -> None:
        """Factorise the Arrow-backed text columns among `names` now, in parallel threads.

        Only this phase runs threads (all native code): a worker hashing beside the engine's
        numpy calls was measured to double the CPU time. Small frames, other dtypes and fewer
        than two threads: columns are factorised on first use.
        """
        workers = factorize_threads()
        if self.n < PARALLEL_MIN_ROWS or workers < 2:
            return
        todo = [
            name for name in dict.fromkeys(names)
            if name not in self._text and self.has(name) and _arrow_strings(self._leads[name]) is not None
        ]
        if len(todo) < 2:
            return
        columns = _pool(workers).map(_factorize, (self._leads[name] for name in todo))
        self._text.update(zip(todo, columns))

    def text(self, name: str) -> TextColumn:
        """Codes and distinct values of a text column (all missing when absent)."""
        col = self._text.get(name)
        if col is None:
            derive = self._derived.pop(name, None)
            if derive is not None:
                col = derive()
            elif self.has(name):
                col = _factorize(self._leads[name])
            else:
                col = TextColumn(np.zeros(self.n, dtype=np.intp), [])
            self._text[name] = col
        return col

    def set_text(self, name: str, column: TextColumn) -> None:
        """Register a derived text column (persona, seniority, authority)."""
        self._text[name] = column

    def derive_text(self, name: str, factory: Callable[[], TextColumn]) -> None:
        """Register a derived text column computed on first use (by `factory`)."""
        self._text.pop(name, None)
        self._derived[name] = factory

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
