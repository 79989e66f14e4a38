"""What both CRMs' field mappings share (`hubspot_mapping`, `salesforce_mapping`): the error a bad
mapping file raises, loading, the check of a CRM value -> canonical table, and its reverse
lookup."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping, Sequence, TypeVar

from pydantic import BaseModel

from leadflow.validation import ConfigError, load_yaml_model, validate_document

M = TypeVar("M", bound=BaseModel)


class MappingConfigError(ConfigError):
    """The mapping file is missing or invalid; the message names the file and the bad keys."""


def to_crm(table: Mapping[str, str], canonical: str) -> str | None:
    """The CRM value that maps to `canonical` in a CRM value -> canonical table (the first in file
    order), or None."""
    for value, canon in table.items():
        if canon == canonical:
            return value
    return None


def check_canonical(table: dict[str, Any], allowed: Collection[str], what: str, *, nullable: bool = False
                    ) -> dict[str, Any]:
    """A CRM value -> canonical `what` table whose values are all `allowed` (or null, when `nullable`)."""
    bad = {k: v for k, v in table.items() if not (nullable and v is None) and v not in allowed}
    if bad:
        raise ValueError(f"unknown canonical {what} {bad}; allowed: {sorted(allowed)}" + (" or null" if nullable else ""))
    return table


def parse_document(model: type[M], data: Any, source: str) -> M:
    """Validate an already-loaded mapping document."""
    return validate_document(model, data, source, MappingConfigError)


def load_document(model: type[M], path: str | Path | None, default: Path, label: str) -> M:
    """Load and validate a mapping YAML (`default` when `path` is None)."""
    return load_yaml_model(Path(path) if path is not None else default, model, label, MappingConfigError)


def check_owned(value: dict[str, Any], fields: Sequence[str], what: str, names: Sequence[str], noun: str, *,
                optional: bool = False) -> dict[str, Any]:
    """Every one of `fields` has an owned CRM field (or, when `optional`, none has), each its own
    (`names`: their CRM names as the CRM compares them; `noun`: what the CRM calls them)."""
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; allowed: {list(fields)}")
    missing = [f for f in fields if f not in value]
    if missing and (value or not optional):
        raise ValueError(f"missing {what} {missing}: every one needs a {noun}" + (" (or list none)" if optional else ""))
    dupes = sorted({n for n in names if list(names).count(n) > 1})
    if dupes:
        raise ValueError(f"{noun} name(s) {dupes} used by more than one {what.removesuffix('(s)')}")
    return value
