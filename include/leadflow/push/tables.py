"""Tables of the push package: the per-CRM push lease, the overrides seen."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table, Text

from leadflow.warehouse.tables import metadata

# One row per (crm, lease name): who holds it and until when. A lease, not a lock: a holder that
# dies without releasing it loses it when it expires, so a killed worker never blocks the CRM.
leases = Table(
    "leases",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("holder", String(250), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)

# Someone else's value of a shared field that leadflow would have changed and left alone: one row
# per run and field seen (the diff against the snapshot, or the read right before a write).
push_overrides = Table(
    "push_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("crm", String(64), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("field", String(64), nullable=False),
    Column("current", Text, nullable=True),  # their value, as the CRM holds it
    Column("wanted", Text, nullable=True),  # what leadflow would have written
    Column("last_written", Text, nullable=True),  # leadflow's last confirmed value, if any
    Column("writer", String(32), nullable=True),  # ownership.Writer, when the CRM's history said
    Column("changed_by", String(128), nullable=True),  # a user or app id from the history
    Column("changed_at", BigInteger, nullable=True),
    Column("seen_at", BigInteger, nullable=False),
    Index("ix_push_overrides_run", "crm", "run_id"),
    Index("ix_push_overrides_record", "crm", "record_id"),
)
