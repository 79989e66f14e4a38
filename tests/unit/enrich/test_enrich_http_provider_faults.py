"""The HTTP provider under transient failures: 5xx, read timeouts, give-up, and what gets cached."""

from __future__ import annotations

import logging

from leadflow.enrich.cache import WarehouseCache
from leadflow.enrich.chain import ProviderChain
from leadflow.enrich.http_provider import TransportError

from enrich_fakes import FakeTransport, ok, status

DAY_MS = 86_400_000


def read_timeout() -> TransportError:
    return TransportError("ReadTimeout")


def _statuses(frame) -> dict[str, str]:
    return dict(zip(frame["domain"], frame["status"]))


def test_given_read_timeouts_then_each_is_one_attempt_retried_with_backoff(make_provider, clock) -> None:
    transport = FakeTransport({"a.com": [read_timeout(), read_timeout(), ok("a.com")]})
    provider = make_provider(transport, backoff_base_s=0.5, backoff_max_s=10, max_attempts=5)
    found = provider.lookup(["a.com"], 0)
    assert found["status"].tolist() == ["matched"]
    assert transport.calls == ["a.com"] * 3  # two timed-out attempts + the one answered
    assert clock.sleeps == [0.5, 1.0]
    assert (provider.stats["transport_errors"], provider.stats["retries"], provider.stats["gave_up"]) == (2, 2, 0)


def test_given_503_then_retries_and_succeeds(make_provider) -> None:
    transport = FakeTransport({"a.com": [status(503), status(502), ok("a.com")]})
    provider = make_provider(transport, max_attempts=3)
    assert provider.lookup(["a.com"], 0)["status"].tolist() == ["matched"]
    assert provider.stats["server_errors"] == 2 and provider.stats["gave_up"] == 0


def test_given_failures_up_to_max_attempts_then_domain_left_unresolved_and_others_answered(make_provider) -> None:
    transport = FakeTransport({
        "down.com": [status(503), read_timeout(), status(500)],
        "ok.com": [read_timeout(), ok("ok.com")],
    })
    provider = make_provider(transport, max_attempts=3, concurrency=2)
    found = provider.lookup(["down.com", "ok.com", "nobody.com"], 0)
    assert _statuses(found) == {"down.com": "error", "ok.com": "matched", "nobody.com": "not_found"}
    assert transport.per_domain == {"down.com": 3, "ok.com": 2, "nobody.com": 1}
    assert provider.stats["gave_up"] == 1


def test_given_gave_up_domain_then_not_cached_and_only_it_is_asked_next_run(
    make_provider, sqlite_warehouse
) -> None:
    cache = WarehouseCache(sqlite_warehouse, 30 * DAY_MS, 7 * DAY_MS)
    first = FakeTransport({"down.com": [status(503)], "ok.com": [ok("ok.com")]})
    chain = ProviderChain([cache, make_provider(first, max_attempts=2)], cache)
    run1 = chain.lookup(["down.com", "ok.com", "nobody.com"], now_ms=DAY_MS)
    assert _statuses(run1) == {"down.com": "error", "ok.com": "matched", "nobody.com": "not_found"}
    assert set(_statuses(cache.lookup(["down.com", "ok.com", "nobody.com"], DAY_MS))) == {"ok.com", "nobody.com"}

    second = FakeTransport({"down.com": [ok("down.com")]})
    chain = ProviderChain([cache, make_provider(second)], cache)
    run2 = chain.lookup(["down.com", "ok.com", "nobody.com"], now_ms=2 * DAY_MS)
    assert second.calls == ["down.com"]  # a transient failure is not a cached "not found"
    assert _statuses(run2)["down.com"] == "matched"


def test_given_transient_failures_then_summary_logs_counts_and_never_the_key(make_provider, caplog) -> None:
    transport = FakeTransport({"down.com": [status(503)], "slow.com": [read_timeout(), ok("slow.com")]})
    provider = make_provider(transport, max_attempts=2)
    with caplog.at_level(logging.INFO, logger="leadflow.enrich.http_provider"):
        provider.lookup(["down.com", "slow.com"], 0)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "2 server errors, 1 timeouts or network errors, 2 retries, 1 gave up" in text
    assert "1 domains unresolved after 2 attempts each" in text
    assert "secret-key" not in text and "down.com" not in text
