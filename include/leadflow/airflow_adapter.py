"""The library's one way into Airflow: a connection from Airflow's lookup, a task failed without
retries, the running task's context and its run's task states, the scores Asset, a run's page in
the Airflow UI, alerts sent through the smtp and http providers' notifiers, the API server's auth
manager. Airflow is imported inside the functions only, so importing this module costs nothing
(the DAG files import it, through `leadflow.dag_support`, at parse time); it imports nothing of
leadflow, so nothing that leadflow imports can lead back to it. (The provider's hook
classes, `leadflow.airflow_hooks`, subclass Airflow's `BaseHook` and are loaded by Airflow.)

Inside a task, connections come through the Task SDK (`BaseHook.get_connection`: the worker asks
the API server, which reads the metadata database and the secrets backends; the task process has
no database access of its own). Everywhere else — the leadflow CLI, the UI, scripts — Airflow's
core lookup does the same directly: secrets backend, `AIRFLOW_CONN_*` variables, metadata
database, in Airflow's configured order. Either way a connection defined in the UI, with
`airflow connections add`, in a secrets backend or in the environment is found alike.

`leadflow.connections` turns the connection into leadflow's own and is what the rest of the
library asks; `leadflow.dag_support` is what the DAG files import: it puts these pieces together
with the pipeline (which errors fail a task without retries, how a failed run is closed).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any, Iterator, Mapping, NoReturn
from urllib.parse import quote

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


def airflow_connection(conn_id: str) -> Any | None:
    """Airflow's connection object for `conn_id`, None when Airflow knows none. Only the imports
    run with Airflow's logging set up (`_logging_kept`): what the lookup itself logs (a missing
    Fernet key, say) goes where the process logs, not to stdout."""
    with _logging_kept():
        from airflow.sdk.exceptions import AirflowNotFoundException

        if in_task():
            from airflow.sdk import BaseHook

            find = BaseHook.get_connection
        else:
            from airflow.models.connection import Connection as CoreConnection

            find = CoreConnection.get_connection_from_secrets
    try:
        return find(conn_id)
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


def current_context() -> Mapping[str, Any]:
    """The running task's Airflow context (dag_run, params, ti)."""
    from airflow.sdk import get_current_context

    return get_current_context()


def asset(name: str, uri: str) -> Any:
    from airflow.sdk import Asset

    return Asset(name, uri=uri)


def unfinished_tasks(context: Mapping[str, Any]) -> dict[str, str]:
    """The tasks of the context's run that failed, or never ran because one upstream failed:
    {task id (a mapped one as `task_<map index>`): state}, as the scheduler recorded them."""
    dag_run = context["dag_run"]
    states = context["ti"].get_task_states(dag_id=dag_run.dag_id, run_ids=[dag_run.run_id])
    named = {task: str(getattr(state, "value", state)) for task, state in (states.get(dag_run.run_id) or {}).items()}
    return {task: state for task, state in sorted(named.items()) if state in ("failed", "upstream_failed")}


def keep_for_run(context: Mapping[str, Any], key: str, value: Any) -> None:
    """Keep `value` under `key` on the context's task instance (an XCom) for a later task of the
    run; a task's failure callback may do it (the task runner still talks to the supervisor)."""
    context["ti"].xcom_push(key=key, value=value)


def kept_for_run(context: Mapping[str, Any], task_ids: list[str], key: str) -> dict[str, Any]:
    """What `keep_for_run` kept under `key` for each of the run's (unmapped) `task_ids`: {task: value},
    None where nothing was kept."""
    ti = context["ti"]
    return {task: ti.xcom_pull(task_ids=task, key=key) for task in task_ids}


def run_url(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI, under the API server's public address (`[api] base_url`,
    what Airflow's own task log links use)."""
    from airflow.sdk.configuration import conf

    base_url = conf.get("api", "base_url", fallback="http://localhost:8080/")
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


def post_webhook(conn_id: str, message: Mapping[str, Any], context: Mapping[str, Any] | None = None) -> None:
    """POST `message` as JSON with the http provider's notifier (its `HttpHook` reads the
    connection: the URL as host, or host/schema/port; extra as headers; a login as basic auth).
    A password without a login is sent as a bearer token. Raises when the webhook fails."""
    from airflow.providers.http.notifications.http import HttpNotifier

    conn = airflow_connection(conn_id)
    if conn is not None and "path" in (conn.extra_dejson or {}):
        log.warning("connection %s: extra 'path' is sent as a header, not the URL: put the whole URL in host", conn_id)
    headers = {"Authorization": f"Bearer {conn.password}"} if conn is not None and conn.password and not conn.login \
        else None
    # notify(), not the notifier's __call__: the message is data, and __call__ would render it as
    # a Jinja template first.
    HttpNotifier(http_conn_id=conn_id, json=dict(message), headers=headers,
                 extra_options={"timeout": 10}).notify(dict(context or {}))


def send_email(conn_id: str, to: str, from_email: str | None, subject: str, html: str,
               context: Mapping[str, Any] | None = None) -> None:
    """Send an e-mail with the smtp provider's notifier. `SmtpHook` checks the server's
    certificate (SMTPS, or STARTTLS with `ssl.create_default_context()`) before it logs in;
    a connection that turns that check off, or sends its password unencrypted, is refused."""
    from airflow.providers.smtp.notifications.smtp import SmtpNotifier

    conn = airflow_connection(conn_id)
    extra = getattr(conn, "extra_dejson", None) or {}
    if str(extra.get("ssl_context", "default")).lower() == "none":
        raise ValueError(f"connection {conn_id!r}: ssl_context 'none' would skip the server's certificate check")
    if conn is not None and conn.password and extra.get("disable_ssl") and extra.get("disable_tls"):
        raise ValueError(f"connection {conn_id!r}: SSL and TLS are both disabled, the password would cross unencrypted")
    SmtpNotifier(smtp_conn_id=conn_id, to=to, from_email=from_email, subject=subject,
                 html_content=html).notify(dict(context or {}))
