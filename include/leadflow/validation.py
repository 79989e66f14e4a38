"""Shared helpers for validating configuration files with pydantic: error messages that name
the bad key, and the column-map check every CRM mapping needs."""

from __future__ import annotations

import re
from typing import Mapping

from pydantic import ValidationError


def problems(exc: ValidationError) -> list[str]:
    """One `dotted.key: message` line per error."""
    return [f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()]


def check_column_map(
    value: dict[str, str],
    columns: Mapping[str, str],
    what: str,
    required: tuple[str, ...],
    name_pattern: re.Pattern[str],
    name_label: str,
) -> dict[str, str]:
    """A `canonical column -> CRM field` map: known columns only, required ones present, and
    field names the CRM accepts."""
    unknown = sorted(set(value) - set(columns))
    if unknown:
        raise ValueError(f"unknown {what} column(s) {unknown} (see leadflow.schema)")
    missing = [c for c in required if c not in value]
    if missing:
        raise ValueError(f"missing required column(s) {missing}")
    for column, name in value.items():
        if not isinstance(name, str) or not name_pattern.match(name):
            raise ValueError(f"{column}: {name!r} is not {name_label}")
    return value
