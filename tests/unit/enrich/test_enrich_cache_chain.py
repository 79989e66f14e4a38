from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import time_machine

from leadflow.connections import ConnectionConfigError
from leadflow.enrich.cache import READ_CHUNK, WarehouseCache
from leadflow.enrich.chain import UNKNOWN, ProviderChain, build_chain
from leadflow.enrich.http_provider import HttpEnrichmentProvider
from leadflow.enrich.leads import enrich_leads
from leadflow.enrich.providers import CompanyRecord, records_to_frame
from leadflow.enrich.settings import EnrichmentSettings, HttpSettings

from enrich_fakes import FakeTransport, as_list, make_companies, make_leads, ok, reference_frame, status

DAY_MS = 86_400_000
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
T0_MS = int(T0.timestamp() * 1000)


class CountingProvider:
    """A provider with canned answers that records what it was asked."""

    def __init__(self, name: str, remote: bool, answers: dict[str, str]) -> None:
        self.name, self.remote, self.answers = name, remote, answers
        self.asked: list[list[str]] = []

    def lookup(self, domains, now_ms):
        self.asked.append(list(domains))
        return records_to_frame(
            CompanyRecord(d, status=self.answers[d], name=d.upper(), source=self.name, fetched_at=now_ms)
            for d in domains
            if d in self.answers
        )


@pytest.fixture
def cache(sqlite_warehouse) -> WarehouseCache:
    return WarehouseCache(sqlite_warehouse, ttl_ms=30 * DAY_MS, negative_ttl_ms=7 * DAY_MS)


def test_given_stored_answers_then_fresh_ones_are_read_back_from_cache(cache) -> None:
    cache.store(records_to_frame([CompanyRecord("a.com", name="A", employee_count=12, source="api",
                                                technologies=("x",), founded_year=1999, fetched_at=T0_MS),
                                  CompanyRecord("gone.com", status="not_found", source="api", fetched_at=T0_MS)]),
                T0_MS)
    found = cache.lookup(["a.com", "gone.com", "other.com"], T0_MS + DAY_MS)
    rows = {r["domain"]: r for r in found.to_dict("records")}
    assert set(rows) == {"a.com", "gone.com"}
    assert (rows["a.com"]["status"], rows["a.com"]["source"], rows["a.com"]["employee_band"]) == ("matched", "cache", "11-50")
    assert rows["a.com"]["founded_year"] == 1999 and rows["a.com"]["technologies"] == "x"
    assert rows["gone.com"]["status"] == "not_found"


def test_given_ttls_then_not_found_expires_before_matches(cache) -> None:
    cache.store(records_to_frame([CompanyRecord("a.com", source="api", fetched_at=T0_MS),
                                  CompanyRecord("gone.com", status="not_found", source="api", fetched_at=T0_MS)]),
                T0_MS)
    assert len(cache.lookup(["a.com", "gone.com"], T0_MS + 7 * DAY_MS - 1)) == 2
    assert cache.lookup(["a.com", "gone.com"], T0_MS + 7 * DAY_MS)["domain"].tolist() == ["a.com"]
    assert cache.lookup(["a.com"], T0_MS + 30 * DAY_MS).empty
    assert cache.purge_expired(T0_MS + 30 * DAY_MS) == 2


def test_given_pending_and_errors_then_never_cached(cache) -> None:
    written = cache.store(records_to_frame([CompanyRecord("p.com", status="pending", source="api"),
                                            CompanyRecord("e.com", status="error", source="api")]), T0_MS)
    assert written == 0
    assert cache.lookup(["p.com", "e.com"], T0_MS).empty


def test_given_more_domains_than_a_chunk_then_all_found(cache) -> None:
    domains = [f"d{i}.com" for i in range(READ_CHUNK + 250)]
    cache.store(records_to_frame(CompanyRecord(d, source="api", fetched_at=T0_MS) for d in domains), T0_MS)
    assert len(cache.lookup(domains, T0_MS)) == len(domains)


def test_given_chain_then_first_match_wins_and_later_providers_see_only_the_rest() -> None:
    first = CountingProvider("reference", False, {"a.com": "matched"})
    second = CountingProvider("api", True, {"a.com": "matched", "b.com": "matched", "c.com": "not_found"})
    chain = ProviderChain([first, second])
    answers = chain.lookup(["a.com", "b.com", "c.com", "d.com", "a.com"], T0_MS)
    assert answers["domain"].tolist() == ["a.com", "b.com", "c.com", "d.com"]
    assert answers["source"].tolist()[:3] == ["reference", "api", "api"]
    assert answers["status"].tolist() == ["matched", "matched", "not_found", UNKNOWN]
    assert second.asked == [["b.com", "c.com", "d.com"]]


def test_given_cached_not_found_then_api_skipped_but_reference_still_asked(cache) -> None:
    cache.store(records_to_frame([CompanyRecord("gone.com", status="not_found", source="api", fetched_at=T0_MS),
                                  CompanyRecord("new.com", status="not_found", source="api", fetched_at=T0_MS)]),
                T0_MS)
    reference = CountingProvider("reference", False, {"new.com": "matched"})
    api = CountingProvider("api", True, {})
    answers = ProviderChain([cache, reference, api], cache).lookup(["gone.com", "new.com", "x.com"], T0_MS)
    by = dict(zip(answers["domain"], zip(answers["status"], as_list(answers["source"]))))
    assert by == {"gone.com": ("not_found", "cache"), "new.com": ("matched", "reference"), "x.com": (UNKNOWN, None)}
    assert reference.asked == [["gone.com", "new.com", "x.com"]]
    assert api.asked == [["x.com"]]


def test_given_api_answers_then_written_to_cache_and_not_asked_again_within_ttl(
    sqlite_warehouse, make_provider
) -> None:
    transport = FakeTransport({"a.com": [ok("a.com")], "slow.com": [status(202)]})
    settings = EnrichmentSettings(reference_enabled=False)
    cache = WarehouseCache(sqlite_warehouse, settings.cache_ttl_ms, settings.negative_ttl_ms)

    def run(at_ms: int) -> pd.DataFrame:
        chain = ProviderChain([cache, make_provider(transport, pending_rounds=0)], cache)
        return chain.lookup(["a.com", "gone.com", "slow.com"], at_ms)

    run(T0_MS)
    assert sorted(transport.calls) == ["a.com", "gone.com", "slow.com"]
    second = run(T0_MS + DAY_MS)
    # Matches and "not found" come from the cache; only the pending domain is asked again.
    assert transport.calls[3:] == ["slow.com"]
    assert dict(zip(second["domain"], second["source"]))["a.com"] == "cache"
    run(T0_MS + 8 * DAY_MS)  # the negative TTL (7 days) has passed: ask about gone.com again
    assert sorted(transport.calls[4:]) == ["gone.com", "slow.com"]


def _leads_with_domains(*domains: str) -> pd.DataFrame:
    return make_leads([{"record_id": str(i), "email": f"x@{d}"} for i, d in enumerate(domains)])


def test_given_frozen_time_then_enrich_leads_uses_cache_until_ttl_ends(sqlite_warehouse, make_provider) -> None:
    transport = FakeTransport({"a.com": [ok("a.com")]})
    settings = EnrichmentSettings(reference_enabled=False, cache_ttl_days=2, negative_ttl_days=1)

    def run():
        cache = WarehouseCache(sqlite_warehouse, settings.cache_ttl_ms, settings.negative_ttl_ms)
        chain = ProviderChain([cache, make_provider(transport)], cache)
        return enrich_leads(_leads_with_domains("a.com", "gone.com"), make_companies([]), chain, settings)

    with time_machine.travel(T0, tick=False):
        first = run()
    with time_machine.travel(T0 + timedelta(hours=23), tick=False):
        second = run()
    assert len(transport.calls) == 2
    assert second.frame["company_source"].tolist() == ["cache", "none"]
    assert first.frame["company_source"].tolist() == ["api", "none"]
    with time_machine.travel(T0 + timedelta(days=1, minutes=1), tick=False):
        run()
    assert transport.calls[2:] == ["gone.com"]  # negative entry expired, positive still fresh
    with time_machine.travel(T0 + timedelta(days=2, minutes=1), tick=False):
        run()
    assert sorted(transport.calls[3:]) == ["a.com", "gone.com"]


@pytest.fixture
def small_reference(tmp_path) -> EnrichmentSettings:
    """Settings whose reference file is a five-company CSV (the bundled one takes seconds)."""
    path = tmp_path / "reference.csv"
    reference_frame().to_csv(path, index=False)
    return EnrichmentSettings(reference_path=path)


def test_given_no_connection_then_chain_is_cache_and_reference(sqlite_warehouse, small_reference) -> None:
    chain = build_chain(sqlite_warehouse, small_reference, environ={})
    assert chain.names == ["cache", "reference"]
    assert build_chain(None, EnrichmentSettings(reference_enabled=False), environ={}).names == []


def test_given_connection_then_http_provider_last_with_key(sqlite_warehouse, small_reference) -> None:
    env = {"AIRFLOW_CONN_LEADFLOW_ENRICHMENT": json.dumps(
        {"conn_type": "http", "host": "127.0.0.1", "port": 8765, "schema": "http", "password": "k-123"})}
    transport = FakeTransport({"a.com": [ok("a.com")]})
    chain = build_chain(sqlite_warehouse, small_reference, environ=env,
                        http_options={"transport": transport})
    assert chain.names == ["cache", "reference", "api"]
    api = chain.providers[-1]
    assert isinstance(api, HttpEnrichmentProvider)
    assert api.url == "http://127.0.0.1:8765/v2/companies/find"
    api.lookup(["a.com"], 0)
    assert transport.headers_seen[0]["Authorization"] == "Bearer k-123"


def test_given_malformed_connection_then_error_names_the_variable(sqlite_warehouse, small_reference) -> None:
    env = {"AIRFLOW_CONN_LEADFLOW_ENRICHMENT": "{not json"}
    with pytest.raises(ConnectionConfigError, match="AIRFLOW_CONN_LEADFLOW_ENRICHMENT"):
        build_chain(sqlite_warehouse, small_reference, environ=env)


def test_given_http_disabled_then_connection_ignored(sqlite_warehouse, small_reference) -> None:
    env = {"AIRFLOW_CONN_LEADFLOW_ENRICHMENT": '{"host": "127.0.0.1", "password": "k"}'}
    settings = small_reference.model_copy(update={"http": HttpSettings(enabled=False)})
    assert build_chain(sqlite_warehouse, settings, environ=env).names == ["cache", "reference"]
