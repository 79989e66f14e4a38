"""Jinja2 environment over the package's templates (include/leadflow/views/templates/), shared by
the Leadflow page and the run report. Autoescaping is on; charts arrive as `Markup`."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape


def fmt_ms(value: Any) -> str:
    """Epoch milliseconds as a UTC timestamp ("" when missing)."""
    if value is None:
        return ""
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def fmt_count(value: Any) -> str:
    """Thousands-separated integer; an em dash when the step did not report the count."""
    if value is None or value == "":
        return "\u2014"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("leadflow.views", "templates"),
        autoescape=select_autoescape(("html", "html.j2"), default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ms"] = fmt_ms
    env.filters["count"] = fmt_count
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
