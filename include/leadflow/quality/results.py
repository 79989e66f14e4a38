"""Check results, the gate that fails a task on them, and their storage per run.

Every level (rows, batch, scores) reports `CheckResult`s; `raise_if_failed` turns the failed
ones into one `QualityGateError` whose message names each check and its observed value, and
`store_results` keeps them in `dq_results` so the UI can show a run's data quality.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Iterator, Literal, Sequence

from sqlalchemy import Engine, delete, insert

from leadflow.quality.tables import dq_results

log = logging.getLogger(__name__)

Stage = Literal["rows", "batch", "scores"]
STAGES: tuple[str, ...] = ("rows", "batch", "scores")
_OBSERVED_MAX_CHARS = 500


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one expectation or gate check.

    `name` is stable across runs ("required:email", "quarantine_share", "score_psi");
    `observed` a short human-readable value ("0.12", "3 of 1000 rows"); `threshold` the bound
    it was held to.
    """

    stage: Stage
    name: str
    success: bool
    observed: str
    threshold: str | None = None
    unexpected_count: int | None = None

    def describe(self) -> str:
        bound = f" (threshold {self.threshold})" if self.threshold else ""
        return f"{self.stage}/{self.name}: observed {self.observed}{bound}"


@dataclass
class CheckRun:
    """The results of one gate (batch or scores), iterable as `CheckResult`s, with GX's own
    result object kept for Data Docs."""

    stage: Stage
    results: list[CheckResult]
    gx_result: Any = None

    def __iter__(self) -> Iterator[CheckResult]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success]


class QualityGateError(Exception):
    """A data-quality gate failed; the run must stop before anything is pushed."""

    def __init__(self, failed: Sequence[CheckResult]):
        self.failed = list(failed)
        lines = "; ".join(r.describe() for r in self.failed)
        super().__init__(f"data quality gate failed ({len(self.failed)} check(s)): {lines}")


def raise_if_failed(results: Iterable[CheckResult]) -> None:
    """Raise `QualityGateError` naming every failed check; do nothing if all passed."""
    failed = [r for r in results if not r.success]
    if failed:
        log.error("data quality gate failed: %s", ", ".join(r.name for r in failed))
        raise QualityGateError(failed)


def failed_count(results: Iterable[CheckResult]) -> int:
    """Number of failed checks (the run summary's `dq_failed_checks`)."""
    return sum(1 for r in results if not r.success)


def format_observed(value: Any) -> str:
    """A compact, JSON-safe text for an observed value (floats to 4 significant digits)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.4g}"
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, default=str, sort_keys=True)
    else:
        text = str(value)
    return text if len(text) <= _OBSERVED_MAX_CHARS else text[: _OBSERVED_MAX_CHARS - 1] + "…"


def store_results(
    engine: Engine,
    crm: str,
    run_id: str,
    results: Sequence[CheckResult],
    *,
    now: datetime,
) -> int:
    """Replace this run's stored results for the stages present in `results`.

    Idempotent: re-running a task rewrites its rows instead of adding duplicates. Returns the
    number of rows written.
    """
    stages = sorted({r.stage for r in results})
    created_at = int(now.timestamp() * 1000)
    rows = [
        {
            "run_id": run_id,
            "crm": crm,
            "stage": r.stage,
            "expectation": r.name[:128],
            "success": bool(r.success),
            "observed": r.observed,
            "threshold": r.threshold,
            "unexpected_count": r.unexpected_count,
            "created_at": created_at,
        }
        for r in results
    ]
    with engine.begin() as conn:
        if stages:
            conn.execute(
                delete(dq_results).where(
                    dq_results.c.crm == crm,
                    dq_results.c.run_id == run_id,
                    dq_results.c.stage.in_(stages),
                )
            )
        if rows:
            conn.execute(insert(dq_results), rows)
    log.info("stored %d data quality results for run %s (%s)", len(rows), run_id, crm)
    return len(rows)
