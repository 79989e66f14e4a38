"""Both CRMs' sessions on the warehouse-kept buckets (`leadflow.shared_limit`): every session of one
connection draws from the whole account's buckets, a 429 pause and a daily-budget stop found by
one reach the others; without the shared limiter each process keeps its static share. In-process
transport and a fake clock: no sockets, no sleeps. The warehouse is SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from crm_fakes import FakeClock, Reply, make_http, script

from leadflow.connections import Connection
from leadflow.crm.base import CrmBudgetExhausted
from leadflow.crm.hubspot_session import HubSpotSession
from leadflow.crm.ratelimit import TokenBucket
from leadflow.crm.salesforce_session import SalesforceSession
from leadflow.settings import PipelineSettings
from leadflow.shared_limit import RateLimitSettings, SharedBucket, SharedLimits, connector_limits

OK = Reply(200, {"results": []})
SF_CONNECTION = Connection("leadflow_salesforce", host="127.0.0.1", port=8766, schema="http", password="00Dsession")


@pytest.fixture
def limits(warehouse, clock: FakeClock) -> SharedLimits:
    return SharedLimits(warehouse, stop_s=600, clock=clock, sleeper=clock.sleep)


def _hubspot(connection: Connection, clock: FakeClock, limits: SharedLimits | None, *replies: Reply, **options):
    http, transport = make_http(script(*(replies or (OK,))))
    session = HubSpotSession.from_connection(connection, clock=clock, sleeper=clock.sleep, session=http,
                                             limits=limits, **options)
    return session, transport


def _salesforce(clock: FakeClock, limits: SharedLimits | None, *replies: Reply, extra=None, **options):
    http, transport = make_http(script(*(replies or (OK,))))
    connection = Connection(SF_CONNECTION.conn_id, host=SF_CONNECTION.host, port=SF_CONNECTION.port, schema="http",
                            password="00Dsession", extra=extra or {})
    session = SalesforceSession.from_connection(connection, clock=clock, sleeper=clock.sleep, session=http,
                                                limits=limits, **options)
    return session, transport


def test_hubspot_sessions_share_the_whole_portals_buckets_whatever_their_rate_share(
        connection: Connection, clock: FakeClock, limits: SharedLimits) -> None:
    first, _ = _hubspot(connection, clock, limits, rate_share=0.25)
    general, search = first.buckets["general"], first.buckets["search"]
    assert isinstance(general, SharedBucket) and isinstance(search, SharedBucket)
    assert (general.key, search.key) == ("hubspot:leadflow_hubspot:general", "hubspot:leadflow_hubspot:search")
    assert (general.rate, search.rate) == (pytest.approx(10 * 0.96), pytest.approx(5 * 0.96))
    second, _ = _hubspot(connection, clock, limits)
    start = clock.now
    for session in (first, second) * 3:
        session.request("GET", "/crm/v3/objects/contacts")
    # Six calls of two processes, spaced as one portal's: the full bucket's first, then 1/9.6 s each.
    assert clock.now - start == pytest.approx(5 / 9.6)


def test_a_429_in_one_hubspot_session_pauses_the_others(connection: Connection, clock: FakeClock,
                                                        limits: SharedLimits) -> None:
    limited = Reply(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                          "policyName": "TEN_SECONDLY_ROLLING"}, {"Retry-After": "3"})
    first, _ = _hubspot(connection, clock, limits, limited, OK)
    second, _ = _hubspot(connection, clock, limits)
    first.request("GET", "/crm/v3/objects/contacts")
    paused_at = clock.now - 3 - 1 / 9.6  # the first slept the 3 s, then waited for its token after them
    second.request("GET", "/crm/v3/objects/contacts")
    assert clock.now >= paused_at + 3 + 2 / 9.6 - 1e-6  # the second's token came after the first's


def test_a_hubspot_daily_limit_in_one_session_stops_the_others_before_they_send(
        connection: Connection, clock: FakeClock, limits: SharedLimits) -> None:
    daily = Reply(429, {"status": "error", "message": "You have reached your daily limit.", "policyName": "DAILY"})
    first, _ = _hubspot(connection, clock, limits, daily)
    second, transport = _hubspot(connection, clock, limits)
    with pytest.raises(CrmBudgetExhausted, match="429 DAILY"):
        first.request("GET", "/crm/v3/objects/contacts")
    with pytest.raises(CrmBudgetExhausted, match=r"HubSpot's daily API budget is spent \(hubspot-search: stopped by "
                       r"another process for 600 s more \(a call answered 429\)\): stopping now; the next run resumes"):
        second.request("POST", "/crm/v3/objects/contacts/search", json={}, bucket="search", idempotent=True)
    assert transport.requests == []
    clock.now += 600  # the stop lasts `stop_s`: the next run tries again
    second.request("GET", "/crm/v3/objects/contacts")
    assert len(transport.requests) == 1


def test_a_salesforce_budget_stop_in_one_session_stops_the_others(clock: FakeClock, limits: SharedLimits) -> None:
    first, _ = _salesforce(clock, limits, Reply(200, {"records": []}, {"Sforce-Limit-Info": "api-usage=4600/5000"}))
    second, transport = _salesforce(clock, limits)
    first.request("GET", "/services/data/v59.0/query")
    with pytest.raises(CrmBudgetExhausted, match="down to 400 of 5000"):  # below the reserve of 500
        first.request("GET", "/services/data/v59.0/query")
    with pytest.raises(CrmBudgetExhausted, match=r"Salesforce's daily API budget is spent .*the daily reserve reached"):
        second.request("GET", "/services/data/v59.0/query")
    assert transport.requests == []


def test_salesforce_is_unpaced_by_default_and_paced_at_its_setting(clock: FakeClock, limits: SharedLimits) -> None:
    shared, _ = _salesforce(clock, limits)
    assert shared.buckets["general"].rate is None  # shared only for its pauses and stops
    for _ in range(5):
        shared.request("GET", "/services/data/v59.0/query")
    assert clock.sleeps == []
    alone, _ = _salesforce(clock, None)
    assert alone.buckets == {}  # no limiter at all, as before
    paced, _ = _salesforce(clock, None, extra={"rate_limit_per_s": 10}, rate_share=0.5)
    assert isinstance(paced.buckets["general"], TokenBucket) and paced.buckets["general"].rate == 5


def test_without_the_shared_limiter_each_process_keeps_its_static_share(connection: Connection,
                                                                         clock: FakeClock) -> None:
    session, _ = _hubspot(connection, clock, None, rate_share=0.5)
    assert isinstance(session.buckets["general"], TokenBucket)
    assert session.buckets["general"].rate == pytest.approx(10 * 0.96 * 0.5)


def test_the_pipeline_shares_the_limits_on_postgresql_and_splits_them_on_sqlite_unless_configured(warehouse) -> None:
    postgres = warehouse.dialect.name == "postgresql"
    default = connector_limits(warehouse, PipelineSettings().rate_limit, rate_share=0.25)
    assert ("limits" in default) is postgres
    assert default.get("rate_share") == (None if postgres else 0.25)
    assert connector_limits(warehouse, RateLimitSettings(shared=False), 0.25) == {"rate_share": 0.25}
    assert connector_limits(warehouse, RateLimitSettings(shared=False), 1.0) == {}
    forced = connector_limits(warehouse, RateLimitSettings(shared=True, budget_stop_s=60), 0.25)
    assert forced["limits"].stop_s == 60 and forced["limits"].engine is warehouse
