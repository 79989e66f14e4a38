"""Backtest: how a scoring configuration would have ranked labelled history.

Any scorer can be evaluated — the rules engine, the predictive model, or a blend — because a
scorer is just a callable from a lead frame to 0-100 scores (a Series, or a frame with a
`score` column and optionally the `stage` it proposes). For each scorer the backtest reports
ROC AUC, average precision, conversion rate by score decile, precision and recall at the MQL
threshold and how many leads each stage would receive; `write_report` renders a markdown
report and a PNG lift chart so marketing and sales can agree on thresholds.

A predictive model scored on its own training rows looks better than it is: use
`cross_validated_scorer`, which scores every row with a model that never saw it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping as TMapping, Union

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from leadflow.predict.mapping import Mapping
from leadflow.predict.score import probability_to_score, score_frame
from leadflow.predict.train import (
    TrainConfig,
    TrainedModel,
    _logit,
    choose_champion,
    cross_validate,
    fit_platt,
    label_vector,
)
from leadflow.qualify import score_leads
from leadflow.schema import LEAD_COLUMNS, MODEL_STAGES

log = logging.getLogger(__name__)

ScorerOutput = Union[pd.Series, pd.DataFrame]
Scorer = Callable[[pd.DataFrame], ScorerOutput]


@dataclass(frozen=True)
class Thresholds:
    """Minimum score per proposed stage (below `lead` a lead stays a subscriber)."""

    lead: float = 20.0
    mql: float = 60.0
    sql: float = 80.0

    def __post_init__(self) -> None:
        if not 0 <= self.lead <= self.mql <= self.sql <= 100:
            raise ValueError(
                f"thresholds must satisfy 0 <= lead <= mql <= sql <= 100, got "
                f"lead={self.lead}, mql={self.mql}, sql={self.sql}"
            )

    def stage_of(self, scores: np.ndarray) -> np.ndarray:
        """Stage name per score from the thresholds alone."""
        out = np.full(len(scores), "subscriber", dtype=object)
        out[scores >= self.lead] = "lead"
        out[scores >= self.mql] = "mql"
        out[scores >= self.sql] = "sql"
        return out


@dataclass
class BacktestResult:
    """The evaluation of one scorer on one labelled set."""

    name: str
    n: int
    n_won: int
    roc_auc: float
    average_precision: float
    mql_threshold: float
    precision_at_mql: float
    recall_at_mql: float
    deciles: pd.DataFrame
    stages: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "n": self.n,
            "n_won": self.n_won,
            "roc_auc": round(self.roc_auc, 4),
            "average_precision": round(self.average_precision, 4),
            "mql_threshold": self.mql_threshold,
            "precision_at_mql": round(self.precision_at_mql, 4),
            "recall_at_mql": round(self.recall_at_mql, 4),
            "stage_counts": {s: int(c) for s, c in zip(self.stages["stage"], self.stages["leads"])},
        }


# --- pure metrics --------------------------------------------------------------------------------
def decile_table(y: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Conversion by score decile; decile 1 holds the 10% highest scores.

    Ties are broken by position so deciles have equal sizes (within one row).
    """
    n = len(y)
    order = np.argsort(-scores, kind="stable")
    decile = np.empty(n, dtype=int)
    decile[order] = np.arange(n) * 10 // n + 1
    base = y.mean() if n else 0.0
    frame = pd.DataFrame({"decile": decile, "won": y, "score": scores})
    table = frame.groupby("decile").agg(
        leads=("won", "size"), won=("won", "sum"), min_score=("score", "min"), max_score=("score", "max")
    ).reset_index()
    table["conversion_rate"] = table["won"] / table["leads"]
    table["lift"] = table["conversion_rate"] / base if base > 0 else np.nan
    table["cumulative_won_share"] = table["won"].cumsum() / max(1, int(y.sum()))
    return table[["decile", "leads", "won", "conversion_rate", "lift", "cumulative_won_share",
                  "min_score", "max_score"]]


def stage_table(y: np.ndarray, stages: np.ndarray) -> pd.DataFrame:
    """Leads and conversions per proposed stage, in funnel order (unknown stages last)."""
    frame = pd.DataFrame({"stage": stages.astype(str), "won": y})
    table = frame.groupby("stage").agg(leads=("won", "size"), won=("won", "sum")).reset_index()
    for stage in MODEL_STAGES:
        if stage not in set(table["stage"]):
            table.loc[len(table)] = [stage, 0, 0]
    rank = {s: i for i, s in enumerate(MODEL_STAGES)}
    table["_rank"] = table["stage"].map(lambda s: rank.get(s, len(MODEL_STAGES)))
    table = table.sort_values(["_rank", "stage"]).drop(columns="_rank").reset_index(drop=True)
    table["conversion_rate"] = np.where(table["leads"] > 0, table["won"] / table["leads"].clip(lower=1), np.nan)
    return table


def evaluate(
    name: str,
    y: np.ndarray,
    scores: np.ndarray,
    thresholds: Thresholds,
    stages: np.ndarray | None = None,
) -> BacktestResult:
    """All backtest metrics for one scorer's 0-100 scores against won (1) / lost (0) labels."""
    y = np.asarray(y, dtype=int)
    scores = np.asarray(scores, dtype="float64")
    if len(y) != len(scores):
        raise ValueError(f"{name}: {len(scores)} scores for {len(y)} labels")
    notes: list[str] = []
    valid = ~np.isnan(scores)
    if not valid.all():
        notes.append(f"{int((~valid).sum())} leads without a score were counted as 0")
        scores = np.where(valid, scores, 0.0)
    two_classes = 0 < y.sum() < len(y)
    auc = float(roc_auc_score(y, scores)) if two_classes else float("nan")
    ap = float(average_precision_score(y, scores)) if two_classes else float("nan")
    if not two_classes:
        notes.append("labels hold a single class: AUC and average precision are undefined")
    flagged = scores >= thresholds.mql
    true_pos = int((flagged & (y == 1)).sum())
    precision = true_pos / int(flagged.sum()) if flagged.any() else float("nan")
    recall = true_pos / int(y.sum()) if y.sum() else float("nan")
    if stages is None:
        stages = thresholds.stage_of(scores)
    return BacktestResult(
        name=name, n=len(y), n_won=int(y.sum()), roc_auc=auc, average_precision=ap,
        mql_threshold=thresholds.mql, precision_at_mql=precision, recall_at_mql=recall,
        deciles=decile_table(y, scores), stages=stage_table(y, np.asarray(stages)), notes=notes,
    )


def _split_output(name: str, output: ScorerOutput, index: pd.Index) -> tuple[np.ndarray, np.ndarray | None]:
    if isinstance(output, pd.DataFrame):
        if "score" not in output.columns:
            raise ValueError(f"scorer {name!r} returned a frame without a 'score' column")
        stages = output["stage"].astype(str).to_numpy() if "stage" in output.columns else None
        series = output["score"]
    else:
        series, stages = output, None
    if len(series) != len(index):
        raise ValueError(f"scorer {name!r} returned {len(series)} scores for {len(index)} leads")
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype="float64"), stages


def run_backtest(
    frame: pd.DataFrame,
    labels: pd.Series,
    scorers: TMapping[str, Scorer],
    thresholds: Thresholds | None = None,
) -> list[BacktestResult]:
    """Evaluate every scorer on the rows whose label is 1 (won) or 0 (lost)."""
    thresholds = thresholds or Thresholds()
    keep = labels.notna().to_numpy()
    rows = frame.loc[keep]
    y = labels[keep].to_numpy(dtype=int)
    results = []
    for name, scorer in scorers.items():
        scores, stages = _split_output(name, scorer(rows), rows.index)
        results.append(evaluate(name, y, scores, thresholds, stages))
        log.info("backtest %s: %d leads, AUC %.4f", name, len(y), results[-1].roc_auc)
    return results


# --- scorers ---------------------------------------------------------------------------------------
def model_scorer(model: TrainedModel) -> Scorer:
    """Scores from an already trained model (optimistic on the rows it was trained on)."""
    return lambda frame: score_frame(model, frame)["score"]


def cross_validated_scorer(
    mapping: Mapping, label: str | None = None, config: TrainConfig | None = None
) -> Scorer:
    """Out-of-fold 0-100 scores: each row is scored by a model trained without it.

    Runs the same cross-validation as training (first repeat), takes the champion's
    out-of-fold probabilities and calibrates them like training does.
    """
    # Only the first repeat's out-of-fold predictions are used: do not run more.
    cfg = replace(config or TrainConfig(), repeats=1)

    def scorer(frame: pd.DataFrame) -> pd.Series:
        m = mapping.with_label(label) if label else mapping
        y = label_vector(frame, m).to_numpy()
        if np.isnan(y).any():
            raise ValueError("cross-validated scoring needs a won/lost label on every row")
        y = y.astype(int)
        rows = frame.reset_index(drop=True)
        with threadpool_limits(limits=cfg.threads):
            cv = cross_validate(rows, y, m, cfg)
            champion = choose_champion(cv)
            a, b = fit_platt(cv.oof[champion], y)
        proba = 1.0 / (1.0 + np.exp(-(a * _logit(cv.oof[champion]) + b)))
        log.info("cross-validated scorer: champion %s", champion)
        return pd.Series(probability_to_score(proba), index=frame.index, dtype="float64")

    return scorer


def as_open_leads(frame: pd.DataFrame) -> pd.DataFrame:
    """Closed leads as the rules engine would have seen them while still open.

    Stage and status are the labels' sources, so they are cleared; warehouse timestamps
    (epoch ms) become UTC datetimes as in pipeline frames.
    """
    out = frame.copy()
    for col in ("lifecycle_stage", "lead_status"):
        if col in out.columns:
            out[col] = None
    for col, kind in LEAD_COLUMNS.items():
        if kind == "ts" and col in out.columns and pd.api.types.is_numeric_dtype(out[col]):
            out[col] = pd.to_datetime(out[col], unit="ms", utc=True)
    return out


def rules_scorer(rules_model: object, now: datetime) -> Scorer:
    """Scores and proposed stages of the qualification rules (`leadflow.qualify`)."""
    def scorer(frame: pd.DataFrame) -> pd.DataFrame:
        scored = score_leads(as_open_leads(frame), rules_model, now, render=False)
        stage_col = "proposed_stage" if "proposed_stage" in scored.columns else "stage"
        return pd.DataFrame({"score": scored["score"], "stage": scored[stage_col]}, index=frame.index)

    return scorer


def blend_scorer(rules: Scorer, predictive: Scorer, weight: float) -> Scorer:
    """combined = (1 - weight) x rules + weight x predictive; stages from the thresholds."""
    if not 0 <= weight <= 1:
        raise ValueError(f"blend weight must be within [0, 1], got {weight}")

    def scorer(frame: pd.DataFrame) -> pd.Series:
        r, _ = _split_output("rules", rules(frame), frame.index)
        p, _ = _split_output("predictive", predictive(frame), frame.index)
        return pd.Series(np.rint((1 - weight) * r + weight * p), index=frame.index)

    return scorer


# --- report -----------------------------------------------------------------------------------------
def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{100 * value:.1f}%"


def render_markdown(results: list[BacktestResult], title: str, chart_name: str | None) -> str:
    """The report text (GitHub-flavoured markdown tables)."""
    if not results:
        raise ValueError("no backtest results to report")
    first = results[0]
    base = first.n_won / first.n if first.n else float("nan")
    lines = [f"# {title}", "",
             f"{first.n} labelled leads, {first.n_won} won (base conversion rate {_pct(base)}).",
             f"MQL threshold: score >= {first.mql_threshold:g}.", "",
             "| scorer | ROC AUC | average precision | precision at MQL | recall at MQL | leads at MQL or above |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        at_mql = int(r.stages.loc[r.stages["stage"].isin(["mql", "sql"]), "leads"].sum())
        lines.append(f"| {r.name} | {_fmt(r.roc_auc)} | {_fmt(r.average_precision)} | "
                     f"{_pct(r.precision_at_mql)} | {_pct(r.recall_at_mql)} | {at_mql} |")
    if chart_name:
        lines += ["", f"![lift chart]({chart_name})"]
    for r in results:
        lines += ["", f"## {r.name}", ""]
        lines += [f"- {note}" for note in r.notes]
        lines += ["### Conversion by score decile (1 = highest scores)", "",
                  "| decile | leads | won | conversion | lift | cumulative share of won | scores |",
                  "|---:|---:|---:|---:|---:|---:|---|"]
        for row in r.deciles.itertuples(index=False):
            lines.append(f"| {row.decile} | {row.leads} | {row.won} | {_pct(row.conversion_rate)} | "
                         f"{_fmt(row.lift, 2)} | {_pct(row.cumulative_won_share)} | "
                         f"{row.min_score:g}-{row.max_score:g} |")
        lines += ["", "### Leads per proposed stage", "",
                  "| stage | leads | won | conversion |", "|---|---:|---:|---:|"]
        for row in r.stages.itertuples(index=False):
            lines.append(f"| {row.stage} | {row.leads} | {row.won} | {_pct(row.conversion_rate)} |")
    return "\n".join(lines) + "\n"


def plot_lift(results: list[BacktestResult], path: Path) -> Path:
    """PNG: conversion rate by decile per scorer, and cumulative share of won leads."""
    import matplotlib

    matplotlib.use("Agg")  # headless workers have no display
    import matplotlib.pyplot as plt

    fig, (ax_rate, ax_gain) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.8 / max(1, len(results))
    base = results[0].n_won / results[0].n if results[0].n else 0.0
    for i, r in enumerate(results):
        x = r.deciles["decile"].to_numpy() + (i - (len(results) - 1) / 2) * width
        ax_rate.bar(x, r.deciles["conversion_rate"], width=width, label=f"{r.name} (AUC {_fmt(r.roc_auc)})")
        ax_gain.plot(np.r_[0, r.deciles["decile"]] * 10, np.r_[0, r.deciles["cumulative_won_share"]],
                     marker="o", label=r.name)
    ax_rate.axhline(base, color="grey", linestyle="--", label="base rate")
    ax_rate.set(xlabel="score decile (1 = highest)", ylabel="conversion rate", xticks=range(1, 11),
                title="Conversion by score decile")
    ax_rate.legend(fontsize=8)
    ax_gain.plot([0, 100], [0, 1], color="grey", linestyle="--", label="random")
    ax_gain.set(xlabel="% of leads contacted (highest scores first)", ylabel="share of won leads",
                title="Cumulative gains", xlim=(0, 100), ylim=(0, 1.02))
    ax_gain.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(
    results: list[BacktestResult], out_dir: str | Path, title: str = "Lead score backtest"
) -> tuple[Path, Path]:
    """Write backtest.md and lift.png into `out_dir`; returns both paths."""
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    png = plot_lift(results, folder / "lift.png")
    md = folder / "backtest.md"
    md.write_text(render_markdown(results, title, png.name), encoding="utf-8")
    log.info("backtest report written for %d scorers", len(results))
    return md, png
