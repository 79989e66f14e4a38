"""Pure, vectorised coercion of lead columns into the plain dtypes the expectations run on.

Leads arrive with whatever the warehouse or a connector produced: pyarrow `str` columns, object
columns mixing str / int / None / NaN, epoch-ms floats or datetime64 timestamps, and in the
worst case lists, dicts or bytes. Each helper returns the column in one well-defined dtype plus a
boolean mask of values whose *type* is wrong (they become missing in the returned column, so only
the "value_type" expectation reports them, not the range or length checks as well).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from numbers import Number
from typing import Any

import numpy as np
import pandas as pd

STRING_DTYPE = "str"  # pandas 3 default string dtype (pyarrow-backed when pyarrow is installed)


@dataclass(frozen=True)
class Coerced:
    """A coerced column and the rows whose original value had the wrong type."""

    values: pd.Series
    type_error: np.ndarray  # bool, one per row


def _no_errors(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


def _is_missing_scalar(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and value != value  # NaN


def text(series: pd.Series) -> Coerced:
    """Text as the `str` dtype, blank (empty or whitespace-only) values as missing.

    Numbers and booleans are accepted as their text (CRMs return numbers-as-strings and the
    reverse); any other object (list, dict, bytes, ...) is a type error.
    """
    n = len(series)
    if isinstance(series.dtype, pd.StringDtype):
        values = series
        errors = _no_errors(n)
    else:
        kind = pd.api.types.infer_dtype(series, skipna=True)
        if kind in ("string", "empty"):
            values = series.astype(STRING_DTYPE)
            errors = _no_errors(n)
        else:
            values, errors = _text_slow(series)
    # `.str.strip()` keeps NA as NA; blank -> missing so "required" sees it.
    blank = values.str.strip().str.len().eq(0).fillna(False).to_numpy(dtype=bool)
    if blank.any():
        values = values.mask(blank)
    return Coerced(values.reset_index(drop=True), errors)


def _text_slow(series: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Element-wise path for object columns mixing types (rare: malformed input only)."""
    out: list[str | None] = []
    errors = np.zeros(len(series), dtype=bool)
    for i, value in enumerate(series.tolist()):
        if _is_missing_scalar(value):
            out.append(None)
        elif isinstance(value, str):
            out.append(value)
        elif isinstance(value, (bool, np.bool_)):
            out.append("true" if value else "false")
        elif isinstance(value, (Number, Decimal)) and not isinstance(value, complex):
            out.append(str(value))
        else:
            errors[i] = True
            out.append(None)
    return pd.Series(out, dtype=STRING_DTYPE), errors


def number(series: pd.Series) -> Coerced:
    """Numbers as float64 (NaN when missing); numeric strings are parsed, anything else
    (words, booleans, containers) is a type error. +/-inf is kept for the range check."""
    n = len(series)
    if pd.api.types.is_bool_dtype(series.dtype):
        present = series.notna().to_numpy(dtype=bool)
        return Coerced(pd.Series(np.full(n, np.nan)), present)
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        return Coerced(values.reset_index(drop=True), _no_errors(n))
    raw = series.reset_index(drop=True)
    kind = pd.api.types.infer_dtype(raw, skipna=True)
    if kind == "empty":
        return Coerced(pd.Series(np.full(n, np.nan)), _no_errors(n))
    if kind in _NUMERIC_KINDS:
        return Coerced(pd.Series(pd.to_numeric(raw, errors="coerce"), dtype="float64"), _no_errors(n))
    if kind == "string":
        present = raw.notna().to_numpy(dtype=bool)
        values = pd.Series(pd.to_numeric(raw.astype(STRING_DTYPE).str.strip(), errors="coerce"),
                           dtype="float64")
        return Coerced(values, present & values.isna().to_numpy())
    missing = raw.map(_is_missing_scalar).to_numpy(dtype=bool)
    candidates = raw.where(~missing & raw.map(_is_number_like).to_numpy(dtype=bool))
    values = pd.to_numeric(candidates.astype(object).map(_strip_text), errors="coerce")
    values = pd.Series(np.asarray(values, dtype="float64"))
    errors = ~missing & values.isna().to_numpy()
    return Coerced(values, errors)


_NUMERIC_KINDS = frozenset({"floating", "integer", "mixed-integer-float", "decimal"})


def _is_number_like(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    return isinstance(value, (str, Number, Decimal)) and not isinstance(value, complex)


def _strip_text(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def timestamp_ms(series: pd.Series) -> Coerced:
    """UTC timestamps as float64 epoch milliseconds (NaN when missing).

    Accepts epoch-ms numbers (the warehouse form), datetime64 (naive means UTC), datetime
    objects, numeric strings (epoch ms) and ISO-8601 text. Anything else is a type error.
    """
    n = len(series)
    dtype = series.dtype
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return Coerced(_datetimes_to_ms(series), _no_errors(n))
    if pd.api.types.is_bool_dtype(dtype):
        return Coerced(pd.Series(np.full(n, np.nan)), series.notna().to_numpy(dtype=bool))
    if pd.api.types.is_numeric_dtype(dtype):
        return Coerced(pd.to_numeric(series, errors="coerce").astype("float64")
                       .reset_index(drop=True), _no_errors(n))
    raw = series.reset_index(drop=True).astype(object)
    kind = pd.api.types.infer_dtype(raw, skipna=True)
    if kind == "empty":
        return Coerced(pd.Series(np.full(n, np.nan)), _no_errors(n))
    if kind in _NUMERIC_KINDS:
        return number(raw)
    if kind in ("datetime", "datetime64", "date"):
        parsed = pd.to_datetime(raw, utc=True, errors="coerce")
        values = _datetimes_to_ms(parsed)
        return Coerced(values, raw.notna().to_numpy(dtype=bool) & values.isna().to_numpy())
    if kind == "string":
        texts = raw.astype(STRING_DTYPE).str.strip()
        values = pd.Series(pd.to_numeric(texts, errors="coerce"), dtype="float64")
        rest = texts.notna().to_numpy(dtype=bool) & values.isna().to_numpy()
        if rest.any():
            parsed = pd.to_datetime(texts[rest].astype(object), utc=True, errors="coerce",
                                    format="ISO8601")
            values[rest] = _datetimes_to_ms(parsed).to_numpy()
        return Coerced(values, texts.notna().to_numpy(dtype=bool) & values.isna().to_numpy())
    missing = raw.map(_is_missing_scalar).to_numpy(dtype=bool)
    as_number = number(raw.where(raw.map(_is_number_like).to_numpy(dtype=bool)))
    values = as_number.values.copy()
    rest = ~missing & values.isna().to_numpy()
    if rest.any():
        texts = raw[rest].map(lambda v: v.strip() if isinstance(v, str) else v)
        parseable = texts.map(lambda v: isinstance(v, (str, pd.Timestamp)) or hasattr(v, "isoformat"))
        parsed = pd.to_datetime(texts.where(parseable), utc=True, errors="coerce", format="ISO8601")
        values.loc[rest] = _datetimes_to_ms(parsed).to_numpy()
    errors = ~missing & values.isna().to_numpy()
    return Coerced(values, errors)


def _datetimes_to_ms(series: pd.Series) -> pd.Series:
    values = pd.Series(series).reset_index(drop=True)
    tz = getattr(values.dt, "tz", None)
    values = values.dt.tz_localize("UTC") if tz is None else values.dt.tz_convert("UTC")
    # Integer microseconds (any input unit fits) avoid float rounding before the division.
    micros = values.dt.as_unit("us").array.asi8
    out = micros / 1000.0
    out[values.isna().to_numpy()] = np.nan
    return pd.Series(out)


def boolean(series: pd.Series) -> Coerced:
    """Flags: True/False/0/1 (and their text forms) are fine; other values are type errors.
    Only the type matters to the gate, so the coerced values are returned as given."""
    n = len(series)
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        values = pd.to_numeric(series, errors="coerce")
        ok = values.isna() | values.isin([0, 1])
        return Coerced(series.reset_index(drop=True), ~ok.to_numpy(dtype=bool))
    kind = pd.api.types.infer_dtype(series, skipna=True)
    if kind in ("empty", "boolean"):
        return Coerced(series.reset_index(drop=True), _no_errors(n))
    accepted = {True, False, 0, 1, "true", "false", "0", "1", "yes", "no"}

    def bad(value: Any) -> bool:
        if _is_missing_scalar(value):
            return False
        if isinstance(value, str):
            return value.strip().lower() not in accepted
        try:
            return value not in accepted
        except TypeError:  # unhashable (list, dict)
            return True

    raw = series.reset_index(drop=True)
    return Coerced(raw, raw.astype(object).map(bad).to_numpy(dtype=bool) if n else _no_errors(0))
