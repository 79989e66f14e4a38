"""SalesforceConnector and the pipeline against the Salesforce sandbox over TLS.

Each test starts its own small org so limits, faults and writes never leak between tests.
"""

from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pytest

from leadflow.connections import Connection
from leadflow.crm.base import CrmAuthError, CrmError, RecordUpdate
from leadflow.pulled import Watermark
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.crm.salesforce import SalesforceConnector
from leadflow.pipeline import RunContext, extract, run_all
from leadflow.qualify.frame import build_qualify_frame
from leadflow.qualify import load_model, score_leads
from leadflow.sandbox.faults import FaultSpec
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo


class NoSleep:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def connection(sf: Any, **extra: Any) -> Connection:
    return Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https", password=sf.token,
                      extra={"verify": str(sf.cert_path), **extra})


def connect(sf: Any, fake: NoSleep | None = None, **extra: Any) -> SalesforceConnector:
    kwargs: dict[str, Any] = {"rng": random.Random(1)}
    if fake is not None:
        kwargs.update(clock=fake, sleeper=fake.sleep)
    return SalesforceConnector.from_connection(connection(sf, **extra), **kwargs)


def pull_ids(connector: SalesforceConnector, since: Watermark | None = None) -> list[str]:
    return [lead["record_id"] for page in connector.pull(since) for lead in page.leads]


def test_pull_follows_next_records_url_and_resumes_after_a_tie_on_system_modstamp() -> None:
    # Runs of 250 leads share one SystemModstamp: 200-record batches end inside the ties.
    with running_salesforce_sandbox(contacts=1000, seed=4, shared_timestamp_every=250) as sf:
        with connect(sf, query_batch_size=200, modstamp_lag_ms=0) as connector:
            pages = list(connector.pull(None))
            ids = [lead["record_id"] for p in pages for lead in p.leads]
            assert len(ids) == len(set(ids)) == 1000
            assert len(pages) == 5 and all(p.watermark.last_id for p in pages)
            # Resume from the middle of a tie: exactly the leads after (modstamp, id).
            middle = pages[1].watermark
            rest = pull_ids(connector, middle)
            assert rest == ids[400:]
            assert connector.stats.requests == 1 + 5 + 3  # describe, query + 4 batches, queryAll + 2 batches


def test_incremental_pull_brings_changed_and_deleted_leads_only() -> None:
    with running_salesforce_sandbox(contacts=300, seed=4) as sf:
        with connect(sf, modstamp_lag_ms=0) as connector:
            first = list(connector.pull(None))
            watermark = first[-1].watermark
            victims = [lead["record_id"] for lead in first[0].leads[:3]]
            sf.context.clock = lambda: 4_102_444_800.0  # 2100-01-01: later than every seeded modstamp
            sf.context.service.clock = sf.context.clock
            sf.context.service.delete(victims[0])
            assert connector.push([RecordUpdate(victims[1], {"grade": "A1"})])[0].status == "confirmed"
            later = [lead for page in connector.pull(watermark) for lead in page.leads]
        by_id = {lead["record_id"]: lead for lead in later}
        assert set(by_id) == {victims[0], victims[1]}
        assert by_id[victims[0]]["is_deleted"] is True
        assert by_id[victims[1]]["crm_grade"] == "A1"


def test_wrong_session_fails_fast_and_oauth_client_credentials_get_a_session() -> None:
    with running_salesforce_sandbox(contacts=20, seed=4) as sf:
        bad = SalesforceConnector.from_connection(
            Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https", password="nope",
                       extra={"verify": str(sf.cert_path)}))
        with bad, pytest.raises(CrmAuthError) as info:
            pull_ids(bad)
        assert "leadflow_salesforce" in str(info.value) and "nope" not in str(info.value)
        oauth = SalesforceConnector.from_connection(
            Connection("leadflow_salesforce", host="127.0.0.1", port=sf.port, schema="https",
                       extra={"verify": str(sf.cert_path), "client_id": sf.client_id,
                              "client_secret": sf.client_secret}))
        with oauth:
            assert len(pull_ids(oauth)) == 20
            assert oauth.stats.oauth_requests == 1


def test_ensure_schema_names_missing_fields_before_any_write() -> None:
    with running_salesforce_sandbox(contacts=20, seed=4) as sf:
        with connect(sf) as connector:
            data = connector.mapping.model_dump()
            data["owned_fields"]["score"]["name"] = "Leadflow_Lead_Score__c"
            connector.mapping = type(connector.mapping).model_validate(data)
            rid = pull_ids(connector)[0]
            before = len(sf.store.writes())
            with pytest.raises(CrmError, match="missing field Leadflow_Lead_Score__c"):
                connector.push([RecordUpdate(rid, {"score": 10})])
            assert len(sf.store.writes()) == before


def test_push_maps_partial_failures_per_record_and_read_back_sees_the_values() -> None:
    with running_salesforce_sandbox(contacts=300, seed=4) as sf:
        fake = NoSleep()
        with connect(sf, fake) as connector:
            leads = [lead for page in connector.pull(None) for lead in page.leads]
            open_ids = [l["record_id"] for l in leads if l["lifecycle_stage"] not in ("customer", "opportunity",
                                                                                      "evangelist", "other")][:120]
            sf.context.faults.configure(FaultSpec.parse("partial=1"), seed=3)
            results = connector.push([RecordUpdate(rid, {"score": 77, "grade": "B1"}) for rid in open_ids])
            sf.context.faults.configure(FaultSpec())
            statuses = {r.status for r in results}
            assert statuses == {"confirmed", "retryable"}
            locked = [r.record_id for r in results if r.status == "retryable"]
            assert all(r.category == "UNABLE_TO_LOCK_ROW" for r in results if r.status == "retryable")
            rows = {row["record_id"]: row for row in connector.read(open_ids)}
        for rid in open_ids:
            assert (rows[rid]["score"] == "77") == (rid not in locked)


def test_a_converted_lead_is_rejected_with_the_crm_message() -> None:
    with running_salesforce_sandbox(contacts=300, seed=4) as sf:
        with connect(sf) as connector:
            leads = [lead for page in connector.pull(None) for lead in page.leads]
            won = next(l["record_id"] for l in leads if l["lifecycle_stage"] == "customer")
            fine = next(l["record_id"] for l in leads if l["lifecycle_stage"] == "lead")
            results = connector.push([RecordUpdate(won, {"score": 5}), RecordUpdate(fine, {"score": 6})])
        assert results[0].status == "rejected" and results[0].category == "CANNOT_UPDATE_CONVERTED_LEAD"
        assert results[1].status == "confirmed"


def test_concurrent_limit_403_is_retried_with_backoff_without_real_sleep() -> None:
    with running_salesforce_sandbox(contacts=600, seed=4, faults="429=0.5", fault_seed=2) as sf:
        fake = NoSleep()
        with connect(sf, fake, query_batch_size=200) as connector:
            assert len(set(pull_ids(connector))) == 600
        assert connector.stats.rate_limited > 0 and fake.slept >= connector.stats.rate_limited * 1.0


def test_budget_reserve_stops_mid_pull_and_next_run_resumes_with_no_lead_skipped(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=900, seed=6, shared_timestamp_every=70) as sf:
        conn = connection(sf, query_batch_size=200, daily_reserve=5, modstamp_lag_ms=0)
        # 9 calls left before the reserve: describe, query, 2 more batches, then the reserve is hit.
        sf.context.usage.set(limit=1000, used=1000 - 5 - 4)
        ctx = RunContext(crm="salesforce", run_id="budget-1", warehouse_url=url, connection=conn)
        summary = extract(ctx)  # a success with a warning, not a failure
        assert "resumes next run" in summary["warning"] and summary["pulled"] == 600
        assert len(repo.load_leads(ctx.engine, "salesforce")) == 600
        stored = repo.get_watermark(ctx.engine, "salesforce")
        assert stored is not None and stored.last_id
        calls_before = sf.context.usage.used
        sf.context.usage.set(used=0)  # a new day
        second = extract(RunContext(crm="salesforce", run_id="budget-2", warehouse_url=url, connection=conn))
        assert calls_before == 1000 - 5  # stopped *before* the call that would have spent the reserve
    leads = repo.load_leads(ctx.engine, "salesforce")
    assert len(leads) == 900 and leads["record_id"].is_unique
    assert second["pulled"] <= 300 + 70  # resumed where it stopped, not from the start


@pytest.mark.slow
def test_pipeline_scores_and_writes_back_then_a_second_run_writes_nothing(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_salesforce_sandbox(contacts=400, seed=7) as sf:
        conn = connection(sf)
        first = run_all(RunContext(crm="salesforce", run_id="sf-1", warehouse_url=url, connection=conn))
        writes_after_first = len(sf.store.writes())
        second = run_all(RunContext(crm="salesforce", run_id="sf-2", warehouse_url=url, connection=conn))
        assert len(sf.store.writes()) == writes_after_first
    assert first["pulled"] == 400 and first["pushed"] > 0 and first["rejected"] == 0
    assert first["skipped_owned"] > 0  # converted (won) leads are left alone
    assert second["changed"] == 0 and second["pushed"] == 0 and second["write_calls"] == 0


def _frame(leads: list[dict], companies: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(leads)
    comp = pd.DataFrame(companies) if companies else pd.DataFrame(columns=["company_id"])
    return build_qualify_frame(frame, comp.drop_duplicates("company_id", keep="last"))


def test_one_model_scores_the_same_person_identically_from_hubspot_and_salesforce(tmp_path) -> None:
    with running_sandbox(contacts=400, seed=9, rate_limit="off", search_rate_limit="off", salesforce=True) as hs:
        sf = hs.salesforce
        assert sf.base_url == hs.sf_base_url and sf.token == hs.sf_token and sf.cert_path == hs.sf_cert_path
        hs_conn = Connection("leadflow_hubspot", host="127.0.0.1", port=hs.port, schema="http", password=hs.token)
        with HubSpotConnector.from_connection(hs_conn) as hubspot:
            hs_pages = list(hubspot.pull(None))
        with connect(sf) as salesforce:
            sf_pages = list(salesforce.pull(None))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    model = load_model()
    scored = {}
    for crm, pages in (("hubspot", hs_pages), ("salesforce", sf_pages)):
        frame = _frame([l for p in pages for l in p.leads], [c for p in pages for c in p.companies])
        scores = score_leads(frame, model, now)
        scored[crm] = scores.assign(email=frame["email"].to_numpy()).set_index("email").sort_index()
    hs_scores, sf_scores = scored["hubspot"], scored["salesforce"]
    assert len(hs_scores) == len(sf_scores) == 400
    assert list(hs_scores.index) == list(sf_scores.index)
    columns = ["score", "fit_score", "engagement_score", "grade", "bant_count", "disqualification_reason", "stage",
               "lead_status", "reasons"]
    pd.testing.assert_frame_equal(hs_scores[columns], sf_scores[columns])
    assert hs_scores["score"].nunique() > 10  # a real spread, not a trivially equal constant
