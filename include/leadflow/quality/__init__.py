"""Data quality: Great Expectations suites, the quarantine and the batch gates.

The names below are the public API, imported lazily (Great Expectations itself is imported
only when the first validation runs, see `gx_runtime`). One run of the gate:

    settings = load_settings_file()                      # include/config/quality.yaml
    options = RowCheckOptions.from_settings(settings, crm)
    rows = validate_rows(leads, options, now)             # GX, one validation
    update_quarantine(engine, crm, run_id, rows.failures, rows.passed_ids, now)
    batch = check_batch(leads, rows, settings, now)       # CheckRun
    ... score leads[rows.passed_mask] ...
    scores_run = check_scores(scores, previous_scores, settings)
    store_results(engine, crm, run_id, [*rows.results, *batch, *scores_run], now=now)
    render_data_docs(folder, run_id, crm, {"rows": (rows.results, rows.gx_result), ...}, now=now)
    raise_if_failed([*batch, *scores_run])                # QualityGateError before the push
"""

from __future__ import annotations

from leadflow.lazy import lazy_getattr

_EXPORTS = {
    "QualitySettings": "leadflow.quality.settings",
    "SettingsError": "leadflow.quality.settings",
    "load_settings": "leadflow.quality.settings",
    "load_settings_file": "leadflow.quality.settings",
    "RowCheckOptions": "leadflow.quality.row_checks",
    "RowValidation": "leadflow.quality.row_checks",
    "validate_rows": "leadflow.quality.row_checks",
    "check_batch": "leadflow.quality.batch_checks",
    "check_scores": "leadflow.quality.batch_checks",
    "CheckResult": "leadflow.quality.results",
    "CheckRun": "leadflow.quality.results",
    "QualityGateError": "leadflow.quality.results",
    "raise_if_failed": "leadflow.quality.results",
    "failed_count": "leadflow.quality.results",
    "store_results": "leadflow.quality.results",
    "update_quarantine": "leadflow.quality.quarantine",
    "quarantined_ids": "leadflow.quality.quarantine",
    "quarantine_count": "leadflow.quality.quarantine",
    "top_quarantine_reasons": "leadflow.quality.quarantine",
    "quarantine_entries": "leadflow.quality.quarantine",
    "render_data_docs": "leadflow.quality.data_docs",
    "population_stability_index": "leadflow.quality.psi",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
