"""Loading and validating configuration with pydantic, with one error format for all of it.

Every configuration problem reads `<source>: <key path>: <what is wrong>`, several joined by
`; `: the source is a file path (or what was read: `environment`, a connection), the key path
is dotted with list indexes in brackets (`fit.groups[1].rules[0].field`). pydantic's wording is
kept except that "Value error, " is dropped and a misspelt or missing key says so plainly
(`unknown key`, `required key is missing`). A check on the whole document names its keys in
its own message, which is then shown as it is.

`load_yaml_model(path, Model, what, Error)` reads, parses and validates a YAML file;
`validate_document` validates an already-loaded document; both raise `Error.of(source,
problems)`, a `ConfigError`. `format_validation_error` formats a pydantic error for callers that
raise something else. Also here: the column-map check every CRM mapping needs, and
`check_known`, the unknown-names check of a validator.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

T = TypeVar("T", bound=BaseModel)
E = TypeVar("E", bound="ConfigError")

# pydantic error types whose message leadflow words for a configuration file.
_MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}
_MESSAGE_PREFIXES = ("Value error, ", "Assertion failed, ")


class ConfigError(ValueError):
    """Invalid configuration. `of(source, problems)` gives the message `<source>: <problem>;
    ...`; `source` and `problems` stay available to callers that list the problems."""

    def __init__(self, message: str, *, source: str | None = None, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.source = source
        self.problems = list(problems)

    @classmethod
    def of(cls: type[E], source: str, problems: Sequence[str]) -> E:
        return cls(format_problems(source, problems), source=source, problems=problems)


def key_path(loc: Iterable[Any]) -> str:
    """`("fit", "groups", 1, "field")` -> `fit.groups[1].field`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def error_items(exc: ValidationError) -> list[tuple[tuple[Any, ...], str]]:
    """(location, message) per error of `exc`, in the words described in the module docstring."""
    items = []
    for err in exc.errors():
        message = _MESSAGES.get(err["type"], err["msg"])
        for prefix in _MESSAGE_PREFIXES:
            message = message.removeprefix(prefix)
        items.append((tuple(err["loc"]), message))
    return items


def problems(exc: ValidationError, prefix: Sequence[str] = ()) -> list[str]:
    """One `key.path: message` line per error (per line of a message that has several);
    `prefix` is prepended to every key (the section the model was read from, e.g.
    `("quality",)`). An error on the whole document (no key) keeps its own message."""
    lines: list[str] = []
    for loc, message in error_items(exc):
        path = key_path((*prefix, *loc))
        for line in filter(None, (part.strip() for part in message.splitlines())):
            lines.append(f"{path}: {line}" if path else line)
    return lines


def format_problems(source: str, problems: Sequence[str]) -> str:
    """`<source>: <problem>; <problem>`."""
    return f"{source}: " + "; ".join(problems)


def format_validation_error(exc: ValidationError, source: str, prefix: Sequence[str] = ()) -> str:
    """A pydantic error as one line naming `source` and every bad key."""
    return format_problems(source, problems(exc, prefix))


def check_known(names: Iterable[str], allowed: Collection[str], what: str, *, expected: str | None = None) -> None:
    """For a validator: a ValueError `unknown <what> [...]; expected <expected>` (default: some of
    `allowed`, listed) when one of `names` is not `allowed`."""
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; expected {expected or f'some of {list(allowed)}'}")


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


def validate_document(model: type[T], data: Any, source: str, error: type[ConfigError],
                      prefix: Sequence[str] = ()) -> T:
    """Validate a loaded YAML/JSON document; `error` names `source` and every bad key."""
    if not isinstance(data, Mapping):
        raise error.of(source, [f"expected a mapping of keys, got {type(data).__name__}"])
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise error.of(source, problems(exc, prefix)) from None


def load_yaml(path: Path, what: str, error: type[ConfigError]) -> Any:
    """Read and parse a YAML file (`what` it holds, for the message), turning I/O and syntax
    problems into `error`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error.of(str(path), [f"cannot read {what} ({exc.strerror})"]) from None
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, source: str, error: type[ConfigError]) -> Any:
    """Parse YAML text (from `source`, for the message), a syntax problem raised as `error`."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error.of(source, [f"not valid YAML ({exc})"]) from None


def load_yaml_model(path: Path, model: type[T], what: str, error: type[ConfigError], *,
                    empty_ok: bool = False) -> T:
    """Read, parse and validate a YAML file; `empty_ok`: an empty file means all defaults."""
    document = load_yaml(path, what, error)
    if document is None and empty_ok:
        document = {}
    return validate_document(model, document, str(path), error)
