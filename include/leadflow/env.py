"""Every `LEADFLOW_*` environment variable leadflow reads, in one typed and validated object.

`leadflow_env()` reads the process environment (or a given mapping) into `LeadflowEnv`; modules
ask it instead of reading `os.environ` themselves, so each variable has one name, one default,
one description and one validation. An empty value counts as unset. A bad value raises
`LeadflowEnvError` naming the variable and what it accepts
(`environment: LEADFLOW_TIMEZONE: ...`, the format of `leadflow.validation`).

`variables()` lists (name, default, description) for docs: `docs/configuration.md` is
`python -m leadflow.env` (a test keeps the two equal). Connections (`AIRFLOW_CONN_*`) are not
here: they are Airflow connections (see `leadflow.connections`).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from leadflow.validation import ConfigError, problems

log = logging.getLogger(__name__)

PREFIX = "LEADFLOW_"
_CRM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# Airflow's schedule presets; anything else must be a cron expression.
_SCHEDULE_PRESETS = frozenset({"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly",
                               "@quarterly", "@yearly", "@annually", "@midnight"})
_warned_unknown: set[str] = set()


def project_root() -> Path:
    """The checkout this package runs from (include/leadflow/ -> two levels up)."""
    return Path(__file__).resolve().parents[2]


class LeadflowEnvError(ConfigError):
    """A `LEADFLOW_*` variable has a value leadflow cannot use; the message names it."""


def _var(name: str, description: str, shown_default: str | None = None, **kwargs: Any) -> Any:
    """A field read from the variable `name`; `shown_default` is the default as the docs show it
    (when the real one depends on the machine, such as a path inside the checkout)."""
    extra = {"shown_default": shown_default} if shown_default is not None else None
    return Field(alias=name, description=description, json_schema_extra=extra, **kwargs)


class LeadflowEnv(BaseModel):
    """The `LEADFLOW_*` variables (field aliases are the variable names)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    var_dir: Path | None = _var(
        "LEADFLOW_VAR_DIR", "Folder for local state: the default SQLite warehouse, run reports, Data Docs, "
        "the sandbox database.", shown_default="<checkout>/var", default=None)
    warehouse_url: str | None = _var(
        "LEADFLOW_WAREHOUSE_URL", "SQLAlchemy URL of the warehouse, used when the Airflow connection "
        "`leadflow_warehouse` is not defined (e.g. `postgresql://user:pw@host/db`).",
        shown_default="sqlite:///<var dir>/warehouse.db", default=None)
    reports_dir: Path | None = _var(
        "LEADFLOW_REPORTS_DIR", "Folder of the HTML run reports.", shown_default="<var dir>/reports", default=None)
    data_docs_dir: Path | None = _var(
        "LEADFLOW_DATA_DOCS_DIR", "Folder of the Great Expectations Data Docs the Leadflow page links to.",
        shown_default="<var dir>/data_docs", default=None)
    config: Path | None = _var(
        "LEADFLOW_CONFIG", "Pipeline settings file (YAML).", shown_default="include/config/leadflow.yaml",
        default=None)
    crms: tuple[str, ...] = _var(
        "LEADFLOW_CRMS", "Comma-separated CRMs that get a DAG (`leadflow_<crm>`) and a training task.",
        default=("hubspot", "salesforce"), min_length=1)
    schedule: str = _var(
        "LEADFLOW_SCHEDULE", "Schedule of the CRM DAGs: a cron expression or an Airflow preset such as "
        "`@daily`.", default="0 2 * * *")
    timezone: str = _var(
        "LEADFLOW_TIMEZONE", "IANA time zone of the DAG schedules (e.g. `Europe/Berlin`).", default="UTC")
    keep_freed_memory_mb: int = _var(
        "LEADFLOW_KEEP_FREED_MEMORY_MB", "MiB of freed memory the heavy steps keep for reuse (glibc only; "
        "0, the default, leaves the allocator alone; e.g. 1024 for runs of a million leads). See "
        "`leadflow.runtime`.", default=0, ge=0)
    factorize_threads: int = _var(
        "LEADFLOW_FACTORIZE_THREADS", "Threads that factorise text columns before scoring (0: none). "
        "Worth trying on machines with idle physical cores.", default=0, ge=0, le=64)
    progress: bool = _var(
        "LEADFLOW_PROGRESS", "Progress bars on long steps when stderr is a terminal (`0` turns them off; "
        "never drawn in CI or Airflow tasks).", default=True)
    airflow_port: int = _var(
        "LEADFLOW_AIRFLOW_PORT", "Port of the Airflow UI that `make airflow` starts.", default=8080, ge=1, le=65535)

    @field_validator("crms", mode="before")
    @classmethod
    def _split_crms(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("crms")
    @classmethod
    def _check_crms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not _CRM_NAME.match(name)]
        if bad:
            raise ValueError(f"CRM names are lower-case letters, digits and '_', got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"a CRM is listed twice in {list(value)}")
        return value

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        from croniter import croniter  # installed with Airflow, whose cron schedules use it

        value = value.strip()
        if value not in _SCHEDULE_PRESETS and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither a cron expression (like '0 2 * * *') nor an Airflow "
                             f"preset ({', '.join(sorted(_SCHEDULE_PRESETS))})")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name (like 'UTC' or 'Europe/Berlin')") from None
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        if value is None:
            return None
        try:
            make_url(value)
        except ArgumentError:
            # The URL may hold a password: name the problem, not the value.
            raise ValueError("not a SQLAlchemy URL (expected e.g. 'postgresql://user:password@host/db' or "
                             "'sqlite:////path/to/warehouse.db')") from None
        return value

    # --- derived folders ----------------------------------------------------------------------------
    @property
    def var_path(self) -> Path:
        """`LEADFLOW_VAR_DIR`, else var/ in the checkout (not created here)."""
        return self.var_dir or project_root() / "var"

    @property
    def reports_path(self) -> Path:
        return self.reports_dir or self.var_path / "reports"

    @property
    def data_docs_path(self) -> Path:
        return self.data_docs_dir or self.var_path / "data_docs"


def leadflow_env(environ: Mapping[str, str] | None = None) -> LeadflowEnv:
    """Read the `LEADFLOW_*` variables of `environ` (default: the process environment).

    Read on every call (cheap) so that a changed environment, e.g. in tests, is seen. Unknown
    `LEADFLOW_*` names are logged once (a typo would otherwise silently fall back to a default).
    """
    env = os.environ if environ is None else environ
    values = {k: v for k, v in env.items() if k.startswith(PREFIX) and v.strip() != ""}
    unknown = sorted(set(values) - _NAMES - _warned_unknown)
    if unknown:
        _warned_unknown.update(unknown)
        log.warning("unknown leadflow variable(s) ignored: %s (known: docs/configuration.md)", ", ".join(unknown))
    try:
        return LeadflowEnv.model_validate({k: v for k, v in values.items() if k in _NAMES})
    except ValidationError as exc:
        raise LeadflowEnvError.of("environment", problems(exc)) from None


def variables() -> list[tuple[str, str, str]]:
    """(variable, default as shown in docs, description) for every variable, in field order."""
    rows = []
    for field in LeadflowEnv.model_fields.values():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        shown = extra.get("shown_default")
        if shown is None:
            default = field.default
            shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((str(field.alias), str(shown), str(field.description)))
    return rows


def configuration_markdown() -> str:
    """The text of docs/configuration.md."""
    lines = [
        "# Configuration: environment variables",
        "",
        "Generated from `leadflow.env.LeadflowEnv` by `python -m leadflow.env > docs/configuration.md`;",
        "`tests/unit/test_env.py` fails when this file and the code disagree. An empty value counts",
        "as unset. Connections (CRMs, enrichment API, warehouse) are Airflow connections: see",
        "`leadflow.connections`.",
        "",
        "| Variable | Default | Description |",
        "| --- | --- | --- |",
    ]
    for name, default, description in variables():
        cell = description.replace("|", r"\|")  # a pipe would end the table cell
        lines.append(f"| `{name}` | `{default}` | {cell} |")
    return "\n".join(lines) + "\n"


_NAMES = frozenset(str(f.alias) for f in LeadflowEnv.model_fields.values())


if __name__ == "__main__":
    sys.stdout.write(configuration_markdown())
