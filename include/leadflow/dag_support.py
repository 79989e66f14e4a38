"""What the DAG files call around the pipeline: an Airflow run's context (dag_run, trigger Params)
as a `RunContext`, and which errors fail a task without retries.

Kept out of the DAG file so that it is testable without Airflow and the DAG file only wires.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from leadflow.airflow_adapter import fail_task
from leadflow.pipeline import ChangeGuardError, RunContext


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
    not look like it comes from the future: "now" is the later of the two."""
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
        connection=connection,
        shard=shard if shards > 1 else None,
        shards=shards,
        # Parallel shards share the CRM's rate limit: each takes its part.
        rate_share=1.0 / shards,
    )


def on_run_failure(context: Mapping[str, Any]) -> None:
    """DAG-level failure callback: record the run as failed in the warehouse (tasks that fail never
    reach `report`, which closes a run), then send the failure alert."""
    import logging

    from leadflow.alerts import notify_failure
    from leadflow.pipeline import fail_run
    from leadflow.warehouse.db import ensure_schema, get_engine

    dag_run = context.get("dag_run")
    crm = str(getattr(dag_run, "dag_id", "")).removeprefix("leadflow_")
    try:
        engine = get_engine()
        ensure_schema(engine)
        fail_run(engine, crm, dag_run.run_id)
    except Exception as exc:  # the alert must still go out
        logging.getLogger(__name__).warning("run %s not marked failed: %s", getattr(dag_run, "run_id", "?"),
                                            type(exc).__name__)
    notify_failure(dict(context), "failure")


def permanent_errors() -> tuple[type[BaseException], ...]:
    """Failures a retry a few minutes later cannot mend: a rejected token, a missing or invalid
    connection or configuration, a failed quality gate, a tripped change guard. Anything else (the
    CRM unavailable, a lease held by another run) is worth the task's retries."""
    from leadflow.connections import ConnectionNotFound
    from leadflow.crm.base import CrmAuthError
    from leadflow.crm.write_core import ForbiddenPropertyError
    from leadflow.env import LeadflowEnvError
    from leadflow.qualify.config import ModelConfigError
    from leadflow.quality.results import QualityGateError

    # ConnectionConfigError, the settings and mapping errors are ValueErrors of configuration.
    return (CrmAuthError, ForbiddenPropertyError, ChangeGuardError, QualityGateError, ModelConfigError,
            LeadflowEnvError, ConnectionNotFound, *_config_errors())


def _config_errors() -> tuple[type[BaseException], ...]:
    from leadflow import settings as pipeline_settings
    from leadflow.connections import ConnectionConfigError
    from leadflow.crm import mapping, salesforce_mapping
    from leadflow.enrich import settings as enrich_settings
    from leadflow.quality import settings as quality_settings

    return (ConnectionConfigError, mapping.MappingConfigError, salesforce_mapping.MappingConfigError,
            enrich_settings.SettingsError, quality_settings.SettingsError, pipeline_settings.SettingsError)


@contextlib.contextmanager
def fail_without_retry() -> Iterator[None]:
    """Inside a task: a permanent error fails the task at once instead of spending its retries,
    so a wrong token fails a run in seconds, not minutes."""
    try:
        yield
    except permanent_errors() as exc:
        fail_task(exc)
