"""Vectorised evaluation of model conditions into boolean row masks.

Text operators run on each column's distinct values and map back through the codes; numbers,
timestamps and yes/no fields use numpy comparisons on whole arrays. A missing value fails
every operator except ``missing`` (see `Condition`).
"""

from __future__ import annotations

import re

import numpy as np

from leadflow.qualify.columns import NAT_NS, LeadColumns, TextColumn
from leadflow.qualify.config import Condition
from leadflow.qualify.fields import FIELD_KINDS
from leadflow.qualify.text import compile_pattern, matches_any, normalize

NS_PER_DAY = 86_400 * 1_000_000_000


def _combined_pattern(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation equivalent to "any of these patterns", or None when not safe to merge.

    Merging shifts group numbers (breaking backreferences) and moves inline flags away from the
    start, so such patterns are searched one by one instead.
    """
    if any(re.search(r"\\[1-9]|\(\?P=|\(\?[aiLmsux]+\)", p) for p in patterns):
        return None
    try:
        return compile_pattern("|".join(f"(?:{p})" for p in patterns))
    except re.error:
        return None


def _regex_per_unique(col: TextColumn, patterns: tuple[str, ...]) -> np.ndarray:
    merged = _combined_pattern(patterns)
    if merged is not None:
        found = (merged.search(v) is not None for v in col.uniques)
    else:
        found = (matches_any(v, patterns) for v in col.uniques)
    return np.fromiter(found, dtype=bool, count=len(col.uniques))


def text_per_unique(col: TextColumn, ops: dict[str, object]) -> tuple[np.ndarray, bool]:
    """(result per distinct value, result for missing rows) of text operators, ANDed."""
    blank = col.blank
    result = np.ones(len(col.uniques), dtype=bool)
    missing_result = True
    for op, arg in ops.items():
        if op == "missing":
            result &= blank if arg else ~blank
            missing_result &= bool(arg)
            continue
        missing_result = False  # a missing value fails every other operator
        if op == "in":
            test = np.fromiter((v in arg for v in col.normalized), dtype=bool, count=len(blank))  # type: ignore[operator]
        elif op == "matches":
            test = _regex_per_unique(col, arg)  # type: ignore[arg-type]
        elif op == "words_at_least":
            test = col.words >= arg
        elif op == "words_below":
            test = col.words < arg
        elif op == "contains_any":
            test = np.fromiter((not t.isdisjoint(arg) for t in col.tokens), dtype=bool, count=len(blank))  # type: ignore[arg-type]
        else:  # pragma: no cover - the config validator rejects other operators
            raise ValueError(f"operator {op!r} does not apply to text fields")
        result &= ~blank & test
    return result, missing_result


def _prepared_ops(cond: Condition) -> dict[str, object]:
    ops = cond.operators()
    if "in" in ops:
        ops["in"] = frozenset(normalize(v) for v in ops["in"])
    if "contains_any" in ops:
        ops["contains_any"] = frozenset(normalize(v) for v in ops["contains_any"])
    if "matches" in ops:
        ops["matches"] = tuple(ops["matches"])
    return ops


class ConditionEvaluator:
    """Turns conditions into boolean masks over the rows of one `LeadColumns`."""

    def __init__(self, columns: LeadColumns, now_ns: int) -> None:
        self.columns = columns
        self.now_ns = now_ns
        self.n = columns.n

    def mask(self, cond: Condition) -> np.ndarray:
        """Rows satisfying `cond` (all True when it tests nothing, e.g. a bare per-unit rule)."""
        result = np.ones(self.n, dtype=bool)
        if cond.field is not None:
            ops = _prepared_ops(cond)
            if ops:
                result = self._field_mask(cond.field, ops)
        if cond.all is not None:
            for child in cond.all:
                result &= self.mask(child)
        if cond.any is not None:
            either = np.zeros(self.n, dtype=bool)
            for child in cond.any:
                either |= self.mask(child)
            result &= either
        return result

    def _field_mask(self, field: str, ops: dict[str, object]) -> np.ndarray:
        kind = FIELD_KINDS[field]
        if kind in ("str", "list"):
            per_unique, missing_result = text_per_unique(self.columns.text(field), ops)
            return self.columns.text(field).lookup(per_unique, missing_result)
        if kind == "float":
            return self._number_mask(self.columns.number(field), ops)
        if kind == "ts":
            return self._timestamp_mask(self.columns.timestamp_ns(field), ops)
        if kind == "bool":
            return self._bool_mask(*self.columns.boolean(field), ops)
        raise ValueError(f"unknown field kind {kind!r} for {field!r}")  # pragma: no cover

    def _number_mask(self, values: np.ndarray, ops: dict[str, object]) -> np.ndarray:
        missing = np.isnan(values)
        out = np.ones(self.n, dtype=bool)
        for op, arg in ops.items():
            if op == "missing":
                out &= missing if arg else ~missing
            elif op == "at_least":
                out &= values >= arg  # NaN compares False
            elif op == "below":
                out &= values < arg
        return out

    def _timestamp_mask(self, ts: np.ndarray, ops: dict[str, object]) -> np.ndarray:
        missing = ts == NAT_NS
        out = np.ones(self.n, dtype=bool)
        age = self.now_ns - ts  # garbage where missing; masked below
        for op, arg in ops.items():
            if op == "missing":
                out &= missing if arg else ~missing
            elif op == "within_days":
                out &= ~missing & (age <= int(arg) * NS_PER_DAY)  # type: ignore[call-overload]
            elif op == "older_than_days":
                out &= ~missing & (age > int(arg) * NS_PER_DAY)  # type: ignore[call-overload]
        return out

    def _bool_mask(
        self, is_true: np.ndarray, missing: np.ndarray, ops: dict[str, object]
    ) -> np.ndarray:
        out = np.ones(self.n, dtype=bool)
        for op, arg in ops.items():
            if op == "missing":
                out &= missing if arg else ~missing
            elif op == "is":
                out &= is_true if arg else ~is_true  # missing counts as false
        return out
