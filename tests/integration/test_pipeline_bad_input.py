"""Bad input does not crash a run: a contact with no email, an unparseable date, a 100 kB text and
a lifecycle stage the model does not know are landed, reported, and the rest of the run goes on."""

from __future__ import annotations

import dataclasses
import json

from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.pipeline import RunContext, run_all
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo
from leadflow.warehouse.tables import lead_issues


def _corrupt(store, contact_id: int, **props) -> None:
    """Write raw values behind the API's back, the way a portal's own data can look."""
    conn = store._conn  # the sandbox store is ours; tests may reach into it
    with store._lock:
        (raw,) = conn.execute("SELECT props FROM obj_contacts WHERE id = ?", (contact_id,)).fetchone()
        data = json.loads(raw)
        for key, value in props.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        conn.execute("UPDATE obj_contacts SET props = ?, unique_key = CASE WHEN ? THEN NULL ELSE unique_key END "
                     "WHERE id = ?", (json.dumps(data), "email" in props and props["email"] is None, contact_id))
        conn.commit()


def test_given_malformed_contacts_then_run_succeeds_and_reports_each_problem(tmp_path):
    with running_sandbox(contacts=60, seed=5, rate_limit="off", search_rate_limit="off") as sb:
        store = sb.store
        # In this portal demo_requested_at is a free-text property, so it can hold anything.
        prop = store.properties("contacts")["demo_requested_at"]
        store.add_property("contacts", dataclasses.replace(prop, type="string", field_type="text"))
        ids = sorted(int(r.id) for r in store.list_page("contacts", after_id=0, limit=10))
        _corrupt(store, ids[0], email=None)
        _corrupt(store, ids[1], demo_requested_at="next tuesday, maybe")
        _corrupt(store, ids[2], message="x" * 100_000)
        _corrupt(store, ids[3], lifecyclestage="1234567")  # a custom stage id of this portal

        ctx = RunContext(
            crm="hubspot", run_id="bad-input-1", warehouse_url=f"sqlite:///{tmp_path / 'wh.db'}",
            connection=Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port,
                                  schema="http", password=sb.token),
        )
        summary = run_all(ctx)

    assert summary["pulled"] == 60
    # Nothing lost: every live lead is scored, quarantined (the one without an email), or left
    # alone because sales owns it.
    assert summary["scored"] + summary["quarantined"] + summary["skipped_owned"] == summary["total"] == 60
    assert summary["quarantined"] >= 1
    assert summary["input_issues"] >= 4
    with ctx.engine.connect() as conn:
        issues = {(r.record_id, r.field) for r in conn.execute(select(lead_issues))}
    assert (str(ids[0]), "email") in issues
    assert (str(ids[1]), "demo_requested_at") in issues
    assert (str(ids[2]), "form_comments") in issues
    assert (str(ids[3]), "lifecycle_stage") in issues
    leads = repo.load_leads(ctx.engine, "hubspot").set_index("record_id")
    assert len(leads.loc[str(ids[2]), "form_comments"]) <= 4000
    assert leads.loc[str(ids[3]), "lifecycle_stage"] is None or leads.loc[str(ids[3]), "lifecycle_stage"] != "1234567"
