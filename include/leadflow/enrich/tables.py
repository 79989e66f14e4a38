"""Warehouse tables of the enrichment step, registered on the shared `metadata`.

- `enrichment_cache`: one normalised provider answer per domain with its expiry (positive
  answers and "not found" alike, with different TTLs), so each domain costs at most one API
  call per TTL across runs and workers.
- `lead_enrichment`: the resolved firmographics of each lead (one row per crm + record_id),
  with the source of every field; the qualify step reads it back.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text

from leadflow.warehouse.tables import metadata

enrichment_cache = Table(
    "enrichment_cache",
    metadata,
    Column("domain", String(255), primary_key=True),
    Column("status", String(16), nullable=False),  # matched | not_found
    Column("name", Text, nullable=True),
    Column("industry", Text, nullable=True),
    Column("employee_count", Float, nullable=True),
    Column("employee_band", String(32), nullable=True),
    Column("annual_revenue_usd", Float, nullable=True),
    Column("revenue_band", String(32), nullable=True),
    Column("country_code", String(2), nullable=True),
    Column("founded_year", Integer, nullable=True),
    Column("technologies", Text, nullable=True),
    Column("origin", String(32), nullable=False),  # the provider that answered (e.g. "api")
    Column("confidence", Float, nullable=True),
    Column("fetched_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Index("ix_enrichment_cache_expires", "expires_at"),
)

# Fields resolved onto a lead; each has a "<field>_source" column (crm/cache/reference/api/none).
LEAD_ENRICHMENT_FIELDS: dict[str, str] = {
    "industry": "str",
    "employees": "float",
    "annual_revenue": "float",
    "country": "str",
    "technologies": "str",
    "founded_year": "float",
}

# Every column of an enrichment result frame except crm / record_id, with its kind.
LEAD_ENRICHMENT_COLUMNS: dict[str, str] = {
    "email_domain": "str",
    "company_domain": "str",
    "domain_origin": "str",  # crm_company | website | email | name_fuzzy
    "is_free_email": "bool",
    "is_disposable_email": "bool",
    "company_matched": "bool",
    "match_method": "str",  # domain | name_fuzzy | none
    "match_confidence": "float",
    "company_name": "str",  # the matched company's name
    "company_source": "str",  # provider of the matched company: cache | reference | api | none
    **LEAD_ENRICHMENT_FIELDS,
    "employee_band": "str",
    "revenue_band": "str",
    **{f"{name}_source": "str" for name in LEAD_ENRICHMENT_FIELDS},
}

_SQL_TYPES = {"str": Text, "float": Float, "bool": Boolean}
_SHORT_TEXT = {"email_domain", "company_domain", "domain_origin", "match_method", "country",
               "company_source",
               "employee_band", "revenue_band"} | {f"{n}_source" for n in LEAD_ENRICHMENT_FIELDS}

lead_enrichment = Table(
    "lead_enrichment",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    *(
        Column(name, String(255) if name in _SHORT_TEXT else _SQL_TYPES[kind], nullable=True)
        for name, kind in LEAD_ENRICHMENT_COLUMNS.items()
    ),
    Column("run_id", String(250), nullable=False),
    Column("enriched_at", BigInteger, nullable=False),
    Index("ix_lead_enrichment_domain", "company_domain"),
)
