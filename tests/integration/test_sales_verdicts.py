"""Sales' verdicts against the sandbox CRMs over HTTP: leadflow hands leads over, a rep rejects
some, works others, moves some on (or back), leaves the rest; the next run (past the SLA) stores
one verdict event per answer with the rep who gave it and the untouched leads as ignored, exactly
as the CRM's own history tells it; a re-run stores nothing twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import re

import pytest
import requests
from fastapi.testclient import TestClient
from sandbox_queries import salesforce_query_all

from leadflow.connections import Connection
from leadflow.crm.values import parse_epoch_ms
from leadflow.pipeline import RunContext, run_all
from leadflow.sandbox.actors import Act, HubSpotActors, SalesforceActors
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.sandbox.salesforce_users import INTEGRATION_USER_ID
from leadflow.sandbox.server import running_sandbox
from leadflow.sandbox.settings import generated_principals
from leadflow.ui.app import create_app
from leadflow.ui.auth import require_user
from leadflow.verdicts.read import load_events
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine

CONTACTS = 400
# What the rep does to the first handed-over leads, in turn; the rest stay untouched.
ACTIONS = ("reject", "work", "to_opportunity", "stage_back", None)
ACTED = 15


def _run(crm: str, run_id: str, url: str, conn: Connection, now: datetime) -> dict:
    return run_all(RunContext(crm=crm, run_id=run_id, warehouse_url=url, connection=conn, now=now))


def _handed_over(url: str, crm: str) -> dict[str, int]:
    engine = get_engine(url)
    try:
        scores = repo.load_scores(engine, crm)
    finally:
        engine.dispose()
    ready = scores[scores["sales_ready"].fillna(False).astype(bool)]
    return {str(r): int(s) for r, s in zip(ready["record_id"], ready["sales_ready_since"])}


def _events(url: str, crm: str) -> dict[str, tuple[str, str | None]]:
    engine = get_engine(url)
    try:
        events = load_events(engine, crm)
    finally:
        engine.dispose()
    assert not events.duplicated(["record_id", "handed_over_at", "verdict"]).any()
    return {str(r): (v, b if isinstance(b, str) else None)
            for r, v, b in zip(events["record_id"], events["verdict"], events["changed_by"])}


def _act(actors, handed: dict[str, int]) -> dict[str, str]:
    acts = {}
    for i, rid in enumerate(sorted(handed)[:ACTED]):
        action = ACTIONS[i % len(ACTIONS)]
        if action is not None:
            actors.apply(Act(action, rid, stage="lead" if action == "stage_back" else None))
            acts[rid] = action
    return acts


# --- what the CRMs' histories say, independently of leadflow's code ------------------------------
_HUBSPOT_VERDICT = {("hs_lead_status", "UNQUALIFIED"): "rejected", ("hs_lead_status", "IN_PROGRESS"): "accepted",
                    ("lifecyclestage", "opportunity"): "accepted", ("lifecyclestage", "lead"): "rejected"}


def _hubspot_judge(base_url: str, token: str, handed: dict[str, int]) -> dict[str, tuple[str, str | None, int | None]]:
    """record -> (verdict, by, first touch) from propertiesWithHistory: the newest change by a
    person (CRM_UI) since the handoff decides; no person's change at all: ignored."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    ids = sorted(handed)
    out = {}
    for start in range(0, len(ids), 50):
        body = {"inputs": [{"id": i} for i in ids[start:start + 50]],
                "properties": ["lifecyclestage", "hs_lead_status"],
                "propertiesWithHistory": ["lifecyclestage", "hs_lead_status"]}
        answer = session.post(f"{base_url}/crm/v3/objects/contacts/batch/read", json=body, timeout=30).json()
        for record in answer.get("results") or []:
            rid = str(record["id"])
            person = [(parse_epoch_ms(e["timestamp"]), name, e.get("value"), e.get("updatedByUserId"))
                      for name, entries in (record.get("propertiesWithHistory") or {}).items() for e in entries
                      if e.get("sourceType") == "CRM_UI" and parse_epoch_ms(e["timestamp"]) >= handed[rid]]
            if not person:
                out[rid] = ("ignored", None, None)
            else:
                _, name, value, user = max(person)
                out[rid] = (_HUBSPOT_VERDICT[(name, value)], f"user:{user}", min(person)[0])
    return out


_SALESFORCE_VERDICT = {("Status", "Closed - Not Converted"): "rejected", ("Status", "Working - Contacted"): "accepted",
                       ("Lifecycle_Stage__c", "Lead"): "rejected", ("Status", "Closed - Converted"): "converted"}


def _salesforce_judge(sf, handed: dict[str, int]) -> dict[str, tuple[str, str | None, int | None]]:
    """record -> (verdict, by, first touch) from LeadHistory: the newest change by a user other
    than leadflow's since the handoff decides; none at all: ignored."""
    rows = salesforce_query_all(sf, "SELECT LeadId, Field, NewValue, CreatedById, CreatedDate FROM LeadHistory "
                                    "WHERE Field IN ('Status', 'Lifecycle_Stage__c') ORDER BY CreatedDate ASC")
    out: dict[str, tuple[str, str | None, int | None]] = {rid: ("ignored", None, None) for rid in handed}
    for row in rows:  # oldest first: the newest person's change is the last one kept
        rid = str(row["LeadId"])
        at = parse_epoch_ms(row["CreatedDate"])
        if rid in handed and row["CreatedById"] != INTEGRATION_USER_ID and at >= handed[rid]:
            first = out[rid][2] if out[rid][2] is not None else at
            out[rid] = (_SALESFORCE_VERDICT[(row["Field"], row["NewValue"])], row["CreatedById"], first)
    return out


def _sla_from_history(judged: dict[str, tuple[str, str | None, int | None]], handed: dict[str, int]) -> dict:
    """The SLA figures of the first run's handoffs as the CRM's history tells them."""
    counts = {v: sum(1 for verdict, _, _ in judged.values() if verdict == v)
              for v in ("accepted", "converted", "rejected", "ignored")}
    answered = counts["accepted"] + counts["converted"] + counts["rejected"]
    hours = sorted((first - handed[rid]) / 3_600_000 for rid, (_, _, first) in judged.items() if first is not None)
    middle = len(hours) // 2
    median = (hours[middle] if len(hours) % 2 else (hours[middle - 1] + hours[middle]) / 2) if hours else None
    return {**counts, "acceptance_rate": round((counts["accepted"] + counts["converted"]) / answered, 4),
            "median_hours_to_first_touch": None if median is None else round(median, 2)}


def _handoff_fields_now(sb, crm: str, ids: list[str]) -> dict[str, tuple[bool, str | None, str | None]]:
    """record -> (sales-ready flag, its reason, lead status) as the CRM holds them now."""
    if crm == "salesforce":
        quoted = ", ".join(f"'{i}'" for i in ids)
        rows = salesforce_query_all(sb, "SELECT Id, Leadflow_Sales_Ready__c, Leadflow_Sales_Ready_Reason__c, Status "
                                        f"FROM Lead WHERE Id IN ({quoted})")
        return {str(r["Id"]): (r["Leadflow_Sales_Ready__c"] is True, r["Leadflow_Sales_Ready_Reason__c"], r["Status"])
                for r in rows}
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {sb.token}"
    body = {"inputs": [{"id": i} for i in ids],
            "properties": ["leadflow_sales_ready", "leadflow_sales_ready_reason", "hs_lead_status"]}
    answer = session.post(f"{sb.base_url}/crm/v3/objects/contacts/batch/read", json=body, timeout=30).json()
    return {str(r["id"]): (r["properties"].get("leadflow_sales_ready") == "true",
                           r["properties"].get("leadflow_sales_ready_reason"), r["properties"].get("hs_lead_status"))
            for r in answer.get("results") or []}


class _User:
    def get_name(self) -> str:
        return "judge"


def _page_sla(url: str, crm: str) -> dict[str, str]:
    """The SLA cards of the Leadflow page, as rendered."""
    engine = get_engine(url)
    try:
        app = create_app(lambda: engine)
        app.dependency_overrides[require_user] = _User
        html = TestClient(app).get("/", params={"crm": crm}).text
    finally:
        engine.dispose()
    return dict(re.findall(r'data-sla="([a-z_]+)">([^<]*)<', html))


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_given_reps_answer_handed_over_leads_then_the_next_run_stores_their_verdicts_with_who(tmp_path, crm):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    # The world is seeded around the wall clock; the runs' days are relative to it.
    first_run = datetime.now(timezone.utc)
    if crm == "hubspot":
        principals = generated_principals(1, 1, "verdicts")
        rep, workflow = principals
        context = running_sandbox(contacts=CONTACTS, seed=41, rate_limit="off", search_rate_limit="off",
                                  principals=principals)
    else:
        context = running_salesforce_sandbox(contacts=CONTACTS, seed=42)
    with context as sb:
        if crm == "hubspot":
            conn = Connection("leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token)
            actors = HubSpotActors(sb.base_url, rep.token, workflow.token)
            rep_id = f"user:{rep.id}"
        else:
            conn = Connection("leadflow_salesforce", host="127.0.0.1", port=sb.port, schema="https",
                              password=sb.token, extra={"verify": str(sb.cert_path)})
            sf_rep = sb.users.reps[0]
            actors = SalesforceActors(sb.base_url, sb.cert_path, sb.token, sf_rep.id, sf_rep.token)
            rep_id = sf_rep.id
        first = _run(crm, "first", url, conn, first_run)
        handed = _handed_over(url, crm)
        assert len(handed) > ACTED and first["verdicts"] == {"accepted": 0, "rejected": 0, "converted": 0,
                                                             "ignored": 0}
        acts = _act(actors, handed)

        # Four days later, past the three-day SLA.
        second = _run(crm, "second", url, conn, first_run + timedelta(days=4))
        events = _events(url, crm)
        judged = _hubspot_judge(sb.base_url, sb.token, handed) if crm == "hubspot" else _salesforce_judge(sb, handed)
        assert events == {rid: (verdict, by) for rid, (verdict, by, _) in judged.items()}
        answered = {rid: events[rid] for rid in acts}
        assert {by for _, by in answered.values() if by} == {rep_id}
        # What each action is: HubSpot's stage back is a workflow's (no answer from sales: ignored),
        # Salesforce's a rep's; Salesforce's "to opportunity" converts the lead.
        expected = {"reject": "rejected", "work": "accepted",
                    "to_opportunity": "accepted" if crm == "hubspot" else "converted",
                    "stage_back": "ignored" if crm == "hubspot" else "rejected"}
        assert {rid: verdict for rid, (verdict, _) in answered.items()} == {rid: expected[a] for rid, a in acts.items()}
        counts = second["verdicts"]
        assert sum(counts.values()) == len(events) and counts["ignored"] == len(handed) - len(
            [a for a in acts.values() if expected[a] != "ignored"])
        assert second["handoffs_looked_at"] <= len(handed)

        # The SLA in the run's summary (`leadflow report --json`) and on the page equals the
        # CRM's history; handoffs made by the second run are pending.
        history_sla = _sla_from_history(judged, handed)
        sla = second["sla"]
        assert {k: sla[k] for k in history_sla} == history_sla
        assert sla["handed_over"] == len(handed) + sla["pending"] and sla["pending"] == sla["this_run"]["handed_over"]
        page = _page_sla(url, crm)
        for key in ("accepted", "converted", "rejected", "ignored"):
            assert page[key] == str(history_sla[key]), key
        assert page["handed_over"] == str(sla["handed_over"])
        assert page["acceptance_rate"] == f"{history_sla['acceptance_rate'] * 100:.0f}%"
        assert page["median_hours_to_first_touch"] == str(history_sla["median_hours_to_first_touch"])

        # The same run held the rejected leads back (nurture): the CRM shows them no longer
        # sales-ready, with the rep's answer as the reason; a status the rep set stays theirs, the
        # status leadflow had set becomes nurture.
        rejected = {rid: acts[rid] for rid, (verdict, _) in events.items() if verdict == "rejected"}
        assert rejected and second["held_back_after_rejection"] == len(rejected)
        for rid, (ready, reason, status) in _handoff_fields_now(sb, crm, sorted(rejected)).items():
            assert not ready and reason.startswith("rejected by sales ("), (rid, reason)
            assert status == {"reject": actors.STATUS["reject"], "stage_back": "Nurturing"}[rejected[rid]], (rid, status)

        # Run again the same day: nothing stored twice, and only the still-open handoffs that
        # changed are looked at again (none).
        third = _run(crm, "third", url, conn, first_run + timedelta(days=4))
        assert _events(url, crm) == events
        assert sum(third["verdicts"].values()) == 0 and third["handoffs_looked_at"] == 0
