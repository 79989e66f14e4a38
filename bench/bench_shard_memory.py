"""Peak memory of the enrich and validate tasks, unsharded and per shard.

    python bench/bench_shard_memory.py [--n 100000] [--shards 1 4] [--out bench/results/shard_memory.json]

Setup (not measured): a SQLite warehouse holding `--n` leads of `bench_enrich.build_world`
(landed with `repo.land_page`, as extract does) and a warm enrichment cache. Then, per shard
count, each task runs as the pipeline step (`pipeline.enrich`, `pipeline.validate`) in a fresh
child process, one after the other, and reports its peak RSS (VmHWM: imports included, as an
Airflow task process has them) and its RSS after the imports (psutil). The
allocator setting (`LEADFLOW_KEEP_FREED_MEMORY_MB`) is off, as deployed, unless set.
Figures only; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

# The tasks as deployed: the allocator setting is off unless the caller sets it (bench_enrich
# turns it on for its own figures when imported).
_KEEP_FREED_MB = os.environ.get("LEADFLOW_KEEP_FREED_MEMORY_MB", "0")

from bench_enrich import NOW, NOW_MS, build_world  # noqa: E402

RUN_ID = "bench-shard-memory"


def _setup(url: str, n: int, seed: int) -> None:
    from leadflow.enrich.cache import WarehouseCache
    from leadflow.enrich.settings import EnrichmentSettings
    from leadflow.warehouse import repo
    from leadflow.warehouse.db import ensure_schema, get_engine

    leads, companies, records = build_world(n, max(1, n // 8), seed)
    leads["created_at"] = float(NOW_MS - 86_400_000)
    leads["updated_at"] = float(NOW_MS - 3_600_000)
    engine = get_engine(url)
    ensure_schema(engine)
    settings = EnrichmentSettings()
    WarehouseCache(engine, settings.cache_ttl_ms, settings.negative_ttl_ms).store(records, NOW_MS)
    lead_rows = leads.astype(object).where(leads.notna(), None).to_dict("records")
    company_rows = companies.astype(object).where(companies.notna(), None).to_dict("records")
    with engine.begin() as conn:
        for start in range(0, len(lead_rows), 20_000):
            repo.land_page(conn, "hubspot", RUN_ID, lead_rows[start:start + 20_000],
                           company_rows if start == 0 else [], [])
    repo.start_run(engine, "hubspot", RUN_ID, dry_run=False)


def _child(url: str, step: str, shard: int | None, shards: int) -> dict[str, float]:
    import psutil

    import leadflow.pipeline as pipeline

    ctx = pipeline.RunContext(crm="hubspot", run_id=RUN_ID, warehouse_url=url, now=NOW, shard=shard, shards=shards)
    ctx.engine  # noqa: B018 - connect before the baseline
    before = psutil.Process().memory_info().rss / 2**20
    getattr(pipeline, step)(ctx)
    peak = _high_water_mib()
    return {"rss_after_imports_mib": round(before, 1), "peak_rss_mib": round(peak, 1)}


def _high_water_mib() -> float:
    """This process's peak RSS (Linux VmHWM). Not getrusage's ru_maxrss: Linux carries that over
    exec from the parent at fork time, so every child would report the parent's RSS."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: KiB (Linux) / bytes (macOS)


def _measure(url: str, step: str, shard: int | None, shards: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", url, step, str(shard), str(shards)],
                         check=True, capture_output=True, text=True,
                         env=dict(os.environ, LEADFLOW_KEEP_FREED_MEMORY_MB=_KEEP_FREED_MB)).stdout
    return json.loads(out.strip().splitlines()[-1])


def run(n: int, shard_counts: list[int], seed: int) -> dict[str, object]:
    results: dict[str, object] = {"n": n}
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
        _setup(url, n, seed)
        for shards in shard_counts:
            ids = [None] if shards == 1 else list(range(shards))
            for step in ("enrich", "validate"):
                per_task = [_measure(url, step, shard, shards) for shard in ids]
                results[f"{step}_shards_{shards}"] = {
                    "max_peak_rss_mib": max(t["peak_rss_mib"] for t in per_task),
                    "tasks": per_task,
                }
                peaks = ", ".join(f"{t['peak_rss_mib']:.0f}" for t in per_task)
                imports = np.mean([t["rss_after_imports_mib"] for t in per_task])
                print(f"{step:<9} shards={shards}: peak RSS per task {peaks} MiB (after imports {imports:.0f} MiB)",
                      flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        url, step, shard, shards = argv[1:5]
        print(json.dumps(_child(url, step, None if shard == "None" else int(shard), int(shards))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    result = run(args.n, args.shards, args.seed)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
