"""Benchmark of the data-quality gate: GX row + batch validation of a million leads.

    python bench/bench_quality.py [--n 1000000] [--bad-share 0.02] [--repeat 2]
                                  [--out bench/results/quality.json]

Generates `--n` warehouse-shaped leads (str text columns, epoch-ms floats, enrichment columns)
with `--bad-share` of them broken in one of several ways, warms Great Expectations up (its
import alone takes 7-15 s and is not part of a validation), then times `validate_rows` +
`check_batch` (the target: <= 20 s for 1M leads), split into coercion, GX and failure-building
phases. Reports wall and CPU seconds (the machine may be shared), peak RSS (getrusage) and the
counts found. Figures only; the target is reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadflow.quality import gx_runtime, row_checks
from leadflow.quality.batch_checks import check_batch
from leadflow.quality.row_checks import RowCheckOptions, validate_rows
from leadflow.quality.settings import load_settings_file

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 20.0
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
_STAGES = np.array(["subscriber", "lead", "mql", "sql", "opportunity"], dtype=object)
_STATUSES = np.array(["new", "open", "in_progress", "nurture", "connected"], dtype=object)


def generate_leads(n: int, bad_share: float, seed: int = 42) -> pd.DataFrame:
    """`n` leads shaped like the warehouse output; about `bad_share` carry one defect each."""
    rng = np.random.default_rng(seed)
    now_ms = NOW.timestamp() * 1000
    ids = np.arange(n).astype(str)
    text = lambda values: pd.Series(values, dtype="str")  # noqa: E731
    emails = np.char.add(np.char.add("person", ids), "@company-" + str(seed) + ".com").astype(object)
    frame = pd.DataFrame({
        "crm": text(np.full(n, "hubspot", dtype=object)),
        "record_id": text(ids.astype(object)),
        "email": emails,
        "first_name": text(rng.choice(np.array(["Ann", "Bo", "Chen", "Dana"], dtype=object), n)),
        "last_name": text(rng.choice(np.array(["Lee", "Ngo", "Smith", "Ortiz"], dtype=object), n)),
        "job_title": text(rng.choice(np.array(["VP Sales", "Engineer", "CTO", None], dtype=object), n)),
        "phone": text(np.full(n, "+1 555 0100", dtype=object)),
        "company_name": text(np.full(n, "Acme", dtype=object)),
        "website": text(np.full(n, "https://acme.example", dtype=object)),
        "company_id": text(rng.integers(1, 50_000, n).astype(str).astype(object)),
        "country": text(rng.choice(np.array(["US", "DE", "FR", None], dtype=object), n)),
        "industry": text(rng.choice(np.array(["Software", "Retail", None], dtype=object), n)),
        "employees": rng.integers(1, 20_000, n).astype("float64"),
        "annual_revenue": rng.integers(1, 10**9, n).astype("float64"),
        "lifecycle_stage": text(rng.choice(_STAGES, n)),
        "lead_status": text(rng.choice(_STATUSES, n)),
        "budget_range": text(rng.choice(np.array(["<5k", "5k-25k", None], dtype=object), n)),
        "timeframe": text(rng.choice(np.array(["this_quarter", "6_months", None], dtype=object), n)),
        "pain_point": text(np.full(n, None, dtype=object)),
        "form_comments": text(rng.choice(np.array(["call me", None, "pricing?"], dtype=object), n)),
        "page_views": rng.integers(0, 200, n).astype("float64"),
        "visits": rng.integers(0, 50, n).astype("float64"),
        "pricing_page_views": rng.integers(0, 5, n).astype("float64"),
        "email_clicks": rng.integers(0, 20, n).astype("float64"),
        "content_downloads": rng.integers(0, 5, n).astype("float64"),
        "form_submissions": rng.integers(0, 5, n).astype("float64"),
        "demo_requested_at": np.where(rng.random(n) < 0.1, now_ms - 5e8, np.nan),
        "trial_started_at": np.full(n, np.nan),
        "webinar_attended_at": np.full(n, np.nan),
        "last_activity_at": now_ms - rng.random(n) * 30 * 86_400_000,
        "do_not_contact": rng.random(n) < 0.01,
        "created_at": now_ms - rng.random(n) * 900 * 86_400_000,
        "updated_at": now_ms - rng.random(n) * 10 * 86_400_000,
        "is_deleted": np.zeros(n, dtype=bool),
    })
    bad = np.flatnonzero(rng.random(n) < bad_share)
    kinds = rng.integers(0, 6, bad.size)
    for kind, column, value in [
        (0, "email", "not an email"), (1, "employees", -5.0), (2, "updated_at", now_ms + 9e11),
        (3, "lifecycle_stage", "bogus"), (4, "email", None), (5, "visits", -1.0),
    ]:
        rows = bad[kinds == kind]
        frame.loc[rows, column] = value
    frame["email"] = frame["email"].astype("str")
    return frame


def _peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_once(leads: pd.DataFrame, settings: Any, options: RowCheckOptions) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    prepared = row_checks.prepare_rows(leads, options)
    t_prepare = time.perf_counter()
    specs = row_checks.row_expectations(options, NOW)
    run = gx_runtime.validate_frame(prepared.frame, specs, suite_name="rows-bench",
                                    result_format=gx_runtime.ROW_RESULT_FORMAT)
    t_gx = time.perf_counter()
    failures, failed = row_checks.build_failures(prepared, run.outcomes, settings.value_max_chars)
    t_failures = time.perf_counter()
    phases = {"coerce_s": t_prepare - wall, "gx_rows_s": t_gx - t_prepare,
              "failures_s": t_failures - t_gx}

    # The public path end to end (what the pipeline calls), timed on its own.
    start = time.perf_counter()
    rows = validate_rows(leads, options, NOW)
    rows_s = time.perf_counter() - start
    start = time.perf_counter()
    batch = check_batch(leads, rows, settings, NOW)
    batch_s = time.perf_counter() - start
    total_cpu = time.process_time() - cpu
    return {
        "phases_s": {k: round(v, 2) for k, v in phases.items()},
        "validate_rows_s": round(rows_s, 2),
        "check_batch_s": round(batch_s, 2),
        "rows_plus_batch_s": round(rows_s + batch_s, 2),
        "cpu_s_both_passes": round(total_cpu, 2),
        "passed": len(rows.passed_ids),
        "failure_rows": len(rows.failures),
        "failed_rows": int(failed.sum()),
        "batch_failed": [r.name for r in batch if not r.success],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--bad-share", type=float, default=0.02)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "quality.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    settings = load_settings_file()
    options = RowCheckOptions.from_settings(settings, "hubspot")
    started = time.perf_counter()
    gx_runtime.get_runtime()
    warm_import_s = time.perf_counter() - started
    validate_rows(generate_leads(50, args.bad_share, seed=1), options, NOW)  # first-call caches

    started = time.perf_counter()
    leads = generate_leads(args.n, args.bad_share)
    generate_s = time.perf_counter() - started
    rss_after_generation = _peak_rss_mib()
    runs = [run_once(leads, settings, options) for _ in range(max(1, args.repeat))]
    best = min(r["rows_plus_batch_s"] for r in runs)
    result = {
        "headline": {
            "leads": args.n,
            "rows_plus_batch_best_s": best,
            "target_s": TARGET_SECONDS,
            "within_target": best <= TARGET_SECONDS,
            "peak_rss_mib": round(_peak_rss_mib(), 1),
        },
        "gx_import_and_context_s": round(warm_import_s, 2),
        "generate_s": round(generate_s, 2),
        "rss_after_generation_mib": round(rss_after_generation, 1),
        "runs": runs,
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result["headline"], sort_keys=True))
    for i, run in enumerate(runs, 1):
        print(f"run {i}: rows {run['validate_rows_s']} s + batch {run['check_batch_s']} s "
              f"= {run['rows_plus_batch_s']} s; phases {run['phases_s']}; "
              f"{run['passed']} passed, {run['failed_rows']} quarantined")
    print(f"peak RSS {result['headline']['peak_rss_mib']} MiB; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
