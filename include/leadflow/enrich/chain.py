"""The provider chain: warehouse cache -> reference file -> HTTP API.

Each distinct domain is asked of the providers in order until one matches. A fresh cached
"not found" is remembered: it stops *remote* providers (no API call for a domain the API
denied within the negative TTL) but local ones (the reference file, which a user may have
updated) are still consulted. Answers of remote providers are written to the cache.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
from sqlalchemy import Engine

from leadflow.connections import Resolver, find_connection
from leadflow.enrich.cache import WarehouseCache
from leadflow.enrich.http_provider import HttpEnrichmentProvider
from leadflow.enrich.providers import (
    MATCHED,
    NOT_FOUND,
    CompanyProvider,
    coerce_records,
    empty_records,
)
from leadflow.enrich.reference import load_reference
from leadflow.enrich.settings import EnrichmentSettings

log = logging.getLogger(__name__)

# Status of a domain that no provider answered for (e.g. no API configured).
UNKNOWN = "unknown"


class ProviderChain:
    """Ordered providers plus the cache that remembers what remote providers said."""

    def __init__(
        self, providers: Sequence[CompanyProvider], cache: WarehouseCache | None = None
    ) -> None:
        self.providers = list(providers)
        self.cache = cache
        self.stats: Counter[str] = Counter()

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.providers]

    def name_matcher(self) -> Any | None:
        """The first provider that can match company names (the reference file), if any."""
        for provider in self.providers:
            if hasattr(provider, "match_names"):
                return provider
        return None

    def lookup(self, domains: Iterable[str], now_ms: int) -> pd.DataFrame:
        """One answer per distinct domain (RECORD_COLUMNS, in first-seen order).

        `status` is matched / not_found / pending / error, or "unknown" when no provider had
        an answer; `source` names the provider that gave the answer.
        """
        wanted = list(dict.fromkeys(d for d in domains if isinstance(d, str) and d))
        self.stats["domains"] += len(wanted)
        if not wanted:
            return empty_records()
        answers: list[pd.DataFrame] = []
        open_domains = pd.Index(wanted, dtype="str")
        negative = pd.Index([], dtype="str")
        remote_answers: list[pd.DataFrame] = []
        for provider in self.providers:
            ask = open_domains.difference(negative, sort=False) if provider.remote else open_domains
            if ask.empty:
                continue
            found = provider.lookup(ask.tolist(), now_ms)
            self.stats[f"{provider.name}_asked"] += len(ask)
            if found.empty:
                continue
            counts = found["status"].value_counts()
            for status, count in counts.items():
                self.stats[f"{provider.name}_{status}"] += int(count)
            if provider.remote:
                remote_answers.append(found)
            matched = found[found["status"] == MATCHED]
            if provider.remote:
                # A remote provider's last word (not found, pending, error) is the answer.
                final = found
            else:
                final = matched
                denied = found.loc[found["status"] == NOT_FOUND, "domain"]
                negative = negative.union(pd.Index(denied, dtype="str"), sort=False)
            answers.append(final)
            open_domains = open_domains.difference(pd.Index(final["domain"], dtype="str"), sort=False)
            if open_domains.empty:
                break
        if self.cache is not None and remote_answers:
            self.cache.store(pd.concat(remote_answers, ignore_index=True), now_ms)
        # Domains still open: a cached "not found", or nobody knew.
        leftovers = pd.DataFrame({"domain": open_domains.tolist()})
        is_negative = leftovers["domain"].isin(negative)
        leftovers["status"] = [NOT_FOUND if n else UNKNOWN for n in is_negative]
        leftovers["source"] = [self.cache.name if n and self.cache else None for n in is_negative]
        answers.append(coerce_records(leftovers))
        result = pd.concat([a for a in answers if not a.empty], ignore_index=True)
        order = pd.Index(result["domain"]).get_indexer(pd.Index(wanted, dtype="str"))
        return result.iloc[order].reset_index(drop=True)

    def close(self) -> None:
        for provider in self.providers:
            close = getattr(provider, "close", None)
            if close is not None:
                close()


def build_chain(
    engine: Engine | None,
    settings: EnrichmentSettings | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    http_options: Mapping[str, Any] | None = None,
    resolver: Resolver | None = None,
) -> ProviderChain:
    """Providers in order: warehouse cache -> reference file -> HTTP API.

    The HTTP provider is added only when the connection `settings.http.connection_id`
    (`leadflow_enrichment`) is defined; its password is the bearer key. It is looked up through
    `resolver` (default: Airflow's lookup when Airflow is installed), or only in `environ`'s
    `AIRFLOW_CONN_*` variables when a mapping is given. `http_options` are passed to
    `HttpEnrichmentProvider` (transport, sleeper, ...; for tests). A malformed connection raises
    `ConnectionConfigError`: silently enriching less would be worse than stopping with a message
    naming the connection.
    """
    settings = settings or EnrichmentSettings()
    providers: list[CompanyProvider] = []
    cache = None
    if settings.cache_enabled and engine is not None:
        cache = WarehouseCache(engine, settings.cache_ttl_ms, settings.negative_ttl_ms)
        providers.append(cache)
    if settings.reference_enabled:
        providers.append(load_reference(settings.reference_path))
    if settings.http.enabled:
        provider = _http_provider(settings, environ, resolver, http_options or {})
        if provider is not None:
            providers.append(provider)
    log.info("enrichment chain: %s", " -> ".join(p.name for p in providers) or "(empty)")
    return ProviderChain(providers, cache)


def _http_provider(
    settings: EnrichmentSettings, environ: Mapping[str, str] | None, resolver: Resolver | None,
    options: Mapping[str, Any],
) -> CompanyProvider | None:
    conn_id = settings.http.connection_id
    conn = find_connection(conn_id, environ, resolver=resolver)
    if conn is None:
        log.info("enrichment: connection %r not defined, HTTP provider off", conn_id)
        return None
    return HttpEnrichmentProvider(conn.base_url, conn.token, settings.http, **dict(options))
