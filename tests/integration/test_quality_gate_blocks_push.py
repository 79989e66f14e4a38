"""A batch that fails the quality gate stops the run before the push: zero CRM writes."""

from __future__ import annotations

import json

import pytest

from leadflow.connections import Connection
from leadflow.pipeline import RunContext, run_all
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo


def test_given_a_broken_batch_then_gate_fails_the_run_and_nothing_is_written(tmp_path):
    with running_sandbox(contacts=120, seed=9, rate_limit="off", search_rate_limit="off") as sb:
        store = sb.store
        ids = sorted(int(r.id) for r in store.list_page("contacts", after_id=0, limit=200))
        with store._lock:  # a bad import: a fifth of the contacts got a mangled e-mail address
            for contact_id in ids[::5]:
                (raw,) = store._conn.execute("SELECT props FROM obj_contacts WHERE id = ?", (contact_id,)).fetchone()
                props = json.loads(raw)
                props["email"] = "not-an-email"
                store._conn.execute("UPDATE obj_contacts SET props = ? WHERE id = ?", (json.dumps(props), contact_id))
            store._conn.commit()
        writes_before = len(store.writes())
        ctx = RunContext(crm="hubspot", run_id="broken-batch", warehouse_url=f"sqlite:///{tmp_path / 'wh.db'}",
                         connection=Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port,
                                               schema="http", password=sb.token))
        from leadflow.quality import QualityGateError

        with pytest.raises(QualityGateError, match="quarantine"):
            run_all(ctx)
        assert len(store.writes()) == writes_before  # not one property written to the CRM
    [run] = repo.latest_runs(ctx.engine, "hubspot")
    assert run["status"] == "failed"
    assert run["summary"]["quarantined"] >= 20 and run["summary"]["dq_failed_checks"] >= 1
