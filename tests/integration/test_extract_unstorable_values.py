"""Values a database refuses do not stall extraction: a lone surrogate, a NUL character and a
20-digit timestamp served by the sandbox quarantine exactly their leads, the rest of the run goes
on, the watermark advances, and the next run neither fails nor loses track of them."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import requests
from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.pipeline import RunContext, run_all
from leadflow.quality.quarantine import quarantine_entries
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo
from leadflow.warehouse.tables import lead_issues
from leadflow.warehouse.values import INVALID_UNICODE, NUL_IN_TEXT, PROBLEM_CODES, TIMESTAMP_OUT_OF_RANGE

SURROGATE = "Head of Growth \ud83d"  # half an emoji, as some exports cut them
NUL = "call me\x00 after 5"
TWENTY_DIGITS = "12345678901234567890"


def _corrupt(store, contact_id: int, **props) -> None:
    """Write raw values behind the API's back, the way a portal's own data can look."""
    conn = store._conn  # the sandbox store is ours; tests may reach into it
    with store._lock:
        (raw,) = conn.execute("SELECT props FROM obj_contacts WHERE id = ?", (contact_id,)).fetchone()
        data = json.loads(raw)
        data.update(props)
        conn.execute("UPDATE obj_contacts SET props = ? WHERE id = ?", (json.dumps(data), contact_id))
        conn.commit()


def _context(run_id: str, warehouse_url: str, sb) -> RunContext:
    return RunContext(
        crm="hubspot", run_id=run_id, warehouse_url=warehouse_url,
        connection=Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port,
                              schema="http", password=sb.token),
    )


def _unstorable_entries(engine) -> set[tuple[str, str, str]]:
    entries = quarantine_entries(engine, "hubspot")
    entries = entries[entries["expectation"].isin(PROBLEM_CODES)]
    assert entries["value"].isna().all(), "a quarantined unstorable value must not be kept"
    return set(zip(entries["record_id"], entries["expectation"], entries["column"]))


def test_given_unstorable_values_then_their_leads_are_quarantined_and_runs_keep_going(warehouse_url):
    with running_sandbox(contacts=60, seed=5, rate_limit="off", search_rate_limit="off") as sb:
        store = sb.store
        # In this portal demo_requested_at is a free-text property, so it can hold anything.
        prop = store.properties("contacts")["demo_requested_at"]
        store.add_property("contacts", dataclasses.replace(prop, type="string", field_type="text"))
        ids = [str(i) for i in sorted(int(r.id) for r in store.list_page("contacts", after_id=0, limit=10))]
        _corrupt(store, int(ids[0]), jobtitle=SURROGATE)
        _corrupt(store, int(ids[1]), message=NUL)
        _corrupt(store, int(ids[2]), demo_requested_at=TWENTY_DIGITS)

        first = _context("unstorable-1", warehouse_url, sb)
        summary = run_all(first)
        engine = first.engine

        assert summary["status"] == "success"
        assert summary["pulled"] == 60
        assert summary["quarantined_unstorable"] == 3
        assert summary["scored"] + summary["quarantined"] + summary["skipped_owned"] == summary["total"] == 60
        assert _unstorable_entries(engine) == {
            (ids[0], INVALID_UNICODE, "job_title"),
            (ids[1], NUL_IN_TEXT, "form_comments"),
            (ids[2], TIMESTAMP_OUT_OF_RANGE, "demo_requested_at"),
        }
        scored = set(repo.load_scores(engine, "hubspot")["record_id"])
        assert not scored & set(ids[:3])
        assert ids[3] in scored or ids[3] in set(quarantine_entries(engine, "hubspot")["record_id"])
        landed = repo.load_leads(engine, "hubspot").set_index("record_id")
        assert pd.isna(landed.loc[ids[0], "job_title"])  # cleared, not stored
        assert landed.loc[ids[1], "first_name"]  # the rest of the lead is landed
        watermark = repo.get_watermark(engine, "hubspot")
        assert watermark is not None and watermark.modified_ms > 0
        with engine.connect() as conn:
            issues = conn.execute(
                select(lead_issues.c.record_id, lead_issues.c.field, lead_issues.c.value)
                .where(lead_issues.c.record_id.in_(ids[:3]))
            ).all()
        assert {(r.record_id, r.field) for r in issues} >= {
            (ids[0], "job_title"), (ids[1], "form_comments"), (ids[2], "demo_requested_at")}
        assert all(r.value is None for r in issues)

        # The CRM fixes one of them; the next incremental run picks it up and releases it only.
        answer = requests.patch(f"http://127.0.0.1:{sb.port}/crm/v3/objects/contacts/{ids[1]}",
                                json={"properties": {"message": "call me after 5"}},
                                headers={"Authorization": f"Bearer {sb.token}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        second = _context("unstorable-2", warehouse_url, sb)
        again = run_all(second)

    assert again["status"] == "success"
    assert again["pulled"] >= 1
    assert _unstorable_entries(engine) == {
        (ids[0], INVALID_UNICODE, "job_title"),
        (ids[2], TIMESTAMP_OUT_OF_RANGE, "demo_requested_at"),
    }
    assert again["scored"] + again["quarantined"] + again["skipped_owned"] == again["total"] == 60
    assert repo.load_leads(engine, "hubspot").set_index("record_id").loc[ids[1], "form_comments"] == "call me after 5"
    assert ids[1] in set(repo.load_scores(engine, "hubspot")["record_id"]) or ids[1] in set(
        quarantine_entries(engine, "hubspot")["record_id"])
