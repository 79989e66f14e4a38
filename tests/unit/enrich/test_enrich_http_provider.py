from __future__ import annotations

import threading

import pytest

from leadflow.enrich.http_provider import (
    HttpResponse,
    rate_limit_wait,
    window_exhausted,
)
from leadflow.http_policy import backoff_delay

from enrich_fakes import FakeTransport, ok, status, transport_error


def _by_domain(frame):
    return {row["domain"]: row for row in frame.to_dict("records")}


def test_given_200_then_matched_record_with_bearer_key(make_provider) -> None:
    transport = FakeTransport({"acme.com": [ok("acme.com", name="Acme")]})
    found = make_provider(transport).lookup(["acme.com"], now_ms=123)
    row = found.iloc[0]
    assert (row["status"], row["name"], row["source"], row["fetched_at"]) == ("matched", "Acme", "api", 123)
    assert transport.headers_seen[0]["Authorization"] == "Bearer secret-key"


def test_given_404_then_not_found_without_retry(make_provider) -> None:
    transport = FakeTransport()
    found = make_provider(transport).lookup(["nobody.com"], now_ms=0)
    assert found["status"].tolist() == ["not_found"]
    assert transport.calls == ["nobody.com"]


def test_given_duplicate_domains_then_one_request_each(make_provider) -> None:
    transport = FakeTransport({"a.com": [ok("a.com")], "b.com": [ok("b.com")]})
    found = make_provider(transport, concurrency=4).lookup(["a.com", "b.com", "a.com", "b.com", ""], 0)
    assert sorted(transport.calls) == ["a.com", "b.com"]
    assert found["domain"].tolist() == ["a.com", "b.com"]


def test_given_202_then_asks_again_later(make_provider, clock) -> None:
    transport = FakeTransport({"slow.com": [status(202), status(202), ok("slow.com")]})
    provider = make_provider(transport, pending_rounds=3, pending_delay_s=5)
    found = provider.lookup(["slow.com"], 0)
    assert found["status"].tolist() == ["matched"]
    assert transport.calls == ["slow.com"] * 3
    assert clock.sleeps.count(5) == 2  # waited between rounds, with the fake sleeper


def test_given_202_beyond_rounds_then_pending_not_not_found(make_provider) -> None:
    transport = FakeTransport({"slow.com": [status(202)]})
    found = make_provider(transport, pending_rounds=2, pending_delay_s=1).lookup(["slow.com"], 0)
    assert found["status"].tolist() == ["pending"]
    assert len(transport.calls) == 3


def test_given_202_then_only_pending_domains_are_asked_again(make_provider) -> None:
    transport = FakeTransport({"a.com": [ok("a.com")], "slow.com": [status(202), ok("slow.com")]})
    make_provider(transport, pending_rounds=2).lookup(["a.com", "slow.com"], 0)
    assert sorted(transport.calls) == ["a.com", "slow.com", "slow.com"]


def test_given_429_with_reset_then_waits_and_retries(make_provider, clock) -> None:
    limited = status(429, {"X-RateLimit-Limit": "600", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "7"})
    transport = FakeTransport({"a.com": [limited, ok("a.com")]})
    provider = make_provider(transport)
    found = provider.lookup(["a.com"], 0)
    assert found["status"].tolist() == ["matched"]
    assert len(transport.calls) == 2
    assert sum(clock.sleeps) >= 7  # the shared bucket held the retry for the reset time
    assert provider.stats["rate_limited"] == 1


def test_given_429_storm_then_bounded_attempts_and_error(make_provider) -> None:
    transport = FakeTransport({"a.com": [status(429, {"Retry-After": "1"})]})
    provider = make_provider(transport, max_attempts=3)
    found = provider.lookup(["a.com"], 0)
    assert found["status"].tolist() == ["error"]
    assert len(transport.calls) == 3


def test_given_429_then_every_worker_pauses(make_provider, clock) -> None:
    # After one 429 the bucket is paused: no request is sent before the reset passes.
    limited = status(429, {"X-RateLimit-Reset": "30"})
    sent_at: list[float] = []
    transport = FakeTransport(
        {"a.com": [limited, ok("a.com")], "b.com": [ok("b.com")]},
        on_call=lambda d: sent_at.append(clock()),
    )
    make_provider(transport).lookup(["a.com", "b.com"], 0)
    assert len(sent_at) == 3
    assert sent_at[1] - sent_at[0] >= 30 and sent_at[2] - sent_at[0] >= 30


def test_given_exhausted_window_header_then_next_request_waits(make_provider, clock) -> None:
    last = HttpResponse(200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "12"}, ok("a.com").body)
    sent_at: list[float] = []
    transport = FakeTransport({"a.com": [last], "b.com": [ok("b.com")]},
                              on_call=lambda d: sent_at.append(clock()))
    make_provider(transport).lookup(["a.com", "b.com"], 0)
    assert sent_at[1] - sent_at[0] >= 12


def test_given_5xx_and_network_errors_then_retried_with_backoff(make_provider, clock) -> None:
    transport = FakeTransport({"a.com": [status(503), transport_error(), ok("a.com")]})
    provider = make_provider(transport, backoff_base_s=0.5, backoff_max_s=10)
    found = provider.lookup(["a.com"], 0)
    assert found["status"].tolist() == ["matched"]
    assert clock.sleeps[:2] == [0.5, 1.0]  # jitter fixed at the top of the range
    assert provider.stats["retries"] == 2


def test_given_persistent_5xx_then_error_not_cached_as_unknown(make_provider) -> None:
    transport = FakeTransport({"a.com": [status(500)]})
    found = make_provider(transport, max_attempts=2).lookup(["a.com"], 0)
    assert found["status"].tolist() == ["error"]
    assert len(transport.calls) == 2


def test_given_401_then_remaining_lookups_abandoned(make_provider) -> None:
    transport = FakeTransport({d: [status(401)] for d in ("a.com", "b.com", "c.com")})
    found = make_provider(transport).lookup(["a.com", "b.com", "c.com"], 0)
    assert found["status"].tolist() == ["error", "error", "error"]
    assert transport.calls == ["a.com"]


def test_given_422_then_error_without_retry(make_provider) -> None:
    transport = FakeTransport({"a.com": [status(422)]})
    assert make_provider(transport).lookup(["a.com"], 0)["status"].tolist() == ["error"]
    assert len(transport.calls) == 1


def test_given_concurrency_limit_then_never_more_requests_in_flight(make_provider) -> None:
    barrier = threading.Barrier(3, timeout=10)
    domains = [f"d{i}.com" for i in range(9)]
    transport = FakeTransport({d: [ok(d)] for d in domains}, on_call=lambda d: barrier.wait())
    make_provider(transport, concurrency=3).lookup(domains, 0)
    # The barrier only opens when 3 requests are in flight together; never more than 3.
    assert transport.max_in_flight == 3
    assert sorted(transport.calls) == sorted(domains)


def test_given_rate_limit_then_requests_are_spaced(make_provider, clock) -> None:
    sent_at: list[float] = []
    domains = [f"d{i}.com" for i in range(6)]
    transport = FakeTransport({d: [ok(d)] for d in domains}, on_call=lambda d: sent_at.append(clock()))
    make_provider(transport, requests_per_second=2.0, burst=1).lookup(domains, 0)
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:])]
    assert all(g == pytest.approx(0.5) for g in gaps)


def test_given_lookup_budget_then_extra_domains_are_left_for_later(make_provider) -> None:
    domains = [f"d{i}.com" for i in range(5)]
    transport = FakeTransport({d: [ok(d)] for d in domains})
    provider = make_provider(transport, max_lookups_per_run=3)
    found = provider.lookup(domains, 0)
    assert found["domain"].tolist() == domains[:3]
    assert provider.lookup(domains[3:], 0).empty
    assert provider.stats["skipped_budget"] == 4


def test_given_malformed_200_body_then_error(make_provider) -> None:
    transport = FakeTransport({"a.com": [HttpResponse(200, {}, ["oops"])]})
    assert make_provider(transport).lookup(["a.com"], 0)["status"].tolist() == ["error"]


@pytest.mark.parametrize(
    ("headers", "wait"),
    [({"Retry-After": "3"}, 3.0), ({"X-RateLimit-Reset": "9"}, 9.0),
     ({"x-ratelimit-reset": "1700000010"}, 10.0), ({"X-RateLimit-Reset": "soon"}, None), ({}, None)],
)
def test_given_rate_limit_headers_then_wait_seconds(headers, wait) -> None:
    assert rate_limit_wait(HttpResponse(429, headers), wall_now_s=1_700_000_000.0) == wait


def test_given_remaining_header_then_window_state() -> None:
    assert window_exhausted(HttpResponse(200, {"X-RateLimit-Remaining": "0"}))
    assert not window_exhausted(HttpResponse(200, {"X-RateLimit-Remaining": "5"}))
    assert not window_exhausted(HttpResponse(200, {}))


def test_given_attempts_then_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_delay(n, 1.0, 5.0, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert backoff_delay(2, 1.0, 5.0, 0.0) == 1.0  # jitter spans [d/2, d]


def test_given_429_with_retry_after_as_an_http_date_then_waits_until_then(make_provider, clock) -> None:
    # wall clock of make_provider: 1_700_000_000 = Tue, 14 Nov 2023 22:13:20 GMT
    limited = status(429, {"Retry-After": "Tue, 14 Nov 2023 22:13:45 GMT"})
    transport = FakeTransport({"a.com": [limited, ok("a.com")]})
    provider = make_provider(transport)
    assert provider.lookup(["a.com"], 0)["status"].tolist() == ["matched"]
    assert 25.0 in clock.sleeps
    assert provider.stats["rate_limited"] == 1 and provider.stats["retries"] == 1
