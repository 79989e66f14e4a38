"""Tables of the accounts package: the account view per company, and the company writes made."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from leadflow.warehouse.tables import metadata

# The latest account view of each company (qualify.accounts.VIEW_COLUMNS), replaced every run.
accounts = Table(
    "accounts",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("company_id", String(64), primary_key=True),
    Column("leads", Integer, nullable=False),
    Column("engaged", Integer, nullable=False),
    Column("roles", Text, nullable=True),  # ";"-joined committee roles covered
    Column("personas", Text, nullable=True),  # ";"-joined persona ids covered
    Column("best_record_id", String(64), nullable=True),
    Column("best_score", Float, nullable=True),
    Column("company_score", Integer, nullable=False),
    Column("committee", Text, nullable=True),  # the reason text written to the CRM
    Column("run_id", String(250), nullable=False),
    Column("computed_at", BigInteger, nullable=False),
)

# One row per company property value sent (the audit of the company writes), with the CRM's
# answer: confirmed, rejected, retryable or unknown (the last two are tried again next run).
company_writes = Table(
    "company_writes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("crm", String(64), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("company_id", String(64), nullable=False),
    Column("field", String(64), nullable=False),  # schema.COMPANY_OWNED_FIELDS
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("error", Text, nullable=True),
    Column("written_at", BigInteger, nullable=False),
    Index("ix_company_writes_run", "crm", "run_id"),
    Index("ix_company_writes_company", "crm", "company_id"),
)
