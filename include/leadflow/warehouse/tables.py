"""Warehouse tables (SQLAlchemy Core), identical on SQLite and PostgreSQL.

Columns follow `leadflow.schema`; timestamps of CRM data are epoch milliseconds (BIGINT) so that
values round-trip exactly on both databases and compare cheaply; run bookkeeping uses them too.
Other packages (enrich, quality, push) register their own tables on the same `metadata`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from leadflow.schema import (
    COMPANY_COLUMNS,
    COMPANY_OWNED_KNOWN_AT,
    CRM_COMPANY_OWNED_COLUMNS,
    CRM_OWNED_VALUE_COLUMNS,
    CRM_RAW_VALUE_COLUMNS,
    LEAD_COLUMNS,
    LEAD_REMOVAL_COLUMNS,
    SCORE_COLUMNS,
    SCORE_PERSONA_COLUMNS,
)

metadata = MetaData()

def _columns(spec: dict[str, str], keys: set[str]) -> list[Column]:
    kinds = {"str": Text, "float": Float, "ts": BigInteger, "bool": Boolean}
    cols = []
    for name, kind in spec.items():
        if name in keys:
            cols.append(Column(name, String(64), primary_key=True))
        else:
            cols.append(Column(name, kinds[kind], nullable=True))
    return cols


leads = Table(
    "leads",
    metadata,
    *_columns(LEAD_COLUMNS, {"crm", "record_id"}),
    *_columns(CRM_OWNED_VALUE_COLUMNS, set()),
    *_columns(CRM_RAW_VALUE_COLUMNS, set()),
    *_columns(LEAD_REMOVAL_COLUMNS, set()),
    Column("pulled_at", BigInteger, nullable=False),
    Column("pull_run_id", String(250), nullable=False),
    # Stable hash of record_id: mapped tasks take the leads with shard_key % shards == shard.
    Column("shard_key", BigInteger, nullable=False, default=0),
)

companies = Table(
    "companies",
    metadata,
    *_columns(COMPANY_COLUMNS, {"crm", "company_id"}),
    *_columns(CRM_COMPANY_OWNED_COLUMNS, set()),
    Column(COMPANY_OWNED_KNOWN_AT, BigInteger, nullable=True),
    Column("pulled_at", BigInteger, nullable=False),
)

watermarks = Table(
    "watermarks",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("stream", String(64), primary_key=True),
    Column("modified_ms", BigInteger, nullable=False),
    Column("last_id", String(64), nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_id", String(250), primary_key=True),
    Column("crm", String(64), primary_key=True),
    Column("started_at", BigInteger, nullable=False),
    Column("finished_at", BigInteger, nullable=True),
    Column("status", String(32), nullable=False),  # running | success | failed | warning
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("summary", Text, nullable=False, default="{}"),  # JSON: counts and durations
)

# Each step (and each shard of a mapped step) records its own figures; the run summary is their
# merge. Separate rows keep parallel shards from overwriting each other's counts.
run_steps = Table(
    "run_steps",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("run_id", String(250), primary_key=True),
    Column("step", String(64), primary_key=True),
    Column("shard", Integer, primary_key=True),  # -1 for an unsharded step
    Column("summary", Text, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

scores = Table(
    "scores",
    metadata,
    *_columns(SCORE_COLUMNS, {"crm", "record_id"}),
    *_columns(SCORE_PERSONA_COLUMNS, set()),
    Column("run_id", String(250), nullable=False),
    Column("scored_at", BigInteger, nullable=False),
    Column("shard_key", BigInteger, nullable=False, default=0),
    # The published predictive champion blended into the score (None: the rules alone).
    Column("predictive_version", String(160), nullable=True),
    # The published rules model that scored it (predict.rules: "<version>@<hash>").
    Column("rules_version", String(160), nullable=True),
)

# Problems found in incoming records (bad dates, oversized text, unknown stages): the record is
# landed with the bad value cleared and the problem is kept here, per run.
lead_issues = Table(
    "lead_issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("crm", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("run_id", String(250), nullable=False),
    Column("field", String(128), nullable=False),
    Column("problem", Text, nullable=False),
    Column("value", Text, nullable=True),
    Column("seen_at", BigInteger, nullable=False),
    Index("ix_lead_issues_run", "crm", "run_id"),
)

# Every value leadflow meant to write: before/after, outcome, attempts. The audit log.
push_log = Table(
    "push_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(250), nullable=False),
    Column("crm", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("field", String(64), nullable=False),
    Column("before", Text, nullable=True),
    Column("after", Text, nullable=True),
    Column("model_version", String(64), nullable=True),
    # pending (about to be sent) | confirmed | rejected (retried next run) | failed (gave up) |
    # unknown (no answer; the next run re-diffs) | superseded (left pending by a killed attempt)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("error", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Index("ix_push_log_record", "crm", "record_id"),
    Index("ix_push_log_run", "crm", "run_id"),
    Index("ix_push_log_status", "crm", "status"),
)
