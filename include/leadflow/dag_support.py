"""Turn an Airflow run's context (dag_run, trigger Params) into a `RunContext`.

Kept out of the DAG file so that it is testable without Airflow and the DAG file only wires.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping

from leadflow.pipeline import RunContext


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
