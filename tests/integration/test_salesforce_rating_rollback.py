"""The Salesforce Rating leadflow sets along with a stage move is in the push log with its
before/after, and `rollback` puts back the Rating the lead had, also one a rep chose (not only
the one derived from the old stage). Through the whole pipeline over TLS."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.crm.salesforce import SalesforceConnector
from leadflow.pipeline import RunContext, run_all
from leadflow.push.rollback import rollback_run
from leadflow.sandbox.actors import tls_session
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log

pytestmark = pytest.mark.slow


def _connection(sf) -> Connection:
    return Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https", password=sf.token,
                      extra={"verify": str(sf.cert_path)})


def _ratings(connector: SalesforceConnector, ids: list[str]) -> dict[str, str | None]:
    return {row["record_id"]: row["rating"] for row in connector.read(ids)}


def test_given_stage_moves_then_rating_is_logged_and_rollback_restores_the_earlier_rating(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=300, seed=11) as sf:
        conn = _connection(sf)
        run_all(RunContext(crm="salesforce", run_id="look", warehouse_url=url, connection=conn, push_enabled=False))
        engine = RunContext(crm="salesforce", run_id="check", warehouse_url=url).engine
        pulled = repo.load_leads(engine, "salesforce")
        ids = sorted(pulled["record_id"])
        early = sorted(pulled[pulled["lifecycle_stage"].isin(["subscriber", "lead"])]["record_id"])
        with SalesforceConnector.from_connection(conn) as connector:
            # Reps rated some early-stage leads themselves: a rollback must bring back their choice.
            hot = early[:40]
            connector.session.request(
                "PATCH", f"{connector.api_path}/composite/sobjects",
                json={"allOrNone": True, "records": [{"attributes": {"type": "Lead"}, "id": rid, "Rating": "Hot"}
                                                     for rid in hot]})
            before_run = _ratings(connector, ids)

        run_all(RunContext(crm="salesforce", run_id="rate-1", warehouse_url=url, connection=conn,
                           force=True))  # the look-only run counts as a first push for the guard
        with engine.connect() as db:
            log = pd.DataFrame(db.execute(
                select(push_log.c.record_id, push_log.c.field, push_log.c.before, push_log.c.after, push_log.c.status)
                .where(push_log.c.run_id == "rate-1")).mappings().all())
        rating_rows = log[log["field"] == "rating"].set_index("record_id")
        stage_moved = set(log[(log["field"] == "lifecycle_stage") & (log["status"] == "confirmed")]["record_id"])
        assert len(rating_rows) > 0 and set(rating_rows["status"]) == {"confirmed"}
        assert set(rating_rows.index) <= stage_moved
        for rid, row in rating_rows.iterrows():
            assert row["before"] == before_run[rid]  # what the org held before the run
        assert "Hot" in set(rating_rows["before"]), "no rep-rated lead had its stage moved: widen the sample"

        with SalesforceConnector.from_connection(conn) as connector:
            after_run = _ratings(connector, list(rating_rows.index))
            assert after_run == rating_rows["after"].to_dict()
            report = rollback_run(engine, connector, "salesforce", "rate-1")
            restored = _ratings(connector, list(rating_rows.index))

    assert report.rejected == 0  # an empty before-value restores as empty, not as the text "nan"
    assert report.restored >= len(rating_rows) - len(report.skipped_changed)
    expected = {rid: before_run[rid] for rid in rating_rows.index if rid not in report.skipped_changed}
    assert expected and {rid: restored[rid] for rid in expected} == expected


def test_given_leads_converted_or_deleted_after_a_run_then_rollback_skips_them_and_nothing_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=300, seed=12) as sf:
        conn = _connection(sf)
        run_all(RunContext(crm="salesforce", run_id="first", warehouse_url=url, connection=conn))
        engine = RunContext(crm="salesforce", run_id="check", warehouse_url=url).engine
        with engine.connect() as db:
            written = sorted({r for (r,) in db.execute(select(push_log.c.record_id).where(
                push_log.c.run_id == "first", push_log.c.status == "confirmed"))})
        converted, deleted = written[:5], written[5:8]
        rep = sf.users.reps[0]
        session = tls_session(sf.cert_path, sf.token)
        for rid in converted:  # sales took them over: Salesforce refuses any write to a converted lead
            session.post(f"{sf.base_url}/_sandbox/convert", json={"leadId": rid, "asUser": rep.id},
                         timeout=30).raise_for_status()
        for rid in deleted:
            session.delete(f"{sf.base_url}/services/data/v59.0/sobjects/Lead/{rid}", timeout=30).raise_for_status()
        with SalesforceConnector.from_connection(conn) as connector:
            assert not {row["record_id"] for row in connector.read(converted + deleted)}
            report = rollback_run(engine, connector, "salesforce", "first")
    assert report.rejected == 0
    assert set(converted + deleted) <= set(report.skipped_changed)
    assert report.restored > 0
