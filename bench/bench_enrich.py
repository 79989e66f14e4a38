"""Benchmark of lead enrichment with a warm warehouse cache.

    python bench/bench_enrich.py [--n 1000000] [--companies 125000] [--repeat 3]
                                 [--baseline-n 20000] [--out bench/results/enrich.json]

Setup (not timed): a SQLite warehouse in a temporary directory whose enrichment cache holds an
answer for every company domain of a synthetic world shaped like the sandbox's (company domains
from the bundled reference list, ~8 leads per company; 12 % free mail, 2 % disposable, 30 % with
a website, 70 % linked to a CRM company, a few unknown domains cached as "not found").

Measured in a process set up like the pipeline's enrich step (`leadflow.runtime.keep_freed_memory`,
as `pipeline.enrich` calls it, opted in with `LEADFLOW_KEEP_FREED_MEMORY_MB=1024` unless set):
- `enrich_leads` over all leads with the chain cache -> reference (every domain is a cache
  hit, so no provider beyond the cache is asked): median and best of `--repeat` runs, leads/s;
- the same with a cold process-level domain memo (first run of a fresh process);
- peak memory: a child process builds the leads, notes its RSS, enriches once and reports its
  peak RSS (getrusage ru_maxrss);
- a per-lead baseline (scalar domain extraction and one cache query per distinct domain, as a
  naive implementation would do) on the first `--baseline-n` leads.
Figures only; nothing here asserts the targets (>= 200,000 leads/s from cache).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from leadflow.enrich.cache import WarehouseCache
from leadflow.enrich.chain import ProviderChain
from leadflow.enrich.domains import extract_domain
from leadflow.enrich.leads import enrich_leads
from leadflow.enrich.providers import (
    EMPLOYEE_BANDS,
    MATCHED,
    NOT_FOUND,
    RECORD_COLUMNS,
    REVENUE_BANDS,
    bands_of,
)
from leadflow.enrich.reference import load_reference
from leadflow.enrich.settings import EnrichmentSettings
from leadflow.runtime import keep_freed_memory
from leadflow.schema import COMPANY_COLUMNS, LEAD_COLUMNS
from leadflow.warehouse.db import ensure_schema, get_engine

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)
NOW_MS = int(NOW.timestamp() * 1000)
FREE = np.array(["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com"], dtype=object)
DISPOSABLE = np.array(["mailinator.com", "yopmail.com", "guerrillamail.com"], dtype=object)

# The pipeline's allocator setting is opt-in; measure the tuned process (children inherit it).
os.environ.setdefault("LEADFLOW_KEEP_FREED_MEMORY_MB", "1024")


def build_world(n: int, companies: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(leads, crm companies, reference records) for the benchmark, vectorised."""
    rng = np.random.default_rng(seed)
    reference = load_reference().records.iloc[:companies].reset_index(drop=True)
    domains = reference["domain"].to_numpy(dtype=object)
    # A few hundred extra company domains no provider knows (cached as "not found").
    unknown = np.array([f"unknown{i}.example.com" for i in range(max(1, companies // 200))], dtype=object)
    all_domains = np.concatenate([domains, unknown])
    company_of = rng.integers(0, len(all_domains), n)
    lead_domain = all_domains[company_of]
    kind = rng.random(n)
    lead_domain = np.where(kind < 0.12, FREE[rng.integers(0, len(FREE), n)], lead_domain)
    lead_domain = np.where((kind >= 0.12) & (kind < 0.14), DISPOSABLE[rng.integers(0, len(DISPOSABLE), n)],
                           lead_domain)
    ids = np.arange(n).astype(str).astype(object)
    emails = pd.Series("user" + ids + "@" + lead_domain, dtype="str")
    website = np.where(rng.random(n) < 0.3, "https://www." + all_domains[company_of], None)
    linked = rng.random(n) < 0.7
    company_id = np.where(linked, "c" + company_of.astype(str).astype(object), None)
    names = np.concatenate([reference["name"].to_numpy(dtype=object), np.full(len(unknown), "Unknown Co")])
    leads = pd.DataFrame({c: pd.Series(None, index=range(n), dtype="float64" if k in ("float", "ts") else "str")
                          for c, k in LEAD_COLUMNS.items() if k != "bool"})
    leads["do_not_contact"] = False
    leads["is_deleted"] = False
    leads["crm"] = pd.Series(np.full(n, "hubspot", dtype=object), dtype="str")
    leads["record_id"] = pd.Series(ids, dtype="str")
    leads["email"] = emails
    leads["website"] = pd.Series(website, dtype="str")
    leads["company_id"] = pd.Series(company_id, dtype="str")
    leads["company_name"] = pd.Series(names[company_of], dtype="str")
    leads["industry"] = pd.Series(np.where(rng.random(n) < 0.3, "Software", None), dtype="str")
    leads["employees"] = np.where(rng.random(n) < 0.2, 50.0, np.nan)
    used = np.unique(company_of[linked])
    crm_companies = pd.DataFrame({c: pd.Series(None, index=range(len(used)), dtype="float64" if k in ("float", "ts")
                                               else "str") for c, k in COMPANY_COLUMNS.items()})
    crm_companies["crm"] = "hubspot"
    crm_companies["company_id"] = pd.Series("c" + used.astype(str).astype(object), dtype="str")
    crm_companies["name"] = pd.Series(names[used], dtype="str")
    crm_companies["domain"] = pd.Series(np.where(rng.random(len(used)) < 0.8, all_domains[used], None), dtype="str")
    crm_companies["country"] = pd.Series(np.where(rng.random(len(used)) < 0.5, "Germany", None), dtype="str")
    answers = reference.copy()
    answers["source"] = "api"
    answers["fetched_at"] = float(NOW_MS)
    negative = pd.DataFrame({"domain": unknown, "status": NOT_FOUND, "source": "api", "fetched_at": float(NOW_MS)})
    records = pd.concat([answers, negative], ignore_index=True)
    records["employee_band"] = bands_of(records["employee_count"], EMPLOYEE_BANDS)
    records["revenue_band"] = bands_of(records["annual_revenue_usd"], REVENUE_BANDS)
    records["status"] = records["status"].fillna(MATCHED)
    return leads, crm_companies, records[list(RECORD_COLUMNS)]


def _warm_chain(workdir: Path, records: pd.DataFrame) -> tuple[ProviderChain, EnrichmentSettings]:
    settings = EnrichmentSettings()
    engine = get_engine(f"sqlite:///{workdir / 'warehouse.db'}")
    ensure_schema(engine)
    cache = WarehouseCache(engine, settings.cache_ttl_ms, settings.negative_ttl_ms)
    cache.store(records, NOW_MS)
    return ProviderChain([cache, load_reference()], cache), settings


def _memory_child(n: int, companies: int, seed: int) -> dict[str, float]:
    import psutil

    keep_freed_memory()
    leads, crm_companies, records = build_world(n, companies, seed)
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        chain, settings = _warm_chain(Path(tmp), records)
        baseline = psutil.Process().memory_info().rss / 2**20
        t = time.perf_counter()
        enrich_leads(leads, crm_companies, chain, settings, NOW)
        cold = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"rss_before_enrich_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
            "enrich_peak_delta_mib": round(peak - baseline, 1), "cold_process_s": round(cold, 3)}


def _baseline(leads: pd.DataFrame, cache: WarehouseCache) -> float:
    """Per-lead loop: scalar domain extraction, one cache query per new domain. Seconds."""
    extract = extract_domain.__wrapped__ if hasattr(extract_domain, "__wrapped__") else extract_domain
    seen: dict[str, object] = {}
    t = time.perf_counter()
    for email in leads["email"].tolist():
        domain = extract(email)
        if domain and domain not in seen:
            seen[domain] = cache.lookup([domain], NOW_MS)
    return time.perf_counter() - t


def run(n: int, companies: int, repeat: int, baseline_n: int, seed: int) -> dict[str, object]:
    keep_mb = keep_freed_memory()
    t0 = time.perf_counter()
    leads, crm_companies, records = build_world(n, companies, seed)
    build_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        chain, settings = _warm_chain(Path(tmp), records)
        times, cpu_times = [], []
        result = None
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            result = enrich_leads(leads, crm_companies, chain, settings, NOW)
            times.append(time.perf_counter() - t)
            cpu_times.append(time.process_time() - c)
        assert result is not None
        baseline_s = _baseline(leads.head(baseline_n), chain.cache)
    median = statistics.median(times)
    cov = result.coverage
    return {
        "n": n,
        "companies": companies,
        "repeat": repeat,
        "allocator_keep_freed_mib": keep_mb,
        "enrich_seconds": [round(x, 4) for x in times],
        "enrich_median_s": round(median, 4),
        "enrich_best_s": round(min(times), 4),
        "leads_per_s_median": round(n / median),
        "leads_per_s_best": round(n / min(times)),
        "enrich_cpu_median_s": round(statistics.median(cpu_times), 4),
        "leads_per_cpu_s_median": round(n / statistics.median(cpu_times)),
        "distinct_domains_looked_up": cov["lookups"].get("domains", 0),
        "match_rate": cov["match_rate"],
        "company_source": cov["company_source"],
        "baseline_n": min(baseline_n, n),
        "baseline_leads_per_s": round(min(baseline_n, n) / baseline_s),
        "build_world_s": round(build_s, 2),
        "memory": _measure_memory(n, companies, seed),
        "memory_method": "child process: psutil RSS before enriching, getrusage ru_maxrss after one run",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "headline": {"leads_per_s_median": round(n / median), "n": n},
    }


def _measure_memory(n: int, companies: int, seed: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", "--n", str(n), "--companies", str(companies),
           "--seed", str(seed)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _print_table(result: dict[str, object]) -> None:
    mem = result["memory"]
    rows = [
        ("leads / companies", f"{result['n']:,} / {result['companies']:,}"),
        ("enrich (warm cache), median", f"{result['enrich_median_s']:.3f} s  ->  {result['leads_per_s_median']:,} leads/s"),
        ("enrich, best", f"{result['enrich_best_s']:.3f} s  ->  {result['leads_per_s_best']:,} leads/s"),
        ("enrich, CPU time median", f"{result['enrich_cpu_median_s']:.3f} s  ->  {result['leads_per_cpu_s_median']:,} leads/CPU-s"),
        ("first run in a fresh process", f"{mem['cold_process_s']:.3f} s"),
        ("distinct domains per run", f"{result['distinct_domains_looked_up']:,} (match rate {result['match_rate']:.1%})"),
        ("per-lead baseline", f"{result['baseline_leads_per_s']:,} leads/s on {result['baseline_n']:,}"),
        ("peak RSS (child)", f"{mem['peak_rss_mib']:.0f} MiB; enrichment adds {mem['enrich_peak_delta_mib']:.0f} MiB"),
        ("load average (1 min)", f"{result['machine']['loadavg_1m_at_end']}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--companies", type=int, default=125_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline-n", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "enrich.json")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(_memory_child(args.n, args.companies, args.seed)))
        return 0
    result = run(args.n, args.companies, args.repeat, args.baseline_n, args.seed)
    _print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
