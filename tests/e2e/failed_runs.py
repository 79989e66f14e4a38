"""Helpers of the end-to-end tests of failed runs: a loopback alert webhook that counts what it
receives, an Airflow home for `airflow dags test` that knows only the given connections, the run
itself, its task instances in the metadata database, and `leadflow report --json`."""

from __future__ import annotations

import atexit
import json
import shutil
import subprocess
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from e2e_processes import BIN, airflow_env

HOOK_PATH = "/hook"


class AlertWebhook:
    """A loopback HTTP server recording every JSON POST to /hook in `alerts`. Any other request
    goes to `other(handler, body)` when given (a test's stand-in CRM), else gets a 404."""

    def __init__(self, other: Callable[[BaseHTTPRequestHandler, bytes], None] | None = None) -> None:
        self.alerts: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and self.path == HOOK_PATH:
                    server.alerts.append(json.loads(body))
                    self.send_response(204)
                    self.end_headers()
                elif other is not None:
                    other(self, body)
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.http.server_port
        self.url = f"http://127.0.0.1:{self.port}{HOOK_PATH}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def failed_run_env(tmp_path: Path, hook_url: str, **connections: dict) -> dict[str, str]:
    """A migrated Airflow home under `tmp_path` for `airflow dags test`, its own
    var dir and SQLite warehouse, the webhook as the alert channel, and of Airflow connections
    only `connections` (conn id -> its JSON fields) and the webhook: none leaks in from the
    environment the tests run in."""
    var = tmp_path / "var"
    var.mkdir()
    conns = {f"AIRFLOW_CONN_{conn_id.upper()}": json.dumps(fields) for conn_id, fields in connections.items()}
    conns["AIRFLOW_CONN_LEADFLOW_ALERTS_WEBHOOK"] = json.dumps({"conn_type": "http", "host": hook_url})
    env = airflow_env(
        tmp_path / "airflow-home",
        LEADFLOW_CRMS="hubspot",
        LEADFLOW_VAR_DIR=str(var),
        LEADFLOW_WAREHOUSE_URL=f"sqlite:///{var / 'warehouse.db'}",
        AIRFLOW__API__BASE_URL="http://airflow.example:8080",
        **conns,
    )
    for name in [k for k in env if k.startswith("AIRFLOW_CONN_") and k not in conns]:
        del env[name]
    if env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"):
        _migrate(env)
    else:  # the default SQLite metadata database: a copy of one migrated once per process
        home = Path(env["AIRFLOW_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(_migrated_sqlite(env), home / "airflow.db")
    return env


def _migrate(env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "airflow"), "db", "migrate"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_MIGRATED: list[Path] = []


def _migrated_sqlite(env: dict[str, str]) -> Path:
    """An SQLite metadata database `airflow db migrate` made, once per test process (a migration
    costs seconds; each test still gets its own copy)."""
    if not _MIGRATED:
        template = Path(tempfile.mkdtemp(prefix="leadflow-airflow-template-"))
        atexit.register(shutil.rmtree, template, True)
        _migrate({**env, "AIRFLOW_HOME": str(template)})
        _MIGRATED.append(template / "airflow.db")
    return _MIGRATED[0]


def dags_test(env: dict[str, str], dag_id: str = "leadflow_hubspot", timeout: float = 300,
              conf: dict | None = None) -> str:
    """`airflow dags test dag_id` (triggered with `conf`); its output (the task logs, and at the
    end the run's state)."""
    run = subprocess.run([str(BIN / "airflow"), "dags", "test", *(["--conf", json.dumps(conf)] if conf else []),
                          dag_id], env=env, capture_output=True, text=True, timeout=timeout)
    return run.stdout + run.stderr


def task_instances(env: dict[str, str], dag_id: str = "leadflow_hubspot") -> dict[str, tuple[str | None, int]]:
    """{task id (a mapped one as `task[i]`): (state, try number)} of the DAG's one run, from the
    home's metadata database."""
    url = env.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN") or f"sqlite:///{Path(env['AIRFLOW_HOME']) / 'airflow.db'}"
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT task_id, map_index, state, try_number FROM task_instance "
                                     "WHERE dag_id = :d"), {"d": dag_id}).all()
    finally:
        engine.dispose()
    return {r.task_id + (f"[{r.map_index}]" if r.map_index >= 0 else ""): (r.state, r.try_number) for r in rows}


def report_json(env: dict[str, str], crm: str = "hubspot") -> dict:
    """`leadflow report --json` of `crm` (it exits 1 on a failed run: the output is what counts)."""
    report = subprocess.run([sys.executable, "-m", "leadflow.cli", "report", "--json"], env=env,
                            capture_output=True, text=True)
    return json.loads(report.stdout)[crm]
