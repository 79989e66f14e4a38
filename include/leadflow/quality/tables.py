"""Warehouse tables of the quality gate, registered on the shared `metadata`.

- `quarantine`: one row per (crm, record, failed expectation, column). A row is active while
  `released_at` is NULL; when a later version of the record passes (or stops failing that
  expectation) the row is kept with `released_at` set, as an audit trail. A record that fails
  again after release re-opens its row with a fresh `first_seen`.
- `dq_results`: every expectation and gate check evaluated per run, with its observed value.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from leadflow.warehouse.tables import metadata

quarantine = Table(
    "quarantine",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("record_id", String(64), primary_key=True),
    Column("expectation", String(64), primary_key=True),
    Column("column", String(64), primary_key=True),  # "" for row-level checks
    Column("run_id", String(250), nullable=False),  # the last run that saw the failure
    Column("value", Text, nullable=True),  # offending value, truncated
    Column("first_seen", BigInteger, nullable=False),  # epoch ms
    Column("last_seen", BigInteger, nullable=False),
    Column("released_at", BigInteger, nullable=True),
    Column("released_run_id", String(250), nullable=True),
    Index("ix_quarantine_active", "crm", "released_at"),
)

dq_results = Table(
    "dq_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False),
    Column("crm", String(64), nullable=False),
    Column("stage", String(16), nullable=False),  # rows | batch | scores
    Column("expectation", String(128), nullable=False),  # check name, "check:column"
    Column("success", Boolean, nullable=False),
    Column("observed", Text, nullable=True),
    Column("threshold", Text, nullable=True),
    Column("unexpected_count", BigInteger, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_dq_results_run", "crm", "run_id"),
)
