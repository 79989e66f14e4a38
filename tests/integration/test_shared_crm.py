"""leadflow on a CRM it shares with people: reps, workflows and admins act between runs and while
a push is in flight, and after every run the CRM's own history (not leadflow's log) shows that
leadflow overwrote nobody's value, left the values outside its mapping alone, and took merged and
deleted records out of scoring."""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import Any

import pytest
import requests
from sqlalchemy import select
from sandbox_queries import salesforce_query_all

from leadflow.connections import Connection
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.crm.hubspot_mapping import load_mapping as load_hubspot_mapping
from leadflow.crm.registry import get_connector
from leadflow.crm.salesforce import SalesforceConnector
from leadflow.crm.salesforce_mapping import load_mapping as load_salesforce_mapping
from leadflow.crm.values import parse_epoch_ms
from leadflow.pipeline import RunContext, run_all
from leadflow.push.rollback import confirmed_writes, rollback_run
from leadflow.sandbox.actors import HubSpotActors, SalesforceActors, act_night
from leadflow.sandbox.history import LEADFLOW_APP
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.sandbox.salesforce_users import INTEGRATION_USER_ID
from leadflow.sandbox.server import running_sandbox
from leadflow.sandbox.settings import generated_principals
from leadflow.verdicts.read import load_events
from leadflow.verdicts.tables import handoffs
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine

# The acceptance's size (about 5 min for both CRMs on 2 vCPUs); smaller for a quick local check,
# e.g. TEST_SHARED_CRM_CONTACTS=1500 TEST_SHARED_CRM_NIGHTS=3 TEST_SHARED_CRM_SHARE=0.03.
CONTACTS = int(os.environ.get("TEST_SHARED_CRM_CONTACTS", "20000"))
NIGHTS = int(os.environ.get("TEST_SHARED_CRM_NIGHTS", "5"))
SHARE = float(os.environ.get("TEST_SHARED_CRM_SHARE", "0.02"))  # of the records people change each night
IN_FLIGHT_SHARE = 0.02  # changed by people while leadflow's push is running
ANSWER_SHARE = 0.3  # of the handed-over leads waiting, answered by reps each night
SHARED_HUBSPOT = ("lifecyclestage", "hs_lead_status")
SHARED_SALESFORCE = ("Status", "Lifecycle_Stage__c", "Rating")
CREATION_MS = 5_000
# Counted by the judges: leadflow hands sales-ready leads over; with the default model it never sets SQL.
LEADFLOW_SET_SQL = ("lifecycle stage", "SQL set by leadflow")
# The shared field each actor action changes.
_ACTION_FIELD = {"reject": "lead_status", "work": "lead_status", "custom_status": "lead_status",
                 "stage_back": "lifecycle_stage", "to_opportunity": "lifecycle_stage"}


class _InFlight:
    """Makes people act once, right after leadflow's first write batch of a run.

    The runs write one batch at a time (`_one_call_at_a_time`): the pre-write read keeps a
    change made *between* two batches, and that is what is tested here. A change landing inside
    one batch's read-to-write round trip (tens of milliseconds) would still be lost: HubSpot has
    no conditional update, and Salesforce none for collections."""

    def __init__(self, monkeypatch, connector_class, actors, seed: int) -> None:
        self.acted: list[Any] = []
        self.error: Exception | None = None
        original = connector_class.push
        state = {"done": False}

        def push(connector, updates):
            results = original(connector, updates)
            if not state["done"]:
                state["done"] = True
                try:
                    self.acted = act_night(actors, share=IN_FLIGHT_SHARE, seed=seed)
                except Exception as exc:  # the writer would take it for a transport error: keep it apart
                    self.error = exc
            return results

        monkeypatch.setattr(connector_class, "push", push)


def _one_call_at_a_time(run_id: str, crm: str, url: str, conn: Connection) -> RunContext:
    ctx = RunContext(crm=crm, run_id=run_id, warehouse_url=url, connection=conn)
    ctx.settings = ctx.settings.model_copy(update={"push": ctx.settings.push.model_copy(update={"calls_in_flight": 1})})
    return ctx


def _accounting_holds(summary: dict[str, Any]) -> None:
    assert summary["scored"] + summary["quarantined"] + summary["skipped_owned"] == summary["total"], summary


def _removed_out_of_scoring(url: str, crm: str, removed_ids: set[str]) -> None:
    engine = get_engine(url)
    try:
        live = set(repo.load_leads(engine, crm)["record_id"])
        scored = set(repo.load_scores(engine, crm)["record_id"])
    finally:
        engine.dispose()
    assert not removed_ids & live and not removed_ids & scored


# What a person's change says of a handed-over lead, by the CRM's own values (the model's default
# handoff block): accepted, rejected or converted; values not listed are no answer.
_HUBSPOT_ANSWERS = {
    **{("hs_lead_status", v): "rejected" for v in ("UNQUALIFIED", "BAD_TIMING")},
    **{("hs_lead_status", v): "accepted" for v in ("IN_PROGRESS", "ATTEMPTED_TO_CONTACT", "CONNECTED", "OPEN_DEAL")},
    **{("lifecyclestage", v): "accepted" for v in ("salesqualifiedlead", "opportunity")},
    **{("lifecyclestage", v): "rejected" for v in ("subscriber", "lead")},
    **{("lifecyclestage", v): "converted" for v in ("customer", "evangelist")},
}
_SALESFORCE_ANSWERS = {
    **{("Status", v): "rejected" for v in ("Closed - Not Converted", "Nurturing")},
    **{("Status", v): "accepted" for v in ("Working - Contacted", "In Progress", "Attempted to Contact", "Open Deal")},
    ("Status", "Closed - Converted"): "converted",
    **{("Lifecycle_Stage__c", v): "accepted" for v in ("SQL", "Opportunity")},
    **{("Lifecycle_Stage__c", v): "rejected" for v in ("Subscriber", "Lead")},
    **{("Lifecycle_Stage__c", v): "converted" for v in ("Customer", "Evangelist")},
}
MIN_VERDICT_CAPTURE = 0.99


def _verdicts_captured(url: str, crm: str, answers: dict[str, list[tuple[int, str, str]]]) -> tuple[int, int]:
    """Of the people's answers to leadflow's handoffs (`answers`: record -> (at, verdict, who),
    from the CRM's history), how many became a verdict event of that handoff with the right
    person: (captured, all). An answer counts for the latest handoff before it, up to a final
    answer (rejected, converted); records gone from the CRM since are left out."""
    engine = get_engine(url)
    try:
        handed = repo.read_frame(engine, select(handoffs).where(handoffs.c.crm == crm))
        events = load_events(engine, crm)
        live = set(repo.load_leads(engine, crm)["record_id"].astype(str))
    finally:
        engine.dispose()
    stored = {(str(r), int(h), v, b) for r, h, v, b in
              zip(events["record_id"], events["handed_over_at"], events["verdict"], events["changed_by"])}
    times: dict[str, list[int]] = {}
    for rid, at in zip(handed["record_id"].astype(str), handed["handed_over_at"].astype(int)):
        times.setdefault(rid, []).append(at)
    captured = total = 0
    for rid, starts in times.items():
        if rid not in live:
            continue
        starts = sorted(starts)
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else None
            given: set[tuple[str, str]] = set()
            for at, verdict, who in sorted(answers.get(rid, [])):
                if at < start or (end is not None and at >= end):
                    continue
                given.add((verdict, who))
                if verdict in ("rejected", "converted"):
                    break
            total += len(given)
            captured += sum(1 for verdict, who in given if (rid, start, verdict, who) in stored)
    return captured, total


def _nights(monkeypatch, crm: str, connector_class, actors, url: str, conn: Connection, judge,
            answers) -> tuple[dict, Counter]:
    """NIGHTS runs with people acting in flight and between runs, each judged from the CRM's
    history (`judge()` -> (overwrites, writers)); then one more run, which must have taken
    every merged and deleted record out of scoring and stored, as verdict events with the right
    person, at least MIN_VERDICT_CAPTURE of the people's answers to handoffs (`answers()`, from
    the history). Returns the last night's summary and writers."""
    removed: set[str] = set()
    for night in range(NIGHTS):
        in_flight = _InFlight(monkeypatch, connector_class, actors, seed=1000 + night)
        summary = run_all(_one_call_at_a_time(f"night-{night}", crm, url, conn))
        _accounting_holds(summary)
        _removed_out_of_scoring(url, crm, removed)
        assert in_flight.error is None and in_flight.acted, in_flight.error
        if night == 0:
            assert summary["pushed"] > 0
        acts = in_flight.acted + act_night(actors, share=SHARE, seed=night, answer_share=ANSWER_SHARE)
        removed |= {a.record_id for a in acts if a.action == "delete"}
        removed |= {a.other_id for a in acts if a.action == "merge"}
        overwrites, writers = judge()
        assert overwrites == [], overwrites[:10]
    # Rolling the last night back restores what nobody touched since, and leaves the rest: people
    # first work on some of the records that run wrote.
    engine = get_engine(url)
    log = confirmed_writes(engine, crm, f"night-{NIGHTS - 1}")
    wrote = {rid: set(group["field"]) for rid, group in log.groupby("record_id")}
    touched = act_night(actors, share=0.3, seed=99, ids=sorted(wrote))
    # The records where a person changed (or removed) something that run wrote.
    contested = {a.record_id for a in touched if a.action == "delete"
                 or _ACTION_FIELD.get(a.action) in wrote[a.record_id]}
    contested |= {a.other_id for a in touched if a.action == "merge" and a.other_id in wrote}  # merged away
    assert contested
    connector = get_connector(crm, conn)
    try:
        undone = rollback_run(engine, connector, crm, f"night-{NIGHTS - 1}")
    finally:
        connector.close()
        engine.dispose()
    assert undone.restored > 0 and undone.rejected == 0, undone.as_dict()
    restored_anyway = contested - set(undone.skipped_changed)
    assert not restored_anyway, [(a, wrote[a.record_id]) for a in touched if a.record_id in restored_anyway]
    overwrites, _ = judge()
    assert overwrites == [], overwrites[:10]
    _accounting_holds(run_all(RunContext(crm=crm, run_id="after", warehouse_url=url, connection=conn)))
    _removed_out_of_scoring(url, crm, removed)
    captured, total = _verdicts_captured(url, crm, answers())
    print(f"{crm}: {captured} of {total} people's answers to handoffs stored as verdicts with who gave them")
    assert total >= 10 and captured >= MIN_VERDICT_CAPTURE * total, (captured, total)
    return summary, writers


# --- HubSpot -------------------------------------------------------------------------------------
def _hubspot_overwrites(base_url: str, token: str, ids: list[str]) -> tuple[list[tuple], Counter]:
    """Every leadflow write of a shared property that replaced a non-empty value somebody else
    (a person, a workflow, another app) had set after the record was created, or any value
    outside the mapping whenever it was set, from HubSpot's propertiesWithHistory; and who wrote
    what, for the test's own sanity checks."""
    mapping = load_hubspot_mapping()
    known = {"lifecyclestage": {v.casefold() for v in mapping.lifecycle_stages},
             "hs_lead_status": {v.casefold() for v in mapping.lead_statuses}}
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    found, writers = [], Counter()
    for start in range(0, len(ids), 50):
        body = {"inputs": [{"id": i} for i in ids[start:start + 50]], "properties": list(SHARED_HUBSPOT),
                "propertiesWithHistory": list(SHARED_HUBSPOT)}
        answer = session.post(f"{base_url}/crm/v3/objects/contacts/batch/read", json=body, timeout=30).json()
        for record in answer.get("results") or []:
            created = parse_epoch_ms(record["createdAt"])
            for name, entries in (record.get("propertiesWithHistory") or {}).items():
                oldest_first = list(reversed(entries))
                for before, after in zip(oldest_first, oldest_first[1:]):
                    writers[(name, after["sourceType"])] += 1
                    ours = after["sourceType"] == "INTEGRATION" and after.get("sourceId") == LEADFLOW_APP.source_id
                    theirs = not (before["sourceType"] == "INTEGRATION"
                                  and before.get("sourceId") == LEADFLOW_APP.source_id)
                    decided = parse_epoch_ms(before["timestamp"]) - created > CREATION_MS
                    if ours and name == "lifecyclestage" and after.get("value") == "salesqualifiedlead":
                        writers[LEADFLOW_SET_SQL] += 1  # sales sets SQL (the handoff), not leadflow
                    unmapped = bool(before.get("value")) and before["value"].casefold() not in known[name]
                    if ours and theirs and (unmapped or (decided and before.get("value"))):
                        found.append((record["id"], name, before["value"], before["sourceType"], after["value"]))
    return found, writers


def _hubspot_answers(base_url: str, token: str, ids: list[str]) -> dict[str, list[tuple[int, str, str]]]:
    """record -> (at, verdict, who) of every change a person (CRM_UI) made to the stage or status
    that answers a handoff, from propertiesWithHistory."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    out: dict[str, list[tuple[int, str, str]]] = {}
    for start in range(0, len(ids), 50):
        body = {"inputs": [{"id": i} for i in ids[start:start + 50]], "properties": list(SHARED_HUBSPOT),
                "propertiesWithHistory": list(SHARED_HUBSPOT)}
        answer = session.post(f"{base_url}/crm/v3/objects/contacts/batch/read", json=body, timeout=30).json()
        for record in answer.get("results") or []:
            for name, entries in (record.get("propertiesWithHistory") or {}).items():
                for entry in entries:
                    verdict = _HUBSPOT_ANSWERS.get((name, entry.get("value")))
                    if entry.get("sourceType") == "CRM_UI" and verdict:
                        out.setdefault(str(record["id"]), []).append(
                            (parse_epoch_ms(entry["timestamp"]), verdict, f"user:{entry.get('updatedByUserId')}"))
    return out


@pytest.mark.slow
def test_hubspot_shared_with_reps_and_workflows_overwrites_nothing_over_several_nights(tmp_path, monkeypatch):
    principals = generated_principals(1, 1, "shared-crm")
    rep, workflow = (p.token for p in principals)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_sandbox(contacts=CONTACTS, seed=21, rate_limit="off", search_rate_limit="off",
                         principals=principals) as sb:
        conn = Connection("leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token)
        actors = HubSpotActors(sb.base_url, rep, workflow)
        summary, writers = _nights(monkeypatch, "hubspot", HubSpotConnector, actors, url, conn, lambda: _hubspot_overwrites(
            sb.base_url, sb.token, [s.record_id for s in actors.snapshot()]), lambda: _hubspot_answers(
            sb.base_url, sb.token, [s.record_id for s in actors.snapshot()]))
        # The last run saw the previous nights' decisions: it left them and said so.
        assert summary["overrides"] > 0
        assert writers[("hs_lead_status", "CRM_UI")] > 0 and writers[("lifecyclestage", "WORKFLOW")] > 0
        assert writers[("lifecyclestage", "INTEGRATION")] > 0  # leadflow still moved stages nobody decided
        assert writers[LEADFLOW_SET_SQL] == 0


# --- Salesforce ----------------------------------------------------------------------------------
def _salesforce_overwrites(sf) -> tuple[list[tuple], Counter]:
    """Every LeadHistory change by leadflow's user to a shared field that followed a change by
    another user: an overwritten decision."""
    fields = ", ".join(f"'{f}'" for f in SHARED_SALESFORCE)
    rows = salesforce_query_all(sf, f"SELECT LeadId, Field, OldValue, NewValue, CreatedById, CreatedDate FROM "
                                    f"LeadHistory WHERE Field IN ({fields}) ORDER BY CreatedDate ASC")
    mapping = load_salesforce_mapping()
    known = {"Status": {v.casefold() for v in mapping.lead_statuses},
             "Lifecycle_Stage__c": {v.casefold() for v in mapping.lifecycle_stages},
             "Rating": {v.casefold() for v in mapping.rating_by_stage.values()}}
    last: dict[tuple[str, str], dict] = {}
    found, writers = [], Counter()
    for row in rows:
        key = (row["LeadId"], row["Field"])
        writers[(row["Field"], row["CreatedById"] == INTEGRATION_USER_ID)] += 1
        before = last.get(key)
        ours = row["CreatedById"] == INTEGRATION_USER_ID
        if ours and row["Field"] == "Lifecycle_Stage__c" and row.get("NewValue") == "SQL":
            writers[LEADFLOW_SET_SQL] += 1
        # A value leadflow replaced: somebody else's, or outside the mapping (an org's own value)
        # even when it was the record's first.
        replaced = before["NewValue"] if before is not None else row.get("OldValue")
        theirs = before is not None and before["CreatedById"] != INTEGRATION_USER_ID
        unmapped = bool(replaced) and str(replaced).casefold() not in known[row["Field"]]
        if ours and replaced and (theirs or unmapped):
            found.append((row["LeadId"], row["Field"], replaced, row["NewValue"]))
        last[key] = row
    return found, writers


def _salesforce_answers(sf) -> dict[str, list[tuple[int, str, str]]]:
    """record -> (at, verdict, who) of every change a user other than leadflow's made to the
    stage or status that answers a handoff, from LeadHistory."""
    rows = salesforce_query_all(sf, "SELECT LeadId, Field, NewValue, CreatedById, CreatedDate FROM LeadHistory "
                                    "WHERE Field IN ('Status', 'Lifecycle_Stage__c')")
    out: dict[str, list[tuple[int, str, str]]] = {}
    for row in rows:
        verdict = _SALESFORCE_ANSWERS.get((row["Field"], row["NewValue"]))
        if row["CreatedById"] != INTEGRATION_USER_ID and verdict:
            out.setdefault(str(row["LeadId"]), []).append((parse_epoch_ms(row["CreatedDate"]), verdict,
                                                           row["CreatedById"]))
    return out


@pytest.mark.slow
def test_salesforce_shared_with_reps_overwrites_nothing_over_several_nights(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=CONTACTS, seed=22) as sf:
        rep = sf.users.reps[0]
        conn = Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https",
                          password=sf.token, extra={"verify": str(sf.cert_path)})
        actors = SalesforceActors(sf.base_url, sf.cert_path, sf.token, rep.id, rep.token)
        summary, writers = _nights(monkeypatch, "salesforce", SalesforceConnector, actors, url, conn,
                                   lambda: _salesforce_overwrites(sf), lambda: _salesforce_answers(sf))
        assert summary["overrides"] > 0
        assert writers[("Status", False)] > 0 and writers[("Lifecycle_Stage__c", True)] > 0
        assert writers[LEADFLOW_SET_SQL] == 0


def test_actor_plans_are_reproducible_and_respect_each_records_state():
    from leadflow.sandbox.actors import Seen, plan_acts

    seen = [Seen(str(i), "mql" if i % 2 else "lead", "open" if i % 3 else "in_progress") for i in range(200)]
    first = plan_acts(seen, share=0.2, rng=random.Random(4))
    assert first == plan_acts(seen, share=0.2, rng=random.Random(4))
    assert 35 <= len(first) <= 40
    by_id = {s.record_id: s for s in seen}
    touched = [a.record_id for a in first] + [a.other_id for a in first if a.other_id]
    assert len(touched) == len(set(touched))  # each record acted on once
    for act in first:
        if act.action in ("reject", "work"):
            assert by_id[act.record_id].status in ("new", "open")
        if act.action == "stage_back":
            assert by_id[act.record_id].stage in ("mql", "sql") and act.stage == "lead"


def test_reps_answer_their_share_of_the_waiting_handoffs_first_and_only_those():
    from leadflow.sandbox.actors import ANSWER_ACTIONS, Seen, plan_acts

    seen = [Seen(str(i), "mql", "open" if i % 4 else "in_progress", sales_ready=i < 100) for i in range(400)]
    waiting = {s.record_id for s in seen if s.sales_ready and s.status == "open"}  # 75
    acts = plan_acts(seen, share=0.01, rng=random.Random(7), answer_share=0.4)
    answers = acts[:30]
    assert {a.record_id for a in answers} <= waiting and {a.action for a in answers} <= set(ANSWER_ACTIONS)
    assert len(acts) == 30 + 4  # round(75 * 0.4) answers, then 1 % of the records
    assert len({a.record_id for a in acts}) == len(acts)
    with pytest.raises(ValueError, match="answer_share"):
        plan_acts(seen, share=0.01, rng=random.Random(7), answer_share=1.5)


@pytest.mark.slow
def test_serve_with_actors_lets_people_change_records_in_rounds_attributed_in_the_history(tmp_path, terminate):
    import os
    import subprocess
    import sys
    import time

    from leadflow.sandbox.store import SandboxStore

    db, ready = tmp_path / "crm.db", tmp_path / "ready.sh"
    proc = subprocess.Popen(
        [sys.executable, "-m", "leadflow.sandbox.cli", "sandbox", "serve", "--db", str(db), "--contacts", "200",
         "--users", "1", "--workflows", "1", "--actors", "share=0.05,every=0.5,seed=3", "--rate-limit", "off",
         "--salesforce-port", "-1", "--ready-file", str(ready)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the sandbox did not become ready"
            time.sleep(0.1)
        sources: Counter = Counter()
        while time.monotonic() < deadline and sources["CRM_UI"] < 10:  # two rounds of a rep's changes
            time.sleep(0.5)
            store = SandboxStore(db)
            try:
                sources = Counter(w.source.source_type for w in store.writes())
            finally:
                store.close()
        assert sources["CRM_UI"] >= 10, sources
    finally:
        terminate(proc)
    assert proc.returncode == 0


def test_given_a_bad_actor_spec_then_serve_names_it_and_exits_2(tmp_path, capsys):
    from leadflow.cli import main

    code = main(["sandbox", "serve", "--db", str(tmp_path / "crm.db"), "--contacts", "5", "--users", "1",
                 "--workflows", "1", "--actors", "share=3"])
    assert code == 2 and "invalid --actors: share" in capsys.readouterr().err
