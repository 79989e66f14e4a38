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
