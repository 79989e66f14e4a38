"""Column access for the engine: each lead column as numpy arrays, text as codes + distinct values.

Text columns are factorised once (``codes`` per row, ``uniques`` per distinct value) so that text
rules — regexes, word counts, list membership — run on the few thousand distinct values instead
of a million rows, and map back with one array lookup. Missing columns read as all-missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from threading import Lock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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

    @cached_property
    def index(self) -> np.ndarray:
        """Codes with missing (-1) moved to ``len(uniques)``, as intp: non-negative, for `np.take`.

        intp because `np.take(..., out=...)` with int32 indices casts them on every call (about
        4x slower per take, and a text column is taken from once per rule).
        """
        codes = self.codes.astype(np.intp)
        return np.where(codes < 0, np.intp(len(self.uniques)), codes)

    def relabel(self, labels: list[str]) -> TextColumn:
        """The same rows under other names per distinct value (codes and index shared)."""
        if len(labels) != len(self.uniques):
            raise ValueError("relabel needs one label per distinct value")
        column = TextColumn(self.codes, labels)
        if "index" in self.__dict__:
            column.__dict__["index"] = self.__dict__["index"]
        return column

    def lookup(self, per_unique: np.ndarray, missing_value: object) -> np.ndarray:
        """Map a per-distinct-value array to rows; rows with code -1 get `missing_value`."""
        lut = np.empty(len(per_unique) + 1, dtype=per_unique.dtype)
        lut[:-1] = per_unique
        lut[-1] = missing_value  # missing rows index the last element
        return np.take(lut, self.index)


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
        # Arrow's hash kernel straight on the string buffers: same first-seen order and
        # null -> -1 as pd.factorize, without pandas' extra passes (and it releases the GIL).
        # Nulls are encoded as a dictionary entry (no null indices: zero-copy to numpy), then
        # moved to -1 (codes) / len(uniques) (index) with one small lookup table each.
        encoded = pc.dictionary_encode(data, null_encoding="encode")
        raw = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)
        dictionary = encoded.dictionary
        if dictionary.null_count == 0:
            col = TextColumn(raw, dictionary.to_pylist())
            col.__dict__["index"] = raw.astype(np.intp)  # no missing rows: already non-negative
            return col
        values = dictionary.to_pylist()
        null_at = values.index(None)
        uniques = values[:null_at] + values[null_at + 1:]
        # Entries after the null move down by one; the null itself becomes -1 (codes) and
        # len(uniques) (index). Arithmetic on the codes: a take with int32 indices is slower.
        is_null = raw == null_at
        codes = raw - (raw > null_at)
        codes[is_null] = -1
        index = codes.astype(np.intp)
        index[is_null] = len(uniques)
        col = TextColumn(codes, uniques)
        col.__dict__["index"] = index
        return col
    if isinstance(series.dtype, pd.CategoricalDtype):
        # Already factorised: reuse the codes, no hashing of a million strings.
        codes = series.cat.codes.to_numpy().astype(np.int32, copy=False)
        # Iterating arrow-backed categories element by element is slow; go through numpy.
        uniques = [_as_text(v) for v in series.cat.categories.to_numpy(dtype=object).tolist()]
        return TextColumn(codes, uniques)
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    # Iterating an Index of arrow strings is slow element by element; go through numpy.
    values = uniques.to_numpy(dtype=object).tolist()
    return TextColumn(codes.astype(np.int32, copy=False), [_as_text(v) for v in values])


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else str(value)


_POOL_LOCK = Lock()
_POOL: ThreadPoolExecutor | None = None
PREFETCH_MIN_ROWS = 50_000  # below this, threads cost more than they save


def prefetch_threads() -> int:
    """Worker threads that factorise text columns ahead of use (LEADFLOW_FACTORIZE_THREADS).

    Off (0) by default: on the 2-vCPU runners, busy with other work, a worker thread made
    scoring slower in wall and CPU time (measured 1.7 s vs 1.3 s for 1M leads); enable it on
    idle multi-core machines.
    """
    try:
        return max(0, int(os.environ.get("LEADFLOW_FACTORIZE_THREADS", "0")))
    except ValueError:
        return 0


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
        self._pending: dict[str, Future[TextColumn]] = {}
        self._derived: dict[str, Callable[[], TextColumn]] = {}
        self._num: dict[str, np.ndarray] = {}
        self._ts: dict[str, np.ndarray] = {}
        self._bool: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def has(self, name: str) -> bool:
        return name in self._leads.columns

    def prefetch_text(self, names: list[str]) -> None:
        """Start factorising Arrow-backed text columns in worker threads (in the given order).

        Arrow's hash kernel releases the GIL, so the columns are factorised while the engine
        works on the others; `text` waits for a pending column. Small frames are left alone.
        """
        workers = prefetch_threads()
        if self.n < PREFETCH_MIN_ROWS or workers == 0:
            return
        pool = _pool(workers)
        for name in names:
            if name in self._text or name in self._pending or not self.has(name):
                continue
            if _arrow_strings(self._leads[name]) is None:
                continue
            self._pending[name] = pool.submit(_factorize, self._leads[name])

    def text(self, name: str) -> TextColumn:
        """Codes and distinct values of a text column (all missing when absent)."""
        col = self._text.get(name)
        if col is None:
            pending = self._pending.pop(name, None)
            derive = self._derived.pop(name, None)
            if derive is not None:
                col = derive()
            elif pending is not None:
                col = pending.result()
            elif self.has(name):
                col = _factorize(self._leads[name])
            else:
                col = TextColumn(np.full(self.n, -1, dtype=np.int32), [])
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
