"""What both CRMs' settings share: reading a connection's `extra` into a settings model."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from leadflow.connections import Connection, env_var_name
from leadflow.crm.base import CrmError
from leadflow.validation import format_validation_error

# Keys Airflow's HTTP connection type may put in `extra`; they do not configure leadflow.
AIRFLOW_HTTP_EXTRA_KEYS = frozenset(
    {"auth_type", "auth_kwargs", "headers", "verify", "proxies", "cert", "stream", "trust_env", "allow_redirects"}
)
S = TypeVar("S", bound=BaseModel)


def settings_from_extra(connection: Connection, model: type[S]) -> S:
    """Validate a connection's extra as `model`; unknown keys are errors (a typo must not silently
    fall back to a default), except those Airflow's HTTP connection form writes itself. A bad key
    raises `CrmError` naming the connection and `extra.<key>`."""
    extra = {k: v for k, v in connection.extra.items() if k not in AIRFLOW_HTTP_EXTRA_KEYS}
    try:
        return model.model_validate(extra)
    except ValidationError as exc:
        where = f"connection {connection.conn_id!r} ({env_var_name(connection.conn_id)})"
        raise CrmError(format_validation_error(exc, where, prefix=("extra",))) from None
