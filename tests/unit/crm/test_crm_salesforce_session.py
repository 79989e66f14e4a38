"""The Salesforce session's own loops (OAuth token, session refresh) with cut-off answers, driven
through the in-process transport (no sockets, no sleeps)."""

from __future__ import annotations

import random

import pytest
import requests
from crm_fakes import CutOff, FakeClock, Reply, make_http

from leadflow.crm.base import CrmAuthError, CrmBudgetExhausted, CrmUnavailableError
from leadflow.crm.http import RetryConfig, WriteOutcomeUnknown
from leadflow.crm.salesforce_session import SalesforceSession

BASE = "http://127.0.0.1:8765"
TOKEN = Reply(200, {"access_token": "00Dsession", "instance_url": BASE})
QUERY = Reply(200, {"totalSize": 0, "done": True, "records": []})


def _session(token_replies, api_replies, clock: FakeClock, max_retries: int = 5):
    token_queue, api_queue = list(token_replies), list(api_replies)

    def handler(request: requests.PreparedRequest):
        queue = token_queue if request.url.endswith("/services/oauth2/token") else api_queue
        return queue.pop(0) if len(queue) > 1 else queue[0]

    http, transport = make_http(handler)
    session = SalesforceSession(BASE, None, oauth={"client_id": "cid", "client_secret": "secret"}, session=http,
                                sleeper=clock.sleep, rng=random.Random(3), retry=RetryConfig(max_retries=max_retries))
    return session, transport


def test_given_cut_off_token_answers_then_token_request_is_retried_and_the_call_succeeds(clock: FakeClock) -> None:
    session, transport = _session([CutOff(), CutOff(undecodable=True), TOKEN], [QUERY], clock)
    body = session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"}).json()
    assert body["done"] is True
    assert [r.url.endswith("/token") for r in transport.requests] == [True, True, True, False]
    assert session.stats.oauth_requests == 3 and session.stats.retries == 2
    assert transport.requests[-1].headers["Authorization"] == "Bearer 00Dsession"


def test_given_token_answers_cut_off_until_exhausted_then_unavailable_names_the_failure(clock: FakeClock) -> None:
    session, transport = _session([CutOff()], [QUERY], clock, max_retries=2)
    with pytest.raises(CrmUnavailableError, match="OAuth token request still failing .ChunkedEncodingError. after 3 attempts"):
        session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert len(transport.requests) == 3


def test_given_cut_off_query_answer_then_salesforce_loop_retries_the_read(clock: FakeClock) -> None:
    session, transport = _session([TOKEN], [CutOff(), QUERY], clock)
    body = session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"}).json()
    assert body["records"] == []
    assert len(transport.requests) == 3 and session.stats.retries == 1


def test_given_cut_off_answer_to_a_collection_patch_then_outcome_unknown(clock: FakeClock) -> None:
    session, transport = _session([TOKEN], [CutOff(undecodable=True), Reply(200, [])], clock)
    with pytest.raises(WriteOutcomeUnknown):
        session.request("PATCH", "/services/data/v59.0/composite/sobjects", json={"records": []})
    assert len(transport.requests) == 2  # the token, then the one write: never repeated


def _limit_exceeded(message: str) -> Reply:
    return Reply(403, [{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}])


def test_given_concurrent_request_limit_then_retried_like_a_429(clock: FakeClock) -> None:
    session, transport = _session([TOKEN], [_limit_exceeded("ConcurrentPerOrgLongTxn Limit exceeded."), QUERY], clock)
    session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert len(transport.requests) == 3
    assert session.stats.rate_limited == 1 and session.stats.retries == 1
    assert clock.sleeps and min(clock.sleeps) >= 1.0


def test_given_concurrent_request_limit_until_exhausted_then_unavailable_names_the_limit(clock: FakeClock) -> None:
    session, transport = _session([TOKEN], [_limit_exceeded("ConcurrentPerOrgLongTxn Limit exceeded.")], clock,
                                  max_retries=2)
    with pytest.raises(CrmUnavailableError, match="concurrent request limit still exceeded after 3 attempts"):
        session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert len(transport.requests) == 4


def test_given_daily_total_exceeded_then_budget_exhausted_at_once(clock: FakeClock) -> None:
    session, transport = _session([TOKEN], [_limit_exceeded("TotalRequests Limit exceeded."), QUERY], clock)
    with pytest.raises(CrmBudgetExhausted, match=r"daily API allocation is spent \(403 REQUEST_LIMIT_EXCEEDED\)"):
        session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert len(transport.requests) == 2 and clock.sleeps == []


def test_given_5xx_token_answer_then_token_request_is_retried(clock: FakeClock) -> None:
    session, transport = _session([Reply(503, {"error": "unavailable"}), TOKEN], [QUERY], clock)
    session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert session.stats.oauth_requests == 2 and len(transport.requests) == 3


def test_given_refused_client_then_oauth_error_names_the_connection_without_retrying(clock: FakeClock) -> None:
    refused = Reply(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
    session, transport = _session([refused], [QUERY], clock)
    with pytest.raises(CrmAuthError, match=r"OAuth refused the client of connection \? \(invalid_client\): invalid "
                                           "client credentials"):
        session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert len(transport.requests) == 1 and clock.sleeps == []


def test_given_expired_session_then_one_new_session_and_the_call_once_more(clock: FakeClock) -> None:
    expired = Reply(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    session, transport = _session([TOKEN], [expired, QUERY], clock)
    session.request("GET", "/services/data/v59.0/query", params={"q": "SELECT Id FROM Lead"})
    assert [r.url.endswith("/token") for r in transport.requests] == [True, False, True, False]
    assert session.stats.oauth_requests == 2
