"""Pure text helpers shared by the conditions: normalisation, word counts, list tokens, regexes.

These define the model's text semantics (documented in docs/model.md): comparisons ignore case
and surrounding blanks, blank text counts as missing, words are whitespace-separated, and
`technologies` is a ";"-separated list.
"""

from __future__ import annotations

import re
from functools import lru_cache


def is_blank(value: str | None) -> bool:
    """True for None or text that is empty after stripping blanks."""
    return value is None or not value.strip()


def normalize(value: str) -> str:
    """Comparison form of a text value: stripped and case-folded."""
    return value.strip().casefold()


def word_count(value: str) -> int:
    """Number of whitespace-separated words."""
    return len(value.split())


def list_tokens(value: str) -> frozenset[str]:
    """Normalised items of a ";"-separated list ("Salesforce; dbt" -> {"salesforce", "dbt"})."""
    return frozenset(normalize(item) for item in value.split(";") if item.strip())


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """A case-insensitive compiled regex (cached: the same patterns recur across rules)."""
    return re.compile(pattern, re.IGNORECASE)


def matches_any(value: str, patterns: tuple[str, ...]) -> bool:
    """True when any pattern is found anywhere in `value`."""
    return any(compile_pattern(p).search(value) is not None for p in patterns)
