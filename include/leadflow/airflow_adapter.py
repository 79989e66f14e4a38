"""The library's one way into Airflow: a connection from Airflow's lookup, a task failed without
retries, the API server's auth manager. Airflow is imported inside the functions only, so
importing this module costs nothing; it imports nothing of leadflow. (The provider's hook
classes, `leadflow.airflow_hooks`, subclass Airflow's `BaseHook` and are loaded by Airflow.)

Inside a task, connections come through the Task SDK (`BaseHook.get_connection`: the worker asks
the API server, which reads the metadata database and the secrets backends; the task process has
no database access of its own). Everywhere else — the leadflow CLI, the UI, scripts — Airflow's
core lookup does the same directly: secrets backend, `AIRFLOW_CONN_*` variables, metadata
database, in Airflow's configured order. Either way a connection defined in the UI, with
`airflow connections add`, in a secrets backend or in the environment is found alike.

`leadflow.connections` turns the connection into leadflow's own and is what the rest of the
library asks; `leadflow.dag_support` decides which errors fail a task without retries.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator, NoReturn


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


def airflow_connection(conn_id: str) -> Any | None:
    """Airflow's connection object for `conn_id`, None when Airflow knows none."""
    with _logging_kept():
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            if in_task():
                from airflow.sdk import BaseHook

                return BaseHook.get_connection(conn_id)
            from airflow.models.connection import Connection as CoreConnection

            return CoreConnection.get_connection_from_secrets(conn_id)
        except AirflowNotFoundException:
            return None


def fail_task(exc: BaseException) -> NoReturn:
    """Fail the running task at once, without its retries; AirflowFailException keeps `exc`'s
    message (and chains it)."""
    from airflow.sdk.exceptions import AirflowFailException

    raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def auth_manager() -> Any:
    """The API server's auth manager (it verifies the UI's tokens); raises outside the API server."""
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()
