"""Process helpers shared by the end-to-end tests that start Airflow components."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psutil
import pytest
import requests
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(home: Path, base: dict[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """`base` (default: this process's environment) pointed at an Airflow home with this
    checkout's dags/ and plugins/, no example DAGs, and the venv's `airflow` on PATH."""
    env = dict(os.environ if base is None else base)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )
    env.update(overrides)
    return env


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process started with start_new_session=True and every child in its group (the
    scheduler's executor workers, task processes and api-server outlive a stopped parent)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


class _BaseUrlSession(requests.Session):
    def __init__(self, base: str):
        super().__init__()
        self.base = base

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 30)
        return super().request(method, self.base + url, *args, **kwargs)


class AirflowProcesses:
    """Airflow's components as separate processes on one home and one metadata database, and
    the one DAG run a test triggers (`dag_id`, `run_id`). Task logs are looked for under
    `log_dirs` (default: the home's logs/)."""

    def __init__(self, home: Path, env: dict[str, str], meta_url: str, dag_id: str, run_id: str,
                 log_dirs: list[Path] | None = None):
        self.home = home
        self.env = env
        self.meta = create_engine(meta_url, poolclass=NullPool)
        self.dag_id, self.run_id = dag_id, run_id
        self.log_dirs = log_dirs or [home / "logs"]
        self.procs: dict[str, subprocess.Popen] = {}
        self.killed: set[str] = set()

    def cli(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(BIN / "airflow"), *args], env=self.env, cwd=str(self.home),
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"airflow {args[0]} {args[1] if len(args) > 1 else ''} failed:\n" + (
            result.stdout[-3000:] + result.stderr[-3000:])
        return result.stdout

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        """`airflow *args` as component `name` (its log: <home>/<name>.log); `env` replaces the
        shared environment for this process only."""
        log = open(self.home / f"{name}.log", "wb")
        self.procs[name] = subprocess.Popen([str(BIN / "airflow"), *args], env=env or self.env,
                                            cwd=str(self.home), stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        log.close()  # the child holds its own copy

    def kill(self, name: str) -> None:
        """SIGKILL component `name` as a lost machine or container would lose it: every process
        it started dies at once, also the task processes, which Airflow's supervisor puts in a
        process group of their own (killing the component's group alone leaves them running)."""
        proc = self.procs[name]
        try:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:  # stopped first: none may fork or react while the others die
            with contextlib.suppress(psutil.NoSuchProcess):
                p.suspend()
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.killed.add(name)

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

    def trigger(self, api: requests.Session, pool: str, slots: int, conf: dict, timeout: float = 240) -> None:
        """Once the DAG is parsed: the pool its CRM tasks use, the DAG unpaused, the run triggered
        with `conf`, all through the REST API (four more `airflow` CLI processes would cost a
        minute on a busy machine)."""
        self.wait(lambda: api.get(f"/api/v2/dags/{self.dag_id}").status_code == 200, timeout, "the DAG to be parsed")
        created = api.post("/api/v2/pools", json={"name": pool, "slots": slots, "description": "CRM API calls"})
        assert created.status_code in (200, 201), created.text
        api.patch(f"/api/v2/dags/{self.dag_id}", json={"is_paused": False}).raise_for_status()
        run = api.post(f"/api/v2/dags/{self.dag_id}/dagRuns",
                       json={"dag_run_id": self.run_id, "logical_date": None, "conf": conf})
        assert run.status_code in (200, 201), run.text

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if name not in self.killed:
                assert proc.poll() is None, f"airflow {name} exited ({proc.returncode})\n{self.diagnostics()}"

    def stop(self) -> None:
        # the scheduler first: it must not hand out work to stopping components; then the others
        # in the reverse order of their start (the api-server, which workers report to, last)
        names = [name for name in self.procs if name != "scheduler"]
        names += ["scheduler"] if "scheduler" in self.procs else []
        for name in reversed(names):
            stop_group(self.procs[name])
        self.meta.dispose()

    def query(self, sql: str, **params) -> list:
        with self.meta.connect() as conn:
            return list(conn.execute(text(sql), params))

    def run_state(self) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=self.dag_id, r=self.run_id)
        return rows[0].state if rows else None

    def task_instances(self) -> list:
        return self.query(
            "SELECT task_id, map_index, state, try_number, start_date, end_date FROM task_instance "
            "WHERE dag_id = :d AND run_id = :r ORDER BY start_date NULLS LAST, task_id, map_index",
            d=self.dag_id, r=self.run_id)

    def task_logs(self, task_id: str, map_index: int = -1, folders: list[Path] | None = None,
                  attempt: int | None = None) -> list[Path]:
        """The log files of one task instance (of one try, with `attempt`), under `folders`
        (default: every log folder)."""
        mapped = f"map_index={map_index}/" if map_index >= 0 else ""
        tries = f"attempt={attempt}.log" if attempt is not None else "*.log"
        pattern = f"dag_id={self.dag_id}/run_id={self.run_id}/task_id={task_id}/{mapped}{tries}"
        return sorted(p for folder in folders or self.log_dirs for p in folder.glob(pattern))

    def diagnostics(self) -> str:
        parts = []
        try:
            parts.append(f"dag run {self.run_id}: {self.run_state()}")
            tis = self.task_instances()
            parts += [f"  {t.task_id}[{t.map_index}] {t.state} try {t.try_number} {t.start_date} -> {t.end_date}"
                      for t in tis]
            for t in tis:
                if t.state in ("failed", "up_for_retry", "upstream_failed"):
                    for log in self.task_logs(t.task_id, t.map_index):
                        parts.append(f"--- {log}\n{tail(log, 30)}")
        except Exception as exc:  # diagnostics must never hide the original failure
            parts.append(f"(metadata DB not readable: {exc})")
        for name in self.procs:
            parts.append(f"--- {name}.log (tail)\n{tail(self.home / f'{name}.log')}")
        return "\n".join(parts)

    def wait_for_run(self, timeout: float, retries_expected: bool = False) -> None:
        """Until the run succeeds; fails at the first failed task, and at the first retry unless
        `retries_expected`."""
        bad_states = ("failed", "upstream_failed") + (() if retries_expected else ("up_for_retry",))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            state = self.run_state()
            if state == "success":
                return
            # Fail fast: an unexpected retry waits a minute or more (the DAG's retry_delay) and would
            # only hide the error.
            bad = [t for t in self.task_instances() if t.state in bad_states]
            if state == "failed" or bad:
                pytest.fail(f"the run {self.run_id} did not succeed\n{self.diagnostics()}")
            time.sleep(2)
        pytest.fail(f"the run {self.run_id} did not finish within {timeout:.0f} s\n{self.diagnostics()}")


class UnshardedReference:
    """One seeded sandbox world copied twice: world A for the run under test, world B for the
    reference, an unsharded `leadflow run` in its own process with its own sandbox and warehouse,
    started at once so that it runs while Airflow is being set up. `assert_same_outcome` then
    compares scores per record and the CRM's leadflow properties per contact between A and B.
    `sandbox_a` adds `leadflow sandbox serve` options for world A only (faults, say); with
    `schema_first` the world gets leadflow's CRM properties before it is copied (so that a fault
    on every write does not hold each property's creation too). Sandboxes and the reference run
    are stopped by `cleanup`.

    Runs score as of the day they started: when the two runs started on different UTC days (the
    test crossed midnight), the reference runs again on a fresh copy of the world, now on the
    later run's day, before anything is compared."""

    def __init__(self, folder: Path, contacts: int, seed: int, warehouse_a: str, warehouse_b: str,
                 cleanup: ExitStack, sandbox_a: tuple[str, ...] = (), schema_first: bool = False):
        from leadflow.devrun import start_sandbox, stop
        from leadflow.sandbox.serving import prepare_store

        self.contacts, self.seed, self.warehouse_a = contacts, seed, warehouse_a
        self.folder = folder
        self.world = folder / "world.db"
        store, _ = prepare_store(self.world, contacts=contacts, seed=seed)
        store.close()  # checkpoints the WAL: the file alone is the whole world, safe to copy
        if schema_first:
            _create_leadflow_properties(self.world, contacts, seed)
        self.var_a = folder / "var-airflow"
        self.var_a.mkdir()
        shutil.copy(self.world, self.var_a / "sandbox.db")
        sandbox, self.conn_a = start_sandbox(self.var_a, contacts, [*self._sandbox_options(), *sandbox_a])
        cleanup.callback(stop, sandbox)
        self._start_reference(folder / "var-single", warehouse_b, cleanup)

    def _sandbox_options(self) -> list[str]:
        return ["--seed", str(self.seed), "--salesforce-port", "off"]

    def _start_reference(self, var: Path, warehouse: str, cleanup: ExitStack) -> None:
        from leadflow.devrun import start_sandbox, stop

        self.var_b, self.warehouse_b = var, warehouse
        var.mkdir()
        shutil.copy(self.world, var / "sandbox.db")
        sandbox, conn = start_sandbox(var, self.contacts, self._sandbox_options())
        cleanup.callback(stop, sandbox)
        env = dict(os.environ, LEADFLOW_VAR_DIR=str(var), LEADFLOW_WAREHOUSE_URL=warehouse, **conn)
        log = open(var / "single-run.log", "wb")
        self.single = subprocess.Popen([sys.executable, "-m", "leadflow.cli", "run", "--crm", "hubspot",
                                        "--run-id", "single"], env=env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        cleanup.callback(stop_group, self.single)

    def wait(self, timeout: float = 600) -> None:
        assert self.single.wait(timeout=timeout) == 0, tail(self.var_b / "single-run.log", 60)

    @staticmethod
    def _scored_as_of(url: str) -> str:
        from leadflow.warehouse import repo
        from leadflow.warehouse.db import get_engine

        engine = get_engine(url)
        try:
            return repo.latest_runs(engine, "hubspot")[0]["summary"]["scored_as_of"]
        finally:
            engine.dispose()

    def _on_the_same_day(self) -> None:
        """The reference again, on a fresh copy of the world, if it scored as of another day."""
        if self._scored_as_of(self.warehouse_a) == self._scored_as_of(self.warehouse_b):
            return
        print("runs crossed midnight UTC: the reference runs again")
        var = self.folder / "var-single-same-day"
        with ExitStack() as rerun:  # the test's own cleanup has run by now
            self._start_reference(var, f"sqlite:///{var / 'warehouse.db'}", rerun)
            self.wait()
        assert self._scored_as_of(self.warehouse_a) == self._scored_as_of(self.warehouse_b)

    def _crm_contacts(self, db_path: Path) -> dict[int, dict]:
        from leadflow.sandbox.store import SandboxStore

        store = SandboxStore(db_path)
        try:
            return {r.id: r.props for r in store.list_page("contacts", after_id=0, limit=self.contacts + 100)}
        finally:
            store.close()

    @staticmethod
    def _scores(url: str):
        from leadflow.warehouse import repo
        from leadflow.warehouse.db import get_engine

        cols = ["record_id", "score", "fit_score", "engagement_score", "grade", "stage", "lead_status", "reasons"]
        engine = get_engine(url)
        try:
            return repo.load_scores(engine, "hubspot")[cols].sort_values("record_id").reset_index(drop=True)
        finally:
            engine.dispose()

    def assert_same_outcome(self) -> None:
        import pandas as pd

        self._on_the_same_day()
        sharded_scores, single_scores = self._scores(self.warehouse_a), self._scores(self.warehouse_b)
        assert len(single_scores) > 0
        pd.testing.assert_frame_equal(sharded_scores, single_scores)

        crm_a, crm_b = self._crm_contacts(self.var_a / "sandbox.db"), self._crm_contacts(self.var_b / "sandbox.db")
        assert crm_a.keys() == crm_b.keys() and len(crm_a) == self.contacts
        # leadflow_scored_at is the time of the write, the one property allowed to differ
        compared = sorted({k for props in crm_b.values() for k in props if k.startswith("leadflow_")}
                          - {"leadflow_scored_at"}) + ["lifecyclestage", "hs_lead_status"]
        assert "leadflow_score" in compared
        written = sum(1 for props in crm_a.values() if props.get("leadflow_score") is not None)
        assert written > 0
        differing = [(cid, key, crm_a[cid].get(key), props.get(key))
                     for cid, props in crm_b.items() for key in compared if crm_a[cid].get(key) != props.get(key)]
        assert not differing, differing[:20]


def _create_leadflow_properties(world: Path, contacts: int, seed: int) -> None:
    """leadflow's contact and company properties in the sandbox world file `world`."""
    from leadflow.connections import Connection
    from leadflow.crm.hubspot import HubSpotConnector
    from leadflow.sandbox.server import running_sandbox

    with running_sandbox(contacts=contacts, seed=seed, db_path=world) as sandbox:
        conn = Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sandbox.port, schema="http",
                          password=sandbox.token)
        with HubSpotConnector.from_connection(conn) as connector:
            connector.ensure_schema()
            connector.ensure_company_schema()
