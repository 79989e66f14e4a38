"""leadflow maintenance DAGs: `leadflow_train` (retrain the predictive model) and
`leadflow_rollback` (undo one run's CRM writes). This file only wires tasks; the work is in
`leadflow.maintenance` (no I/O and no heavy imports at parse time)."""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task, teardown

from leadflow import dag_support

# Same CRM list as dags/leadflow_crm.py: `LEADFLOW_CRMS=hubspot,salesforce` overrides.
_ENV = dag_support.dag_env()
CRMS = _ENV.crms
TIMEZONE = _ENV.timezone
TRAIN_CRON = "0 3 * * 0"  # Sundays 03:00

TRAIN_DOC_MD = """
### leadflow_train

Gates each CRM's ({crms}) models on sales' verdicts, one task per CRM. First the rules model:
the model YAML is a candidate and replaces the published rules champion only if its backtest on
the latest handed-over leads beats the champion by the model's margin (with too few answered
handoffs the champion stays: `insufficient_data`). Then the predictive model is retrained from the
warehouse's labelled history and published under the same rule. The task stays green when
nothing is published; `leadflow model publish-rules --force` publishes a rules model by hand.

Schedule: weekly (`{cron}`, {tz}) **and** whenever a CRM DAG publishes new scores (the
`leadflow_<crm>_scores` assets), so new outcomes reach the model without waiting for Sunday.
Training reads only the warehouse (connection `leadflow_warehouse`, else `LEADFLOW_WAREHOUSE_URL`): no
CRM connection is used. **close_run** (teardown): when a task failed, the run's one alert
(connections `leadflow_alerts_webhook`, `leadflow_alerts_smtp`).
"""

ROLLBACK_DOC_MD = """
### leadflow_rollback

Undoes the CRM writes of one leadflow run: for every value the run confirmed, writes back the
value it replaced, **only** where the CRM still holds leadflow's value. Records somebody changed
since are skipped and listed (leadflow never overwrites a human's later decision). The rollback's
own writes go to the push log under `rollback__<run id>`.

Manual only. Trigger form: **crm**, **run_id** (the run to undo, e.g.
`scheduled__2026-01-05T02:00:00+00:00`; `leadflow report` lists them) and **dry_run** — on by
default: the task only reports what it would restore. Re-trigger with dry_run off to write.
One task per CRM (`rollback_<crm>`, in the CRM's pool `leadflow_<crm>`): the chosen CRM's runs,
the others are skipped. Connection: `leadflow_<crm>`. Warehouse: connection `leadflow_warehouse`, else `LEADFLOW_WAREHOUSE_URL`.
A wrong token or a missing connection fails the task at once, without retries; **close_run**
(teardown) then sends the run's one alert (connections `leadflow_alerts_webhook`, `leadflow_alerts_smtp`).
"""


def close_run():
    """Both DAGs' teardown, a task of the DAG being defined: one alert when a task of the run failed."""

    @teardown
    @task(on_failure_callback=None)  # its own failure is not the run's: the failed task's error stays the alert's
    def close_run() -> dict:
        return dag_support.close_maintenance_run()

    return close_run()


@dag(
    dag_id="leadflow_train",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable(TRAIN_CRON, timezone=TIMEZONE),
        # Any CRM's new scores (a plain list would mean all of them).
        assets=AssetAny(*(dag_support.scores_asset(crm) for crm in CRMS)),
    ),
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    tags=["leadflow", "maintenance", "model"],
    doc_md=TRAIN_DOC_MD.format(crms=", ".join(CRMS), cron=TRAIN_CRON, tz=TIMEZONE),
    default_args=dag_support.maintenance_default_args(),
)
def leadflow_train():
    @task
    def train(crm: str) -> dict:
        return dag_support.run_training(crm)

    [train.override(task_id=f"train_{crm}")(crm) for crm in CRMS] >> close_run()


@dag(
    dag_id="leadflow_rollback",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    tags=["leadflow", "maintenance", "rollback"],
    doc_md=ROLLBACK_DOC_MD,
    default_args=dag_support.maintenance_default_args(),
    params={
        "crm": Param(CRMS[0] if CRMS else None, type="string", enum=list(CRMS), title="CRM",
                     description="The CRM whose run to undo (connection leadflow_<crm>)."),
        "run_id": Param(type="string", minLength=1, title="Run id",
                        description="The Airflow run id of the leadflow_<crm> run whose writes to undo."),
        "dry_run": Param(True, type="boolean", title="Dry run",
                         description="On (the default): only report what would be restored, write "
                         "nothing. Off: write the before-values back to the CRM."),
    },
)
def leadflow_rollback():
    @task
    def rollback(crm: str) -> dict:
        return dag_support.run_rollback(crm)

    # One task per CRM, in that CRM's pool; the trigger's `crm` runs one, the others are skipped.
    rollbacks = []
    for crm in CRMS:
        chosen = task.run_if(dag_support.rollback_chosen(crm), skip_message=f"the trigger chose another CRM than {crm}")
        rollbacks.append(chosen(rollback.override(task_id=f"rollback_{crm}", pool=dag_support.crm_pool(crm)))(crm))
    rollbacks >> close_run()


leadflow_train()
leadflow_rollback()
