"""Converted Salesforce leads, by config: left alone as customers (the default), or followed to
the Contact they became (`converted_leads: follow_contact`). Through the whole pipeline against
the sandbox org over TLS; what was written is judged from the sandbox's own records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.crm.salesforce import SalesforceConnector
from leadflow.crm.salesforce_mapping import DEFAULT_MAPPING_PATH, load_mapping
from leadflow.pipeline import RunContext, run_all
from leadflow.push.rollback import confirmed_writes, rollback_run
from leadflow.sandbox.actors import Act, SalesforceActors
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.sandbox.salesforce_users import INTEGRATION_USER_ID
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log

pytestmark = pytest.mark.slow

# Canonical owned field -> its field on Contact (the same API names as on Lead).
OWNED_ON_CONTACT = {field: spec.name for field, spec in load_mapping().owned_fields.items()}


def _connection(sf: Any, mapping_path: Path | None = None) -> Connection:
    # No modstamp lag: an incremental run pulls only what changed after the previous pull.
    extra = {"verify": str(sf.cert_path), "modstamp_lag_ms": 0}
    if mapping_path is not None:
        extra["mapping_path"] = str(mapping_path)
    return Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https", password=sf.token,
                      extra=extra)


def _follow_mapping(tmp_path: Path) -> Path:
    data = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text())
    data["converted_leads"] = "follow_contact"
    path = tmp_path / "salesforce.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _rep(sf: Any) -> SalesforceActors:
    rep = sf.users.reps[0]
    return SalesforceActors(sf.base_url, sf.cert_path, sf.token, rep.id, rep.token)


def _convert(sf: Any, lead_ids: list[str]) -> dict[str, str]:
    """Convert the leads as a rep: lead id -> the Contact it became."""
    actors = _rep(sf)
    for rid in lead_ids:
        actors.apply(Act("to_opportunity", rid))
    return {rid: lead["ConvertedContactId"] for rid, lead in sf.store.get(lead_ids).items()}


def _open_leads(engine: Any, n: int) -> list[str]:
    leads = repo.load_leads(engine, "salesforce")
    open_ = leads[leads["lifecycle_stage"].isin(["subscriber", "lead", "mql"])]
    return sorted(open_["record_id"])[:n]


def _writes(sf: Any, since_seq: int = 0) -> pd.DataFrame:
    return pd.DataFrame(sf.store.writes(since_seq), columns=["seq", "at_ms", "record_id", "field", "old", "new",
                                                            "user_id"])


def _push_log(engine: Any, run_id: str) -> pd.DataFrame:
    with engine.connect() as db:
        return pd.DataFrame(db.execute(
            select(push_log.c.record_id, push_log.c.field, push_log.c.before, push_log.c.after, push_log.c.status)
            .where(push_log.c.run_id == run_id)).mappings().all())


def _owned_in_org(sf: Any, contact_id: str) -> dict[str, Any]:
    """The owned fields of a Contact as the sandbox org holds them."""
    record = sf.store.get_contacts([contact_id])[contact_id]
    return {name: record.get(name) for name in OWNED_ON_CONTACT.values()}


def _accounting_is_exact(summary: dict[str, Any]) -> None:
    assert summary["scored"] + summary["quarantined"] + summary["skipped_owned"] == summary["total"], summary


def test_default_config_leaves_converted_leads_as_customers_and_never_reads_or_writes_a_contact(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=300, seed=13, users=1) as sf:
        conn = _connection(sf)
        look = run_all(RunContext(crm="salesforce", run_id="look", warehouse_url=url, connection=conn,
                                  push_enabled=False))
        engine = RunContext(crm="salesforce", run_id="check", warehouse_url=url).engine
        converted = _convert(sf, _open_leads(engine, 5))
        writes_before = len(sf.store.writes())
        summary = run_all(RunContext(crm="salesforce", run_id="won", warehouse_url=url, connection=conn, force=True))
        writes = _writes(sf)
    leads = repo.load_leads(engine, "salesforce", include_deleted=True).set_index("record_id")
    assert not leads.index.str.startswith("003").any()  # no Contact is read
    won = leads.loc[list(converted)]
    assert set(won["lifecycle_stage"]) == {"customer"} and not won["is_deleted"].any()
    assert won["merged_into"].isna().all() and won["converted_from"].isna().all()
    assert summary["skipped_owned"] == look["skipped_owned"] + len(converted)
    assert summary["total"] == look["total"] == 300
    _accounting_is_exact(summary)
    assert not writes["record_id"].str.startswith("003").any()
    assert not set(writes["record_id"].iloc[writes_before:]) & set(converted)  # left alone
    assert not set(repo.load_scores(engine, "salesforce")["record_id"]) & set(converted)


def test_follow_contact_scores_and_writes_the_contact_sees_its_later_changes_and_rollback_restores_it(
        tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    mapping = _follow_mapping(tmp_path)
    with running_salesforce_sandbox(contacts=300, seed=13, users=1) as sf:
        conn = _connection(sf, mapping)
        look = run_all(RunContext(crm="salesforce", run_id="look", warehouse_url=url, connection=conn,
                                  push_enabled=False))
        engine = RunContext(crm="salesforce", run_id="check", warehouse_url=url).engine
        seeded = repo.load_leads(engine, "salesforce", include_deleted=True)
        seeded_contacts = seeded[seeded["converted_from"].notna()]  # the world's customers are followed too
        assert len(seeded_contacts) and set(seeded_contacts["record_id"]) == set(seeded["merged_into"].dropna())
        handed_over = sorted(repo.load_scores(engine, "salesforce").query("sales_ready == True")["record_id"])
        assert handed_over, "nobody was handed over: pick another seed"
        converted = _convert(sf, [handed_over[0], *[r for r in _open_leads(engine, 5) if r != handed_over[0]][:4]])
        converted_at = int(_writes(sf)["seq"].max())

        first = run_all(RunContext(crm="salesforce", run_id="follow-1", warehouse_url=url, connection=conn,
                                   force=True))
        leads = repo.load_leads(engine, "salesforce", include_deleted=True).set_index("record_id")
        contacts = list(converted.values())
        # The converted leads are replaced by their Contacts, which are pulled and scored.
        replaced = leads.loc[list(converted)]
        assert replaced["is_deleted"].all() and list(replaced["merged_into"]) == contacts
        followed = leads.loc[contacts]
        assert not followed["is_deleted"].any() and set(followed["lifecycle_stage"]) == {"customer"}
        assert list(followed["converted_from"]) == list(converted)
        in_org = sf.store.get_contacts(contacts)
        assert followed["email"].tolist() == [in_org[c]["Email"] for c in contacts]
        scores = repo.load_scores(engine, "salesforce").set_index("record_id")
        assert set(contacts) <= set(scores.index) and not set(converted) & set(scores.index)
        assert first["total"] == look["total"] == 300  # one Contact per replaced lead: nobody counted twice
        _accounting_is_exact(first)
        assert first["rejected"] == 0
        assert first["verdicts"]["converted"] == 1  # the handed-over lead's conversion is sales' verdict

        # The Contacts got leadflow's own fields, from the integration user, and nothing else.
        writes = _writes(sf)
        on_contacts = writes[writes["record_id"].str.startswith("003")]
        assert set(contacts) <= set(on_contacts["record_id"])
        assert on_contacts["field"].str.startswith("Leadflow_").all()
        assert set(on_contacts["user_id"]) == {INTEGRATION_USER_ID}
        now_in_org = sf.store.get_contacts(contacts)
        for cid in contacts:
            assert now_in_org[cid]["Leadflow_Score__c"] == pytest.approx(scores.loc[cid, "score"])
            assert now_in_org[cid]["Leadflow_Grade__c"] == scores.loc[cid, "grade"]
        assert not set(_writes(sf, converted_at)["record_id"]) & set(converted)  # replaced: never written

        # A rep edits one followed Contact; the next incremental run pulls the change.
        edited = contacts[0]
        answer = _rep(sf).rep.patch(f"{sf.base_url}{SalesforceActors.API}/sobjects/Contact/{edited}",
                                    json={"Title": "Student Intern", "Page_Views__c": 480}, timeout=10)
        assert answer.status_code == 204, answer.text
        seq = int(_writes(sf)["seq"].max())
        owned_before = _owned_in_org(sf, edited)
        second = run_all(RunContext(crm="salesforce", run_id="follow-2", warehouse_url=url, connection=conn))
        now = repo.load_leads(engine, "salesforce", include_deleted=True).set_index("record_id")
        row = now.loc[edited]
        assert (row["job_title"], row["page_views"]) == ("Student Intern", 480)
        assert row["converted_from"] == list(converted)[0] and row["lifecycle_stage"] == "customer"
        # Seen through the Contact's own cursor: its converted lead did not change and was not pulled again.
        assert (row["pull_run_id"], now.loc[row["converted_from"], "pull_run_id"]) == ("follow-2", "follow-1")
        _accounting_is_exact(second)
        log = _push_log(engine, "follow-2")
        assert edited in set(log["record_id"]), "the edit moved no score: pick another change"
        assert set(log[log["record_id"] == edited]["status"]) == {"confirmed"}
        assert not set(log[log["record_id"].str.startswith("003")]["field"]) & {"lifecycle_stage", "lead_status",
                                                                                 "rating"}
        assert set(_writes(sf, seq).query("record_id == @edited")["user_id"]) == {INTEGRATION_USER_ID}

        # Rolling the second run back puts the Contact's earlier owned values back.
        expected = confirmed_writes(engine, "salesforce", "follow-2").query("record_id == @edited")
        seq = int(_writes(sf)["seq"].max())
        assert _owned_in_org(sf, edited) != owned_before
        with SalesforceConnector.from_connection(conn) as connector:
            report = rollback_run(engine, connector, "salesforce", "follow-2")
        undone = _writes(sf, seq).query("record_id == @edited")
        assert _owned_in_org(sf, edited) == owned_before
    assert report.rejected == 0 and edited not in report.skipped_changed and report.restored >= 1
    moved = {f for f, old, new in zip(expected["field"], expected["before"], expected["after"]) if old != new}
    assert moved and set(undone["field"]) == {OWNED_ON_CONTACT[f] for f in moved}
    assert set(undone["user_id"]) == {INTEGRATION_USER_ID}
