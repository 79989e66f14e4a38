"""Enrichment against the sandbox's company API over real HTTP (loopback).

The sandbox serves 200 for companies it knows, 404 for the others, 202 the first time for a
share of domains, and 429 with X-RateLimit-* headers past its per-key limit; with
`enrichment_faults` also 5xx and answers held past the client's read timeout.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest
import time_machine

from leadflow.enrich.cache import WarehouseCache
from leadflow.enrich.chain import build_chain
from leadflow.enrich.http_provider import RequestsTransport, TransportError
from leadflow.enrich.leads import enrich_leads
from leadflow.enrich.settings import EnrichmentSettings, HttpSettings
from leadflow.sandbox.server import running_sandbox
from leadflow.sandbox.world import company_universe
from leadflow.schema import COMPANY_COLUMNS, LEAD_COLUMNS

SEED = 1
CONTACTS = 400  # -> 50 companies in the sandbox world


class RecordingTransport(RequestsTransport):
    """The real transport, noting each answer's status per domain ("timeout" for a read timeout)."""

    def __init__(self, pool_size: int) -> None:
        super().__init__(pool_size)
        self.answers: dict[str, list[int | str]] = defaultdict(list)
        self._lock = threading.Lock()

    def get(self, url, *, params, headers, timeout):
        try:
            response = super().get(url, params=params, headers=headers, timeout=timeout)
        except TransportError as exc:
            with self._lock:
                self.answers[params["domain"]].append("timeout" if "Timeout" in str(exc) else str(exc))
            raise
        with self._lock:
            self.answers[params["domain"]].append(response.status_code)
        return response

    def statuses(self) -> Counter:
        return Counter(code for codes in self.answers.values() for code in codes)


def _leads(domains: list[str]) -> pd.DataFrame:
    data = {c: pd.Series([None] * len(domains), dtype="float64" if k in ("float", "ts") else "str")
            for c, k in LEAD_COLUMNS.items() if k != "bool"}
    frame = pd.DataFrame(data)
    frame["crm"] = "hubspot"
    frame["record_id"] = [str(i) for i in range(len(domains))]
    # Two leads per domain, one spelled differently: still one lookup per domain.
    frame["email"] = [f"p{i}@{'WWW.' if i % 2 else ''}{d}" for i, d in enumerate(domains)]
    return frame


def _companies() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="str") for c in COMPANY_COLUMNS})


def _env(sandbox) -> dict[str, str]:
    return {"AIRFLOW_CONN_LEADFLOW_ENRICHMENT": json.dumps(
        {"conn_type": "http", "host": sandbox.host, "port": sandbox.port, "schema": "http",
         "password": sandbox.enrichment_key})}


@pytest.fixture(scope="module")
def world_domains() -> list[str]:
    known = company_universe(SEED, CONTACTS // 8)["domain"].tolist()
    return known + [f"nobody{i}-unknown.org" for i in range(5)]


def test_given_faults_then_each_domain_answered_once_per_ttl_and_no_429_storm(
    sqlite_warehouse, world_domains
) -> None:
    http = HttpSettings(concurrency=4, requests_per_second=100, burst=5, pending_rounds=3,
                        pending_delay_s=0.2, backoff_base_s=0.05, backoff_max_s=2, max_attempts=8)
    settings = EnrichmentSettings(reference_enabled=False, http=http)
    domains = world_domains + world_domains  # every domain twice
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    # The server allows 25 requests per rolling second, well below what the client would send.
    with running_sandbox(contacts=CONTACTS, seed=SEED, enrichment_rate_limit="25/1",
                         enrichment_queued_share=0.3) as sandbox:
        transport = RecordingTransport(http.concurrency)
        chain = build_chain(sqlite_warehouse, settings, environ=_env(sandbox),
                            http_options={"transport": transport})
        with time_machine.travel(t0, tick=True):
            result = enrich_leads(_leads(domains), _companies(), chain, settings)

        final = {d: [c for c in codes if c in (200, 404)] for d, codes in transport.answers.items()}
        assert set(final) == set(world_domains)
        assert all(len(codes) == 1 for codes in final.values()), "a domain was answered twice"
        statuses = transport.statuses()
        assert statuses[202] > 0 and statuses[404] >= 5  # queued and unknown domains happened
        # Rate limit respected: the bucket pauses every worker after a 429, so at most a few
        # per second of run, never one per request.
        assert statuses[429] <= max(4, len(world_domains) // 4), statuses
        frame = result.frame
        nobody = frame["company_domain"].str.startswith("nobody")
        assert not frame.loc[nobody, "company_matched"].any()
        assert frame.loc[~nobody, "company_matched"].mean() > 0.6
        assert set(frame.loc[frame["company_matched"], "company_source"]) == {"api"}

        # Second run inside the TTL: everything from the warehouse cache, no HTTP at all.
        again = RecordingTransport(http.concurrency)
        chain = build_chain(sqlite_warehouse, settings, environ=_env(sandbox), http_options={"transport": again})
        with time_machine.travel(t0 + timedelta(days=1), tick=True):
            second = enrich_leads(_leads(domains), _companies(), chain, settings)
        still_pending = set(result.frame.loc[~result.frame["company_matched"], "company_domain"]) - {
            d for d, codes in final.items() if codes}
        assert set(again.answers) == still_pending  # only what never got a final answer
        assert second.coverage["company_matched"] >= result.coverage["company_matched"]


def test_given_5xx_and_timeout_faults_then_one_final_answer_per_domain_and_failures_asked_again_next_run(
    sqlite_warehouse, world_domains
) -> None:
    # Client read timeout well above loopback latency, well below the hold of a timeout fault.
    http = HttpSettings(concurrency=4, requests_per_second=100, burst=5, pending_rounds=3, pending_delay_s=0.1,
                        backoff_base_s=0.05, backoff_max_s=0.4, max_attempts=3, timeout_s=0.75)
    settings = EnrichmentSettings(reference_enabled=False, http=http)
    domains = world_domains + world_domains
    t0 = datetime(2026, 3, 1, tzinfo=timezone.utc)
    with running_sandbox(contacts=CONTACTS, seed=SEED, enrichment_rate_limit="25/1", enrichment_queued_share=0.3,
                         enrichment_faults="5xx=0.25,timeout=0.08", fault_seed=2, timeout_seconds=1.5) as sandbox:
        transport = RecordingTransport(http.concurrency)
        chain = build_chain(sqlite_warehouse, settings, environ=_env(sandbox), http_options={"transport": transport})
        with time_machine.travel(t0, tick=True):
            result = enrich_leads(_leads(domains), _companies(), chain, settings)
        provider = chain.providers[-1]
        served = sandbox.context.enrichment.lookups()

        # Each client attempt is exactly one lookup at the server, a timed-out one included (the
        # limiter's 429s are answered before the handler, so they are left out of the comparison).
        assert {d: [str(c) for c in codes if c != 429] for d, codes in transport.answers.items()} == served
        outcomes = Counter(o for seq in served.values() for o in seq)
        assert outcomes["timeout"] > 0 and outcomes["500"] + outcomes["502"] + outcomes["503"] > 0, outcomes
        assert outcomes["202"] > 0 and outcomes["404"] >= 5, outcomes
        assert provider.stats["transport_errors"] == outcomes["timeout"]
        statuses = transport.statuses()
        assert statuses[429] <= max(4, len(world_domains) // 4), statuses  # no 429 storm

        answered = {d for d, seq in served.items() if {"200", "404"} & set(seq)}
        unresolved = set(world_domains) - answered
        assert unresolved and provider.stats["gave_up"] >= 1, "the fault seed should make some domain give up"
        frame = result.frame
        assert not frame.loc[frame["company_domain"].isin(unresolved), "company_matched"].any()
        # Only final answers are cached (404 as "not found"); a transient failure is not.
        cache = WarehouseCache(sqlite_warehouse, settings.cache_ttl_ms, settings.negative_ttl_ms)
        cached = cache.lookup(world_domains, int(t0.timestamp() * 1000) + 1000)
        assert set(cached["domain"]) == answered
        assert set(cached.loc[cached["status"] == "not_found", "domain"]) == {
            d for d in answered if "404" in served[d]}

        # Second run inside the TTL: only the domains that had no final answer go to the API.
        again = RecordingTransport(http.concurrency)
        chain = build_chain(sqlite_warehouse, settings, environ=_env(sandbox), http_options={"transport": again})
        with time_machine.travel(t0 + timedelta(days=1), tick=True):
            second = enrich_leads(_leads(domains), _companies(), chain, settings)
        assert set(again.answers) == unresolved
        final_answers = Counter({d: sum(o in ("200", "404") for o in seq)
                                 for d, seq in sandbox.context.enrichment.lookups().items()})
        assert max(final_answers.values()) == 1, "a domain got a second final answer inside the TTL"
        assert second.coverage["company_matched"] >= result.coverage["company_matched"]


def test_given_wrong_key_then_lookups_stop_after_the_first_401(sqlite_warehouse, world_domains) -> None:
    settings = EnrichmentSettings(reference_enabled=False, http=HttpSettings(concurrency=1))
    with running_sandbox(contacts=CONTACTS, seed=SEED) as sandbox:
        env = {"AIRFLOW_CONN_LEADFLOW_ENRICHMENT": json.dumps(
            {"host": sandbox.host, "port": sandbox.port, "schema": "http", "password": "wrong-key"})}
        transport = RecordingTransport(1)
        chain = build_chain(sqlite_warehouse, settings, environ=env, http_options={"transport": transport})
        result = enrich_leads(_leads(world_domains[:10]), _companies(), chain, settings,
                              datetime(2026, 3, 1, tzinfo=timezone.utc))
    assert transport.statuses() == Counter({401: 1})
    assert not result.frame["company_matched"].any()
