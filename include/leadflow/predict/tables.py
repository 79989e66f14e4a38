"""The warehouse `models` table: every trained predictive model, one champion per CRM.

Registered on the shared `leadflow.warehouse.tables.metadata`, so `ensure_schema` creates it.
The fitted estimators are kept as a joblib (pickle) blob: load blobs only from a warehouse
you trust, since unpickling runs code.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, LargeBinary, String, Table, Text

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
