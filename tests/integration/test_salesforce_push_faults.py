"""The Salesforce push under injected faults (concurrent-limit 403s, 503s, partial collections,
timeouts after the write was applied), through the whole pipeline over TLS.

Acceptance (as for HubSpot): after two runs the org holds exactly what the warehouse intends,
every intended value was written once (a timed-out write that was applied is resolved by reading
back, never rewritten) and nothing is left rejected, failed or pending.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.crm.salesforce import SalesforceConnector
from leadflow.pipeline import RunContext, run_all
from leadflow.push.diff import compute_changes
from leadflow.push.writer import same_value
from leadflow.sandbox.faults import FaultSpec
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.schema import OWNED_FIELDS
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log

pytestmark = pytest.mark.slow

FAULTS = "429=0.1,5xx=0.05,partial=0.05,timeout=0.08"
COLLECTION = "PATCH /services/data/vXX.X/composite/sobjects"
SANDBOX_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 2.0


def connection(sf) -> Connection:
    return Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https", password=sf.token,
                      extra={"verify": str(sf.cert_path), "read_timeout_s": READ_TIMEOUT_S, "backoff_base_s": 0.1,
                             "backoff_max_s": 1.0, "batch_size": 50})


def _none(value):
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def read_org(conn: Connection, ids: list[str]) -> pd.DataFrame:
    with SalesforceConnector.from_connection(conn) as connector:
        rows = connector.read(ids)
    return pd.DataFrame(rows).set_index("record_id").rename(columns={f: f"crm_{f}" for f in OWNED_FIELDS})


def test_given_faults_then_two_runs_converge_with_each_value_written_once(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="leadflow.sandbox.salesforce_api")
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=1_500, seed=21, timeout_seconds=SANDBOX_TIMEOUT_S) as sf:
        conn = connection(sf)
        sf.context.faults.configure(FaultSpec.parse(FAULTS), seed=5)
        first = run_all(RunContext(crm="salesforce", run_id="faults-1", warehouse_url=url, connection=conn))
        second = run_all(RunContext(crm="salesforce", run_id="faults-2", warehouse_url=url, connection=conn))
        stats = sf.context.stats.snapshot()
        sf.context.faults.configure(FaultSpec())
        engine = RunContext(crm="salesforce", run_id="check", warehouse_url=url).engine
        scores = repo.load_scores(engine, "salesforce").set_index("record_id")
        final = read_org(conn, list(scores.index))
        with SalesforceConnector.from_connection(conn) as connector:
            mapping = connector.mapping
        writes = pd.DataFrame(sf.store.writes())

    assert stats["byStatus"].get("403", 0) > 0 and stats["byStatus"].get("503", 0) > 0
    timeouts = [r for r in caplog.records if "timeout fault" in r.getMessage() and "composite" in r.getMessage()]
    assert timeouts, "no write timed out: pick another fault seed"
    assert stats["byEndpointStatus"][COLLECTION].get("200", 0) > 0

    # The org holds what the warehouse intends, and the diff against it finds nothing to send.
    mismatches = [f"{rid}.{field}" for rid, want in scores.iterrows()
                  for field in ("score", "fit_score", "engagement_score", "bant_count", "grade", "reasons",
                                "disqualification_reason", "model_version")
                  if not same_value(_none(final.loc[rid, f"crm_{field}"]), _none(want[field]))]
    assert not mismatches, mismatches[:10]
    assert compute_changes(scores.reset_index(), final.reset_index()).empty
    assert first["pushed"] > 0.9 * first["scored"]

    with engine.connect() as c:
        log = pd.DataFrame(c.execute(select(push_log)).mappings().all())
    assert not set(log["status"]) & {"rejected", "failed", "pending"}
    assert second["rejected"] == 0 and second["failed"] == 0
    # Each intended value was applied once, and each applied value is one confirmed log entry.
    field_of = {**mapping.owned_field_names, "lifecycle_stage": mapping.stage_field, "lead_status": mapping.status_field,
                "rating": mapping.rating_field}  # the Rating set with the stage is logged too
    ours = writes[writes["field"].isin(set(field_of.values()))]
    twice = {k: n for k, n in Counter(zip(ours["record_id"], ours["field"], ours["new"].astype(str))).items() if n > 1}
    assert not twice, list(twice)[:5]
    confirmed = log[log["status"] == "confirmed"]
    logged = Counter((r, field_of[f]) for r, f in zip(confirmed["record_id"], confirmed["field"]))
    applied = Counter(zip(ours["record_id"], ours["field"]))
    assert applied == logged


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing in the pipeline handles it)."""


class DyingConnector:
    """The real connector, until the process 'dies' on write call `die_on`: after Salesforce
    applied that batch and before the writer could record the answer."""

    def __init__(self, real: SalesforceConnector, die_on: int) -> None:
        self._real = real
        self._die_on = die_on
        self.name = real.name
        self.max_batch_size = real.max_batch_size
        self.calls = 0
        self._lock = threading.Lock()

    def pull(self, since):
        return self._real.pull(since)

    def ensure_schema(self) -> None:
        self._real.ensure_schema()

    def push(self, updates):
        with self._lock:  # the writer has several calls in flight: number each one on entry
            self.calls += 1
            number = self.calls
        results = self._real.push(updates)
        if number == self._die_on:
            raise Killed()
        return results

    def read(self, record_ids):
        return self._real.read(record_ids)

    def observe(self, record_ids):
        return self._real.observe(record_ids)

    def close(self) -> None:
        self._real.close()


def test_given_a_push_killed_after_the_org_applied_a_batch_then_the_next_run_sends_only_the_rest(tmp_path):
    from leadflow.crm.registry import register_connector
    from leadflow.push.lease import release

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    spec = "leadflow.crm.salesforce:SalesforceConnector.from_connection"
    with running_salesforce_sandbox(contacts=600, seed=23) as sf:
        conn = connection(sf)
        register_connector("salesforce", lambda c, **kw: DyingConnector(SalesforceConnector.from_connection(c), 3))
        try:
            with pytest.raises(Killed):
                run_all(RunContext(crm="salesforce", run_id="killed-1", warehouse_url=url, connection=conn))
        finally:
            register_connector("salesforce", spec)
        engine = RunContext(crm="salesforce", run_id="check", warehouse_url=url).engine
        release(engine, "salesforce", "killed-1")  # a dead holder's lease: the grace period frees it in production
        applied_before = len(sf.store.writes())
        assert applied_before > 0
        second = run_all(RunContext(crm="salesforce", run_id="after-kill", warehouse_url=url, connection=conn,
                                     force=True))  # the rest of the first push: most records
        third = run_all(RunContext(crm="salesforce", run_id="after-kill-2", warehouse_url=url, connection=conn))
        scores = repo.load_scores(engine, "salesforce").set_index("record_id")
        final = read_org(conn, list(scores.index))
        with SalesforceConnector.from_connection(conn) as connector:
            mapping = connector.mapping
        writes = pd.DataFrame(sf.store.writes())

    assert second["pushed"] > 0 and third["changed"] == 0 and third["write_calls"] == 0
    assert compute_changes(scores.reset_index(), final.reset_index()).empty
    field_of = {**mapping.owned_field_names, "lifecycle_stage": mapping.stage_field, "lead_status": mapping.status_field,
                "rating": mapping.rating_field}  # the Rating set with the stage is logged too
    ours = writes[writes["field"].isin(set(field_of.values()) - {mapping.owned_field_names["scored_at"]})]
    twice = {k: n for k, n in Counter(zip(ours["record_id"], ours["field"])).items() if n > 1}
    assert not twice, f"{len(twice)} values written again after the kill: {list(twice)[:5]}"
    with engine.connect() as c:
        log = pd.DataFrame(c.execute(select(push_log)).mappings().all())
    assert "pending" not in set(log["status"])
