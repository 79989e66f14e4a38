"""A `leadflow run` killed with SIGKILL in the middle of its push, then run again: the second run
takes over the lease the dead one left behind, and the CRM converges to what the warehouse
intends with no value lost and none written twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.push.diff import compute_changes
from leadflow.push.lease import DEAD_HOLDER_GRACE_S, holder_run
from leadflow.push.tables import leases
from leadflow.sandbox.server import running_sandbox
from leadflow.schema import OWNED_FIELDS
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine
from leadflow.warehouse.tables import push_log

pytestmark = pytest.mark.slow


def _env(sb, url: str, extra: dict) -> dict[str, str]:
    conn = {"conn_type": "http", "host": "127.0.0.1", "port": sb.port, "schema": "http", "password": sb.token,
            "extra": extra}
    return {**os.environ, "AIRFLOW_CONN_LEADFLOW_HUBSPOT": json.dumps(conn), "LEADFLOW_WAREHOUSE_URL": url}


def _start(run_id: str, env: dict[str, str], log_path) -> subprocess.Popen:
    with open(log_path, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "leadflow.cli", "run", "--crm", "hubspot", "--run-id", run_id],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def _written_ids(store, prop: str) -> list[str]:
    return [e.object_id for e in store.writes(object_type="contacts", limit=10_000_000) if e.property == prop]


def test_given_push_killed_mid_way_then_next_run_converges_without_lost_or_duplicate_writes(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_sandbox(contacts=1_500, seed=31, rate_limit="off", search_rate_limit="off") as sb:
        conn = Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http",
                          password=sb.token)
        with HubSpotConnector.from_connection(conn) as connector:
            mapping = connector.mapping
        score_prop = mapping.owned_property_names["score"]
        open_leads = 1_500  # upper bound of records the first push writes

        # Run 1, throttled to ~2 calls/s so the push lasts seconds; kill it once more than half
        # (the change guard exempts only a first push) but not all of its batches are applied.
        first = _start("kill-1", _env(sb, url, {"rate_limit_per_10s": 20}), tmp_path / "run1.log")
        deadline = time.monotonic() + 240
        try:
            while True:
                assert first.poll() is None, (tmp_path / "run1.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "run 1 never reached the push"
                engine = get_engine(url)
                try:
                    with engine.connect() as c:
                        planned = c.execute(select(push_log.c.record_id).where(push_log.c.run_id == "kill-1")
                                            .distinct()).fetchall()
                except Exception:
                    planned = []
                finally:
                    engine.dispose()
                written = len(set(_written_ids(sb.store, score_prop)))
                if planned and 0.55 * len(planned) <= written <= len(planned) - 200:
                    break
                time.sleep(0.05)
        finally:
            if first.poll() is None:
                first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        killed_at = time.monotonic()
        before_kill = set(_written_ids(sb.store, score_prop))
        planned_ids = {r[0] for r in planned}
        assert 0 < len(before_kill) < len(planned_ids) <= open_leads

        engine = get_engine(url)
        with engine.connect() as c:
            lease = c.execute(select(leases.c.holder, leases.c.expires_at)).first()
        # The dead run's lease is still there and would last for minutes (its TTL): only the
        # dead-holder take-over lets the next run through now.
        assert lease is not None and holder_run(lease.holder) == "kill-1"
        assert lease.expires_at > time.time() * 1000 + 120_000

        time.sleep(max(0.0, DEAD_HOLDER_GRACE_S - (time.monotonic() - killed_at)))
        second = _start("kill-2", _env(sb, url, {"rate_limit_per_10s": 2_000, "search_rate_per_s": 50}),
                        tmp_path / "run2.log")
        assert second.wait(timeout=300) == 0, (tmp_path / "run2.log").read_text()[-3000:]
        run2_log = (tmp_path / "run2.log").read_text()
        assert "taken over from run kill-1" in run2_log

        all_ids = [str(r.id) for r in sb.store.list_page("contacts", after_id=0, limit=10_000)]
        with HubSpotConnector.from_connection(conn) as connector:
            final = pd.DataFrame(connector.read(all_ids))
        entries = [e for e in sb.store.writes(object_type="contacts", limit=10_000_000)
                   if e.property in mapping.writable_properties]

    # Converged: against the CRM as it is now, the warehouse's scores need no write at all.
    scores = repo.load_scores(engine, "hubspot")
    current = final.rename(columns={f: f"crm_{f}" for f in OWNED_FIELDS})
    assert compute_changes(scores, current).empty
    by_id = final.set_index("record_id")
    assert by_id.loc[scores["record_id"], "score"].notna().all()  # nothing lost: every scored record holds a score

    # No duplicates: no record got the same value of a property twice, and what run 1 applied
    # before dying was not written again by run 2.
    counts = Counter((e.object_id, e.property, e.new) for e in entries)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1][:5]
    score_writes = Counter(e.object_id for e in entries if e.property == score_prop)
    assert set(score_writes.values()) == {1}
    assert set(score_writes) == set(scores["record_id"])

    with engine.connect() as c:
        log = pd.DataFrame(c.execute(select(push_log)).mappings().all())
    run1, run2 = log[log["run_id"] == "kill-1"], log[log["run_id"] == "kill-2"]
    assert "pending" not in set(log["status"])
    assert set(run1["status"]) <= {"confirmed", "superseded"} and "superseded" in set(run1["status"])
    assert not set(run2["record_id"]) & before_kill
    assert set(run2["status"]) == {"confirmed"}
    with engine.connect() as c:
        assert c.execute(select(leases)).first() is None  # run 2 released the lease
    engine.dispose()
