"""End to end: the CeleryExecutor cluster of docker-compose.yaml, as processes on this machine
(tests/e2e/celery_cluster.py starts it: Redis, the api-server, dag-processor, scheduler and **two**
`airflow celery worker` processes, with the compose file's own Airflow settings; a throw-away
PostgreSQL database is the metadata DB and Celery's result backend, another the warehouse).
leadflow_hubspot runs against the sandbox with shards=4, two tasks at a time per worker.

In the middle of the push, once the sandbox has applied some but not all of a running push
shard's writes, the worker running it is SIGKILLed with every process it started, as a lost
machine would be. The sandbox answers every write late (a `timeout` fault on all writes: the
write is applied, the answer held), so the kill always falls between the CRM applying a batch and
the worker recording it: the case a retry must not write twice. Airflow finds the dead task by
its missing heartbeats and retries it on the surviving worker. Then: the run succeeds, the
mapped shards of `qualify` and `push` ran on both workers, the killed shards' second tries ran on
the survivor, scores and the CRM's values equal those of an unsharded `leadflow run` on a copy of
the same world (e2e_processes.UnshardedReference), and the sandbox's own property history holds
no (contact, property, value) written twice by leadflow's app.

On failure the message carries the task states, the failed tasks' log tails and the tails of
every component's log. Every process started here is stopped at the end.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest

from celery_cluster import WORKERS, running_redis, start_cluster
from e2e_processes import AirflowProcesses, UnshardedReference

RUN_ID = "manual__celery_shards4"
CONTACTS = 1000
# Every write is applied at once and answered this late; small batches make several waves of
# calls per shard, so that a shard is caught with some of its writes applied and some not.
WRITE_ANSWER_DELAY_S = 2
BATCH_SIZE = 25
# Airflow waits 5 minutes for a lost task's heartbeat by default; here the task supervisors beat
# every 2 s and a task is lost after 12 s without one: a busy machine still has five beats of slack.
HEARTBEAT_S, HEARTBEAT_TIMEOUT_S = 2, 12
SEED = 7
SHARDS = 4

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]


@pytest.fixture
def redis_url(tmp_path):
    """A throw-away Redis on a free loopback port, no persistence; killed at the end."""
    with running_redis(tmp_path / "redis") as url:
        yield url


def _worker_of(airflow: AirflowProcesses, logs: dict[str, Path], task_id: str, map_index: int,
               attempt: int) -> str:
    ran = [name for name, folder in logs.items() if airflow.task_logs(task_id, map_index, [folder], attempt)]
    assert len(ran) == 1, (f"{task_id}[{map_index}] try {attempt} has logs under {ran or 'no worker'}\n"
                           f"{airflow.diagnostics()}")
    return ran[0]


RETRY_POLICY = """\
from datetime import timedelta


def task_policy(task):
    # The DAG waits a minute before a retry (a CRM outage needs it); the test only shortens the wait.
    task.retry_delay = timedelta(seconds=2)
"""


def _leadflow_writes(sandbox_db: Path) -> list[tuple[str, str, str | None]]:
    """(contact, property, new value) of every contact property change leadflow's app made, read
    from the sandbox's own history (its `writes` table) while the sandbox runs."""
    from leadflow.sandbox.history import LEADFLOW_APP

    with sqlite3.connect(f"file:{sandbox_db}?mode=ro", uri=True, timeout=30) as db:
        return db.execute("SELECT object_id, property, new_value FROM writes WHERE object_type = 'contacts' "
                          "AND source_type = ? AND source_id = ?",
                          (LEADFLOW_APP.source_type, LEADFLOW_APP.source_id)).fetchall()


class _PushProgress:
    """Per push shard: the records it plans to write (its push-log entries in the warehouse),
    those the sandbox has applied, and those of them the worker has not yet recorded."""

    def __init__(self, warehouse_url: str, sandbox_db: Path):
        from leadflow.warehouse.db import get_engine

        self.engine, self.sandbox_db = get_engine(warehouse_url), sandbox_db
        self.shard_ids: dict[int, set[str]] = {}

    def __call__(self, shard: int) -> tuple[set[str], set[str], set[str]]:
        from sqlalchemy import select

        from leadflow.warehouse import repo
        from leadflow.warehouse.tables import push_log

        if shard not in self.shard_ids:
            self.shard_ids[shard] = set(repo.load_scores(self.engine, "hubspot", shard, SHARDS)["record_id"])
        ids = self.shard_ids[shard]
        with self.engine.connect() as conn:
            logged = list(conn.execute(select(push_log.c.record_id, push_log.c.status)
                                       .where(push_log.c.run_id == RUN_ID)))
        planned = {rec for rec, _ in logged} & ids
        pending = {rec for rec, status in logged if status == "pending"} & ids
        applied = {rec for rec, prop, _ in _leadflow_writes(self.sandbox_db) if prop == "leadflow_score"} & ids
        return planned, applied, applied & pending


def _push_caught_mid_way(airflow: AirflowProcesses, logs: dict[str, Path], progress: _PushProgress):
    """(worker, shard) of a push shard running its first try whose writes the sandbox has applied
    in part, some of them not yet recorded by the worker; None while there is none."""
    for t in airflow.task_instances():
        if t.task_id != "push" or t.state != "running" or t.try_number != 1:
            continue
        workers = [name for name, folder in logs.items() if airflow.task_logs("push", t.map_index, [folder], 1)]
        if not workers:
            continue
        planned, applied, unrecorded = progress(t.map_index)
        if unrecorded and len(applied) < len(planned):
            return workers[0], t.map_index
    return None


def test_two_celery_workers_run_four_shards_and_a_worker_killed_mid_push_leaves_the_crm_as_the_unsharded_run(
        new_pg_database, redis_url, tmp_path):
    started = time.monotonic()
    meta_url, warehouse_url, reference_url = new_pg_database(), new_pg_database(), new_pg_database()

    with ExitStack() as cleanup:
        reference = UnshardedReference(
            tmp_path, CONTACTS, SEED, warehouse_url, reference_url, cleanup, schema_first=True,
            sandbox_a=("--faults", "timeout=1", "--timeout-seconds", str(WRITE_ANSWER_DELAY_S)))
        conn_a = json.loads(reference.conn_a["AIRFLOW_CONN_LEADFLOW_HUBSPOT"])
        conn_a["extra"] = {**(conn_a.get("extra") or {}), "batch_size": BATCH_SIZE}
        policy_dir = tmp_path / "policy"
        policy_dir.mkdir()
        (policy_dir / "airflow_local_settings.py").write_text(RETRY_POLICY)

        cluster = start_cluster(
            cleanup, tmp_path, meta_url=meta_url, redis_url=redis_url, warehouse_url=warehouse_url,
            var_dir=reference.var_a, run_id=RUN_ID, concurrency=2, env={
                **reference.conn_a,  # what docker-compose.demo.yaml gives the workers
                "AIRFLOW_CONN_LEADFLOW_HUBSPOT": json.dumps(conn_a),
                # A killed worker's task is found by its missing heartbeats, looked for every 2 s.
                "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": str(HEARTBEAT_S),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                # the retry delay policy (RETRY_POLICY), read by the dag-processor as it parses the DAG
                "PYTHONPATH": os.pathsep.join(filter(None, [str(policy_dir), os.environ.get("PYTHONPATH")])),
            })
        airflow, api, worker_logs = cluster.airflow, cluster.api, cluster.worker_logs
        airflow.trigger(api, "leadflow_hubspot", SHARDS, {"shards": SHARDS})
        setup_s = time.monotonic() - started

        progress = _PushProgress(warehouse_url, reference.var_a / "sandbox.db")
        cleanup.callback(progress.engine.dispose)
        victim, caught_shard = airflow.wait(
            lambda: _push_caught_mid_way(airflow, worker_logs, progress), 400,
            "a push shard with part of its writes applied")
        killed_tis = {t.map_index for t in airflow.task_instances() if t.task_id == "push" and t.state == "running"
                      and airflow.task_logs("push", t.map_index, [worker_logs[victim]], 1)}
        airflow.kill(victim)
        killed_s = time.monotonic() - started
        planned, applied_before, unrecorded = progress(caught_shard)
        survivor = next(name for name in WORKERS if name != victim)

        reference.wait()
        airflow.wait_for_run(timeout=600, retries_expected=True)
        run_s = time.monotonic() - started
        tis = airflow.task_instances()
        # the worker of every try (a killed try's log stays in its worker's folder)
        tries = {(t.task_id, t.map_index, attempt): _worker_of(airflow, worker_logs, t.task_id, t.map_index, attempt)
                 for t in tis for attempt in range(1, t.try_number + 1)}
        ran_on = {(t.task_id, t.map_index): tries[t.task_id, t.map_index, t.try_number] for t in tis}
        written = _leadflow_writes(reference.var_a / "sandbox.db")

    for t in tis:
        print(f"  {t.task_id}[{t.map_index}] on {ran_on[t.task_id, t.map_index]} "
              f"{t.start_date:%H:%M:%S.%f} -> {t.end_date:%H:%M:%S.%f}")
    print(f"timings: setup {setup_s:.0f} s, {victim} killed at {killed_s:.0f} s "
          f"(push[{caught_shard}]: {len(applied_before)} of {len(planned)} records applied, {len(unrecorded)} of "
          f"them not recorded), run done at {run_s:.0f} s")
    # the kill fell between the CRM applying writes and the worker recording them
    assert unrecorded and len(applied_before) < len(planned)
    assert all(t.state == "success" for t in tis), [(t.task_id, t.map_index, t.state) for t in tis]
    # The killed push shards were tried again, on the surviving worker; nothing else was retried.
    assert caught_shard in killed_tis
    retried = {t.map_index: t.try_number for t in tis if t.try_number > 1 and t.task_id == "push"}
    assert retried == {shard: 2 for shard in killed_tis}, (retried, killed_tis)
    assert all(t.try_number == 1 for t in tis if t.task_id != "push"), [(t.task_id, t.try_number) for t in tis]
    assert all(ran_on["push", shard] == survivor for shard in killed_tis), ran_on
    assert sorted(key for key in ran_on if key[0] in ("qualify", "push")) == \
        [(task_id, shard) for task_id in ("push", "qualify") for shard in range(SHARDS)]
    # Which worker takes a queued task is Celery's choice (a worker still closing its previous task
    # may leave the shards of one step to the other), so the shards are asserted across both steps.
    mapped_on = {worker for (task_id, _, _), worker in tries.items() if task_id in ("qualify", "push")}
    assert mapped_on == set(WORKERS), f"the mapped shards ran on {mapped_on} only: {tries}"
    reference.assert_same_outcome()
    # No value written twice, by the CRM's own history: each (contact, property, value) leadflow's
    # app set appears once, also for the records the killed try had applied when it died.
    counts = Counter(written)
    twice = sorted(key for key, n in counts.items() if n > 1)
    assert not twice, f"{len(twice)} values written twice, e.g. {twice[:5]}"
    assert applied_before <= {rec for rec, prop, _ in written if prop == "leadflow_score"}
