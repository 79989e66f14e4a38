"""The shared session's error policy, driven through an in-process transport (no sockets, no sleeps)."""

from __future__ import annotations

import http.client
import logging
import random

import pytest
import requests
from crm_fakes import CutOff, FakeClock, Reply, make_http, script
from urllib3.exceptions import NewConnectionError, ProtocolError

from leadflow.connections import Connection
from leadflow.crm import http as http_module
from leadflow.crm.base import CrmAuthError, CrmBudgetExhausted, CrmError, CrmRequestError, CrmUnavailableError
from leadflow.crm.http import ERROR_POLICY, CrmNotFoundError, RestSession, RetryConfig, WriteOutcomeUnknown, rule_for
from leadflow.crm.hubspot_session import HubSpotSession
from leadflow.crm.hubspot_settings import HubSpotSettings

TOKEN = "secret-token"
OK = Reply(200, {"results": []})


def _ten_secondly_429() -> Reply:
    return Reply(429, {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                       "errorType": "RATE_LIMIT", "correlationId": "c-1", "policyName": "TEN_SECONDLY_ROLLING"})


def _session(handler, clock: FakeClock, connection: Connection, **extra) -> tuple[HubSpotSession, object]:
    http, transport = make_http(handler)
    conn = Connection(connection.conn_id, host=connection.host, port=connection.port, password=TOKEN, extra=extra)
    session = HubSpotSession.from_connection(conn, clock=clock, sleeper=clock.sleep, rng=random.Random(7), session=http)
    return session, transport


def test_given_429_then_retries_and_succeeds(clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(_ten_secondly_429(), _ten_secondly_429(), OK), clock, connection)
    response = session.request("GET", "/crm/v3/objects/contacts")
    assert response.status_code == 200
    assert len(transport.requests) == 3
    assert session.stats.rate_limited == 2 and session.stats.retries == 2
    assert session.stats.requests == 3
    # Each retry waited at least the policy's floor for a rolling ten-second window.
    backoffs = [s for s in clock.sleeps if s >= 1.0]
    assert len(backoffs) >= 2 and all(s >= 2.0 for s in backoffs)


def test_given_429_then_the_shared_bucket_is_paused_for_other_callers(clock: FakeClock, connection: Connection) -> None:
    session, _ = _session(script(_ten_secondly_429(), OK), clock, connection)
    session.request("GET", "/x")
    # Another caller sharing the bucket right after the 429 cannot get a token immediately.
    assert session.buckets["general"].try_acquire() is False


def test_given_secondly_429_then_waits_at_least_one_second(clock: FakeClock, connection: Connection) -> None:
    secondly = Reply(429, {"status": "error", "message": "You have reached your secondly limit.", "policyName": "SECONDLY"})
    session, _ = _session(script(secondly, OK), clock, connection, backoff_base_s=0.01)
    session.request("POST", "/crm/v3/objects/contacts/search", json={}, bucket="search", idempotent=True)
    assert max(clock.sleeps) >= 1.0


def test_given_daily_429_then_budget_exhausted_without_sleeping(clock: FakeClock, connection: Connection) -> None:
    daily = Reply(429, {"status": "error", "message": "You have reached your daily limit.", "policyName": "DAILY"})
    session, transport = _session(script(daily, OK), clock, connection)
    with pytest.raises(CrmBudgetExhausted, match="daily"):
        session.request("GET", "/crm/v3/objects/contacts")
    assert len(transport.requests) == 1
    assert all(s < 1.0 for s in clock.sleeps)  # at most limiter pacing, never an hours-long wait


def test_given_401_then_fails_fast_with_actionable_message(clock: FakeClock, connection: Connection) -> None:
    unauthorized = Reply(401, {"status": "error", "message": "Authentication credentials not found.", "category": "INVALID_AUTHENTICATION"})
    session, transport = _session(script(unauthorized), clock, connection)
    with pytest.raises(CrmAuthError) as info:
        session.request("GET", "/crm/v3/objects/contacts")
    message = str(info.value)
    assert message.startswith("HubSpot rejected the token (401): check the password of connection leadflow_hubspot")
    assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in message
    assert TOKEN not in message
    assert len(transport.requests) == 1 and clock.sleeps == []
    assert info.value.status == 401


def test_given_403_with_scope_context_then_error_names_missing_scope(clock: FakeClock, connection: Connection) -> None:
    forbidden = Reply(403, {"status": "error", "category": "MISSING_SCOPES",
                            "message": "This app hasn't been granted all required scopes to make this call.",
                            "errors": [{"message": "One or more scopes are required.",
                                        "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]}}]})
    session, _ = _session(script(forbidden), clock, connection)
    with pytest.raises(CrmAuthError, match=r"lacks the scope\(s\) crm.objects.contacts.write"):
        session.request("POST", "/crm/v3/objects/contacts/batch/update", json={"inputs": []})


def test_given_403_with_scope_only_in_message_then_scope_is_named(clock: FakeClock, connection: Connection) -> None:
    forbidden = Reply(403, {"status": "error", "message": "Requires scope crm.schemas.contacts.write"})
    session, _ = _session(script(forbidden), clock, connection)
    with pytest.raises(CrmAuthError, match="crm.schemas.contacts.write"):
        session.request("POST", "/crm/v3/properties/contacts", json={})


def test_given_400_then_request_error_carries_message_and_category(clock: FakeClock, connection: Connection) -> None:
    bad = Reply(400, {"status": "error", "message": "Property values were not valid", "category": "VALIDATION_ERROR",
                      "correlationId": "abc"})
    session, transport = _session(script(bad), clock, connection)
    with pytest.raises(CrmRequestError) as info:
        session.request("POST", "/crm/v3/objects/contacts/search", json={}, bucket="search", idempotent=True)
    assert "VALIDATION_ERROR" in str(info.value) and "Property values were not valid" in str(info.value)
    assert (info.value.category, info.value.correlation_id, info.value.status) == ("VALIDATION_ERROR", "abc", 400)
    assert len(transport.requests) == 1


def test_given_404_then_not_found_error(clock: FakeClock, connection: Connection) -> None:
    session, _ = _session(script(Reply(404, {"message": "nope", "category": "OBJECT_NOT_FOUND"})), clock, connection)
    with pytest.raises(CrmNotFoundError):
        session.request("GET", "/crm/v3/objects/contacts/1")


def test_given_423_then_waits_at_least_two_seconds(clock: FakeClock, connection: Connection) -> None:
    locked = Reply(423, {"status": "error", "message": "locked", "category": "LOCKED"})
    session, _ = _session(script(locked, OK), clock, connection, backoff_base_s=0.01)
    session.request("GET", "/x")
    assert max(clock.sleeps) >= 2.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 599])
def test_given_5xx_until_exhausted_then_unavailable_after_bounded_attempts(status: int, clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(Reply(status, {"message": "down"})), clock, connection,
                                  max_retries=3, backoff_base_s=1.0, backoff_max_s=3.0)
    with pytest.raises(CrmUnavailableError, match=f"still failing with {status} after 4 attempts"):
        session.request("GET", "/x")
    assert len(transport.requests) == 4
    backoffs = [s for s in clock.sleeps if s > 0.2]
    assert len(backoffs) == 3 and all(0.5 <= s <= 3.0 for s in backoffs)


def test_given_5xx_on_a_write_then_it_is_retried(clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(Reply(502), OK), clock, connection)
    session.request("POST", "/crm/v3/objects/contacts/batch/update", json={"inputs": []})
    assert len(transport.requests) == 2


def test_given_write_timeout_then_outcome_unknown_and_not_retried(clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(requests.ReadTimeout("read timed out"), OK), clock, connection)
    with pytest.raises(WriteOutcomeUnknown, match="may or may not have been applied"):
        session.request("POST", "/crm/v3/objects/contacts/batch/update", json={"inputs": []})
    assert len(transport.requests) == 1
    assert session.stats.timeouts == 1 and session.stats.retries == 0


def test_given_connection_lost_after_sending_a_write_then_outcome_unknown(clock: FakeClock, connection: Connection) -> None:
    lost = requests.ConnectionError(ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed")))
    session, transport = _session(script(lost, OK), clock, connection)
    with pytest.raises(WriteOutcomeUnknown):
        session.request("POST", "/crm/v3/objects/contacts/batch/update", json={"inputs": []})
    assert len(transport.requests) == 1


CUT_OFF = [pytest.param(CutOff(), requests.exceptions.ChunkedEncodingError, id="chunked-body-broken-off"),
           pytest.param(CutOff(undecodable=True), requests.exceptions.ContentDecodingError, id="body-not-decodable")]


@pytest.mark.parametrize(("cut", "raised"), CUT_OFF)
def test_given_cut_off_answer_then_the_fake_makes_requests_raise_it_as_a_socket_would(cut, raised) -> None:
    http, _ = make_http(script(cut))
    with pytest.raises(raised):
        http.get("http://127.0.0.1:8765/x")
    assert not issubclass(raised, requests.ConnectionError)  # why the policy needs its own row


@pytest.mark.parametrize(("cut", "raised"), CUT_OFF)
def test_given_cut_off_answer_to_a_read_then_retries_and_succeeds(cut, raised, clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(cut, cut, OK), clock, connection)
    response = session.request("POST", "/crm/v3/objects/contacts/search", json={}, bucket="search", idempotent=True)
    assert response.json() == {"results": []}
    assert len(transport.requests) == 3
    assert session.stats.retries == 2 and session.stats.connection_errors == 2


@pytest.mark.parametrize(("cut", "raised"), CUT_OFF)
def test_given_cut_off_answer_to_a_write_then_outcome_unknown_and_not_retried(cut, raised, clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(cut, OK), clock, connection)
    with pytest.raises(WriteOutcomeUnknown, match="response cut off after the request was sent"):
        session.request("POST", "/crm/v3/objects/contacts/batch/update", json={"inputs": []})
    assert len(transport.requests) == 1 and session.stats.retries == 0


def test_given_cut_off_answers_until_exhausted_then_unavailable(clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(CutOff()), clock, connection, max_retries=2)
    with pytest.raises(CrmUnavailableError, match="still failing with response cut off after 3 attempts"):
        session.request("GET", "/crm/v3/objects/contacts")
    assert len(transport.requests) == 3


def test_given_read_timeout_on_idempotent_search_then_retried(clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(requests.ReadTimeout("slow"), OK), clock, connection)
    session.request("POST", "/crm/v3/objects/contacts/search", json={}, bucket="search", idempotent=True)
    assert len(transport.requests) == 2 and session.stats.timeouts == 1


@pytest.mark.parametrize(
    "failure",
    [requests.ConnectTimeout("connect timed out"),
     requests.ConnectionError(NewConnectionError(None, "Connection refused"))],
)
def test_given_connect_failure_on_a_write_then_retried_because_nothing_was_sent(failure, clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(failure, OK), clock, connection)
    session.request("POST", "/crm/v3/objects/contacts/batch/update", json={"inputs": []})
    assert len(transport.requests) == 2


def test_given_daily_remaining_at_reserve_then_stops_before_the_next_request(clock: FakeClock, connection: Connection) -> None:
    low = Reply(200, {}, {"X-HubSpot-RateLimit-Daily-Remaining": "10"})
    session, transport = _session(script(low), clock, connection, daily_reserve=10)
    session.request("GET", "/x")
    with pytest.raises(CrmBudgetExhausted, match="down to 10"):
        session.request("GET", "/x")
    assert len(transport.requests) == 1


def test_requests_carry_bearer_token_and_configured_timeouts(clock: FakeClock, connection: Connection) -> None:
    session, transport = _session(script(OK), clock, connection, connect_timeout_s=2, read_timeout_s=9)
    session.request("GET", "/crm/v3/objects/contacts", params={"limit": 1})
    sent = transport.requests[0]
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.url == "http://127.0.0.1:8765/crm/v3/objects/contacts?limit=1"
    assert transport.timeouts[0] == (2, 9)


def test_retry_logs_name_status_but_never_token_or_body(clock: FakeClock, connection: Connection, caplog: pytest.LogCaptureFixture) -> None:
    session, _ = _session(script(Reply(503, {"message": "secret body text"}), OK), clock, connection)
    with caplog.at_level(logging.DEBUG, logger="leadflow"):
        session.request("POST", "/crm/v3/objects/contacts/search", json={"q": "ada@example.com"}, bucket="search", idempotent=True)
    assert "503" in caplog.text and "retry 1/5" in caplog.text
    for secret in (TOKEN, "secret body text", "ada@example.com"):
        assert secret not in caplog.text


def test_search_requests_are_paced_by_the_search_bucket(clock: FakeClock, connection: Connection) -> None:
    session, _ = _session(script(OK), clock, connection, search_rate_per_s=5)
    start = clock.now
    for _ in range(11):
        session.request("POST", "/crm/v3/objects/contacts/search", json={}, bucket="search", idempotent=True)
    # 10 gaps at 4.8/s: under the 5/s ceiling, above 90 % of it.
    assert clock.now - start == pytest.approx(10 / 4.8)


def test_policy_table_in_module_docstring_lists_every_rule() -> None:
    doc = http_module.__doc__ or ""
    for key in ERROR_POLICY:
        assert str(key) in doc, key
    assert rule_for(418).retry is False and rule_for(418).error is CrmRequestError
    assert rule_for(507).retry is True


def test_backoff_is_exponential_bounded_and_jittered() -> None:
    session = RestSession("http://127.0.0.1:1", None, retry=RetryConfig(5, 1.0, 8.0), rng=random.Random(1))
    for n, ceiling in enumerate([1, 2, 4, 8, 8, 8]):
        delays = {session.backoff(n) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_given_invalid_extra_then_error_names_connection_and_key(connection: Connection) -> None:
    conn = Connection(connection.conn_id, host="127.0.0.1", extra={"search_rate_per_s": 0, "page_sise": 10})
    with pytest.raises(CrmError) as info:
        HubSpotSettings.from_connection(conn)
    message = str(info.value)
    assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in message
    assert "extra.search_rate_per_s" in message and "extra.page_sise" in message


def test_stats_read_as_attributes_and_as_a_mapping() -> None:
    from leadflow.crm.http import Stats

    stats = Stats()
    assert not stats and dict(stats) == {} and stats.retries == 0
    stats.add("retries")
    stats.add("throttled_s", 0.5)
    assert dict(stats) == {"retries": 1, "throttled_s": 0.5}
    assert stats.retries == 1 and stats["throttled_s"] == 0.5


def test_rate_share_divides_the_portal_limits_between_workers(clock: FakeClock, connection: Connection) -> None:
    http, _ = make_http(script(OK))
    session = HubSpotSession.from_connection(connection, clock=clock, sleeper=clock.sleep, session=http, rate_share=0.25)
    assert session.buckets["general"].rate == pytest.approx(10 * 0.96 * 0.25)
    assert session.buckets["search"].rate == pytest.approx(5 * 0.96 * 0.25)
    with pytest.raises(ValueError, match="rate_share"):
        HubSpotSession.from_connection(connection, rate_share=0)


def test_given_airflow_http_form_keys_in_extra_then_they_are_ignored(connection: Connection) -> None:
    conn = Connection(connection.conn_id, host="127.0.0.1", extra={"auth_type": "", "headers": {}, "page_size": "50"})
    assert HubSpotSettings.from_connection(conn).page_size == 50


def test_given_429_with_retry_after_then_hubspot_waits_that_long_not_its_policy_floor(clock: FakeClock, connection: Connection) -> None:
    limited = _ten_secondly_429()
    limited.headers["Retry-After"] = "7"
    session, transport = _session(script(limited, OK), clock, connection)
    session.request("GET", "/crm/v3/objects/contacts")
    assert len(transport.requests) == 2
    assert 7.0 in clock.sleeps and all(s < 1.0 for s in clock.sleeps if s != 7.0)  # the rest: bucket pacing
    assert session.stats.backoff_s == 7.0
