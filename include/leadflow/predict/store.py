"""Model storage: local model files and the warehouse `models` table (champion / challenger).

A model file, and the `artifact` column, is a joblib (pickle) dump of a `TrainedModel` in a
small envelope with a format marker. Unpickling runs code: **only load model files and
warehouses you trust** (ones your own `leadflow model train` wrote). The envelope check below
catches wrong files, not malicious ones.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import joblib
import pandas as pd
from sqlalchemy import Engine, select, update

from leadflow.predict.tables import models
from leadflow.predict.train import TrainedModel

log = logging.getLogger(__name__)

FILE_FORMAT = "leadflow-predictive-model"
FILE_FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """The file or blob is not a leadflow predictive model this version can read."""


def model_to_bytes(model: TrainedModel) -> bytes:
    """Serialise a model with its format envelope (joblib, compressed)."""
    buffer = io.BytesIO()
    envelope = {"format": FILE_FORMAT, "format_version": FILE_FORMAT_VERSION, "model": model}
    joblib.dump(envelope, buffer, compress=3)
    return buffer.getvalue()


def model_from_bytes(data: bytes, source: str = "model blob") -> TrainedModel:
    """Inverse of `model_to_bytes`. Trusted input only: this unpickles."""
    try:
        envelope = joblib.load(io.BytesIO(data))
    except Exception as exc:  # joblib/pickle raise many types for a wrong file
        raise ModelFileError(f"{source}: not a leadflow model file ({type(exc).__name__})") from None
    if not isinstance(envelope, dict) or envelope.get("format") != FILE_FORMAT:
        raise ModelFileError(f"{source}: not a leadflow predictive model file")
    if envelope.get("format_version") != FILE_FORMAT_VERSION:
        raise ModelFileError(
            f"{source}: model file format {envelope.get('format_version')!r}, "
            f"this leadflow reads {FILE_FORMAT_VERSION}; retrain the model"
        )
    model = envelope.get("model")
    if not isinstance(model, TrainedModel):
        raise ModelFileError(f"{source}: envelope holds no TrainedModel")
    return model


def save_model_file(model: TrainedModel, path: str | Path) -> Path:
    """Write the model file atomically (temp file + rename) and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = model_to_bytes(model)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a model file is not a secret
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("wrote model %s (%d bytes)", model.version, len(data))
    return target


def load_model_file(path: str | Path) -> TrainedModel:
    """Read a model file written by `save_model_file`. Trusted files only: this unpickles."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"{p}: cannot read model file ({exc.strerror})") from None
    return model_from_bytes(data, str(p))


# --- warehouse ------------------------------------------------------------------------------------
def _epoch_ms(value: str | None) -> int | None:
    if not value:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.value // 1_000_000)


def _row(model: TrainedModel, is_champion: bool, now_ms: int) -> dict[str, Any]:
    artifact = model_to_bytes(model)
    return {
        "crm": model.crm,
        "version": model.version,
        "algorithm": model.algorithm,
        "label": model.label,
        "mapping": model.mapping.name,
        "created_at": _epoch_ms(model.created_at) or now_ms,
        "training_start": _epoch_ms(model.training_window[0]),
        "training_end": _epoch_ms(model.training_window[1]),
        "cv_auc": float(model.metrics["cv_auc_mean"]),
        "cv_auc_std": float(model.metrics["cv_auc_std"]),
        "n_rows": int(model.metrics["n_rows"]),
        "metrics": json.dumps(model.metrics, sort_keys=True),
        "features": json.dumps(model.features),
        "is_champion": is_champion,
        "promoted_at": now_ms if is_champion else None,
        "sha256": hashlib.sha256(artifact).hexdigest(),
        "artifact": artifact,
    }


def ensure_models_table(engine: Engine) -> None:
    """Create the `models` table if missing (`warehouse.db.ensure_schema` also does)."""
    models.create(engine, checkfirst=True)


def champion_challenger(
    engine: Engine, candidate: TrainedModel, *, tolerance: float = 0.0, now_ms: int | None = None,
    decided: bool | None = None,
) -> bool:
    """Record `candidate`; make it the champion of its CRM unless its CV AUC is worse, or as
    `decided` says when the caller judged it (the backtest gate).

    "Not worse" means candidate AUC >= champion AUC - tolerance. Every candidate is kept (with
    `is_champion` false when it loses) so the history of trained models stays auditable.
    Returns True when the candidate became the champion.
    """
    ensure_models_table(engine)
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    with engine.begin() as conn:
        current = conn.execute(
            select(models.c.version, models.c.cv_auc)
            .where(models.c.crm == candidate.crm, models.c.is_champion.is_(True))
            .with_for_update()
        ).first()
        promote = decided if decided is not None else (
            current is None or candidate.cv_auc >= float(current.cv_auc) - tolerance)
        if promote and current is not None:
            conn.execute(
                update(models)
                .where(models.c.crm == candidate.crm, models.c.is_champion.is_(True))
                .values(is_champion=False)
            )
        conn.execute(models.insert().values(**_row(candidate, promote, now)))
    if current is None:
        log.info("model %s is the first champion for %s", candidate.version, candidate.crm)
    elif promote:
        log.info("model %s (AUC %.4f) replaces %s (AUC %.4f) for %s", candidate.version,
                 candidate.cv_auc, current.version, current.cv_auc, candidate.crm)
    else:
        log.info("model %s (AUC %.4f) is worse than champion %s (AUC %.4f); kept %s",
                 candidate.version, candidate.cv_auc, current.version, current.cv_auc,
                 current.version)
    return promote


def load_champion(engine: Engine, crm: str) -> TrainedModel | None:
    """The current champion of `crm`, or None when no model was promoted yet."""
    ensure_models_table(engine)
    with engine.connect() as conn:
        row = conn.execute(
            select(models.c.version, models.c.artifact, models.c.sha256)
            .where(models.c.crm == crm, models.c.is_champion.is_(True))
        ).first()
    if row is None:
        return None
    if hashlib.sha256(row.artifact).hexdigest() != row.sha256:
        raise ModelFileError(f"models table: artifact of {crm}/{row.version} fails its checksum")
    return model_from_bytes(row.artifact, f"models table {crm}/{row.version}")


def list_models(engine: Engine, crm: str) -> list[dict[str, Any]]:
    """Every recorded model of `crm`, newest first, without the artifact."""
    ensure_models_table(engine)
    cols = [c for c in models.c if c.name != "artifact"]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*cols).where(models.c.crm == crm).order_by(models.c.created_at.desc())
        ).mappings().all()
    return [dict(r) for r in rows]
