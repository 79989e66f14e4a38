"""leadflow DAGs: one per configured CRM, from one factory. This file only wires tasks; the work
is in `leadflow.pipeline` (no I/O and no heavy imports at parse time)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from leadflow.env import leadflow_env

# CRMs with a DAG; `LEADFLOW_CRMS=hubspot,salesforce` overrides.
_ENV = leadflow_env()  # validated: a bad value fails the parse with a message naming the variable
CRMS = _ENV.crms
SCHEDULE = _ENV.schedule
TIMEZONE = _ENV.timezone
MAX_SHARDS = 64

DOC_MD = """
### leadflow_{crm}

Keeps the leads of the **{crm}** CRM qualified. Each run:

1. **extract** – pulls the contacts changed since the last run (the watermark) into the warehouse;
2. **enrich** – resolves each lead's company and firmographics (cache, reference file, API);
3. **validate** – Great Expectations row checks (failing leads go to quarantine) and the batch
   gate; a failed gate stops the run before anything is written to the CRM;
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
10. **report** – closes the run; `leadflow report --json` and the Leadflow page show it.

Trigger form: **dry_run** (preview, no writes), **full_refresh**, **push** (off = score only),
**only_record_ids**, **since** (re-pull from a date), **shards**, **force**.
Connections: `leadflow_{crm}`, `leadflow_enrichment` (optional), `leadflow_warehouse` (else
`LEADFLOW_WAREHOUSE_URL`). Pool: `leadflow_{crm}`.
"""


def _context(crm: str, shard: int | None = None, shards: int = 1):
    from leadflow.connections import get_connection
    from leadflow.dag_support import run_context

    context = get_current_context()
    return run_context(
        crm=crm,
        dag_run=context["dag_run"],
        params=context["params"],
        connection=get_connection(f"leadflow_{crm}"),
        shard=shard,
        shards=shards,
    )


def _run(step_name: str, crm: str, shard: int | None = None) -> dict:
    """Run one pipeline step; a permanent error (wrong token, bad config, gate, guard) fails the
    task without retries."""
    import leadflow.pipeline as pipeline
    from leadflow.dag_support import fail_without_retry

    shards = int(get_current_context()["params"].get("shards") or 1) if shard is not None else 1
    with fail_without_retry():
        return getattr(pipeline, step_name)(_context(crm, shard, shards))


def build_dag(crm: str):
    scores_asset = Asset(f"leadflow_{crm}_scores", uri=f"leadflow://{crm}/scores")
    pool = f"leadflow_{crm}"

    @dag(
        dag_id=f"leadflow_{crm}",
        schedule=SCHEDULE,
        start_date=pendulum.datetime(2026, 1, 1, tz=TIMEZONE),
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
        on_failure_callback=_run_failed,
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
            "shards": Param(1, type="integer", minimum=1, maximum=MAX_SHARDS, title="Shards",
                            description="Split qualify and push into this many parallel mapped tasks "
                            "(a stable hash of the record id)."),
            "force": Param(False, type="boolean", title="Force the push",
                           description="Push even if the run would change more records than the "
                           "configured share (the guard against a bad model)."),
        },
    )
    def leadflow_crm():
        @task
        def extract() -> dict:
            return _run("extract", crm)

        @task
        def enrich() -> dict:
            return _run("enrich", crm)

        @task(on_failure_callback=_alert("data quality gate"))
        def validate() -> dict:
            return _run("validate", crm)

        @task
        def shard_list() -> list[int]:
            return list(range(int(get_current_context()["params"].get("shards") or 1)))

        @task
        def qualify(shard: int) -> dict:
            return _run("qualify", crm, shard)

        @task
        def accounts() -> dict:
            return _run("accounts", crm)

        @task(on_failure_callback=_alert("data quality gate"))
        def validate_scores() -> dict:
            return _run("validate_scores", crm)

        @task(on_failure_callback=_alert("change guard"))
        def plan_push() -> dict:
            return _run("plan_push", crm)

        @task(pool=pool, max_active_tis_per_dag=8)
        def push(shard: int) -> dict:
            return _run("push", crm, shard)

        @task(pool=pool)
        def push_accounts() -> dict:
            return _run("push_accounts", crm)

        @task(outlets=[scores_asset])
        def report() -> dict:
            return _run("report", crm)

        shards = shard_list()
        scored = qualify.expand(shard=shards)
        pushed = push.expand(shard=shards)
        extract() >> enrich() >> validate() >> shards
        scored >> accounts() >> validate_scores() >> plan_push() >> pushed >> push_accounts() >> report()

    return leadflow_crm()


def _run_failed(context):
    from leadflow.dag_support import on_run_failure

    on_run_failure(context)


def _alert(kind: str):
    def callback(context):
        from leadflow.alerts import notify_failure

        notify_failure(context, kind)

    return callback


for _crm in CRMS:
    globals()[f"leadflow_{_crm}"] = build_dag(_crm)
