"""Peak memory of every CRM DAG task, each in a fresh process, at two sizes, extrapolated to 1M.

    python bench/bench_step_memory.py [--n 50000 100000] [--shards 8] [--target 1000000]
                                      [--out bench/results/step_memory.json]

Issue 15 asks that no task of a 1,000,000-contact run with shards=8 peaks above 1.5 GB. The
Celery cluster (bench_celery.py part 2) measures that end to end in about 30 minutes; this bench
gets the same per-task figures without Airflow, in a few: per size, a sandbox world of `n`
contacts is served from its own process (`leadflow sandbox serve`, rate limits off, the
connection told so), and the pipeline steps run one after the other in the DAG's order, each as
its own child process (as Airflow runs a task), sharded like the DAG (`RunContext(shard=,
shards=)` for enrich, validate, qualify and push), on one SQLite warehouse. A first run: the pull
lists every contact and the push writes every score. Each child reports its peak RSS (VmHWM,
imports included, as a task process has them: `leadflow.runtime.peak_rss_mib`).

Per task (a sharded step: its largest shard) the two sizes give a line, MiB = a + b * n; the
1M figure is that line at `--target` (the shard count stays the same, so a shard's share grows
with n too). Linear is what the steps are (frames of n rows); imports are the intercept. Not
plan_push past `pipeline.PLAN_RECORDS_PER_PART` records: it diffs that many at a time, so from
there its line overstates it (measure at that size for its ceiling). The
allocator setting (`LEADFLOW_KEEP_FREED_MEMORY_MB`) is off, as deployed, unless set.
Figures only; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from leadflow.connections import connection_from_env, env_var_name
from leadflow.devrun import start_sandbox, stop

RUN_ID = "bench-step-memory"
CRM = "hubspot"
# The CRM DAG's tasks in order (dags/leadflow_crm.py), and which of them are mapped per shard.
STEPS = ("extract", "enrich", "validate", "validate_gate", "qualify", "accounts", "validate_scores", "plan_push",
         "push", "push_accounts")
SHARDED = frozenset({"enrich", "validate", "qualify", "push"})
TARGET_MIB = 1536.0  # issue 15: 1.5 GB per task
# The sandbox serves as fast as it can; the connection says so, so that the client does not pace.
UNLIMITED = {"rate_limit_per_10s": 1_000_000, "search_rate_per_s": 100_000.0}
_KEEP_FREED_MB = os.environ.get("LEADFLOW_KEEP_FREED_MEMORY_MB", "0")


def _child(url: str, step: str, shard: int | None, shards: int, now: str) -> dict[str, float]:
    import leadflow.pipeline as pipeline
    from leadflow.runtime import peak_rss_mib

    ctx = pipeline.RunContext(crm=CRM, run_id=RUN_ID, warehouse_url=url, now=datetime.fromisoformat(now),
                              shard=shard, shards=shards, rate_share=1.0 / shards if shard is not None else 1.0)
    started = time.perf_counter()
    getattr(pipeline, step)(ctx)
    return {"peak_rss_mib": round(peak_rss_mib(), 1), "wall_s": round(time.perf_counter() - started, 1)}


def _child_env(sandbox_env: dict[str, str], var: Path) -> dict[str, str]:
    """This process's environment with the sandbox's connections, the CRM's limits lifted."""
    env = dict(os.environ, **sandbox_env, LEADFLOW_VAR_DIR=str(var), LEADFLOW_KEEP_FREED_MEMORY_MB=_KEEP_FREED_MB)
    conn = connection_from_env(f"leadflow_{CRM}", env)
    env[env_var_name(conn.conn_id)] = json.dumps({
        "conn_type": conn.conn_type, "host": conn.host, "port": conn.port, "schema": conn.schema,
        "login": conn.login, "password": conn.password, "extra": {**conn.extra, **UNLIMITED}})
    return env


def _run_child(env: dict[str, str], url: str, step: str, shard: int | None, shards: int, now: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", url, step, str(shard), str(shards), now],
                         check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{step} shard {shard} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_size(n: int, shards: int, seed: int, steps: tuple[str, ...] = STEPS) -> dict[str, dict]:
    """Every task's peak RSS (a sharded step: each shard's) of one first run of `n` contacts."""
    now = datetime.now(timezone.utc).isoformat()
    tasks: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="leadflow-bench-") as tmp:
        started = time.perf_counter()
        proc, sandbox_env = start_sandbox(Path(tmp) / "sandbox", n, [
            "--seed", str(seed), "--rate-limit", "off", "--search-rate-limit", "off",
            "--enrichment-rate-limit", "off"], timeout=1800)
        print(f"n={n:,}: sandbox seeded and serving after {time.perf_counter() - started:.0f} s", flush=True)
        try:
            env = _child_env(sandbox_env, Path(tmp) / "var")
            url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
            for step in steps:
                ids = list(range(shards)) if step in SHARDED and shards > 1 else [None]
                runs = [_run_child(env, url, step, shard, shards if shard is not None else 1, now) for shard in ids]
                tasks[step] = {"max_peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                               "wall_s": round(sum(r["wall_s"] for r in runs), 1),
                               "per_shard_mib": [r["peak_rss_mib"] for r in runs] if len(runs) > 1 else None}
                print(f"  {step:<16} peak {tasks[step]['max_peak_rss_mib']:>7.0f} MiB"
                      f"{' (largest of ' + str(len(runs)) + ' shards)' if len(runs) > 1 else ''}"
                      f"  {tasks[step]['wall_s']:>6.1f} s", flush=True)
        finally:
            stop(proc)
    return tasks


def extrapolate(sizes: dict[int, dict[str, dict]], target: int) -> dict[str, dict[str, float]]:
    """Per task: MiB per 100k contacts (the slope between the smallest and largest size) and MiB
    at `target` (one size: its figures as measured)."""
    (n0, low), (n1, high) = sorted(sizes.items())[0], sorted(sizes.items())[-1]
    out = {}
    for step in high:
        a, b = low[step]["max_peak_rss_mib"], high[step]["max_peak_rss_mib"]
        slope = (b - a) / (n1 - n0) if n1 != n0 else 0.0
        out[step] = {"mib_per_100k": round(slope * 100_000, 1), "at_target_mib": round(b + slope * (target - n1))}
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        url, step, shard, shards, now = argv[1:6]
        print(json.dumps(_child(url, step, None if shard == "None" else int(shard), int(shards), now)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[50_000, 100_000])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--target", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS),
                        help="the first steps only (each needs the ones before it)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    steps = tuple(step for step in STEPS if step in args.steps)
    steps = STEPS[:STEPS.index(steps[-1]) + 1]  # a step needs every one before it
    sizes = {n: run_size(n, args.shards, args.seed, steps) for n in sorted(set(args.n))}
    at = extrapolate(sizes, args.target)
    print(f"\nat {args.target:,} contacts, shards={args.shards} (linear from {', '.join(f'{n:,}' for n in sizes)}):")
    for step, figures in at.items():
        print(f"  {step:<16} {figures['at_target_mib']:>7.0f} MiB  ({figures['mib_per_100k']:+.0f} MiB per 100k)")
    worst = max(at, key=lambda s: at[s]["at_target_mib"])
    headline = {"target_contacts": args.target, "shards": args.shards, "sizes": sorted(sizes),
                "largest_task": worst, "largest_task_mib": at[worst]["at_target_mib"],
                "tasks_over_1_5_gb": sorted(s for s in at if at[s]["at_target_mib"] > TARGET_MIB)}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"headline": headline, "extrapolated": at,
                                        "measured": {str(n): t for n, t in sizes.items()}}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
