"""Firmographic enrichment: company domains, provider chain, precedence, coverage.

The names below are the public API; they are imported lazily so that `leadflow.enrich.domains`
alone stays cheap to import.

    chain = build_chain(engine, settings)
    result = enrich_leads(leads, companies, chain, settings, now)
    store_enrichment(engine, crm, run_id, result.frame)
    summary.update(result.summary())   # {"enriched": .., "coverage": {..}}
"""

from __future__ import annotations

from leadflow.lazy import lazy_getattr

_EXPORTS = {
    "extract_domain": "leadflow.enrich.domains",
    "extract_domains": "leadflow.enrich.domains",
    "domain_flags": "leadflow.enrich.domains",
    "email_domain_flags": "leadflow.enrich.domains",
    "EnrichmentSettings": "leadflow.enrich.settings",
    "HttpSettings": "leadflow.enrich.settings",
    "load_settings": "leadflow.enrich.settings",
    "CompanyProvider": "leadflow.enrich.providers",
    "CompanyRecord": "leadflow.enrich.providers",
    "ProviderChain": "leadflow.enrich.chain",
    "build_chain": "leadflow.enrich.chain",
    "WarehouseCache": "leadflow.enrich.cache",
    "ReferenceProvider": "leadflow.enrich.reference",
    "HttpEnrichmentProvider": "leadflow.enrich.http_provider",
    "EnrichmentResult": "leadflow.enrich.leads",
    "enrich_leads": "leadflow.enrich.leads",
    "coverage_report": "leadflow.enrich.coverage",
    "store_enrichment": "leadflow.enrich.store",
    "load_enrichment": "leadflow.enrich.store",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
