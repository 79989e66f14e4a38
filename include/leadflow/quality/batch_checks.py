"""Batch-level gates: checks on a whole batch whose failure stops the run before the push.

`check_batch` runs after the row checks (quarantine share, duplicate ids, freshness,
enrichment coverage), computed from counts (`batch_figures`) so that a sharded run's parts add
up; `check_scores` after qualification (score ranges, stages, reasons, drift against the
previous run by population stability index) validates through GX, with aggregate expectations
on a small derived frame. Both return a `CheckRun`; `raise_if_failed` turns its failures into a
`QualityGateError`.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from leadflow.quality import coerce
from leadflow.quality.gx_runtime import (
    BATCH_RESULT_FORMAT,
    ExpectationOutcome,
    ExpectationSpec,
    validate_frame,
)
from leadflow.quality.psi import fixed_edges, population_stability_index
from leadflow.quality.results import CheckResult, CheckRun, format_observed
from leadflow.quality.row_checks import RowValidation
from leadflow.quality.settings import BatchSettings, QualitySettings, ScoreSettings

log = logging.getLogger(__name__)


def _batch_settings(settings: QualitySettings | BatchSettings) -> BatchSettings:
    return settings.batch if isinstance(settings, QualitySettings) else settings


def _score_settings(settings: QualitySettings | ScoreSettings) -> ScoreSettings:
    return settings.scores if isinstance(settings, QualitySettings) else settings


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- batch ----------------------------------------------------------------------------------


def check_batch(
    leads: pd.DataFrame,
    rows: RowValidation,
    settings: QualitySettings | BatchSettings,
    now: datetime,
    *,
    check_enrichment: bool = True,
) -> CheckRun:
    """Gate a validated batch: share of quarantined rows, duplicate ids, freshness of the newest
    `updated_at` among passing rows, and (if `check_enrichment`) enrichment coverage.

    `leads` is the frame `rows` was computed from (same row order), optionally joined with
    enrichment columns. With `check_enrichment` and none of the configured enrichment columns
    present, the coverage check fails and names the missing columns. The batch as one part:
    `check_batch_figures` of its `batch_figures`, the one computation a sharded run's gate uses.
    """
    return check_batch_figures(batch_figures(leads, rows, settings), settings, now, rows.crm,
                               check_enrichment=check_enrichment)


def batch_figures(leads: pd.DataFrame, rows: RowValidation,
                  settings: QualitySettings | BatchSettings) -> dict[str, Any]:
    """What `check_batch_figures` needs of one part of the batch (one shard's leads), as
    JSON-able figures that add up across parts: numbers are summed and lists joined (the way
    `repo.get_run_summary` combines shards). The same inputs as `check_batch` reads."""
    s = _batch_settings(settings)
    n = rows.row_count
    if len(leads) != n:
        raise ValueError(f"leads has {len(leads)} rows but the row validation covered {n}")
    present = [c for c in s.enrichment_columns if c in leads.columns]
    newest: list[float] = []
    if n:
        updated = rows.frame["updated_at"].to_numpy(dtype="float64")[rows.passed_mask]
        updated = updated[np.isfinite(updated)]
        newest = [float(updated.max())] if len(updated) else []
    return {
        "rows": int(n),
        "quarantined_rows": int(n - rows.passed_mask.sum()),
        "newest_updated_at": newest,  # one value per part at most: the gate takes the max
        "enriched_rows": int(_enriched(leads, present).sum()) if present and n else 0,
        "enrichment_columns": present,
        "row_checks": [{"name": r.name, "success": bool(r.success), "unexpected": int(r.unexpected_count or 0),
                        "elements": _element_count(r.observed, n), "threshold": r.threshold}
                       for r in rows.results],
    }


def _element_count(observed: str, default: int) -> int:
    """The `M` of a row result's "N of M rows"."""
    match = re.match(r"\d+ of (\d+) rows", observed)
    return int(match.group(1)) if match else int(default)


def row_results(figures: dict[str, Any]) -> list[CheckResult]:
    """The row checks of the whole batch from its parts' `batch_figures` (in the order of the
    first part): failing rows added up, a check passes when it passed in every part."""
    merged: dict[str, dict[str, Any]] = {}
    for check in figures.get("row_checks", []):
        seen = merged.setdefault(check["name"], {**check, "unexpected": 0, "elements": 0, "success": True})
        seen["unexpected"] += int(check["unexpected"])
        seen["elements"] += int(check["elements"])
        seen["success"] = seen["success"] and bool(check["success"])
    return [CheckResult("rows", c["name"], c["success"], f"{c['unexpected']} of {c['elements']} rows",
                        c["threshold"], c["unexpected"]) for c in merged.values()]


def check_batch_figures(figures: dict[str, Any], settings: QualitySettings | BatchSettings, now: datetime,
                        crm: str, *, check_enrichment: bool = True) -> CheckRun:
    """`check_batch` from the whole batch's `batch_figures` (its parts' figures added up): the
    same checks, thresholds and observed texts, computed from counts instead of the rows, so
    the gate never holds the batch (a sharded run's gate reads only these figures)."""
    s = _batch_settings(settings)
    n = int(figures.get("rows", 0))
    now_ms = now.timestamp() * 1000
    min_updated_ms = now_ms - s.max_staleness_hours * 3_600_000
    results: list[CheckResult] = []
    shares_apply = n >= max(1, s.min_rows_for_shares)
    share_threshold = f"<= {s.max_quarantine_share:g}"
    if shares_apply:
        share = int(figures.get("quarantined_rows", 0)) / n
        results.append(CheckResult("batch", "quarantine_share", share <= s.max_quarantine_share,
                                   f"{share:.4g} ({round(share * n)} of {n} rows)", share_threshold))
    else:
        results.append(CheckResult("batch", "quarantine_share", True,
                                   f"skipped ({n} rows < {s.min_rows_for_shares})", share_threshold))

    duplicates = sum(c["unexpected"] for c in figures.get("row_checks", [])
                     if c["name"] == "unique_per_crm:record_id")
    results.append(CheckResult("batch", "duplicate_ids", duplicates <= s.max_duplicate_ids,
                               f"{duplicates} rows", f"<= {s.max_duplicate_ids}", duplicates))

    fresh_threshold = f"newest >= now - {s.max_staleness_hours:g} h"
    if n:
        newest = max(figures.get("newest_updated_at") or [np.nan])
        if not np.isfinite(newest):
            results.append(CheckResult("batch", "freshness:updated_at", False, "no passing row has updated_at",
                                       fresh_threshold))
        else:
            results.append(CheckResult("batch", "freshness:updated_at", newest >= min_updated_ms,
                                       f"newest {_iso(newest)} ({(now_ms - newest) / 3_600_000:.1f} h old)",
                                       fresh_threshold))
    else:
        results.append(CheckResult("batch", "freshness:updated_at", True, "skipped (no rows)", fresh_threshold))

    if check_enrichment:
        present = set(figures.get("enrichment_columns") or [])
        threshold = f">= {s.min_enrichment_coverage:g} of rows with any of {list(s.enrichment_columns)}"
        if not present:
            results.append(CheckResult("batch", "enrichment_coverage", False,
                                       f"no enrichment columns (missing {list(s.enrichment_columns)})",
                                       threshold))
        elif shares_apply:
            coverage = int(figures.get("enriched_rows", 0)) / n
            results.append(CheckResult("batch", "enrichment_coverage", coverage >= s.min_enrichment_coverage,
                                       format_observed(coverage), threshold))
        else:
            results.append(CheckResult("batch", "enrichment_coverage", True,
                                       f"skipped ({n} rows < {s.min_rows_for_shares})", threshold))
    _log_gate("batch", crm, results)
    return CheckRun("batch", results)


def _enriched(leads: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Rows with at least one enrichment column filled (blank text counts as empty)."""
    filled = np.zeros(len(leads), dtype=bool)
    for name in columns:
        column = leads[name].reset_index(drop=True)
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
            filled |= column.notna().to_numpy(dtype=bool)
        else:
            filled |= coerce.text(column).values.notna().to_numpy(dtype=bool)
    return filled


# --- scores ---------------------------------------------------------------------------------


def check_scores(
    scores: pd.DataFrame,
    previous_scores: pd.DataFrame | None,
    settings: QualitySettings | ScoreSettings,
) -> CheckRun:
    """Gate the qualification output (columns of `leadflow.schema.SCORE_COLUMNS`): scores
    present and within [min_score, max_score], stages within the allowed set, every score with
    reasons, and `score` drift against `previous_scores` (PSI over fixed-width bins)."""
    s = _score_settings(settings)
    n = len(scores)
    frame = scores.reset_index(drop=True)
    derived: dict[str, Any] = {}
    specs: list[ExpectationSpec] = []
    results: list[CheckResult] = []
    bounds = f"[{s.min_score:g}, {s.max_score:g}]"

    for name in s.score_columns:
        if name not in frame.columns:
            results.append(CheckResult("scores", f"score_range:{name}", False,
                                       "column missing", bounds))
            continue
        derived[name] = coerce.number(frame[name]).values.to_numpy(dtype="float64")
        specs.append(ExpectationSpec("score_range", name, "ExpectColumnValuesToBeBetween",
                                     {"column": name, "min_value": s.min_score,
                                      "max_value": s.max_score}, bounds))
    if "score" in derived:
        specs.append(ExpectationSpec("required", "score", "ExpectColumnValuesToNotBeNull",
                                     {"column": "score"}, "present"))
    if "stage" in frame.columns:
        derived["stage"] = pd.Categorical(coerce.text(frame["stage"]).values)
        allowed = sorted(set(s.allowed_stages))
        specs.append(ExpectationSpec("allowed_stage", "stage", "ExpectColumnValuesToBeInSet",
                                     {"column": "stage", "value_set": allowed},
                                     "in " + ", ".join(allowed)))
    else:
        results.append(CheckResult("scores", "allowed_stage:stage", False, "column missing"))
    if "reasons" in frame.columns:
        reasons = coerce.text(frame["reasons"]).values
        derived["reasons__length"] = reasons.str.len().to_numpy(dtype="float64", na_value=np.nan)
        specs.append(ExpectationSpec("has_reasons", "reasons", "ExpectColumnValuesToNotBeNull",
                                     {"column": "reasons__length"}, "non-blank"))
    else:
        results.append(CheckResult("scores", "has_reasons:reasons", False, "column missing"))

    gx_result = None
    if specs and n:
        run = validate_frame(pd.DataFrame(derived), specs, suite_name="scores",
                             result_format=BATCH_RESULT_FORMAT)
        gx_result = run.gx_result
        results.extend(_row_share_result(o, n) for o in run.outcomes)
    elif specs:
        results.extend(CheckResult("scores", spec.name, True, "0 of 0 rows", spec.threshold, 0)
                       for spec in specs)
    results.append(score_drift(frame, previous_scores, s))
    _log_gate("scores", "-", results)
    return CheckRun("scores", results, gx_result)


def _row_share_result(outcome: ExpectationOutcome, n: int) -> CheckResult:
    count = int(outcome.unexpected_count or 0)
    examples = ", ".join(format_observed(v) for v in outcome.partial_unexpected[:3])
    observed = f"{count} of {n} rows" + (f", e.g. {examples}" if count and examples else "")
    return CheckResult("scores", outcome.spec.name, outcome.success, observed,
                       outcome.spec.threshold, count)


def score_drift(
    scores: pd.DataFrame, previous_scores: pd.DataFrame | None, settings: ScoreSettings
) -> CheckResult:
    """PSI of this run's `score` against the previous run's (skipped when either side has
    fewer than `min_rows_for_psi` scores)."""
    threshold = f"<= {settings.max_psi:g}"
    if previous_scores is None or "score" not in previous_scores.columns:
        return CheckResult("scores", "score_psi", True, "skipped (no previous run)", threshold)
    if "score" not in scores.columns:
        return CheckResult("scores", "score_psi", False, "column missing", threshold)
    current = coerce.number(scores["score"]).values.to_numpy(dtype="float64")
    previous = coerce.number(previous_scores["score"]).values.to_numpy(dtype="float64")
    n_cur, n_prev = int(np.isfinite(current).sum()), int(np.isfinite(previous).sum())
    if min(n_cur, n_prev) < settings.min_rows_for_psi:
        return CheckResult("scores", "score_psi", True,
                           f"skipped ({min(n_cur, n_prev)} scores < {settings.min_rows_for_psi})",
                           threshold)
    edges = fixed_edges(settings.min_score, settings.max_score, settings.psi_bins)
    value = population_stability_index(previous, current, edges=edges)
    return CheckResult("scores", "score_psi", value <= settings.max_psi, f"{value:.4f}", threshold)


def _log_gate(stage: str, crm: str, results: list[CheckResult]) -> None:
    failed = [r.name for r in results if not r.success]
    log.info("%s gate (%s): %d checks, %d failed%s", stage, crm, len(results), len(failed),
             f" ({', '.join(failed)})" if failed else "")
