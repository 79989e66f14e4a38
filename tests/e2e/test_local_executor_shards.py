"""End to end: a real scheduler with LocalExecutor on PostgreSQL runs leadflow_hubspot with
shards=4; the mapped enrich, validate, qualify and push tasks run at the same time, and the
warehouse and the CRM end up exactly as after an unsharded run of the same world.

1. one seeded sandbox world is copied twice: world A for Airflow, world B for the reference run;
2. the reference: `leadflow run` (the unsharded pipeline, in its own process) on world B with
   its own PostgreSQL warehouse, started while Airflow is being set up;
3. Airflow: metadata DB on a fresh PostgreSQL database, `airflow db migrate`, then the
   api-server (also the Task Execution API), dag-processor and scheduler (LocalExecutor) as
   separate processes, the way `airflow standalone` starts them; through the REST API: a pool
   with 4 slots, the DAG unpaused and triggered with {"shards": 4};
4. the task instances' start/end times come from the metadata DB; scores per record and the
   CRM's leadflow properties per contact are compared between A and B.

On failure the message carries the task states, the failed tasks' log tails and the tails of
the Airflow component logs. Every process started here is stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from e2e_processes import AirflowProcesses, UnshardedReference

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAG_ID = "leadflow_hubspot"
CONTACTS = 2000
SEED = 7
SHARDS = 4
RUN_ID = "manual__shards4"

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_ran_in_parallel(tis: list, task_id: str) -> None:
    mapped = [t for t in tis if t.task_id == task_id]
    intervals = "\n".join(f"  {t.task_id}[{t.map_index}] {t.start_date} -> {t.end_date}" for t in mapped)
    assert sorted(t.map_index for t in mapped) == list(range(SHARDS)), intervals
    assert all(t.state == "success" for t in mapped), intervals
    # Intervals that pairwise overlap share a common instant: all shards were running at once.
    latest_start = max(t.start_date for t in mapped)
    earliest_end = min(t.end_date for t in mapped)
    assert latest_start < earliest_end, f"{task_id} shards did not all run at the same time:\n{intervals}"


def test_four_shards_run_in_parallel_under_local_executor_and_equal_the_unsharded_run(
        new_pg_database, tmp_path):
    started = time.monotonic()
    home = tmp_path / "airflow-home"
    home.mkdir()
    warehouse_a, warehouse_b, meta_url = new_pg_database(), new_pg_database(), new_pg_database()

    with ExitStack() as cleanup:
        reference = UnshardedReference(tmp_path, CONTACTS, SEED, warehouse_a, warehouse_b, cleanup)

        port = _free_port()
        env_a = dict(os.environ)
        env_a.update(
            reference.conn_a,
            AIRFLOW_HOME=str(home),
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=meta_url,
            # Airflow derives its async URL as postgresql+asyncpg (not installed): psycopg 3 does async too.
            AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC=meta_url.replace("+psycopg:", "+psycopg_async:"),
            AIRFLOW__CORE__EXECUTOR="LocalExecutor",
            # Headroom over the 4 shards: a finishing upstream task still holds its slot for a moment.
            AIRFLOW__CORE__PARALLELISM=str(2 * SHARDS),
            AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
            AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"http://127.0.0.1:{port}/execution/",
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__PORT=str(port),
            AIRFLOW__API__WORKERS="1",
            # The api-server signs the tokens the task processes present: all components share the key.
            AIRFLOW__API_AUTH__JWT_SECRET=secrets.token_hex(32),
            # Only the triggered run: unpausing must not add a cron run ahead of it (max_active_runs=1).
            AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE="False",
            LEADFLOW_CRMS="hubspot",
            LEADFLOW_VAR_DIR=str(reference.var_a),
            LEADFLOW_WAREHOUSE_URL=warehouse_a,
            PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        )
        airflow = AirflowProcesses(home, env_a, meta_url, DAG_ID, RUN_ID)
        cleanup.callback(airflow.stop)
        airflow.cli("db", "migrate")
        # All at once, as `airflow standalone` does: the scheduler idles until the run exists.
        for component in ("api-server", "dag-processor", "scheduler"):
            airflow.start(component, component)
        api = airflow.connect_api(f"http://127.0.0.1:{port}", timeout=240)
        airflow.trigger(api, "leadflow_hubspot", SHARDS, {"shards": SHARDS})
        setup_s = time.monotonic() - started

        reference.wait()
        single_s = time.monotonic() - started
        airflow.wait_for_run(timeout=600)
        run_s = time.monotonic() - started
        tis = airflow.task_instances()
        airflow.stop()

    for t in tis:
        print(f"  {t.task_id}[{t.map_index}] {t.start_date:%H:%M:%S.%f} -> {t.end_date:%H:%M:%S.%f}")
    print(f"timings: setup {setup_s:.0f} s, unsharded done at {single_s:.0f} s, sharded run done at {run_s:.0f} s")
    for task_id in ("enrich", "validate", "qualify"):
        _assert_ran_in_parallel(tis, task_id)
    _assert_ran_in_parallel(tis, "push")
    assert all(t.state == "success" for t in tis), [(t.task_id, t.map_index, t.state) for t in tis]

    reference.assert_same_outcome()
