"""The handoff to sales against the sandbox CRMs over HTTP: with the default model leadflow never
sets SQL; every sales-ready lead carries leadflow's own flag, since-when and reason in the CRM;
the since-when stays the first run's while the lead stays sales-ready."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from typing import Iterator

import pytest

from leadflow.connections import Connection
from leadflow.crm.registry import get_connector
from leadflow.crm.values import format_owned_value
from leadflow.pipeline import RunContext, run_all
from leadflow.push.rollback import confirmed_writes
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine

CONTACTS = 600


@contextmanager
def _crm(name: str) -> Iterator[Connection]:
    if name == "hubspot":
        with running_sandbox(contacts=CONTACTS, seed=31, rate_limit="off", search_rate_limit="off") as sb:
            yield Connection("leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token)
    else:
        with running_salesforce_sandbox(contacts=CONTACTS, seed=32) as sf:
            yield Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https",
                             password=sf.token, extra={"verify": str(sf.cert_path)})


def _run(crm: str, run_id: str, url: str, conn: Connection, now: datetime) -> dict:
    return run_all(RunContext(crm=crm, run_id=run_id, warehouse_url=url, connection=conn, now=now))


@pytest.mark.parametrize("crm", ["hubspot", "salesforce"])
def test_given_default_model_then_sales_ready_leads_are_handed_over_and_leadflow_never_sets_sql(tmp_path, crm):
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    # The world is seeded around the wall clock; the runs' days are relative to it.
    first_run = datetime.now(timezone.utc)
    first_day = first_run.replace(hour=0, minute=0, second=0, microsecond=0)
    with _crm(crm) as conn:
        first = _run(crm, "first", url, conn, first_run)
        engine = get_engine(url)
        try:
            scores = repo.load_scores(engine, crm)
            ready = scores[scores["sales_ready"].fillna(False).astype(bool)]
            assert first["sales_ready"] == first["handed_over"] == len(ready) > 0
            wrote_first = confirmed_writes(engine, crm, "first")
            assert not ((wrote_first["field"] == "lifecycle_stage") & (wrote_first["after"] == "sql")).any()

            connector = get_connector(crm, conn)
            try:
                held = {row["record_id"]: row for row in connector.read(list(ready["record_id"]))}
            finally:
                connector.close()
            assert {r["sales_ready"] for r in held.values()} == {"true"}
            assert {r["sales_ready_since"] for r in held.values()} == {format_owned_value("datetime", first_day)}
            assert all(r["sales_ready_reason"].startswith("score ") for r in held.values())

            # Two days later: the leads still sales-ready keep the first run's time, in the
            # warehouse and in the CRM (no write of it at all).
            second = _run(crm, "second", url, conn, first_run + timedelta(days=2))
            again = repo.load_scores(engine, crm).set_index("record_id")
            still = [rid for rid in ready["record_id"] if rid in again.index and again.loc[rid, "sales_ready"]]
            assert still and second["handed_over"] < second["sales_ready"]
            assert {int(again.loc[rid, "sales_ready_since"]) for rid in still} == {int(first_day.timestamp() * 1000)}
            wrote_second = confirmed_writes(engine, crm, "second")
            assert not wrote_second[wrote_second["record_id"].isin(still)
                                    & (wrote_second["field"] == "sales_ready_since")].shape[0]
        finally:
            engine.dispose()
