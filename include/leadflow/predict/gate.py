"""The backtest gate: a model trained from the warehouse is published only when, on a later time
slice of handoffs it never saw, it beats what scores the leads today by a margin.

The answered handoffs are split by handoff time: the model is trained on the earlier ones and
graded by ROC AUC on the later `holdout_share`, next to the incumbent graded on the same rows:
the published predictive champion, or the rules when there is none yet (the rules scored as
they would have at each handoff, from the inputs of that time). It is published when its AUC is
at least the incumbent's plus `margin`; then it is refit on every answered handoff.

The rules are gated the same way (`judge_rules`, run by `predict.rules_gate`): an edited rules
model is graded next to the published rules champion on the same later slice, both scoring each
handoff as of its own time from that time's inputs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadflow.predict.backtest import as_open_leads
from leadflow.predict.score import score_frame
from leadflow.predict.train import InsufficientData, TrainedModel
from leadflow.qualify import score_leads

log = logging.getLogger(__name__)


def _rounded(result: Any) -> dict[str, Any]:
    """A result dataclass as a JSON-able dict, floats to 4 places."""
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(result).items()}


@dataclass(frozen=True)
class GateResult:
    """The grades on the later slice and the decision."""

    cutoff_ms: int  # handoffs from here on are the holdout
    trained_on: int
    holdout: int
    candidate_auc: float
    incumbent: str  # "champion <version>" or "rules <version>"
    incumbent_auc: float | None
    rules_auc: float | None
    margin: float
    publish: bool

    def as_dict(self) -> dict[str, Any]:
        return _rounded(self)


def _later(frame: pd.DataFrame, holdout_share: float) -> tuple[np.ndarray, int]:
    """Which rows are in the later `holdout_share` by `handed_over_at`, and the cutoff ms."""
    if not 0 < holdout_share < 1:
        raise ValueError(f"holdout_share must be within (0, 1), got {holdout_share}")
    times = pd.to_numeric(frame["handed_over_at"]).to_numpy(dtype=np.int64)
    if not len(times):
        raise InsufficientData("no answered handoffs to split")
    ordered = np.sort(times)
    cutoff = int(ordered[min(len(ordered) - 1, int(len(ordered) * (1 - holdout_share)))])
    return times >= cutoff, cutoff


def later_slice(frame: pd.DataFrame, holdout_share: float) -> tuple[pd.DataFrame, int]:
    """(later rows, cutoff ms): the rows `time_split` grades on, whatever their labels."""
    later, cutoff = _later(frame, holdout_share)
    return frame[later].reset_index(drop=True), cutoff


def time_split(frame: pd.DataFrame, holdout_share: float, label_column: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """(earlier rows, later rows, cutoff ms): the later `holdout_share` of the rows by
    `handed_over_at`, never splitting one handoff time. Raises InsufficientData when either side
    lacks won or lost rows."""
    later, cutoff = _later(frame, holdout_share)
    train, holdout = frame[~later].reset_index(drop=True), frame[later].reset_index(drop=True)
    for name, part in (("earlier", train), ("later", holdout)):
        if part[label_column].nunique() < 2:
            raise InsufficientData(f"the {name} slice (cutoff {cutoff}) has {len(part)} rows, not both won and lost")
    return train, holdout, cutoff


def rules_scores(frame: pd.DataFrame, rules_model: Any) -> np.ndarray:
    """The rules' 0-100 score of each row as of its own handoff time (a lead's recency-based
    points are those it had then)."""
    out = np.full(len(frame), np.nan)
    leads = as_open_leads(frame)
    for at, rows in leads.groupby(pd.to_numeric(leads["handed_over_at"]), sort=False).indices.items():
        now = datetime.fromtimestamp(int(at) / 1000, tz=timezone.utc)
        out[rows] = score_leads(leads.iloc[rows].reset_index(drop=True), rules_model, now,
                                render=False)["score"].to_numpy(dtype=float)
    return out


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    return float(roc_auc_score(y, scores)) if len(np.unique(y)) == 2 else None


def judge(candidate: TrainedModel, holdout: pd.DataFrame, y: np.ndarray, *, champion: TrainedModel | None,
          rules_model: Any, rules_version: str, cutoff_ms: int, trained_on: int, margin: float) -> GateResult:
    """Grade `candidate`, the champion (if any) and the rules on `holdout` (labels `y`, 1 won)."""
    candidate_auc = _auc(y, score_frame(candidate, holdout)["score"].to_numpy(dtype=float))
    rules_auc = _auc(y, rules_scores(holdout, rules_model))
    if champion is not None:
        incumbent = f"champion {champion.version}"
        incumbent_auc = _auc(y, score_frame(champion, holdout)["score"].to_numpy(dtype=float))
    else:
        incumbent, incumbent_auc = f"rules {rules_version}", rules_auc
    publish = candidate_auc is not None and (incumbent_auc is None or candidate_auc >= incumbent_auc + margin)
    result = GateResult(cutoff_ms=cutoff_ms, trained_on=trained_on, holdout=len(holdout),
                        candidate_auc=float(candidate_auc or 0.0), incumbent=incumbent, incumbent_auc=incumbent_auc,
                        rules_auc=rules_auc, margin=margin, publish=publish)
    log.info("backtest gate: candidate AUC %.4f vs %s %s on %d later handoffs (margin %.3f): %s",
             result.candidate_auc, incumbent, "n/a" if incumbent_auc is None else f"{incumbent_auc:.4f}",
             result.holdout, margin, "published" if publish else "kept the incumbent")
    return result


@dataclass(frozen=True)
class RulesGateResult:
    """What the rules gate decided for a candidate rules model, with its figures when judged."""

    candidate: str
    champion: str | None
    decision: str  # "champion" (nothing to judge) or one of predict.rules.DECISIONS
    publish: bool
    cutoff_ms: int | None = None  # handoffs from here on were graded
    holdout: int = 0
    won: int = 0
    lost: int = 0
    candidate_auc: float | None = None
    champion_auc: float | None = None
    margin: float | None = None
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return _rounded(self)


def judge_rules(candidate: Any, champion: Any, holdout: pd.DataFrame, y: np.ndarray, *,
                margin: float) -> tuple[float | None, float | None, bool]:
    """(candidate AUC, champion AUC, publish): both rules models score `holdout` as of each
    handoff; the candidate is published when its AUC is at least the champion's plus `margin`."""
    candidate_auc = _auc(y, rules_scores(holdout, candidate))
    champion_auc = _auc(y, rules_scores(holdout, champion))
    publish = candidate_auc is not None and champion_auc is not None and candidate_auc >= champion_auc + margin
    return candidate_auc, champion_auc, publish
