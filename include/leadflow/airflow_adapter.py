"""The one module through which leadflow asks Airflow for a connection.

Inside a task, connections come through the Task SDK (`BaseHook.get_connection`: the worker asks
the API server, which reads the metadata database and the secrets backends; the task process has
no database access of its own). Everywhere else — the leadflow CLI, the UI, scripts — Airflow's
core lookup does the same directly: secrets backend, `AIRFLOW_CONN_*` variables, metadata
database, in Airflow's configured order. Either way a connection defined in the UI, with
`airflow connections add`, in a secrets backend or in the environment is found alike.

The rest of the library receives `get_connection` as a resolver (`leadflow.connections`) and
never imports Airflow itself.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator

from leadflow.connections import Connection, ConnectionNotFound, not_found_message

log = logging.getLogger(__name__)


def in_task() -> bool:
    """True inside a task process (the Task SDK's supervisor channel is open), as Airflow's own
    `Connection.get_connection_from_secrets` decides it."""
    runner = sys.modules.get("airflow.sdk.execution_time.task_runner")
    return getattr(runner, "SUPERVISOR_COMMS", None) is not None


@contextlib.contextmanager
def _logging_kept() -> Iterator[None]:
    """Importing Airflow configures the root logger (its handler writes to stdout). In a process
    that is not Airflow's own — the leadflow CLI, whose `report --json` owns stdout — put the
    process's logging back as it was; in an Airflow process leave Airflow's in place."""
    if "airflow.settings" in sys.modules:
        yield
        return
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def airflow_connection(conn_id: str) -> Any:
    """Airflow's connection object for `conn_id`; ConnectionNotFound when Airflow knows none."""
    with _logging_kept():
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            if in_task():
                from airflow.sdk import BaseHook

                return BaseHook.get_connection(conn_id)
            from airflow.models.connection import Connection as CoreConnection

            return CoreConnection.get_connection_from_secrets(conn_id)
        except AirflowNotFoundException:
            raise ConnectionNotFound(not_found_message(conn_id)) from None


def get_connection(conn_id: str) -> Connection:
    """The resolver: `conn_id` through Airflow's lookup, as a leadflow `Connection`."""
    conn = Connection.from_airflow(airflow_connection(conn_id))
    log.debug("connection %s from Airflow (%s, host %s)", conn_id, conn.conn_type, conn.host)
    return conn


def permanent_errors() -> tuple[type[BaseException], ...]:
    """Failures a retry a few minutes later cannot mend: a rejected token, a missing or invalid
    connection or configuration, a failed quality gate, a tripped change guard. Anything else (the
    CRM unavailable, a lease held by another run) is worth the task's retries."""
    from leadflow.crm.base import CrmAuthError
    from leadflow.crm.hubspot_push import ForbiddenPropertyError
    from leadflow.env import LeadflowEnvError
    from leadflow.pipeline import ChangeGuardError
    from leadflow.qualify.config import ModelConfigError
    from leadflow.quality.results import QualityGateError

    # ConnectionConfigError, the settings and mapping errors are ValueErrors of configuration.
    return (CrmAuthError, ForbiddenPropertyError, ChangeGuardError, QualityGateError, ModelConfigError,
            LeadflowEnvError, ConnectionNotFound, *_config_errors())


def _config_errors() -> tuple[type[BaseException], ...]:
    from leadflow.connections import ConnectionConfigError
    from leadflow.crm import mapping, salesforce_mapping
    from leadflow.enrich import settings as enrich_settings
    from leadflow.quality import settings as quality_settings
    from leadflow import settings as pipeline_settings

    return (ConnectionConfigError, mapping.MappingConfigError, salesforce_mapping.MappingConfigError,
            enrich_settings.SettingsError, quality_settings.SettingsError, pipeline_settings.SettingsError)


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Inside a task: a permanent error fails the task at once (AirflowFailException keeps the
    message) instead of spending its retries, so a wrong token fails a run in seconds, not minutes."""
    try:
        yield
    except permanent_errors() as exc:
        from airflow.sdk.exceptions import AirflowFailException

        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
