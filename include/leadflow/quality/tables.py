"""Warehouse tables of the quality gate, registered on the shared `metadata`.

- the `quarantine` table is the warehouse's (`leadflow.warehouse.quarantine_store`): extract
  holds leads there too, for values the warehouse cannot store.
- `dq_results`: every expectation and gate check evaluated per run, with its observed value.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from leadflow.warehouse.tables import metadata

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
