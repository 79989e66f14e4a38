"""leadflow DAGs: one per CRM. This file only wires tasks; the work is in `leadflow.pipeline`."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

CRMS = ("hubspot",)

DOC_MD = """
### leadflow_{crm}

Keeps the leads of the **{crm}** CRM qualified. Each run:

1. **extract** – pulls the contacts changed since the last run (the watermark) into the warehouse;
2. **qualify** – scores every open lead with the versioned qualification model (fit, engagement,
   BANT, disqualifiers, lifecycle stage), each score with its reasons;
3. **push** – writes back only the values that changed, in batches, with an audit log;
4. **report** – closes the run and returns its counts (`leadflow report --json` prints them).

Trigger by hand with **dry_run** to preview the push without writing, or **full_refresh** to
re-pull every lead. Connection: `leadflow_{crm}`. Warehouse: `LEADFLOW_WAREHOUSE_URL`.
"""


def _ctx(params: dict, crm: str):
    from airflow.sdk import BaseHook

    from leadflow.connections import Connection
    from leadflow.pipeline import RunContext

    context = get_current_context()
    dag_run = context["dag_run"]
    # Manual and asset-triggered runs have no logical date in Airflow 3: run_after always exists.
    return RunContext(
        crm=crm,
        run_id=dag_run.run_id,
        dry_run=bool(params.get("dry_run")),
        full_refresh=bool(params.get("full_refresh")),
        now=dag_run.run_after,
        connection=Connection.from_airflow(BaseHook.get_connection(f"leadflow_{crm}")),
    )


def build_dag(crm: str):
    @dag(
        dag_id=f"leadflow_{crm}",
        schedule="0 2 * * *",
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["leadflow", crm],
        doc_md=DOC_MD.format(crm=crm),
        default_args={
            "owner": "leadflow",
            "retries": 2,
            "retry_delay": timedelta(minutes=1),
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=10),
        },
        params={
            "dry_run": Param(
                False,
                type="boolean",
                title="Dry run",
                description="Compute scores and the diff, write a preview to the run report, "
                "and write nothing to the CRM.",
            ),
            "full_refresh": Param(
                False,
                type="boolean",
                title="Full refresh",
                description="Ignore the watermark and pull every lead again (marks leads the "
                "CRM no longer returns as deleted).",
            ),
        },
    )
    def leadflow_crm():
        @task
        def extract(params: dict | None = None) -> dict:
            from leadflow.pipeline import extract as step

            return step(_ctx(params or {}, crm))

        @task
        def qualify(params: dict | None = None) -> dict:
            from leadflow.pipeline import qualify as step

            return step(_ctx(params or {}, crm))

        @task
        def push(params: dict | None = None) -> dict:
            from leadflow.pipeline import push as step

            return step(_ctx(params or {}, crm))

        @task
        def report(params: dict | None = None) -> dict:
            from leadflow.pipeline import report as step

            return step(_ctx(params or {}, crm))

        extract() >> qualify() >> push() >> report()

    return leadflow_crm()


for _crm in CRMS:
    globals()[f"leadflow_{_crm}"] = build_dag(_crm)
