"""The predict package's tables: `models` (every trained predictive model, one champion per CRM),
`rules_models` (every rules model judged or published, one champion per CRM, see
`predict.rules`) and `lead_versions` (each lead's model inputs over time, see `predict.versions`).

Registered on the shared `leadflow.warehouse.tables.metadata`, so `ensure_schema` creates them.
The fitted estimators are kept as a joblib (pickle) blob: load blobs only from a warehouse
you trust, since unpickling runs code.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, LargeBinary, String, Table, Text

from leadflow.warehouse.tables import metadata

models = Table(
    "models",
    metadata,
    Column("crm", String(64), primary_key=True),  # scope: a CRM name, or "csv"
    Column("version", String(160), primary_key=True),
    Column("algorithm", String(32), nullable=False),  # logistic | boosting | blend
    Column("label", String(250), nullable=False),
    Column("mapping", String(120), nullable=False),
    Column("created_at", BigInteger, nullable=False),  # epoch ms
    Column("training_start", BigInteger, nullable=True),  # epoch ms; None when unknown
    Column("training_end", BigInteger, nullable=True),
    Column("cv_auc", Float, nullable=False),
    Column("cv_auc_std", Float, nullable=False),
    Column("n_rows", BigInteger, nullable=False),
    Column("metrics", Text, nullable=False),  # JSON
    Column("features", Text, nullable=False),  # JSON list of source features
    Column("is_champion", Boolean, nullable=False, default=False),
    Column("promoted_at", BigInteger, nullable=True),
    Column("sha256", String(64), nullable=False),  # of the artifact
    Column("artifact", LargeBinary, nullable=False),  # joblib dump of the TrainedModel
    Index("ix_models_champion", "crm", "is_champion"),
)

# The qualification model (rules) as published: qualify scores with the champion, and a YAML that
# differs from it is a candidate until the backtest gate (or `leadflow model publish-rules
# --force`) publishes it. `version` is the YAML's own version plus a hash of its content.
rules_models = Table(
    "rules_models",
    metadata,
    Column("crm", String(64), primary_key=True),
    Column("version", String(160), primary_key=True),  # "<yaml version>@<sha256[:12]>"
    Column("model_version", String(64), nullable=False),  # the YAML's `version`
    Column("sha256", String(64), nullable=False),  # of the parsed YAML document
    Column("yaml", Text, nullable=False),  # the text as written, comments included
    Column("source", String(1000), nullable=True),  # the file it was read from
    Column("created_at", BigInteger, nullable=False),  # epoch ms: first recorded
    Column("decision", String(32), nullable=False),  # see predict.rules.DECISIONS
    Column("backtest", Text, nullable=True),  # JSON: the gate's figures of the latest judgement
    Column("judged_at", BigInteger, nullable=True),
    Column("is_champion", Boolean, nullable=False, default=False),
    Column("published_at", BigInteger, nullable=True),
    Index("ix_rules_models_champion", "crm", "is_champion"),
)

lead_versions = Table(
    "lead_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("crm", String(64), nullable=False),
    Column("record_id", String(64), nullable=False),
    Column("valid_from", BigInteger, nullable=False),  # epoch ms: the scoring that saw it
    Column("inputs_hash", BigInteger, nullable=False),
    Column("inputs", Text, nullable=False),  # JSON object: field -> value (null when missing)
    Column("run_id", String(250), nullable=False),
    Column("shard_key", BigInteger, nullable=False),
    Index("ix_lead_versions_record", "crm", "record_id", "valid_from"),
)
