"""The one module the DAG files import: their settings, default args, the scores Asset, the shard
count, each task's body (an Airflow run's context as a `RunContext`, the pipeline step, which errors
fail without retries), the failure callback and the teardown that closes a run and sends its alert.

Airflow itself is reached through `leadflow.airflow_adapter` only; this module puts it together with
the pipeline. It is kept apart from the adapter because the adapter must import nothing of leadflow
(`leadflow.connections` imports the adapter, so an adapter importing the pipeline would close an
import cycle), and out of the DAG files so that it is testable without a scheduler and the DAG
files only wire.

The pipeline, the warehouse and the alerts are imported inside the functions: the DAG files import
this module at parse time, which may load only Airflow and the light env module (pandas and
SQLAlchemy cost seconds per parse; tests/dags/test_dag_integrity.py holds that line).
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

from leadflow import airflow_adapter
from leadflow.env import LeadflowEnv, leadflow_env

if TYPE_CHECKING:
    from leadflow.pipeline import RunContext

log = logging.getLogger(__name__)

MAX_SHARDS = 64
# Every leadflow task: a transient error (CRM unavailable, a lease held) is retried with backoff;
# a permanent one fails at once (`fail_without_retry`).
DEFAULT_ARGS: dict[str, Any] = {
    "owner": "leadflow",
    "retries": 2,
    "retry_delay": timedelta(minutes=1),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}


def dag_env() -> LeadflowEnv:
    """The `LEADFLOW_*` settings the DAG files need (CRMs, schedule, time zone), validated: a bad
    value fails the parse with a message naming the variable."""
    return leadflow_env()


def crm_default_args() -> dict[str, Any]:
    """The CRM DAGs' default args: a task's final failure records its error on the run."""
    return {**DEFAULT_ARGS, "on_failure_callback": record_task_failure}


def maintenance_default_args() -> dict[str, Any]:
    """The maintenance DAGs' default args: a task's final failure keeps its error for the run's
    alert (`close_maintenance_run`)."""
    return {**DEFAULT_ARGS, "on_failure_callback": keep_task_error}


def scores_asset(crm: str) -> Any:
    """The Asset a CRM DAG's `report` task emits and `leadflow_train` listens to."""
    return airflow_adapter.asset(f"leadflow_{crm}_scores", f"leadflow://{crm}/scores")


def crm_of(dag_id: str) -> str:
    return dag_id.removeprefix("leadflow_")


def crm_pool(crm: str) -> str:
    """The Airflow pool of every task that calls `crm` (airflow-init creates it): its slots bound
    how many of them run at once across all workers."""
    return f"leadflow_{crm}"


def shard_count(params: Mapping[str, Any]) -> int:
    """The trigger's `shards` Param (1 when absent)."""
    return max(1, int(params.get("shards") or 1))


def shard_list() -> list[int]:
    """The running task's shards, one mapped task each."""
    return list(range(shard_count(airflow_adapter.current_context()["params"])))


def _since(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def run_context(
    crm: str,
    dag_run: Any,
    params: Mapping[str, Any],
    connection: Any = None,
    shard: int | None = None,
    shards: int = 1,
) -> RunContext:
    """Manual and asset-triggered runs have no logical date in Airflow 3: `run_after` always
    exists. A scheduled run may start hours after it, though, and data modified meanwhile must
    not look like it comes from the future: "now" is the later of the two. Scores are computed as
    of the day the DAG run started (`started`), the same for all its tasks."""
    from leadflow.pipeline import RunContext

    shards = max(1, int(shards or 1))
    return RunContext(
        crm=crm,
        run_id=dag_run.run_id,
        dry_run=bool(params.get("dry_run")),
        full_refresh=bool(params.get("full_refresh")),
        push_enabled=bool(params.get("push", True)),
        force=bool(params.get("force")),
        only_record_ids=[str(i) for i in (params.get("only_record_ids") or [])] or None,
        since=_since(params.get("since")),
        now=max(dag_run.run_after, datetime.now(timezone.utc)),
        started=max(dag_run.run_after, getattr(dag_run, "start_date", None) or dag_run.run_after),
        connection=connection,
        shard=shard if shards > 1 else None,
        shards=shards,
        # Parallel shards share the CRM's rate limit: one bucket in the warehouse when the shared
        # limiter is on (`leadflow.shared_limit`), else each takes its static part.
        rate_share=1.0 / shards,
    )


def run_step(step: str, crm: str, shard: int | None = None) -> dict[str, Any]:
    """A CRM DAG task: run pipeline step `step` (of shard `shard`, for a mapped task) in the
    running Airflow task's context. A permanent error (wrong token, bad config, gate, guard,
    spent API budget) fails the task without retries."""
    import leadflow.pipeline as pipeline
    from leadflow.connections import get_connection

    context = airflow_adapter.current_context()
    params = context["params"]
    with fail_without_retry():
        ctx = run_context(crm, context["dag_run"], params, connection=get_connection(f"leadflow_{crm}"),
                          shard=shard, shards=shard_count(params) if shard is not None else 1)
        return getattr(pipeline, step)(ctx)


def run_training(crm: str) -> dict[str, Any]:
    """The `leadflow_train` task of one CRM; a permanent error fails it without retries."""
    from leadflow.maintenance import run_training as train

    dag_run = airflow_adapter.current_context()["dag_run"]
    with fail_without_retry():
        return train(crm, now=dag_run.run_after, run_id=dag_run.run_id)


def rollback_chosen(crm: str) -> Callable[[Mapping[str, Any]], bool]:
    """The run condition of `leadflow_rollback`'s task for `crm`: one task per CRM (each in its
    CRM's pool, fixed at parse time), and the trigger's `crm` picks the one that runs."""
    return lambda context: context["params"]["crm"] == crm


def run_rollback(crm: str) -> dict[str, Any]:
    """The `leadflow_rollback` task of `crm`: the trigger's run id and dry-run switch; a permanent
    error (a wrong token, no connection) fails it without retries."""
    from leadflow.connections import get_connection
    from leadflow.maintenance import run_rollback as rollback

    params = airflow_adapter.current_context()["params"]
    with fail_without_retry():
        return rollback(crm, params["run_id"], dry_run=bool(params["dry_run"]),
                        connection=get_connection(f"leadflow_{crm}"))


def permanent_errors() -> tuple[type[BaseException], ...]:
    """Failures a retry a few minutes later cannot mend: a rejected token, a missing or invalid
    connection or configuration, a failed quality gate, a tripped change guard, the CRM's daily
    API budget spent. Anything else (the CRM unavailable, a lease held by another run) is worth
    the task's retries."""
    from leadflow.connections import ConnectionNotFound
    from leadflow.crm.base import CrmAuthError, CrmBudgetExhausted
    from leadflow.crm.write_core import ForbiddenPropertyError
    from leadflow.env import LeadflowEnvError
    from leadflow.pipeline import ChangeGuardError
    from leadflow.qualify.config import ModelConfigError
    from leadflow.quality.results import QualityGateError

    # ConnectionConfigError, the settings and mapping errors are ValueErrors of configuration.
    return (CrmAuthError, CrmBudgetExhausted, ForbiddenPropertyError, ChangeGuardError, QualityGateError,
            ModelConfigError, LeadflowEnvError, ConnectionNotFound, *_config_errors())


def _config_errors() -> tuple[type[BaseException], ...]:
    from leadflow import settings as pipeline_settings
    from leadflow.connections import ConnectionConfigError
    from leadflow.crm import mapping
    from leadflow.enrich import settings as enrich_settings
    from leadflow.quality import settings as quality_settings

    return (ConnectionConfigError, mapping.MappingConfigError,
            enrich_settings.SettingsError, quality_settings.SettingsError, pipeline_settings.SettingsError)


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Inside a task: a permanent error fails the task at once instead of spending its retries,
    so a wrong token fails a run in seconds, not minutes."""
    try:
        yield
    except permanent_errors() as exc:
        airflow_adapter.fail_task(exc)


def _warehouse() -> Any:
    from leadflow.warehouse.db import ensure_schema, get_engine

    engine = get_engine()
    ensure_schema(engine)
    return engine


def record_task_failure(context: Mapping[str, Any]) -> None:
    """A CRM DAG task's on_failure_callback (its final failure, not a retry): the failed task and
    its error, without values, into the run's summary (`pipeline.record_failure`), where the
    teardown's alert and `leadflow report` find them. Sends nothing: the teardown sends the run's
    one alert."""
    from leadflow.pipeline import record_failure

    dag_run, ti = context["dag_run"], context["ti"]
    map_index = getattr(ti, "map_index", -1)
    map_index = map_index if isinstance(map_index, int) and map_index >= 0 else None
    task = ti.task_id + (f"[{map_index}]" if map_index is not None else "")
    exc = context.get("exception")
    try:
        record_failure(_warehouse(), crm_of(dag_run.dag_id), dag_run.run_id, task,
                       exc if isinstance(exc, BaseException) else None, shard=map_index)
    except Exception as exc_:  # the teardown still closes the run and alerts
        log.warning("failure of %s in run %s not recorded: %s", task, dag_run.run_id, type(exc_).__name__)


def close_run(crm: str) -> dict[str, Any]:
    """The CRM DAG's teardown (it runs however the other tasks ended): a run that failed, or whose
    `report` never closed it, is recorded `failed` in the warehouse with its figures so far; then
    the run's one alert goes out, if the run failed, stopped for the API budget, had too much
    of its push rejected or left too many handoffs ignored. A run already closed by `report` keeps
    its status."""
    import leadflow.pipeline as pipeline
    from leadflow import alerts
    from leadflow.settings import load_pipeline_settings
    from leadflow.warehouse import repo

    context = airflow_adapter.current_context()
    dag_run = context["dag_run"]
    run_id = dag_run.run_id
    unfinished = airflow_adapter.unfinished_tasks(context)
    status, summary, problem = None, {}, None
    try:
        engine = _warehouse()
        status = repo.run_status(engine, crm, run_id)
        if status is None:  # it failed before `extract` recorded the run
            repo.start_run(engine, crm, run_id, dry_run=bool(context["params"].get("dry_run")))
            status = "running"
        if unfinished or status == "running":
            pipeline.fail_run(engine, crm, run_id)
            status = "failed"
        summary = repo.get_run_summary(engine, crm, run_id)
        max_share = load_pipeline_settings().alerts.max_rejected_share
    except Exception as exc:  # the alert goes out all the same; the task then fails, without retries
        problem = exc
        max_share = 1.0
        summary = {"errors": [f"the run could not be recorded in the warehouse: {alerts.error_text(exc)}"]}
        status = "failed" if unfinished else status
    message, channels = alerts.alert_run(crm, dag_run.dag_id, run_id, summary, context=context, status=status,
                                         unfinished=unfinished, max_rejected_share=max_share,
                                         run_url=airflow_adapter.run_url(dag_run.dag_id, run_id))
    if problem is not None:
        airflow_adapter.fail_task(problem)
    return {"crm": crm, "run_id": run_id, "status": status, "alerted": channels,
            "reasons": message["reasons"] if message else []}


ERROR_KEY = "leadflow_error"  # the XCom under which a maintenance task's failure keeps its error


def keep_task_error(context: Mapping[str, Any]) -> None:
    """A maintenance DAG task's on_failure_callback (its final failure): its error, without
    values, kept on the task instance for the teardown's alert. Sends nothing."""
    from leadflow.alerts import error_text

    exc = context.get("exception")
    try:
        airflow_adapter.keep_for_run(context, ERROR_KEY, error_text(exc if isinstance(exc, BaseException) else None))
    except Exception as exc_:  # the teardown still alerts, without the error's text
        log.warning("error of %s not kept: %s", context["ti"].task_id, type(exc_).__name__)


def close_maintenance_run() -> dict[str, Any]:
    """The teardown of `leadflow_train` and `leadflow_rollback` (it runs however their tasks
    ended): when one failed, the run's one alert, naming the failed tasks and their errors (for
    a rollback, the CRM it worked on). These runs have no row in the warehouse: Airflow's task
    states are their record."""
    from leadflow import alerts

    context = airflow_adapter.current_context()
    dag_run = context["dag_run"]
    unfinished = airflow_adapter.unfinished_tasks(context)
    failed = [task for task, state in unfinished.items() if state == "failed"]
    errors = airflow_adapter.kept_for_run(context, failed, ERROR_KEY) if failed else {}
    summary = {"failed_tasks": failed,
               "errors": [f"{task}: {error or 'no error recorded (see the task log)'}" for task, error in errors.items()]}
    crm = context["params"].get("crm") if isinstance(context["params"].get("crm"), str) else None
    message, channels = alerts.alert_run(crm, dag_run.dag_id, dag_run.run_id, summary, context=context,
                                         unfinished=unfinished,
                                         run_url=airflow_adapter.run_url(dag_run.dag_id, dag_run.run_id))
    return {"run_id": dag_run.run_id, "status": "failed" if message else "success", "alerted": channels}
