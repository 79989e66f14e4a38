"""Training and scoring from the warehouse's canonical `leads` table.

Labels come from closed history: won = lifecycle stage customer (or later: a closed-won or
converted lead), lost = lead status unqualified (disqualified / closed-lost); every other lead
is still open and is not used for training. The derived label column is `outcome`
("won" / "lost"), which the shipped mapping `warehouse_leads.yaml` points at.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, or_, select

from leadflow.predict.mapping import Mapping, load_mapping
from leadflow.predict.store import champion_challenger
from leadflow.predict.train import InsufficientData, TrainConfig, train_from_frame
from leadflow.warehouse.tables import leads

log = logging.getLogger(__name__)

WON_STAGES: tuple[str, ...] = ("customer", "evangelist")
LOST_STATUSES: tuple[str, ...] = ("unqualified",)
OUTCOME_COLUMN = "outcome"
DEFAULT_MAPPING = "warehouse_leads"


def outcome_labels(
    frame: pd.DataFrame,
    won_stages: Iterable[str] = WON_STAGES,
    lost_statuses: Iterable[str] = LOST_STATUSES,
) -> pd.Series:
    """"won", "lost" or NA per lead; won takes precedence (a customer once disqualified)."""
    stage = frame["lifecycle_stage"].astype("string").str.strip().str.casefold()
    status = frame["lead_status"].astype("string").str.strip().str.casefold()
    won = stage.isin([s.casefold() for s in won_stages]).fillna(False)
    lost = status.isin([s.casefold() for s in lost_statuses]).fillna(False)
    out = pd.Series(pd.NA, index=frame.index, dtype="string")
    out[lost.to_numpy(bool)] = "lost"
    out[won.to_numpy(bool)] = "won"
    return out


def read_labelled_leads(
    engine: Engine,
    crm: str,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    won_stages: Iterable[str] = WON_STAGES,
    lost_statuses: Iterable[str] = LOST_STATUSES,
) -> pd.DataFrame:
    """Closed (won or lost), non-deleted leads of `crm`, created within the optional window."""
    won_stages, lost_statuses = list(won_stages), list(lost_statuses)
    conditions = [
        leads.c.crm == crm,
        or_(leads.c.is_deleted.is_(None), leads.c.is_deleted.is_(False)),
        or_(leads.c.lifecycle_stage.in_(won_stages), leads.c.lead_status.in_(lost_statuses)),
    ]
    if since_ms is not None:
        conditions.append(leads.c.created_at >= since_ms)
    if until_ms is not None:
        conditions.append(leads.c.created_at < until_ms)
    with engine.connect() as conn:
        result = conn.execute(select(leads).where(and_(*conditions)))
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    frame[OUTCOME_COLUMN] = outcome_labels(frame, won_stages, lost_statuses)
    return frame


def _window(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    created = pd.to_numeric(frame.get("created_at"), errors="coerce") if len(frame) else None
    if created is None or created.isna().all():
        return (None, None)
    as_iso = lambda ms: pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()  # noqa: E731
    return (as_iso(np.nanmin(created)), as_iso(np.nanmax(created)))


def train_from_warehouse(
    engine: Engine,
    crm: str,
    *,
    mapping: Mapping | None = None,
    config: TrainConfig | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    promote: bool = True,
    tolerance: float = 0.0,
) -> dict[str, Any]:
    """Train on the CRM's closed history; champion/challenger against the stored champion.

    Returns a small JSON-able summary for XCom. With too few won or lost leads it returns
    `{"status": "insufficient_data", ...}` instead of raising, so a scheduled run stays green.
    """
    mapping = mapping or load_mapping(DEFAULT_MAPPING)
    cfg = config or TrainConfig()
    frame = read_labelled_leads(engine, crm, since_ms=since_ms, until_ms=until_ms)
    won = int((frame[OUTCOME_COLUMN] == "won").sum()) if len(frame) else 0
    lost = int((frame[OUTCOME_COLUMN] == "lost").sum()) if len(frame) else 0
    summary: dict[str, Any] = {"crm": crm, "won": won, "lost": lost}
    need = max(cfg.min_per_class, cfg.folds)
    if min(won, lost) < need:
        log.warning("not training for %s: %d won and %d lost leads, need %d of each",
                    crm, won, lost, need)
        return {**summary, "status": "insufficient_data", "needed_per_class": need}
    window = _window(frame)
    try:
        model = train_from_frame(frame, mapping, OUTCOME_COLUMN, config=cfg, crm=crm,
                                 training_window=window)
    except InsufficientData as exc:  # e.g. labels the mapping does not recognise
        return {**summary, "status": "insufficient_data", "detail": str(exc)}
    promoted = champion_challenger(engine, model, tolerance=tolerance) if promote else False
    return {
        **summary,
        "status": "trained",
        "version": model.version,
        "algorithm": model.algorithm,
        "cv_auc": round(model.cv_auc, 4),
        "cv_auc_std": round(float(model.metrics["cv_auc_std"]), 4),
        "training_window": list(window),
        "promoted": promoted,
    }


def prepare_leads(frame: pd.DataFrame, mapping: Mapping) -> pd.DataFrame:
    """Canonical lead frame -> a copy carrying every column `mapping` reads.

    Frames from the pipeline carry timestamps as datetimes and the warehouse as epoch ms; the
    mapping only needs to know whether they are present, which both forms answer. Missing
    optional columns are added as empty so partially-populated CRMs still score.
    """
    out = frame.copy()
    for col in mapping.source_columns(with_id=True):
        if col not in out.columns:
            out[col] = np.nan
    return out
