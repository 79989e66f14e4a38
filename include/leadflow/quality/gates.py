"""The run's quality steps: the lead checks before scoring (row checks with the quarantine per
shard, `check_lead_rows`; then the batch gate over every shard's figures with Data Docs,
`gate_leads`) and the score gate before the push. Each stores its results; the
caller raises with `raise_if_failed` once it has recorded the step."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import pandas as pd
from sqlalchemy import Engine

from leadflow.quality.batch_checks import batch_figures, check_batch_figures, check_scores, row_results
from leadflow.quality.data_docs import render_data_docs
from leadflow.quality.psi import scores_from_counts
from leadflow.quality.quarantine import update_quarantine
from leadflow.quality.results import CheckRun, store_results
from leadflow.quality.row_checks import RowCheckOptions, RowValidation, validate_rows
from leadflow.quality.settings import QualitySettings, load_settings_file
from leadflow.warehouse.db import var_dir


def check_lead_rows(engine: Engine, crm: str, run_id: str, leads: pd.DataFrame, now: datetime,
                    settings: QualitySettings | None = None) -> tuple[RowValidation, dict[str, Any]]:
    """Row checks of `leads` (one shard's, or all): failing leads quarantined, passing ones
    released. Returns the validation and its `batch_figures` (for `gate_leads`: the figures of
    the shards add up)."""
    settings = settings or load_settings_file()
    rows = validate_rows(leads, RowCheckOptions.from_settings(settings, crm), now)
    update_quarantine(engine, crm, run_id, rows.failures, rows.passed_ids, now)
    return rows, batch_figures(leads, rows, settings)


def gate_leads(engine: Engine, crm: str, run_id: str, figures: dict[str, Any], now: datetime,
               settings: QualitySettings | None = None, docs_folder: Path | None = None) -> tuple[CheckRun, Path]:
    """The batch gate over the whole batch from its shards' added-up `figures` (the checks of
    `check_batch`, from counts); the row and batch results stored and rendered as Data Docs.
    Returns the batch checks and the Data Docs index."""
    settings = settings or load_settings_file()
    rows = row_results(figures)
    batch = check_batch_figures(figures, settings, now, crm)
    store_results(engine, crm, run_id, [*rows, *batch], now=now)
    docs = render_data_docs(docs_folder or var_dir() / "data_docs", run_id, crm,
                            {"rows": (rows, None), "batch": (batch.results, None)}, now=now)
    return batch, docs


def score_check_columns(settings: QualitySettings | None = None) -> list[str]:
    """The score columns `check_new_scores` reads: a caller loads only these (the scores' other
    text, the handoff reasons and versions, is most of their memory at 1,000,000 leads)."""
    settings = settings or load_settings_file()
    return list(dict.fromkeys(["record_id", "score", *settings.scores.score_columns, "stage", "reasons"]))


def check_new_scores(engine: Engine, crm: str, run_id: str, scores: pd.DataFrame, previous_counts: Sequence[int],
                     now: datetime, settings: QualitySettings | None = None) -> CheckRun:
    """The score checks (ranges, stages, reasons) and the drift against the previous scores
    (`previous_counts`: their `psi.score_counts`), stored."""
    results = check_scores(scores, scores_from_counts(previous_counts), settings or load_settings_file())
    store_results(engine, crm, run_id, list(results), now=now)
    return results
