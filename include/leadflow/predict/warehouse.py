"""Training and scoring from the warehouse: labels from sales' verdicts, inputs as they were.

Each handoff is a training row (`predict.labels`): won when it converted or reached a won stage,
lost when a person rejected it, left out while open. Its inputs are the version of the lead's
model inputs current when it was handed over (`predict.versions`), so nothing learnt after the
handoff leaks in. No value leadflow wrote is a label, and no label source is a feature
(`LeakError`). The label column is `outcome` ("won" / "lost"), which the shipped mapping
`warehouse_leads.yaml` points at.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from leadflow.predict.gate import judge, time_split
from leadflow.predict.labels import DEFAULT_MATURATION_DAYS, read_handoff_labels
from leadflow.predict.mapping import WAREHOUSE_MAPPING, Mapping, load_mapping
from leadflow.predict.rules import load_rules_champion
from leadflow.predict.store import champion_challenger, load_champion
from leadflow.predict.train import InsufficientData, TrainConfig, train_from_frame
from leadflow.predict.versions import LABEL_SOURCES, typed_inputs, versions_at
from leadflow.qualify import load_model
from leadflow.warehouse import repo

log = logging.getLogger(__name__)

OUTCOME_COLUMN = "outcome"
DEFAULT_MAPPING = WAREHOUSE_MAPPING


class LeakError(ValueError):
    """A feature of the mapping is a label source or only known after the outcome."""


def check_no_leak(mapping: Mapping) -> None:
    """Raise LeakError naming the mapping's inputs that are label sources (the CRM's stage and
    status, leadflow's own output)."""
    inputs = set(mapping.source_columns(with_id=False))
    leaked = sorted(inputs & LABEL_SOURCES)
    if leaked:
        raise LeakError(f"mapping {mapping.name!r} reads {leaked}: the label is made of these (or they exist only "
                        "after the outcome); list them under `excluded`")


def read_training_frame(engine: Engine, crm: str, *, now_ms: int, since_ms: int | None = None,
                        until_ms: int | None = None,
                        maturation_days: int = DEFAULT_MATURATION_DAYS) -> tuple[pd.DataFrame, dict[str, int]]:
    """The labelled handoffs of `crm` handed over within [since_ms, until_ms), each with the
    inputs of its lead's version at the handoff, `outcome` and `handed_over_at`; and the counts:
    handoffs, open_matured, immature, without_version (labelled, but handed over before versions
    were kept: left out), and won and lost among the rows returned."""
    labels = read_handoff_labels(engine, crm, now_ms=now_ms, maturation_days=maturation_days, since_ms=since_ms,
                                 until_ms=until_ms)
    counts = {"handoffs": int(len(labels)), "open_matured": int((labels["why"] == "open (matured)").sum()),
              "immature": int((labels["why"] == "immature").sum())}
    labelled = labels[labels["label"].notna()].reset_index(drop=True)
    inputs = versions_at(engine, crm, labelled[["record_id"]].assign(at=labelled["handed_over_at"]))
    found = inputs["valid_from"].notna().to_numpy() if len(inputs) else np.zeros(0, dtype=bool)
    counts["without_version"] = int((~found).sum())
    frame = typed_inputs(inputs[found].drop(columns=["at", "valid_from"]).reset_index(drop=True))
    frame["handed_over_at"] = labelled.loc[found, "handed_over_at"].to_numpy()
    frame[OUTCOME_COLUMN] = labelled.loc[found, "label"].to_numpy()
    counts.update(won=int((frame[OUTCOME_COLUMN] == "won").sum()), lost=int((frame[OUTCOME_COLUMN] == "lost").sum()))
    return frame, counts


def _window(frame: pd.DataFrame) -> tuple[str | None, str | None]:
    handed = pd.to_numeric(frame.get("handed_over_at"), errors="coerce") if len(frame) else None
    if handed is None or handed.isna().all():
        return (None, None)
    as_iso = lambda ms: pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()  # noqa: E731
    return (as_iso(np.nanmin(handed)), as_iso(np.nanmax(handed)))


def train_from_warehouse(
    engine: Engine,
    crm: str,
    *,
    mapping: Mapping | None = None,
    config: TrainConfig | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    promote: bool = True,
    now_ms: int | None = None,
    maturation_days: int = DEFAULT_MATURATION_DAYS,
    rules_model: Any = None,
) -> dict[str, Any]:
    """Train on the CRM's answered handoffs (`read_training_frame`) and publish the model only
    through the backtest gate (`predict.gate`): trained on the earlier handoffs, it must beat
    the champion (or, without one, the rules of `rules_model`, default the published rules
    champion, else the shipped model) on the later ones by the model's
    `predictive.publish_margin`; then it is refit on all of them and
    becomes the champion. Every candidate is recorded, with the gate's figures in its metrics.

    Returns a small JSON-able summary for XCom (`backtest`: the gate's figures). With too few
    won or lost handoffs it returns `{"status": "insufficient_data", ...}` instead of raising, so
    a scheduled run stays green.
    """
    mapping = mapping or load_mapping(DEFAULT_MAPPING)
    check_no_leak(mapping)
    # The rules that score the leads today: the published champion (the YAML before the first).
    published = load_rules_champion(engine, crm) if rules_model is None else None
    rules = rules_model if rules_model is not None else published.model if published else load_model()
    cfg = config or TrainConfig()
    frame, counts = read_training_frame(engine, crm, now_ms=now_ms if now_ms is not None else repo.now_ms(),
                                        since_ms=since_ms, until_ms=until_ms, maturation_days=maturation_days)
    frame = prepare_leads(frame, mapping)
    won, lost = counts["won"], counts["lost"]
    summary: dict[str, Any] = {"crm": crm, **counts}
    need = max(cfg.min_per_class, cfg.folds)
    if min(won, lost) < need:
        log.warning("not training for %s: %d won and %d lost leads, need %d of each",
                    crm, won, lost, need)
        return {**summary, "status": "insufficient_data", "needed_per_class": need}
    try:
        earlier, later, cutoff = time_split(frame, rules.predictive.holdout_share, OUTCOME_COLUMN)
        candidate = train_from_frame(earlier, mapping, OUTCOME_COLUMN, config=cfg, crm=crm,
                                     training_window=_window(earlier))
    except InsufficientData as exc:  # too few rows on one side of the split, or unknown labels
        return {**summary, "status": "insufficient_data", "detail": str(exc)}
    y = (later[OUTCOME_COLUMN] == "won").to_numpy(dtype=int)
    gate = judge(candidate, later, y, champion=load_champion(engine, crm), rules_model=rules,
                 rules_version=published.version if published else rules.version, cutoff_ms=cutoff,
                 trained_on=len(earlier), margin=rules.predictive.publish_margin)
    model = candidate
    if gate.publish:  # the recipe passed on unseen handoffs: learn from all of them
        window = _window(frame)
        model = train_from_frame(frame, mapping, OUTCOME_COLUMN, config=cfg, crm=crm, training_window=window)
    model.metrics["backtest"] = gate.as_dict()
    promoted = champion_challenger(engine, model, decided=gate.publish) if promote else False
    return {
        **summary,
        "status": "trained",
        "version": model.version,
        "algorithm": model.algorithm,
        "cv_auc": round(model.cv_auc, 4),
        "cv_auc_std": round(float(model.metrics["cv_auc_std"]), 4),
        "training_window": list(model.training_window),
        "backtest": gate.as_dict(),
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
