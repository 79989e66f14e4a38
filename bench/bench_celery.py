"""leadflow_hubspot on a real Celery cluster: the shared rate limit of parallel push shards, and a
large run end to end with each task's peak memory.

    python bench/bench_celery.py [--limit-contacts 30000] [--contacts 1000000] [--skip-limit]
                                 [--skip-large] [--large-rate-limit 1900/10 --large-search-rate 50]
                                 [--out bench/results/celery.json]

The cluster is the one tests/e2e/test_celery_cluster.py runs (tests/e2e/celery_cluster.py): the
compose file's Airflow settings, Redis, a throw-away PostgreSQL (metadata DB, Celery result
backend, the warehouse), api-server, dag-processor, scheduler and two `airflow celery worker`s
with two task slots each, against the CRM sandbox (`leadflow sandbox serve`). A fresh cluster,
world and warehouse for every measured run. Figures come from the sandbox's own request counts
(`GET /_sandbox/stats`, sampled every `--sample-s` with this process's clock) and from Airflow's
metadata DB (task start and end, the run's wall time); the worker of each task from the log
folder its log landed in.

1. Shared limit, 4 push shards on 2 workers (`--limit-contacts`, HubSpot Professional limits in the
   sandbox, 190 / 10 s and search 5 / s, and `rate_limit_per_10s: 190` in the connection): during
   the push phase (first push shard started -> last ended), the general-limit requests per
   second against the portal's 19 / s, and the share answered 429; the same over the part in
   which all four shards ran at once, and the busiest 10 s. Run twice in the same invocation:
   with the shared limiter (`rate_limit.shared: true`) and without it (`false`: each shard paces
   itself at 1/4 of the limit), the static split being the baseline.
2. `--contacts` (default 1,000,000) with `shards=8` end to end: that it completes, the peak RSS of
   every task (`peak_rss_mib` of its step summaries in the warehouse's run summary; target
   <= 1.5 GB each), and the DAG run's wall time beside its API-bound minimum (the sandbox's
   count of searches at the search rate plus every other CRM call at the general rate, as
   bench_e2e.py computes it). The limits may be raised for this case (`--large-rate-limit`,
   `--large-search-rate`) to keep it short; the minimum is computed with the same limits, and
   both are written out. On a 2-vCPU machine part 1 takes about 12 minutes (two clusters) and
   part 2 about 30 at 1,000,000 contacts (`--contacts 250000` about 10).

Figures only; nothing here asserts a target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "tests" / "e2e"), str(REPO / "tests")]

from celery_cluster import DAG_ID, running_redis, start_cluster  # noqa: E402
from pg_server import PgCluster, new_pg_database_on  # noqa: E402

from leadflow.devrun import start_sandbox, stop  # noqa: E402
from leadflow.sandbox.serving import prepare_store  # noqa: E402
from leadflow.settings import DEFAULT_CONFIG_PATH  # noqa: E402

PROFESSIONAL = {"rate_limit": "190/10", "search_rate_per_s": 5.0}
RSS_TARGET_MIB = 1536.0  # 1.5 GB per task
# Steps recorded inside another task's process (their figure is that task's).
STEP_TASK = {"verdicts": "extract", "sla": "report"}


def _general_per_s(rate_limit: str) -> float:
    count, seconds = rate_limit.split("/")
    return float(count) / float(seconds)


# --- the sandbox's counts over time ---------------------------------------------------------------
class StatsSampler:
    """`GET /_sandbox/stats` every `every_s` in a thread: (time, general-limit requests, 429s of
    them, searches, 429s of them, every request, every 429) after each sample."""

    def __init__(self, base_url: str, token: str, every_s: float):
        self.url, self.headers, self.every_s = f"{base_url}/_sandbox/stats", {"Authorization": f"Bearer {token}"}, every_s
        self.samples: list[tuple[float, int, int, int, int, int, int]] = []
        self.last: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sandbox-stats", daemon=True)

    def reset(self) -> None:
        requests.post(self.url.replace("/stats", "/reset-stats"), headers=self.headers, timeout=30).raise_for_status()

    def sample(self) -> None:
        snap = requests.get(self.url, headers=self.headers, timeout=30).json()
        at = time.time()
        general = general_429 = search = search_429 = 0
        for endpoint, by_status in snap["byEndpointStatus"].items():
            if " /crm/" not in endpoint:  # the enrichment API has a limit of its own
                continue
            n, limited = sum(by_status.values()), int(by_status.get("429", 0))
            if endpoint.endswith("/search"):
                search, search_429 = search + n, search_429 + limited
            else:
                general, general_429 = general + n, general_429 + limited
        self.last = snap
        self.samples.append((at, general, general_429, search, search_429, int(snap["total"]),
                             int(snap["byStatus"].get("429", 0))))

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.sample()
            except (requests.RequestException, ValueError):
                pass  # a busy sandbox: the next sample

    def __enter__(self) -> "StatsSampler":
        self.reset()
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.sample()

    def at(self, t: float) -> list[float]:
        """The counts at time `t`, interpolated between the samples around it."""
        s = self.samples
        if t <= s[0][0]:
            return list(s[0][1:])
        for a, b in zip(s, s[1:]):
            if a[0] <= t <= b[0]:
                f = (t - a[0]) / (b[0] - a[0]) if b[0] > a[0] else 1.0
                return [x + (y - x) * f for x, y in zip(a[1:], b[1:])]
        return list(s[-1][1:])

    def between(self, t0: float, t1: float) -> dict[str, float]:
        a, b = self.at(t0), self.at(t1)
        d = [y - x for x, y in zip(a, b)]
        return {"general": d[0], "general_429": d[1], "search": d[2], "search_429": d[3], "total": d[4],
                "total_429": d[5]}

    def calling(self, t0: float, t1: float) -> tuple[float, float]:
        """From the last sample before the general-limit count first rose within [t0, t1], to the
        sample at which it last rose: when calls were being made (one sample's accuracy)."""
        rises = [(a[0], b[0]) for a, b in zip(self.samples, self.samples[1:])
                 if b[0] > t0 and a[0] < t1 and b[1] > a[1]]
        if not rises:
            return t0, t0
        return max(t0, rises[0][0]), min(t1, rises[-1][1])

    def series(self, t0: float, t1: float) -> list[list[float]]:
        """[seconds after t0, general-limit requests, 429s] of every sample within [t0, t1]."""
        return [[round(s[0] - t0, 2), s[1], s[6]] for s in self.samples if t0 <= s[0] <= t1]

    def busiest(self, t0: float, t1: float, window_s: float = 10.0) -> float:
        """Most general-limit requests per second over any `window_s` within [t0, t1]."""
        best, t = 0.0, t0
        while t + window_s <= t1 + 1e-9:
            best = max(best, self.between(t, t + window_s)["general"] / window_s)
            t += self.every_s / 2
        return best


# --- one run on a fresh cluster -----------------------------------------------------------------
def _settings_file(folder: Path, shared: bool) -> Path:
    """The shipped pipeline settings with `rate_limit.shared` set."""
    settings = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()) or {}
    settings.setdefault("rate_limit", {})["shared"] = shared
    path = folder / "leadflow.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path


def _epoch(value: Any) -> float:
    return value.timestamp()


def run_on_cluster(pg_url: str, folder: Path, world: Path, *, contacts: int, seed: int, shards: int,
                   rate_limit: str, search_rate_per_s: float, shared: bool, run_id: str,
                   sample_s: float, timeout_s: float) -> dict[str, Any]:
    """Seeded `world` copied into a fresh sandbox, a fresh warehouse and cluster; one DAG run of
    `shards` shards. Returns the cluster's timings, task instances, sandbox samples and the
    warehouse's step summaries."""
    from sqlalchemy import select

    from leadflow.warehouse import repo
    from leadflow.warehouse.db import get_engine
    from leadflow.warehouse.tables import run_steps

    var = folder / "var"
    var.mkdir(parents=True)
    shutil.copy(world, var / "sandbox.db")
    meta_url, warehouse_url = new_pg_database_on(pg_url), new_pg_database_on(pg_url)
    started = time.monotonic()
    with ExitStack() as cleanup:
        sandbox, conn_env = start_sandbox(var, contacts, [
            "--seed", str(seed), "--salesforce-port", "off", "--rate-limit", rate_limit,
            "--search-rate-limit", f"{search_rate_per_s:g}/1", "--daily-limit", "100000000"])
        cleanup.callback(stop, sandbox)
        conn = json.loads(conn_env["AIRFLOW_CONN_LEADFLOW_HUBSPOT"])
        conn["extra"] = {**(conn.get("extra") or {}), "rate_limit_per_10s": int(_general_per_s(rate_limit) * 10),
                         "search_rate_per_s": search_rate_per_s}
        base_url = f"{conn.get('schema') or 'http'}://{conn['host']}:{conn['port']}"
        redis_url = cleanup.enter_context(running_redis(folder / "redis"))
        cluster = start_cluster(
            cleanup, folder, meta_url=meta_url, redis_url=redis_url, warehouse_url=warehouse_url, var_dir=var,
            run_id=run_id, concurrency=2, timeout=600, env={
                **conn_env, "AIRFLOW_CONN_LEADFLOW_HUBSPOT": json.dumps(conn),
                "LEADFLOW_CONFIG": str(_settings_file(folder, shared))})
        airflow = cluster.airflow
        setup_s = time.monotonic() - started
        with StatsSampler(base_url, conn["password"], sample_s) as sampler:
            airflow.trigger(cluster.api, "leadflow_hubspot", shards, {"shards": shards})
            airflow.wait_for_run(timeout=timeout_s)
        [run] = airflow.query("SELECT start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r",
                              d=DAG_ID, r=run_id)
        tis = [{"task_id": t.task_id, "map_index": t.map_index, "state": t.state, "try": t.try_number,
                "start": _epoch(t.start_date), "end": _epoch(t.end_date),
                "worker": ",".join(cluster.workers_of(t.task_id, t.map_index, t.try_number)) or None}
               for t in airflow.task_instances() if t.start_date is not None]
        engine = get_engine(warehouse_url)
        try:
            with engine.connect() as c:
                steps = [{"step": r.step, "shard": r.shard, "summary": json.loads(r.summary)}
                         for r in c.execute(select(run_steps.c.step, run_steps.c.shard, run_steps.c.summary)
                                            .where(run_steps.c.run_id == run_id))]
            summary = repo.get_run_summary(engine, "hubspot", run_id)
        finally:
            engine.dispose()
    return {"setup_s": round(setup_s, 1), "run_start": _epoch(run.start_date), "run_end": _epoch(run.end_date),
            "tis": tis, "steps": steps, "summary": summary, "sampler": sampler,
            "sandbox_stats": sampler.last}


# --- part 1: the shared limit ---------------------------------------------------------------------
def push_phase(result: dict[str, Any], limit_per_s: float) -> dict[str, Any]:
    sampler: StatsSampler = result["sampler"]
    pushes = sorted((t for t in result["tis"] if t["task_id"] == "push"), key=lambda t: t["map_index"])
    t0, t1 = min(t["start"] for t in pushes), max(t["end"] for t in pushes)
    all0, all1 = max(t["start"] for t in pushes), min(t["end"] for t in pushes)
    counts = sampler.between(t0, t1)
    rate = counts["general"] / (t1 - t0)
    c0, c1 = sampler.calling(t0, t1)
    calling = sampler.between(c0, c1)
    by_shard = {s["shard"]: s["summary"] for s in result["steps"] if s["step"] == "push"}
    out: dict[str, Any] = {
        "push_phase_s": round(t1 - t0, 1),
        "general_requests": int(round(counts["general"])),
        "general_per_s": round(rate, 2),
        "ratio_to_limit": round(rate / limit_per_s, 3),
        "share_429": round(counts["total_429"] / counts["total"], 4) if counts["total"] else 0.0,
        "answered_429": int(round(counts["total_429"])),
        "busiest_10s_per_s": round(sampler.busiest(t0, t1), 2),
        # The shards' tasks start with the DAG parse and the diff, and end with bookkeeping: the
        # part in which calls were made, and its rate.
        "calling_s": round(c1 - c0, 1),
        "calling_per_s": round(calling["general"] / (c1 - c0), 2) if c1 > c0 else None,
        "calling_ratio": round(calling["general"] / (c1 - c0) / limit_per_s, 3) if c1 > c0 else None,
        "shards": [{"shard": t["map_index"], "worker": t["worker"], "start_s": round(t["start"] - t0, 1),
                    "duration_s": round(t["end"] - t["start"], 1),
                    "records": (by_shard.get(t["map_index"]) or {}).get("changed_in_shard"),
                    "api_requests": (by_shard.get(t["map_index"]) or {}).get("push_api_requests")}
                   for t in pushes],
    }
    if all1 - all0 >= 2 * sampler.every_s:
        together = sampler.between(all0, all1)
        out["all_shards_running_s"] = round(all1 - all0, 1)
        out["all_shards_running_per_s"] = round(together["general"] / (all1 - all0), 2)
        out["all_shards_running_ratio"] = round(together["general"] / (all1 - all0) / limit_per_s, 3)
    else:
        out["all_shards_running_s"] = round(max(0.0, all1 - all0), 1)
    out["workers"] = sorted({t["worker"] for t in pushes if t["worker"]})
    out["dag_run_wall_s"] = round(result["run_end"] - result["run_start"], 1)
    out["samples"] = sampler.series(t0 - 5, t1 + 5)
    return out


def part_limit(pg_url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    world = tmp / "limit-world.db"
    t = time.perf_counter()
    store, _ = prepare_store(world, contacts=args.limit_contacts, seed=args.seed)
    store.close()
    print(f"seeded {args.limit_contacts:,} contacts in {time.perf_counter() - t:.0f} s", flush=True)
    limit_per_s = _general_per_s(PROFESSIONAL["rate_limit"])
    variants: dict[str, Any] = {}
    for name, shared in (("shared", True), ("static_split", False)):
        print(f"-- limit run: {name} (rate_limit.shared: {str(shared).lower()}), 4 shards on 2 workers", flush=True)
        result = run_on_cluster(pg_url, tmp / f"limit-{name}", world, contacts=args.limit_contacts, seed=args.seed,
                                shards=4, rate_limit=PROFESSIONAL["rate_limit"],
                                search_rate_per_s=PROFESSIONAL["search_rate_per_s"], shared=shared,
                                run_id=f"bench__celery_{name}", sample_s=args.sample_s, timeout_s=args.timeout_s)
        variants[name] = {"setup_s": result["setup_s"], **push_phase(result, limit_per_s)}
        print(json.dumps({k: v for k, v in variants[name].items() if k != "samples"}), flush=True)
    return {"contacts": args.limit_contacts, "shards": 4, "workers": 2, "slots_per_worker": 2,
            "sandbox_rate_limit": PROFESSIONAL["rate_limit"], "limit_per_s": limit_per_s,
            "connection_extra": {"rate_limit_per_10s": 190, "search_rate_per_s": 5}, **variants}


# --- part 2: a large run end to end ---------------------------------------------------------------
def _task_of(key: str) -> tuple[str, str]:
    """('enrich', 'enrich[3]') of a peak_rss_mib key; steps run inside another task named after it."""
    step, _, rest = key.partition("[")
    task = STEP_TASK.get(step, step)
    return task, task + (f"[{rest}" if rest else "")


def part_large(pg_url: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    world = tmp / "large-world.db"
    t = time.perf_counter()
    store, _ = prepare_store(world, contacts=args.contacts, seed=args.seed)
    store.close()
    seed_s = time.perf_counter() - t
    print(f"seeded {args.contacts:,} contacts in {seed_s:.0f} s", flush=True)
    general_per_s, search_per_s = _general_per_s(args.large_rate_limit), args.large_search_rate
    result = run_on_cluster(pg_url, tmp / "large", world, contacts=args.contacts, seed=args.seed,
                            shards=args.large_shards, rate_limit=args.large_rate_limit,
                            search_rate_per_s=search_per_s, shared=True, run_id="bench__celery_large",
                            sample_s=args.sample_s, timeout_s=args.large_timeout_s)
    # Peak RSS per task instance: the highest figure its steps recorded.
    per_instance: dict[str, float] = {}
    for key, mib in (result["summary"].get("peak_rss_mib") or {}).items():
        _, instance = _task_of(key)
        per_instance[instance] = max(per_instance.get(instance, 0.0), float(mib))
    per_task: dict[str, float] = {}
    for instance, mib in per_instance.items():
        task = instance.partition("[")[0]
        per_task[task] = max(per_task.get(task, 0.0), mib)
    counts = result["sampler"].between(result["run_start"], result["run_end"])
    stats = result["sandbox_stats"]
    calls = {"search": int(round(counts["search"])), "other": int(round(counts["general"]))}
    minimum = calls["search"] / search_per_s + calls["other"] / general_per_s
    wall = result["run_end"] - result["run_start"]
    durations = {}
    for t in result["tis"]:
        durations.setdefault(t["task_id"], []).append(t["end"] - t["start"])
    summary = result["summary"]
    return {
        "contacts": args.contacts, "shards": args.large_shards, "workers": 2, "slots_per_worker": 2,
        "seed_s": round(seed_s, 1), "setup_s": result["setup_s"],
        "completed": all(t["state"] == "success" for t in result["tis"]),
        "pulled": summary.get("pulled"), "scored": summary.get("scored"), "pushed": summary.get("pushed"),
        "wall_s": round(wall, 1), "calls": calls, "answered_429": int(round(counts["total_429"])),
        "limits": {"rate_limit": args.large_rate_limit, "search_rate_per_s": search_per_s,
                   "raised": args.large_rate_limit != PROFESSIONAL["rate_limit"]
                   or search_per_s != PROFESSIONAL["search_rate_per_s"]},
        "api_bound_min_s": round(minimum, 1), "ratio_to_min": round(wall / minimum, 2) if minimum else None,
        "peak_rss_mib_per_task": dict(sorted(per_task.items())),
        "peak_rss_mib_per_instance": dict(sorted(per_instance.items())),
        "peak_rss_mib_max": max(per_task.values()) if per_task else None,
        "rss_target_mib": RSS_TARGET_MIB,
        "tasks_over_target": sorted(k for k, v in per_instance.items() if v > RSS_TARGET_MIB),
        "task_seconds": {k: round(max(v), 1) for k, v in sorted(durations.items())},
        "task_workers": sorted({t["worker"] for t in result["tis"] if t["worker"]}),
        "sandbox_requests": stats.get("total"),
    }


# --- output ---------------------------------------------------------------------------------------
def _print_limit(limit: dict[str, Any]) -> None:
    print(f"\nShared rate limit: {limit['contacts']:,} contacts, 4 push shards on 2 Celery workers (2 slots each), "
          f"sandbox limit {limit['sandbox_rate_limit']} = {limit['limit_per_s']:g}/s")
    rows = [("push phase (first shard start -> last end)", "push_phase_s", "{:.1f} s"),
            ("general-limit requests in it", "general_requests", "{:,}"),
            ("requests / s", "general_per_s", "{:.2f}"),
            ("  ratio to the 19/s limit", "ratio_to_limit", "{:.1%}"),
            ("share answered 429", "share_429", "{:.2%}"),
            ("busiest 10 s, requests / s", "busiest_10s_per_s", "{:.2f}"),
            ("calls being made (first -> last call)", "calling_s", "{:.1f} s"),
            ("  requests / s then", "calling_per_s", "{:.2f}"),
            ("  ratio to the limit then", "calling_ratio", "{:.1%}"),
            ("all 4 shards running", "all_shards_running_s", "{:.1f} s"),
            ("  requests / s then", "all_shards_running_per_s", "{:.2f}"),
            ("  ratio to the limit then", "all_shards_running_ratio", "{:.1%}"),
            ("DAG run wall time", "dag_run_wall_s", "{:.1f} s")]
    print(f"{'':46} {'shared':>14} {'static 1/4 split':>18}")
    for label, key, fmt in rows:
        cells = [fmt.format(limit[v][key]) if limit.get(v, {}).get(key) is not None else "-"
                 for v in ("shared", "static_split")]
        print(f"{label:46} {cells[0]:>14} {cells[1]:>18}")
    for v in ("shared", "static_split"):
        if v in limit:
            shards = ", ".join(f"[{s['shard']}] {s['worker']} +{s['start_s']:.0f}s {s['duration_s']:.0f}s "
                               f"{s['records']} rec" for s in limit[v]["shards"])
            print(f"  {v} push shards: {shards}")


def _print_large(large: dict[str, Any]) -> None:
    raised = " (raised from Professional's 190/10, 5/s to keep the run short)" if large["limits"]["raised"] else ""
    print(f"\nLarge run: {large['contacts']:,} contacts, shards={large['shards']}, 2 workers x 2 slots; limits "
          f"{large['limits']['rate_limit']} and search {large['limits']['search_rate_per_s']:g}/s{raised}")
    print(f"  completed: {large['completed']} (pulled {large['pulled']}, scored {large['scored']}, "
          f"pushed {large['pushed']})")
    print(f"  wall {large['wall_s']:.0f} s vs API-bound minimum {large['api_bound_min_s']:.0f} s "
          f"({large['calls']['search']:,} searches, {large['calls']['other']:,} other calls): "
          f"x{large['ratio_to_min']}")
    print(f"  peak RSS per task (max over its shards, MiB; target <= {RSS_TARGET_MIB:.0f}):")
    for task, mib in large["peak_rss_mib_per_task"].items():
        print(f"    {task:16} {mib:8.0f}   longest {large['task_seconds'].get(task, 0):.0f} s")
    print(f"  max {large['peak_rss_mib_max']:.0f} MiB; over target: {large['tasks_over_target'] or 'none'}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit-contacts", type=int, default=30_000)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--large-shards", type=int, default=8)
    parser.add_argument("--large-rate-limit", default="1900/10",
                        help="sandbox and connection general limit of the large run (Professional: 190/10)")
    parser.add_argument("--large-search-rate", type=float, default=50.0,
                        help="search requests per second of the large run (Professional: 5)")
    parser.add_argument("--skip-limit", action="store_true", help="omit part 1 (the shared limit)")
    parser.add_argument("--skip-large", action="store_true", help="omit part 2 (the large run)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--sample-s", type=float, default=0.5)
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--large-timeout-s", type=float, default=5400)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "celery.json")
    args = parser.parse_args()
    # Stopped by a signal (also when started in the background, where SIGINT is ignored): every
    # cluster process is stopped on the way out.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    out: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                           "args": {k: str(v) for k, v in vars(args).items()}}
    headline: dict[str, Any] = {}
    cluster = PgCluster()
    pg_url = cluster.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp_name:
            tmp = Path(tmp_name)
            if not args.skip_limit:
                try:
                    limit = out["shared_limit"] = part_limit(pg_url, tmp, args)
                    _print_limit(limit)
                    for v in ("shared", "static_split"):
                        headline[f"{v}_per_s"] = limit[v]["general_per_s"]
                        headline[f"{v}_ratio"] = limit[v]["ratio_to_limit"]
                        headline[f"{v}_share_429"] = limit[v]["share_429"]
                except (Exception, pytest.fail.Exception) as exc:  # the harness fails with pytest.fail
                    out["shared_limit"] = {"error": str(exc)[-4000:]}
                    headline["shared_limit_error"] = str(exc).splitlines()[0][:200]
                    print(f"shared-limit part failed: {str(exc)[-4000:]}", flush=True)
            if not args.skip_large:
                try:
                    large = out["large"] = part_large(pg_url, tmp, args)
                    _print_large(large)
                    headline.update(large_contacts=large["contacts"], large_completed=large["completed"],
                                    large_wall_s=large["wall_s"], large_api_bound_min_s=large["api_bound_min_s"],
                                    large_limits=large["limits"]["rate_limit"],
                                    large_peak_rss_mib_max=large["peak_rss_mib_max"],
                                    large_tasks_over_1_5gb=len(large["tasks_over_target"]))
                except (Exception, pytest.fail.Exception) as exc:
                    out["large"] = {"error": str(exc)[-4000:]}
                    headline["large_error"] = str(exc).splitlines()[0][:200]
                    print(f"large part failed: {str(exc)[-4000:]}", flush=True)
    finally:
        cluster.stop()
    out["headline"] = headline
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
