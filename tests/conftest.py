"""Shared test fixtures: an isolated Airflow home, warehouses on SQLite and on a real PostgreSQL
that this file starts itself (a throw-away cluster, owned by the `postgres` user when run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Real data the tests need ships in the repository (tests/data/*/README.md says where it comes from).
X_EDUCATION_DEV = REPO / "tests" / "data" / "x-education" / "leads_dev.csv"

# Airflow reads its configuration at import: point it at a private home before anything imports it.
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="leadflow-airflow-home-")
os.environ.setdefault("AIRFLOW_HOME", _AIRFLOW_HOME)
os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(REPO / "dags"))
os.environ.setdefault("AIRFLOW__CORE__PLUGINS_FOLDER", str(REPO / "plugins"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
# Tests never write into the checkout, and parallel workers (pytest-xdist) never share a var dir.
os.environ["LEADFLOW_VAR_DIR"] = tempfile.mkdtemp(prefix="leadflow-var-")

# `TEST_MOVE_CLOCK_DAYS=N make test` runs the session with the wall clock of this process and of
# every Python process it starts (leadflow runs, Airflow, the sandbox) moved N days (time-machine,
# ticking; monotonic time untouched): a check that no test depends on the date. Children get it
# through a `sitecustomize` on PYTHONPATH. libfaketime cannot move the whole suite: Python's timed
# condition waits hang under it.
# The database servers keep the real clock: SQL's now() (Airflow's scheduler picks runs with
# `run_after <= now()`) is compiled with the same offset, on SQLite and PostgreSQL.
_MOVED_CLOCK = """\
import datetime, os
if os.environ.get("TEST_MOVE_CLOCK_DAYS"):
    import time_machine
    _days = int(os.environ["TEST_MOVE_CLOCK_DAYS"])
    time_machine.travel(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=_days),
                        tick=True).start()
    try:
        from sqlalchemy.ext.compiler import compiles
        from sqlalchemy.sql import functions
    except ImportError:
        pass
    else:
        compiles(functions.now, "sqlite")(lambda element, compiler, **kw: f"datetime('now', '{_days:+d} days')")
        compiles(functions.now, "postgresql")(lambda element, compiler, **kw: f"(now() + interval '{_days} days')")
"""
if os.environ.get("TEST_MOVE_CLOCK_DAYS"):
    _clock_dir = Path(tempfile.mkdtemp(prefix="leadflow-moved-clock-"))
    (_clock_dir / "sitecustomize.py").write_text(_MOVED_CLOCK, encoding="utf-8")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(_clock_dir), os.environ.get("PYTHONPATH")) if p)
    exec(compile(_MOVED_CLOCK, "moved-clock", "exec"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pg_bindir() -> Path:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL server binaries not found: run scripts/ensure_test_tools.sh "
            "(make test does) or set LEADFLOW_TEST_PG_URL"
        )
    return Path(candidates[-1]).parent


class _PgCluster:
    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.datadir = Path(tempfile.mkdtemp(prefix="leadflow-pg-"))
        self.port = _free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *cmd: str) -> None:
        full = list(cmd)
        if self.as_root:  # initdb and postgres refuse to run as root
            full = ["runuser", "-u", "postgres", "--", *full]
        subprocess.run(full, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> str:
        if self.as_root:
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-w", "-t", "60",
            "-l", str(self.datadir / "server.log"),
            "-o", f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            "start",
        )
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server_url():
    """URL of the admin database of a PostgreSQL server for this test session."""
    url = os.environ.get("LEADFLOW_TEST_PG_URL")
    if url:
        yield url
        return
    cluster = _PgCluster()
    url = cluster.start()
    try:
        yield url
    finally:
        cluster.stop()


def _new_pg_database(server_url: str) -> str:
    from sqlalchemy import create_engine, text

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    """A fresh, empty warehouse URL on each database the project supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return _new_pg_database(request.getfixturevalue("pg_server_url"))


@pytest.fixture
def new_pg_database(pg_server_url):
    """A factory of fresh, empty PostgreSQL databases on the session's server."""
    return lambda: _new_pg_database(pg_server_url)


@pytest.fixture
def warehouse(warehouse_url):
    """A warehouse engine with every table created."""
    from leadflow.warehouse.db import ensure_schema, get_engine

    engine = get_engine(warehouse_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_warehouse(tmp_path):
    from leadflow.warehouse.db import ensure_schema, get_engine

    engine = get_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    ensure_schema(engine)
    yield engine
    engine.dispose()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate` until it returns a truthy value (for tests against real servers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="session")
def x_education_csv() -> Path:
    """The X Education development split shipped in tests/data (see its README)."""
    assert X_EDUCATION_DEV.is_file(), f"missing test data: {X_EDUCATION_DEV}"
    return X_EDUCATION_DEV


def _terminate(proc, timeout: float = 20.0) -> int:
    """SIGTERM a server process and wait for it (kill it after `timeout`); its exit code."""
    import signal
    import subprocess

    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


@pytest.fixture
def terminate():
    """`terminate(proc)`: stop a server process gracefully, forcefully after 20 s."""
    return _terminate


def pytest_collection_modifyitems(config, items):
    """Slow tests first: with parallel workers the suite then ends on short tests, not on one
    worker still running a minutes-long test while the others are idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
