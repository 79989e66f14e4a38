"""Tables of the push package: the per-CRM push lease."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table

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
