"""The one place that talks to Great Expectations 1.x.

Suites are described as plain `ExpectationSpec` values by the check modules (pure, importable
without GX); this module turns them into GX expectations, validates a whole pandas frame in one
call and hands back plain `ExpectationOutcome` values.

`import great_expectations` costs 7-15 s, so it happens inside `get_context()` on first use and
never at module import: DAG parsing and unrelated tests stay fast. The ephemeral context is
cached for the life of the process (one per Airflow task process, one per test session).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# Name of the positional row index of every frame handed to GX. GX reports failing rows of a
# named index as plain lists (fast); naming a column instead makes it look each row up with
# `DataFrame.at`, ~100 us per failing row.
ROW_INDEX = "_row"

# COMPLETE gives the failing row positions; excluding values, the partial lists and the
# query text keeps it cheaper than SUMMARY (which computes value counts): 45 expectations over
# 1M rows validate in ~2.6 s this way against ~8 s with SUMMARY, measured on this machine.
ROW_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": [ROW_INDEX],
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "partial_unexpected_count": 0,
}
# Aggregate (batch) expectations only need the observed value; a few examples help messages.
BATCH_RESULT_FORMAT: dict[str, Any] = {"result_format": "BASIC", "partial_unexpected_count": 5}

# Frames above this size (bytes) get no `pandas_data_fingerprint` batch marker (see get_runtime).
FINGERPRINT_MAX_BYTES = 50_000_000

_DATASOURCE = "leadflow"
_ASSET = "frame"
_BATCH_DEFINITION = "whole_frame"

_lock = threading.Lock()
_validate_lock = threading.Lock()
_runtime: _Runtime | None = None


class GxRuntimeError(RuntimeError):
    """GX could not evaluate an expectation (a bug in a derived column, not bad data)."""


@dataclass(frozen=True)
class ExpectationSpec:
    """One expectation, described without importing GX.

    `check` is leadflow's stable name for what is checked ("required", "email_syntax", ...),
    `column` the lead column it is about (None for row-level composites), `gx_class` the name of
    a class in `great_expectations.expectations`, and `kwargs` its arguments.
    """

    check: str
    column: str | None
    gx_class: str
    kwargs: dict[str, Any]
    threshold: str | None = None  # human text of the bound, for messages and the results table

    @property
    def name(self) -> str:
        """`check` or `check:column`, unique within a suite."""
        return spec_name(self.check, self.column)


def spec_name(check: str, column: str | None) -> str:
    return f"{check}:{column}" if column else check


@dataclass
class ExpectationOutcome:
    """What GX said about one expectation, as plain data."""

    spec: ExpectationSpec
    success: bool
    element_count: int | None = None
    unexpected_count: int | None = None
    observed: Any = None  # observed_value of aggregate expectations
    unexpected_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    partial_unexpected: list[Any] = field(default_factory=list)


@dataclass
class SuiteRun:
    """Outcomes of one validation, plus GX's own result object (kept for Data Docs)."""

    suite_name: str
    outcomes: list[ExpectationOutcome]
    gx_result: Any  # great_expectations ExpectationSuiteValidationResult

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)


@dataclass
class _Runtime:
    context: Any
    batch_definition: Any
    gx: Any  # the great_expectations module


def _disable_phone_home() -> None:
    # GX 1.x reads this when a context is created; set it before the import so no code path
    # of this process ever sends usage statistics.
    os.environ["GX_ANALYTICS_ENABLED"] = "false"


def get_runtime() -> _Runtime:
    """The process-wide ephemeral GX context with its pandas datasource (created on first use)."""
    global _runtime
    if _runtime is not None:
        return _runtime
    with _lock:
        if _runtime is None:
            _disable_phone_home()
            # slow: see the module docstring
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every batch by hashing the whole frame (twice per validation,
            # ~3 s per million rows here) unless the frame exceeds HASH_THRESHOLD bytes, where
            # it already skips the hash. The fingerprint is only a marker in the result, so
            # large batches skip it sooner; small ones keep it.
            if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
                pandas_execution_engine.HASH_THRESHOLD = FINGERPRINT_MAX_BYTES

            context = gx.get_context(mode="ephemeral")
            context.enable_analytics(False)
            # tqdm bars would flood task logs with one line per metric batch.
            context.variables.progress_bars = ProgressBarsConfig(
                globally=False, metric_calculations=False
            )
            datasource = context.data_sources.add_pandas(_DATASOURCE)
            asset = datasource.add_dataframe_asset(_ASSET)
            batch_definition = asset.add_batch_definition_whole_dataframe(_BATCH_DEFINITION)
            _runtime = _Runtime(context=context, batch_definition=batch_definition, gx=gx)
            log.info("great expectations %s ephemeral context ready", gx.__version__)
    return _runtime


def get_context() -> Any:
    """The cached ephemeral `great_expectations` data context."""
    return get_runtime().context


def build_suite(name: str, specs: Sequence[ExpectationSpec]) -> Any:
    """A GX `ExpectationSuite` (not stored in the context) holding `specs` in order."""
    runtime = get_runtime()
    expectations = []
    for spec in specs:
        cls = getattr(runtime.gx.expectations, spec.gx_class)
        meta = {"check": spec.check, "column": spec.column, "threshold": spec.threshold}
        expectations.append(cls(**spec.kwargs, meta=meta))
    return runtime.gx.ExpectationSuite(name=name, expectations=expectations)


def validate_frame(
    frame: pd.DataFrame,
    specs: Sequence[ExpectationSpec],
    *,
    suite_name: str,
    result_format: dict[str, Any],
) -> SuiteRun:
    """Validate the whole `frame` against `specs` in one GX call.

    The frame's index is replaced by a named positional index (`ROW_INDEX`) so failing rows
    come back as positions into `frame`. Raises `GxRuntimeError` if an expectation could not be
    evaluated at all.
    """
    runtime = get_runtime()
    frame = frame.set_axis(pd.RangeIndex(len(frame), name=ROW_INDEX), axis=0)
    suite = build_suite(f"{suite_name}-{uuid.uuid4().hex[:8]}", specs)
    # One validation at a time per process: the context's one dataframe asset is shared, and
    # GX mixes up the frames of threads validating at once (shards run in threads in-process;
    # Airflow runs them as processes, each with its own context).
    with _validate_lock:
        batch = runtime.batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format=result_format)
    by_name = {spec.name: spec for spec in specs}
    if len(by_name) != len(specs):
        raise ValueError(f"suite {suite_name} has duplicate expectation names")
    outcomes = [_outcome(by_name, r) for r in result.results]
    # GX does not keep the suite's order; restore it so reports read the same every run.
    order = {spec.name: i for i, spec in enumerate(specs)}
    outcomes.sort(key=lambda o: order[o.spec.name])
    return SuiteRun(suite_name=suite_name, outcomes=outcomes, gx_result=result)


def _outcome(by_name: dict[str, ExpectationSpec], result: Any) -> ExpectationOutcome:
    meta = result.expectation_config.meta or {}
    spec = by_name[spec_name(meta.get("check", ""), meta.get("column"))]
    info = result.exception_info or {}
    if info.get("raised_exception"):
        raise GxRuntimeError(
            f"expectation {spec.name} ({spec.gx_class}) could not be evaluated: "
            f"{info.get('exception_message')}"
        )
    body = result.result or {}
    return ExpectationOutcome(
        spec=spec,
        success=bool(result.success),
        element_count=body.get("element_count"),
        unexpected_count=body.get("unexpected_count"),
        observed=_plain(body.get("observed_value")),
        unexpected_rows=_unexpected_rows(body.get("unexpected_index_list")),
        partial_unexpected=[_plain(v) for v in body.get("partial_unexpected_list") or []],
    )


def _unexpected_rows(index_list: Iterable[Any] | None) -> np.ndarray:
    """Row positions from GX's `unexpected_index_list` (with `exclude_unexpected_values` GX
    returns `[{"_row": [..positions..]}]`; without it, one dict per row)."""
    if not index_list:
        return np.empty(0, dtype=np.int64)
    rows: list[Any] = []
    for item in index_list:
        if isinstance(item, dict):
            value = item.get(ROW_INDEX)
            rows.extend(value if isinstance(value, list) else [value])
        else:
            rows.append(item)
    return np.asarray(rows, dtype=np.int64)


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars, so outcomes serialise as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _plain_number(value: Any) -> Any:
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "shape", None) == ():
        return item()
    return value


def compact_result(result: Any) -> Any:
    """A copy of a GX suite result without per-row lists (they can reach megabytes on a million
    rows), suitable for Data Docs."""
    # slow (Great Expectations): see the module docstring
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )

    dropped = ("unexpected_index_list", "unexpected_list", "partial_unexpected_index_list",
               "unexpected_index_query")
    results = []
    for r in result.results:
        # numpy scalars become plain numbers: GX's renderers reject numpy.float64 values.
        body = {k: _plain_number(v) for k, v in (r.result or {}).items() if k not in dropped}
        results.append(
            ExpectationValidationResult(
                success=r.success,
                expectation_config=r.expectation_config,
                result=body,
                meta=r.meta,
                exception_info=r.exception_info,
            )
        )
    return ExpectationSuiteValidationResult(
        success=result.success,
        results=results,
        suite_name=result.suite_name,
        suite_parameters=result.suite_parameters,
        statistics=result.statistics,
        meta=result.meta,
    )
