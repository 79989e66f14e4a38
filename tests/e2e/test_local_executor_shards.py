"""End to end: a real scheduler with LocalExecutor on PostgreSQL runs leadflow_hubspot with
shards=4; the mapped qualify and push tasks run at the same time, and the warehouse and the CRM
end up exactly as after an unsharded run of the same world.

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

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pandas as pd
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from e2e_processes import stop_group

from leadflow.devrun import start_sandbox, stop

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


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def _seed_world(path: Path) -> None:
    from leadflow.sandbox.serving import prepare_store

    store, _ = prepare_store(path, contacts=CONTACTS, seed=SEED)
    store.close()  # checkpoints the WAL: the file alone is the whole world, safe to copy


def _crm_contacts(db_path: Path) -> dict[int, dict]:
    from leadflow.sandbox.store import SandboxStore

    store = SandboxStore(db_path)
    try:
        return {r.id: r.props for r in store.list_page("contacts", after_id=0, limit=CONTACTS + 100)}
    finally:
        store.close()


def _scores(url: str) -> pd.DataFrame:
    from leadflow.warehouse import repo
    from leadflow.warehouse.db import get_engine

    cols = ["record_id", "score", "fit_score", "engagement_score", "grade", "stage", "lead_status", "reasons"]
    engine = get_engine(url)
    try:
        return repo.load_scores(engine, "hubspot")[cols].sort_values("record_id").reset_index(drop=True)
    finally:
        engine.dispose()


class _BaseUrlSession(requests.Session):
    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base + url, *args, **kwargs)


class Airflow:
    """Airflow's components as separate processes on one home and one metadata database."""

    def __init__(self, home: Path, env: dict[str, str], meta_url: str):
        self.home = home
        self.env = env
        self.meta = create_engine(meta_url, poolclass=NullPool)
        self.procs: dict[str, subprocess.Popen] = {}

    def cli(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(BIN / "airflow"), *args], env=self.env, cwd=str(self.home),
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"airflow {args[0]} {args[1] if len(args) > 1 else ''} failed:\n" + (
            result.stdout[-3000:] + result.stderr[-3000:])
        return result.stdout

    def start(self, name: str, *args: str) -> None:
        log = open(self.home / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=self.env, cwd=str(self.home),
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()  # the child holds its own copy

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                value = predicate()
                if value:
                    return value
            except (requests.RequestException, OSError, ValueError, KeyError):
                pass  # not up yet
            time.sleep(1)
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{self.diagnostics()}")

    def connect_api(self, base: str, timeout: float) -> requests.Session:
        """A REST API session signed in as the admin SimpleAuthManager generates at start."""
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        password = self.wait(lambda: json.loads(passwords.read_text())["admin"], timeout, "the admin password")
        token = self.wait(lambda: requests.post(f"{base}/auth/token", timeout=10,
                                                json={"username": "admin", "password": password}
                                                ).json()["access_token"], timeout, "the api-server")
        session = _BaseUrlSession(base)
        session.headers["Authorization"] = f"Bearer {token}"
        return session

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"airflow {name} exited ({proc.returncode})\n{self.diagnostics()}"

    def stop(self) -> None:
        # the scheduler first: it must not hand out work to a stopping api-server
        for name in ("scheduler", "dag-processor", "api-server"):
            if name in self.procs:
                stop_group(self.procs[name])
        self.meta.dispose()

    def query(self, sql: str, **params) -> list:
        with self.meta.connect() as conn:
            return list(conn.execute(text(sql), params))

    def run_state(self) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=DAG_ID, r=RUN_ID)
        return rows[0].state if rows else None

    def task_instances(self) -> list:
        return self.query(
            "SELECT task_id, map_index, state, try_number, start_date, end_date FROM task_instance "
            "WHERE dag_id = :d AND run_id = :r ORDER BY start_date NULLS LAST, task_id, map_index",
            d=DAG_ID, r=RUN_ID)

    def diagnostics(self) -> str:
        parts = []
        try:
            parts.append(f"dag run {RUN_ID}: {self.run_state()}")
            tis = self.task_instances()
            parts += [f"  {t.task_id}[{t.map_index}] {t.state} try {t.try_number} {t.start_date} -> {t.end_date}"
                      for t in tis]
            for t in tis:
                if t.state in ("failed", "up_for_retry", "upstream_failed"):
                    pattern = f"dag_id={DAG_ID}/run_id={RUN_ID}/task_id={t.task_id}/**/*.log"
                    for log in sorted((self.home / "logs").glob(pattern)):
                        parts.append(f"--- {log.relative_to(self.home)}\n{_tail(log, 30)}")
        except Exception as exc:  # diagnostics must never hide the original failure
            parts.append(f"(metadata DB not readable: {exc})")
        for name in ("scheduler", "api-server", "dag-processor"):
            parts.append(f"--- {name}.log (tail)\n{_tail(self.home / f'{name}.log')}")
        return "\n".join(parts)

    def wait_for_run(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            state = self.run_state()
            if state == "success":
                return
            # Fail fast: a retry waits a minute or more (the DAG's retry_delay) and would only hide the error.
            bad = [t for t in self.task_instances() if t.state in ("failed", "up_for_retry", "upstream_failed")]
            if state == "failed" or bad:
                pytest.fail(f"the sharded run did not succeed\n{self.diagnostics()}")
            time.sleep(2)
        pytest.fail(f"the sharded run did not finish within {timeout:.0f} s\n{self.diagnostics()}")


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
    world = tmp_path / "world.db"
    _seed_world(world)
    var_a, var_b, home = tmp_path / "var-airflow", tmp_path / "var-single", tmp_path / "airflow-home"
    for var in (var_a, var_b):
        var.mkdir()
        shutil.copy(world, var / "sandbox.db")
    home.mkdir()
    warehouse_a, warehouse_b, meta_url = new_pg_database(), new_pg_database(), new_pg_database()

    with ExitStack() as cleanup:
        sandbox_extra = ["--seed", str(SEED), "--salesforce-port", "off"]
        sandbox_a, conn_a = start_sandbox(var_a, CONTACTS, sandbox_extra)
        cleanup.callback(stop, sandbox_a)
        sandbox_b, conn_b = start_sandbox(var_b, CONTACTS, sandbox_extra)
        cleanup.callback(stop, sandbox_b)

        # The reference run has its own world and warehouse: it runs while Airflow is set up.
        env_b = dict(os.environ, LEADFLOW_VAR_DIR=str(var_b), LEADFLOW_WAREHOUSE_URL=warehouse_b, **conn_b)
        single_log = open(var_b / "single-run.log", "wb")
        single = subprocess.Popen([sys.executable, "-m", "leadflow.cli", "run", "--crm", "hubspot",
                                   "--run-id", "single"], env=env_b, stdout=single_log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        single_log.close()
        cleanup.callback(stop_group, single)

        port = _free_port()
        env_a = dict(os.environ)
        env_a.update(
            conn_a,
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
            LEADFLOW_VAR_DIR=str(var_a),
            LEADFLOW_WAREHOUSE_URL=warehouse_a,
            PATH=f"{BIN}:{os.environ.get('PATH', '')}",
        )
        airflow = Airflow(home, env_a, meta_url)
        cleanup.callback(airflow.stop)
        airflow.cli("db", "migrate")
        # All at once, as `airflow standalone` does: the scheduler idles until the run exists.
        for component in ("api-server", "dag-processor", "scheduler"):
            airflow.start(component, component)
        api = airflow.connect_api(f"http://127.0.0.1:{port}", timeout=240)
        # Set up and trigger through the REST API: four more `airflow` CLI processes would cost
        # a minute on a busy machine.
        airflow.wait(lambda: api.get(f"/api/v2/dags/{DAG_ID}").status_code == 200, 240, "the DAG to be parsed")
        pool = api.post("/api/v2/pools", json={"name": "leadflow_hubspot", "slots": SHARDS,
                                               "description": "HubSpot API calls"})
        assert pool.status_code in (200, 201), pool.text
        api.patch(f"/api/v2/dags/{DAG_ID}", json={"is_paused": False}).raise_for_status()
        run = api.post(f"/api/v2/dags/{DAG_ID}/dagRuns",
                       json={"dag_run_id": RUN_ID, "logical_date": None, "conf": {"shards": SHARDS}})
        assert run.status_code in (200, 201), run.text
        setup_s = time.monotonic() - started

        assert single.wait(timeout=600) == 0, _tail(var_b / "single-run.log", 60)
        single_s = time.monotonic() - started
        airflow.wait_for_run(timeout=600)
        run_s = time.monotonic() - started
        tis = airflow.task_instances()
        airflow.stop()
        stop(sandbox_a)
        stop(sandbox_b)

    for t in tis:
        print(f"  {t.task_id}[{t.map_index}] {t.start_date:%H:%M:%S.%f} -> {t.end_date:%H:%M:%S.%f}")
    print(f"timings: setup {setup_s:.0f} s, unsharded done at {single_s:.0f} s, sharded run done at {run_s:.0f} s")
    _assert_ran_in_parallel(tis, "qualify")
    _assert_ran_in_parallel(tis, "push")
    assert all(t.state == "success" for t in tis), [(t.task_id, t.map_index, t.state) for t in tis]

    sharded_scores, single_scores = _scores(warehouse_a), _scores(warehouse_b)
    assert len(single_scores) > 0
    pd.testing.assert_frame_equal(sharded_scores, single_scores)

    crm_a, crm_b = _crm_contacts(var_a / "sandbox.db"), _crm_contacts(var_b / "sandbox.db")
    assert crm_a.keys() == crm_b.keys() and len(crm_a) == CONTACTS
    # leadflow_scored_at is the time of the write, the one property allowed to differ
    compared = sorted({k for props in crm_b.values() for k in props if k.startswith("leadflow_")}
                      - {"leadflow_scored_at"}) + ["lifecyclestage", "hs_lead_status"]
    assert "leadflow_score" in compared
    written = sum(1 for props in crm_a.values() if props.get("leadflow_score") is not None)
    assert written > 0
    differing = [(cid, key, crm_a[cid].get(key), props.get(key))
                 for cid, props in crm_b.items() for key in compared if crm_a[cid].get(key) != props.get(key)]
    assert not differing, differing[:20]
