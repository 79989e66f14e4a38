"""Which incoming values the warehouse can store, checked before a page is landed.

A CRM hands over text and numbers the databases refuse: PostgreSQL rejects a NUL character in
text, neither database driver can encode a lone UTF-16 surrogate (half an emoji, "\\ud83d") as
UTF-8, and a 20-digit "timestamp" overflows BIGINT. One such value used to make the whole page's
upsert raise, so the watermark never moved and every later run failed at the same page. The
check here is the same for every CRM and both databases: the offending field is cleared, the
problem is reported, and the caller quarantines the lead until the CRM's value is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import pandas as pd

# The datetime64[ns] range (years 1677-2262): wider than any real CRM date, and every pandas
# and database conversion the pipeline makes can hold it (BIGINT alone would let a 19-digit
# "timestamp" through to fail later, in the frames of the qualify step).
TS_MIN_MS = -(-pd.Timestamp.min.value // 1_000_000)
TS_MAX_MS = pd.Timestamp.max.value // 1_000_000

# Problem codes: short, stable, usable as a quarantine expectation name.
NUL_IN_TEXT = "input_nul_in_text"
INVALID_UNICODE = "input_invalid_unicode"
TIMESTAMP_OUT_OF_RANGE = "input_timestamp_out_of_range"
PROBLEM_CODES = frozenset({NUL_IN_TEXT, INVALID_UNICODE, TIMESTAMP_OUT_OF_RANGE})

_DESCRIPTIONS = {
    NUL_IN_TEXT: "text contains a NUL character (0x00), which the warehouse cannot store",
    INVALID_UNICODE: "text is not valid Unicode (a lone surrogate, e.g. half an emoji)",
    TIMESTAMP_OUT_OF_RANGE: (f"timestamp outside the representable range ({TS_MIN_MS} to {TS_MAX_MS} "
                             "epoch ms, years 1677-2262)"),
}


@dataclass(frozen=True)
class Unstorable:
    """A field of one row that cannot be stored; `code` is one of PROBLEM_CODES."""

    column: str
    code: str

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.code]


def text_problem(value: str) -> str | None:
    """The problem code of a text value the warehouse cannot store, or None."""
    if "\x00" in value:
        return NUL_IN_TEXT
    if not value.isascii():  # the encode is only needed for non-ASCII text
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return INVALID_UNICODE
    return None


def value_problem(kind: str, value: Any) -> str | None:
    """The problem code of `value` for a schema column of `kind` ("str", "ts", ...), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        return text_problem(value)
    if kind == "ts" and isinstance(value, int) and not isinstance(value, bool):
        return None if TS_MIN_MS <= value <= TS_MAX_MS else TIMESTAMP_OUT_OF_RANGE
    return None


def clear_unstorable(row: dict[str, Any], kinds: Mapping[str, str]) -> list[Unstorable]:
    """Set every field of `row` (of a column in `kinds`) that cannot be stored to None, and
    return what was wrong with each. The values themselves are not kept: they may be personal
    data."""
    # One check of all the row's text at once: almost every row is clean, and per-value checks
    # cost more than the upsert of a large pull.
    text_ok = text_problem("".join(v for v in row.values() if type(v) is str)) is None
    found = []
    for column, kind in kinds.items():
        if text_ok and kind != "ts":
            continue
        code = value_problem(kind, row.get(column))
        if code is not None:
            row[column] = None
            found.append(Unstorable(column, code))
    return found


def storable_text(value: str | None) -> str | None:
    """`value` when the warehouse can store it, else None (for diagnostic copies of values)."""
    return None if value is None or text_problem(value) is not None else value
