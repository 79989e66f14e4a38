"""Maintenance jobs the `leadflow_train` and `leadflow_rollback` DAGs run: gate the rules model
and retrain the predictive model from the warehouse, and undo one run's writes to the CRM.

Both take plain values (no Airflow objects), open what they need and close it again, and return
a small JSON-able dict for XCom. `engine=` / `connector_factory=` exist for tests.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Callable

from sqlalchemy import Engine

from leadflow.connections import get_connection
from leadflow.crm.registry import get_connector
from leadflow.pipeline import RunContext, default_run_id, train
from leadflow.predict.rules_gate import gate_rules
from leadflow.push.rollback import rollback_run
from leadflow.settings import load_pipeline_settings
from leadflow.shared_limit import connector_limits
from leadflow.warehouse.db import ensure_schema, get_engine

log = logging.getLogger(__name__)


def _open_engine(engine: Engine | None, warehouse_url: str | None) -> tuple[Engine, bool]:
    """The engine to use and whether this module opened it (and so must dispose of it)."""
    if engine is not None:
        return engine, False
    opened = get_engine(warehouse_url)
    ensure_schema(opened)
    return opened, True


def run_training(
    crm: str,
    now: datetime | None = None,
    run_id: str | None = None,
    *,
    warehouse_url: str | None = None,
    engine: Engine | None = None,
    model_path: str | None = None,
) -> dict[str, Any]:
    """Gate `crm`'s rules model, then retrain its predictive model.

    First the model YAML (`model_path`, default the shipped one) is judged against the published
    rules champion (`predict.rules_gate`); then the predictive model is trained and gated
    against the predictive champion, or the rules champion before the first
    (`train_from_warehouse`). Returns the predictive summary with the rules decision under
    `rules`. Training reads only the warehouse: no CRM connection is needed."""
    db, owned = _open_engine(engine, warehouse_url)
    ctx = RunContext(
        crm=crm,
        run_id=run_id or default_run_id("train"),
        now=now or datetime.now(timezone.utc),
        warehouse_url=warehouse_url,
        model_path=model_path,
        _engine=db,
    )
    try:
        rules = gate_rules(db, crm, model_path=model_path, now_ms=int(ctx.now.timestamp() * 1000))
        summary = train(ctx)
    finally:
        if owned:
            db.dispose()
    summary["rules"] = rules.as_dict()
    log.info("train %s: rules %s (%s), predictive %s", crm, rules.candidate, rules.decision,
             summary.get("status", "done"))
    return summary


def run_rollback(
    crm: str,
    run_id: str,
    dry_run: bool = True,
    connection: Any = None,
    *,
    warehouse_url: str | None = None,
    engine: Engine | None = None,
    connector_factory: Callable[[str, Any], Any] | None = None,
) -> dict[str, Any]:
    """Undo the CRM writes of run `run_id` where the CRM still holds leadflow's value.

    `dry_run` (the default) only reports what would be restored. `connection` is a
    `leadflow.connections.Connection` (the DAG converts Airflow's); without one it is read from
    `AIRFLOW_CONN_LEADFLOW_<CRM>`. Returns `RollbackReport.as_dict()` plus the CRM."""
    run_id = (run_id or "").strip()
    if not run_id:
        raise ValueError("run_id is required: the id of the run whose writes to undo")
    if connection is None:
        connection = get_connection(f"leadflow_{crm}")
    db, owned = _open_engine(engine, warehouse_url)
    try:
        if connector_factory is None:  # the CRM DAG's rate limits, shared with its runs when on
            connector = get_connector(crm, connection, **connector_limits(db, load_pipeline_settings().rate_limit))
        else:
            connector = connector_factory(crm, connection)
        try:
            report = rollback_run(db, connector, crm, run_id, dry_run=bool(dry_run))
        finally:
            connector.close()
    finally:
        if owned:
            db.dispose()
    out = {"crm": crm, **report.as_dict()}
    log.info("rollback %s of %s: %d records, %d restored, %d skipped (dry run %s)", crm, run_id,
             out["records"], out["restored"], out["skipped_changed_since"], out["dry_run"])
    return out
