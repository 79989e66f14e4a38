"""The backtest gate for rules models: an edited model YAML is published only when, on the later
handoffs, it ranks sales' verdicts better than the published rules champion by the margin.

Run by the `leadflow_train` DAG (through `leadflow.maintenance.run_training`) and by
`leadflow model publish-rules`. The rows are the answered handoffs of the CRM with the labels of
`predict.labels` (won: converted or a won stage; lost: rejected by a person) and each lead's
inputs as they were at the handoff (`lead_versions`). Both models score the latest
`predictive.holdout_share` of them as of each handoff (`predict.gate.judge_rules`), graded by
ROC AUC; the bar (`publish_margin`, `holdout_share`) is the champion's, so a candidate cannot
lower its own. With fewer than `min_per_class` won or lost handoffs in that slice the champion
stays and the candidate is recorded as `insufficient_data`; `force` publishes it anyway.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Engine

from leadflow.predict.gate import RulesGateResult, judge_rules, later_slice
from leadflow.predict.labels import DEFAULT_MATURATION_DAYS
from leadflow.predict.mapping import WAREHOUSE_MAPPING, load_mapping
from leadflow.predict.rules import (
    champion_version, load_rules_champion, read_candidate, record_rules, sales_answered,
)
from leadflow.predict.train import TrainConfig
from leadflow.predict.warehouse import OUTCOME_COLUMN, prepare_leads, read_training_frame
from leadflow.warehouse import repo

log = logging.getLogger(__name__)


def gate_rules(engine: Engine, crm: str, *, model_path: str | Path | None = None, now_ms: int | None = None,
               maturation_days: int = DEFAULT_MATURATION_DAYS, force: bool = False,
               min_per_class: int = TrainConfig.min_per_class) -> RulesGateResult:
    """Judge the model YAML at `model_path` (None: the shipped default) against `crm`'s rules
    champion and record the decision (`predict.rules.record_rules`)."""
    now = now_ms if now_ms is not None else repo.now_ms()
    candidate = read_candidate(model_path)
    published = champion_version(engine, crm)
    names = {"candidate": candidate.version, "champion": published}
    if published == candidate.version:
        return RulesGateResult(**names, decision="champion", publish=False)
    # Forcing reads no champion: it is also the way past a stored model that no longer validates.
    champion = None if force else load_rules_champion(engine, crm)
    if force or champion is None or not sales_answered(engine, crm):
        decision = "forced" if force else "bootstrap"
        detail = None if force else "no champion yet" if champion is None else "no answered handoff yet"
        result = RulesGateResult(**names, decision=decision, publish=True, detail=detail)
        record_rules(engine, crm, candidate, decision, backtest=result.as_dict(), now_ms=now)
        return result

    bar = champion.model.predictive
    frame, _ = read_training_frame(engine, crm, now_ms=now, maturation_days=maturation_days)
    later, cutoff = later_slice(frame, bar.holdout_share) if len(frame) else (frame, None)
    y = (later[OUTCOME_COLUMN] == "won").to_numpy(dtype=int)
    won, lost = int(y.sum()), int(len(y) - y.sum())
    figures = {**names, "cutoff_ms": cutoff, "holdout": int(len(later)), "won": won, "lost": lost,
               "margin": bar.publish_margin}
    if min(won, lost) < min_per_class:
        result = RulesGateResult(**figures, decision="insufficient_data", publish=False,
                                 detail=f"{won} won and {lost} lost later handoffs, need {min_per_class} of each")
    else:
        later = prepare_leads(later, load_mapping(WAREHOUSE_MAPPING))
        candidate_auc, champion_auc, publish = judge_rules(candidate.model, champion.model, later, y,
                                                           margin=bar.publish_margin)
        result = RulesGateResult(**figures, decision="published" if publish else "kept champion", publish=publish,
                                 candidate_auc=candidate_auc, champion_auc=champion_auc)
    record_rules(engine, crm, candidate, result.decision, backtest=result.as_dict(), now_ms=now)
    log.info("rules gate %s: candidate %s (AUC %s) vs champion %s (AUC %s) on %d later handoffs, margin %.3f: %s",
             crm, candidate.version, result.candidate_auc, champion.version, result.champion_auc, result.holdout,
             bar.publish_margin, result.decision)
    return result
