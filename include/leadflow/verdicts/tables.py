"""The verdicts package's tables: one row per handoff, one event per verdict sales gave it."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from leadflow.warehouse.tables import metadata

# A handoff is (crm, record_id, handed_over_at); each verdict is stored once per handoff, so a
# re-run, or the same answer seen again, adds nothing. `stage`/`status`: the CRM's values when
# the event was seen; a later run looks again only when the pulled values differ from them.
handoff_verdicts = Table(
    "handoff_verdicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("crm", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("handed_over_at", BigInteger, nullable=False),
    Column("verdict", String(16), nullable=False),  # classify.Verdict
    Column("decided_at", BigInteger, nullable=False),  # the person's change; for ignored, when the SLA ran out
    Column("writer", String(32), nullable=True),  # ownership.Writer of that change
    Column("changed_by", String(128), nullable=True),  # the CRM's user or app id
    Column("field", String(64), nullable=True),
    Column("value", Text, nullable=True),
    Column("score", Float, nullable=True),  # as handed over
    Column("reason", Text, nullable=True),
    Column("stage", Text, nullable=True),
    Column("status", Text, nullable=True),
    Column("run_id", String(250), nullable=False),
    Column("seen_at", BigInteger, nullable=False),
    Index("ux_handoff_verdicts_event", "crm", "record_id", "handed_over_at", "verdict", unique=True),
    Index("ix_handoff_verdicts_run", "crm", "run_id"),
)

# One row per handoff, written once by qualify when a lead becomes sales-ready: the population
# the SLA is measured over, with the score, grade and persona the lead was handed over with (a
# lead that stops being sales-ready before any verdict leaves the scores, not this table).
handoffs = Table(
    "handoffs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("crm", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("handed_over_at", BigInteger, nullable=False),
    Column("score", Float, nullable=True),
    Column("grade", String(16), nullable=True),
    Column("persona", String(64), nullable=True),
    Column("reason", Text, nullable=True),
    Column("run_id", String(250), nullable=False),
    Index("ux_handoffs_handoff", "crm", "record_id", "handed_over_at", unique=True),
    Index("ix_handoffs_run", "crm", "run_id"),
)
