"""Shared test fixtures: an isolated Airflow home, warehouses on SQLite and on a real PostgreSQL
that this file starts itself (a throw-away cluster, owned by the `postgres` user when run as root).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from pg_server import PgCluster, new_pg_database_on

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


@pytest.fixture(scope="session")
def pg_server_url():
    """URL of the admin database of a PostgreSQL server for this test session."""
    url = os.environ.get("LEADFLOW_TEST_PG_URL")
    if url:
        yield url
        return
    cluster = PgCluster()
    url = cluster.start()
    try:
        yield url
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    """A fresh, empty warehouse URL on each database the project supports."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'warehouse.db'}"
    return new_pg_database_on(request.getfixturevalue("pg_server_url"))


@pytest.fixture
def new_pg_database(pg_server_url):
    """A factory of fresh, empty PostgreSQL databases on the session's server."""
    return lambda: new_pg_database_on(pg_server_url)


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


# Seconds of the heaviest tests (measured on a 2-core machine, rounded), to spread them over the
# parallel workers; any other slow test counts 5 s, a quick one nothing.
HEAVY_SECONDS = {
    "test_hubspot_shared_with_reps_and_workflows_overwrites_nothing_over_several_nights": 270,
    "test_given_reps_answer_by_a_hidden_propensity_then_a_model_learnt_from_their_verdicts_beats_the_rules": 260,
    "test_salesforce_shared_with_reps_overwrites_nothing_over_several_nights": 180,
    "test_four_shards_run_in_parallel_under_local_executor_and_equal_the_unsharded_run": 130,
    "test_two_celery_workers_run_four_shards_and_a_worker_killed_mid_push_leaves_the_crm_as_the_unsharded_run": 150,
    "test_leadflow_page_shows_funnel_runs_and_the_preview_of_a_dry_run_triggered_from_the_ui_form": 100,
    "test_first_run_scores_and_writes_back_then_second_run_pushes_nothing": 90,
    "test_given_429_5xx_partial_and_timeout_faults_then_two_runs_converge_with_each_value_written_once": 80,
    "test_given_push_killed_mid_way_then_next_run_converges_without_lost_or_duplicate_writes": 70,
    "test_salesforce_dag_scores_and_writes_back_then_second_run_writes_nothing": 60,
    "test_given_the_clock_moved_then_date_sensitive_tests_pass": 50,
    "test_production_lock_alone_imports_leadflow_its_third_party_modules_and_every_dag": 30,
    "test_given_a_broken_batch_then_the_gate_fails_once_nothing_is_written_and_one_alert_links_the_run": 50,
    "test_given_a_wrong_token_then_the_run_fails_without_retries_and_sends_exactly_one_alert": 30,
    "test_given_a_rollback_without_its_crm_connection_then_it_fails_without_retries_and_sends_exactly_one_alert": 30,
    "test_a_dag_run_and_the_cli_use_the_metadata_db_connections_for_crm_enrichment_and_warehouse": 30,
}


def _weight(item) -> float:
    if item.get_closest_marker("slow") is None:
        return 0.0
    return float(HEAVY_SECONDS.get(getattr(item, "originalname", item.name), 5))


def pytest_collection_modifyitems(config, items):
    """Order the tests for the parallel workers (pytest-xdist's `worksteal` gives each worker an
    equal contiguous share of this list, then lets an idle worker take the tail of a busy one's
    queue): the slow tests are dealt out so that each worker's share starts with about the same
    seconds of them, the quick ones fill the shares up. The suite then ends on quick tests, not on
    one worker running minutes-long tests back to back while the other is idle."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    ranked = sorted(items, key=_weight, reverse=True)  # stable: quick tests keep their order
    if workers <= 1:
        items[:] = ranked
        return
    lanes: list[list] = [[] for _ in range(workers)]
    load = [0.0] * workers
    quick = [item for item in ranked if _weight(item) == 0]
    for item in ranked[: len(ranked) - len(quick)]:
        lane = min(range(workers), key=lambda k: (load[k], len(lanes[k])))
        lanes[lane].append(item)
        load[lane] += _weight(item)
    share = -(-len(items) // workers)
    rest = iter(quick)
    for lane in lanes:
        lane.extend(itertools.islice(rest, max(0, share - len(lane))))
    items[:] = [item for lane in lanes for item in lane] + list(rest)
