"""leadflow DAGs: one per configured CRM, from one factory. This file only wires tasks; the work
is in `leadflow.pipeline` (no I/O and no heavy imports at parse time)."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, chain, dag, task, teardown

from leadflow import dag_support

# CRMs with a DAG; `LEADFLOW_CRMS=hubspot,salesforce` overrides.
_ENV = dag_support.dag_env()
CRMS = _ENV.crms
SCHEDULE = _ENV.schedule
TIMEZONE = _ENV.timezone


DOC_MD = """
### leadflow_{crm}

Keeps the leads of the **{crm}** CRM qualified. Each run:

1. **extract** – pulls the contacts changed since the last run (the watermark) into the warehouse;
2. **enrich** – resolves each lead's company and firmographics (cache, reference file, API),
   one mapped task per shard;
3. **validate** – Great Expectations row checks (failing leads go to quarantine), one mapped
   task per shard; **validate_gate** – the batch gate over every shard's figures: a failed gate
   stops the run before anything is scored or written to the CRM;
4. **qualify** – scores every open lead (fit, engagement, BANT, disqualifiers, stage, reasons),
   one mapped task per shard;
5. **accounts** – the account view: per company its engaged leads, buying-committee roles, best
   lead and company score; holds back a handoff waiting for a second engaged persona (config);
6. **validate_scores** – scores in range, stages allowed, reasons present, no big drift;
7. **plan_push** – the diff against the CRM, the dry-run preview, and the guard that stops a run
   which would rewrite too many records (re-trigger with **force** to push anyway);
8. **push** – writes only what changed, in batches, with an audit log (one mapped task per shard);
9. **push_accounts** – writes the company score and buying committee to leadflow's own company
   properties (changed values only);
10. **report** – closes the run; `leadflow report --json` and the Leadflow page show it;
11. **close_run** – teardown, runs however the others ended: a failed or unfinished run is
    recorded `failed` in the warehouse, and the run's one alert goes out (failed, too much of
    the push rejected, stopped for the daily API budget, or too many handoffs ignored past the SLA).

Trigger form: **dry_run** (preview, no writes), **full_refresh**, **push** (off = score only),
**only_record_ids**, **since** (re-pull from a date), **shards**, **force**.
Connections: `leadflow_{crm}`, `leadflow_enrichment` (optional), `leadflow_warehouse` (else
`LEADFLOW_WAREHOUSE_URL`). Pool: `leadflow_{crm}`, taken by every task that calls the CRM
(`extract`, `push`, `push_accounts`; the rollback DAG's task too).
"""


def build_dag(crm: str):
    scores_asset = dag_support.scores_asset(crm)
    pool = dag_support.crm_pool(crm)  # every task that calls the CRM

    @dag(
        dag_id=f"leadflow_{crm}",
        schedule=SCHEDULE,
        start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
        catchup=False,
        max_active_runs=1,
        tags=["leadflow", crm],
        doc_md=DOC_MD.format(crm=crm),
        default_args=dag_support.crm_default_args(),
        params={
            "dry_run": Param(False, type="boolean", title="Dry run",
                             description="Compute scores and the diff, write a preview to the run "
                             "report, and write nothing to the CRM."),
            "full_refresh": Param(False, type="boolean", title="Full refresh",
                                  description="Ignore the watermark and pull every lead again (leads the "
                                  "CRM no longer returns are marked deleted)."),
            "push": Param(True, type="boolean", title="Push to the CRM",
                          description="Off: pull, validate and score, but write nothing back."),
            "only_record_ids": Param([], type="array", items={"type": "string"}, title="Only these records",
                                     description="Score and push only these CRM record ids (empty: all)."),
            "since": Param(None, type=["null", "string"], format="date", title="Pull since",
                           description="Re-pull leads changed since this date (YYYY-MM-DD) instead of "
                           "the stored watermark; the watermark never moves backwards."),
            "shards": Param(1, type="integer", minimum=1, maximum=dag_support.MAX_SHARDS, title="Shards",
                            description="Split enrich, validate, qualify and push into this many "
                            "parallel mapped tasks (a stable hash of the record id)."),
            "force": Param(False, type="boolean", title="Force the push",
                           description="Push even if the run would change more records than the "
                           "configured share (the guard against a bad model)."),
        },
    )
    def leadflow_crm():
        run = dag_support.run_step

        @task(pool=pool)
        def extract() -> dict:
            return run("extract", crm)

        @task
        def enrich(shard: int) -> dict:
            return run("enrich", crm, shard)

        @task
        def validate(shard: int) -> dict:
            return run("validate", crm, shard)

        @task
        def validate_gate() -> dict:
            return run("validate_gate", crm)

        @task
        def shard_list() -> list[int]:
            return dag_support.shard_list()

        @task
        def qualify(shard: int) -> dict:
            return run("qualify", crm, shard)

        @task
        def accounts() -> dict:
            return run("accounts", crm)

        @task
        def validate_scores() -> dict:
            return run("validate_scores", crm)

        @task
        def plan_push() -> dict:
            return run("plan_push", crm)

        @task(pool=pool, max_active_tis_per_dag=8)
        def push(shard: int) -> dict:
            return run("push", crm, shard)

        @task(pool=pool)
        def push_accounts() -> dict:
            return run("push_accounts", crm)

        @task(outlets=[scores_asset])
        def report() -> dict:
            return run("report", crm)

        @teardown
        @task(on_failure_callback=None)  # its own failure is not the run's: the run's error stays on record
        def close_run() -> dict:
            return dag_support.close_run(crm)

        shards = shard_list()
        steps = [extract(), shards, enrich.expand(shard=shards), validate.expand(shard=shards), validate_gate(),
                 qualify.expand(shard=shards), accounts(), validate_scores(), plan_push(), push.expand(shard=shards),
                 push_accounts(), report()]
        chain(*steps)
        # After every task, not only `report`: a failed push shard must not find its siblings still writing.
        steps >> close_run()

    return leadflow_crm()


for _crm in CRMS:
    globals()[f"leadflow_{_crm}"] = build_dag(_crm)
