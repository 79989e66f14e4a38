"""The account view against the HubSpot sandbox over HTTP, judged from the sandbox's own write
history: leadflow writes each company's score and buying-committee reason to its own company
properties and to nothing else, writes only changed values, and, when the model says so, hands
a lead over only once a second engaged persona works at its company."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import yaml

from leadflow.accounts.store import load_accounts
from leadflow.connections import Connection
from leadflow.crm.hubspot_mapping import DEFAULT_MAPPING_PATH, load_mapping
from leadflow.pipeline import RunContext, run_all
from leadflow.qualify.accounts import WAITING
from leadflow.qualify.config import DEFAULT_MODEL_PATH
from leadflow.sandbox.actors import actor_session
from leadflow.sandbox.history import LEADFLOW_APP
from leadflow.sandbox.server import running_sandbox
from leadflow.sandbox.settings import generated_principals
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine

CONTACTS = 600


def _connection(sb) -> Connection:
    return Connection("leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token)


COMPANY_READS = "POST /crm/v3/objects/companies/batch/read"


def _run(run_id: str, url: str, sb, now: datetime, model_path: str | None = None, on_step=None) -> dict:
    return run_all(RunContext(crm="hubspot", run_id=run_id, warehouse_url=url, connection=_connection(sb), now=now,
                              model_path=model_path), on_step=on_step)


def test_company_score_and_committee_land_in_leadflows_own_company_properties_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    owned = {p.name: f for f, p in load_mapping().owned_company_properties.items()}
    now = datetime.now(timezone.utc)
    with running_sandbox(contacts=CONTACTS, seed=31, rate_limit="off", search_rate_limit="off") as sb:
        before = sb.store.writes(object_type="companies")
        first = _run("first", url, sb, now)
        engine = get_engine(url)
        try:
            view = load_accounts(engine, "hubspot").set_index("company_id")
            assert first["accounts_scored"] == len(view) > 0 and first["committee_waits"] == 0
            assert first["companies_written"] == len(view)
            # The run summary (`leadflow report --json`, the run report) has the view in counts.
            assert first["accounts"]["companies"] == len(view)
            assert first["accounts"]["with_engaged_leads"] == int((view["engaged"] > 0).sum())
            assert sum(first["accounts"]["company_score"].values()) == len(view)

            # The sandbox's own history: every company write is to a leadflow-owned property.
            writes = sb.store.writes(object_type="companies", since_seq=before[-1].seq if before else 0)
            assert writes and {w.property for w in writes} <= set(owned) | {"hs_lastmodifieddate"}
            assert {w.property for w in writes} >= set(owned)
            held = pd.DataFrame([(w.object_id, owned[w.property], w.new) for w in writes if w.property in owned],
                                columns=["company_id", "field", "value"]).drop_duplicates(
                ["company_id", "field"], keep="last").pivot(index="company_id", columns="field", values="value")
            assert sorted(held.index) == sorted(view.index)
            assert (held["buying_committee"] == view.loc[held.index, "committee"]).all()
            assert (held["company_score"].astype(float) == view.loc[held.index, "company_score"].astype(float)).all()
            props = sb.store.properties("companies")
            assert {props[name].group_name for name in owned} == {"leadflow"}
            committees = view[view["roles"].fillna("").str.contains(";")]
            assert len(committees) > 0  # the seeded world has companies with several engaged roles

            # The same day again: nothing changed, nothing is written, and no company is read
            # for it (the pull brought leadflow's values with the companies; the sandbox counts).
            reads: dict[str, int] = {}

            def count_reads(step: str, _summary: dict) -> None:
                reads[step] = sb.context.stats.snapshot()["byEndpoint"].get(COMPANY_READS, 0)

            second = _run("second", url, sb, now, on_step=count_reads)
            assert second["companies_written"] == 0 and second["companies_unchanged"] == len(view)
            assert second["companies_read"] == 0 and reads["push_accounts"] == reads["push"]
            assert len(sb.store.writes(object_type="companies", since_seq=writes[-1].seq)) == 0
        finally:
            engine.dispose()


def test_given_a_rep_edits_a_company_then_leadflow_sets_only_its_own_score_back_when_the_company_is_pulled_again(
        tmp_path):
    """leadflow owns its company properties as it owns its contact properties: a hand-made value
    there is written over once the pull brings it (here the next run re-pulls every contact, its
    own writes touched them); the rep's other edits stay. Judged from the sandbox's history."""
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    score_prop = load_mapping().owned_company_properties["company_score"].name
    rep, workflow = generated_principals(1, 1, "accounts")
    now = datetime.now(timezone.utc)
    with running_sandbox(contacts=CONTACTS, seed=31, rate_limit="off", search_rate_limit="off",
                         principals=[rep, workflow]) as sb:
        _run("first", url, sb, now)
        engine = get_engine(url)
        try:
            view = load_accounts(engine, "hubspot").set_index("company_id")
        finally:
            engine.dispose()
        company = str(view.index[0])
        session = actor_session(rep.token)
        answer = session.patch(f"{sb.base_url}/crm/v3/objects/companies/{company}",
                               json={"properties": {score_prop: "1", "name": "Renamed by a rep"}}, timeout=30)
        assert answer.status_code == 200, answer.text
        edited = sb.store.writes(object_type="companies")[-1].seq

        second = _run("second", url, sb, now)
        assert second["companies_written"] == 1 and second["companies_read"] == 0
        after = sb.store.writes(object_type="companies", since_seq=edited)
        assert [(str(w.object_id), w.property, w.new) for w in after if w.property == score_prop] == [
            (company, score_prop, str(view.loc[company, "company_score"]))]
        assert all((w.source.source_type, w.source.source_id) == (LEADFLOW_APP.source_type, LEADFLOW_APP.source_id)
                   for w in after if w.property == score_prop)
        row = sb.store.get_rows("companies", [int(company)])[int(company)]
        assert row.props["name"] == "Renamed by a rep"


def test_given_the_wait_for_a_second_persona_then_lone_sales_ready_leads_wait_in_the_crm(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    doc["accounts"]["handoff_waits_for_second_persona"] = True
    model_path = tmp_path / "model.yaml"
    model_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    mapping = load_mapping()
    ready_prop = mapping.owned_properties["sales_ready"].name
    reason_prop = mapping.owned_properties["sales_ready_reason"].name
    with running_sandbox(contacts=CONTACTS, seed=31, rate_limit="off", search_rate_limit="off") as sb:
        summary = _run("waits", url, sb, datetime.now(timezone.utc), str(model_path))
        engine = get_engine(url)
        try:
            scores = repo.load_scores(engine, "hubspot")
            waiting = scores[scores["sales_ready_reason"].fillna("").str.startswith(WAITING)]
            ready = scores[scores["sales_ready"].fillna(False).astype(bool)]
            assert summary["committee_waits"] == len(waiting) > 0
            assert summary["scored"] + summary["quarantined"] + summary["skipped_owned"] == summary["total"]

            # The CRM's own records: a waiting lead is not flagged sales-ready, its reason says it
            # waits; a handed-over lead is flagged.
            rows = sb.store.get_rows("contacts", [int(r) for r in pd.concat([waiting, ready])["record_id"]])
            for rid in waiting["record_id"]:
                props = rows[int(rid)].props
                assert props.get(ready_prop) in (None, "", False, "false")
                assert str(props.get(reason_prop)).startswith(WAITING)
            assert all(rows[int(rid)].props.get(ready_prop) in (True, "true") for rid in ready["record_id"])

            # Each handed-over lead has an engaged colleague of another buyer persona.
            view = load_accounts(engine, "hubspot").set_index("company_id")
            leads = repo.load_leads(engine, "hubspot").set_index("record_id")
            assert len(ready) > 0
            for rid, persona in zip(ready["record_id"], ready["persona"]):
                engaged = (view.loc[str(leads.loc[rid, "company_id"]), "personas"] or "").split(";")
                assert set(engaged) - {persona}
        finally:
            engine.dispose()


def test_given_a_mapping_without_owned_company_properties_then_no_company_is_written(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    doc = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    del doc["owned_company_properties"]
    mapping_path = tmp_path / "hubspot.yaml"
    mapping_path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with running_sandbox(contacts=120, seed=31, rate_limit="off", search_rate_limit="off") as sb:
        conn = Connection("leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token,
                          extra={"mapping_path": str(mapping_path)})
        before = len(sb.store.writes(object_type="companies"))
        summary = run_all(RunContext(crm="hubspot", run_id="r", warehouse_url=url, connection=conn,
                                     now=datetime.now(timezone.utc)))
        assert summary["accounts_scored"] > 0 and summary["companies_written"] == 0
        assert summary["company_writes"] == "not configured for hubspot"
        assert len(sb.store.writes(object_type="companies")) == before
