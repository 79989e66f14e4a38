"""The run's two quality steps: the lead gate before scoring (row checks with the quarantine,
the batch checks, Data Docs) and the score gate before the push. Each stores its results; the
caller raises with `raise_if_failed` once it has recorded the step."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Sequence

import pandas as pd
from sqlalchemy import Engine

from leadflow.quality.batch_checks import check_batch, check_scores
from leadflow.quality.data_docs import render_data_docs
from leadflow.quality.psi import scores_from_counts
from leadflow.quality.quarantine import update_quarantine
from leadflow.quality.results import CheckRun, store_results
from leadflow.quality.row_checks import RowCheckOptions, RowValidation, validate_rows
from leadflow.quality.settings import QualitySettings, load_settings_file
from leadflow.warehouse.db import var_dir


@dataclass(frozen=True)
class LeadChecks:
    rows: RowValidation
    batch: CheckRun
    data_docs: Path  # the run's Data Docs index.html


def check_leads(engine: Engine, crm: str, run_id: str, leads: pd.DataFrame, now: datetime,
                settings: QualitySettings | None = None, docs_folder: Path | None = None) -> LeadChecks:
    """Row checks (failing leads quarantined, passing ones released) and the batch checks on the
    enriched `leads`; results stored and rendered as Data Docs (under `<var>/data_docs`)."""
    settings = settings or load_settings_file()
    rows = validate_rows(leads, RowCheckOptions.from_settings(settings, crm), now)
    update_quarantine(engine, crm, run_id, rows.failures, rows.passed_ids, now)
    batch = check_batch(leads, rows, settings, now)
    store_results(engine, crm, run_id, [*rows.results, *batch], now=now)
    docs = render_data_docs(docs_folder or var_dir() / "data_docs", run_id, crm,
                            {"rows": (rows.results, rows.gx_result), "batch": (batch.results, batch.gx_result)},
                            now=now)
    return LeadChecks(rows, batch, docs)


def check_new_scores(engine: Engine, crm: str, run_id: str, scores: pd.DataFrame, previous_counts: Sequence[int],
                     now: datetime, settings: QualitySettings | None = None) -> CheckRun:
    """The score checks (ranges, stages, reasons) and the drift against the previous scores
    (`previous_counts`: their `psi.score_counts`), stored."""
    results = check_scores(scores, scores_from_counts(previous_counts), settings or load_settings_file())
    store_results(engine, crm, run_id, list(results), now=now)
    return results
