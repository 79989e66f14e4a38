"""Shared helpers for validating configuration files with pydantic: error messages that name
the bad key, and the column-map check every CRM mapping needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)


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


def validate_document(model: type[T], data: Any, source: str, error: type[Exception]) -> T:
    """Validate a loaded YAML/JSON document; `error` names `source` and every bad key."""
    if not isinstance(data, dict):
        raise error(f"{source}: expected a mapping at the top level")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise error(f"{source} is invalid:\n  " + "\n  ".join(problems(exc))) from None


def load_yaml_document(path: Path, what: str, error: type[Exception]) -> Any:
    """Read and parse a YAML file, turning I/O and syntax problems into `error`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{path} is not valid YAML: {exc}") from None
