"""The push against HubSpot Professional's write ceiling (190 calls / 10 s), on SQLite and PostgreSQL.

    python bench/bench_push_ceiling.py [--contacts 20000] [--databases sqlite,postgresql]
                                       [--sdk-sample 400] [--out bench/results/push_ceiling.json]

Per warehouse database, a fresh sandbox in a process of its own (`leadflow sandbox serve`, as a
CRM is elsewhere) and a fresh warehouse. The run's steps up to `plan_push` go with the sandbox's
limits off (setup, not measured); then the limits are set to 190 / 10 s and 5 / s (which empties
the rolling windows), its counters are zeroed, and the `push` step runs as the pipeline runs it:
the first push of a world, a write for every open lead, with the reads that check shared fields
right before writing them. Figures, from the sandbox's own counters:
- calls on the burst limit per second of the push step's wall time, against 19/s (ratio), and the
  same for the write calls alone; the share answered 429;
- records confirmed per second.
Same run, same limits, same sandbox: the straightforward SDK loop (`hubspot-api-client`,
`basic_api.update` once per record, on 429 sleep 1 s and retry) on `--sdk-sample` other records:
its records per second, calls per second and 429 share.

PostgreSQL is a throw-away server (tests/pg_server.py; its binaries come from
scripts/ensure_test_tools.sh) unless `LEADFLOW_BENCH_PG_URL` names a database. Figures only.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from sandbox_process import SandboxProcess  # noqa: E402

from leadflow import pipeline  # noqa: E402

GENERAL_PER_S = 19.0
LIMITS = {"rate_limit": "190/10", "search_rate_limit": "5/1"}  # the sandbox's, Professional's
WRITE = "POST /crm/v3/objects/contacts/batch/update"
SETUP_STEPS = ("extract", "enrich", "validate", "validate_gate", "qualify", "accounts", "validate_scores",
               "plan_push")


def counts(sb: SandboxProcess) -> dict[str, Any]:
    """Calls on the burst limit (everything but searches) and their 429s, from the sandbox's stats."""
    snap = sb.admin("GET", "stats")
    crm = {k: v for k, v in snap["byEndpointStatus"].items() if k.split(" ", 1)[-1].startswith("/crm/")}
    general = {k: v for k, v in crm.items() if not k.endswith("/search")}
    total = sum(sum(v.values()) for v in general.values())
    limited = sum(v.get("429", 0) for v in general.values())
    return {"general": total, "general_429": limited, "writes": sum(crm.get(WRITE, {}).values()),
            "per_endpoint": {k: sum(v.values()) for k, v in sorted(crm.items())}}


def _warehouse(kind: str, tmp: Path, stack: list) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp / 'warehouse.db'}"
    url = os.environ.get("LEADFLOW_BENCH_PG_URL")
    if url:
        return url
    from pg_server import PgCluster

    cluster = PgCluster()
    url = cluster.start()
    stack.append(cluster.stop)
    return url


def _sdk_loop(sb: SandboxProcess, ids: list[str]) -> dict[str, Any]:
    """One `basic_api.update` per record (a score), honouring 429 with a 1 s sleep."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import SimplePublicObjectInput
    from hubspot.crm.contacts.exceptions import ApiException

    client = HubSpot(access_token=sb.conn.password, host=sb.base_url)
    api = client.crm.contacts.basic_api
    sb.admin("POST", "rate-limits", LIMITS)
    sb.admin("POST", "reset-stats")
    calls = limited = 0
    started = time.perf_counter()
    for n, rid in enumerate(ids):
        body = SimplePublicObjectInput(properties={"leadflow_score": str(50 + n % 40)})
        while True:
            calls += 1
            try:
                api.update(contact_id=rid, simple_public_object_input=body)
                break
            except ApiException as exc:
                if exc.status != 429:
                    raise
                limited += 1
                time.sleep(1.0)
    wall = time.perf_counter() - started
    return {"records": len(ids), "wall_s": round(wall, 2), "records_per_s": round(len(ids) / wall, 2),
            "calls": calls, "calls_per_s": round(calls / wall, 2), "share_429": round(limited / calls, 4)}


def measure(kind: str, contacts: int, sdk_sample: int) -> dict[str, Any]:
    stack: list = []
    with tempfile.TemporaryDirectory(prefix=f"bench-push-ceiling-{kind}-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["LEADFLOW_VAR_DIR"] = str(tmp / "var")
        sb = SandboxProcess(tmp / "sandbox", contacts, ["--rate-limit", "off", "--search-rate-limit", "off"],
                            timeout=600)
        try:
            url = _warehouse(kind, tmp, stack)
            ctx = pipeline.RunContext(crm="hubspot", run_id=f"bench-push-ceiling-{kind}", warehouse_url=url,
                                      connection=sb.conn)
            setup_started = time.perf_counter()
            steps = {name: getattr(pipeline, name) for name in SETUP_STEPS}
            for name in SETUP_STEPS:
                steps[name](ctx)
            setup_s = time.perf_counter() - setup_started
            sb.admin("POST", "rate-limits", LIMITS)
            sb.admin("POST", "reset-stats")
            started = time.perf_counter()
            summary = pipeline.push(ctx)
            wall = time.perf_counter() - started
            spent = counts(sb)
            pushed = int(summary.get("pushed") or 0)
            untouched = [str(i) for i in range(contacts, 0, -1)][:sdk_sample]
            sdk = _sdk_loop(sb, untouched) if sdk_sample else None
        finally:
            sb.close()
            for close in reversed(stack):
                close()
    rate = spent["general"] / wall
    return {
        "database": kind, "contacts": contacts, "setup_s": round(setup_s, 1),
        "push_wall_s": round(wall, 2), "pushed": pushed, "records_per_s": round(pushed / wall, 1),
        "general_calls": spent["general"], "write_calls": spent["writes"],
        "general_per_s": round(rate, 2), "ceiling_per_s": GENERAL_PER_S, "ceiling_ratio": round(rate / GENERAL_PER_S, 4),
        "write_only_ratio": round(spent["writes"] / wall / GENERAL_PER_S, 4),
        "api_bound_min_s": round(spent["general"] / GENERAL_PER_S, 2),
        "share_429": round(spent["general_429"] / spent["general"], 4) if spent["general"] else 0.0,
        "per_endpoint": spent["per_endpoint"], "sdk_loop": sdk,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--sdk-sample", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "push_ceiling.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("great_expectations", "leadflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    results = {}
    for kind in [d for d in args.databases.split(",") if d]:
        print(f"push ceiling on {kind} ...", flush=True)
        results[kind] = measure(kind, args.contacts, args.sdk_sample)
    headline: dict[str, Any] = {"contacts": args.contacts}
    for kind, r in results.items():
        headline[f"{kind}_ceiling_ratio"] = r["ceiling_ratio"]
        headline[f"{kind}_share_429"] = r["share_429"]
        headline[f"{kind}_records_per_s"] = r["records_per_s"]
        if r["sdk_loop"]:
            headline[f"{kind}_sdk_loop_records_per_s"] = r["sdk_loop"]["records_per_s"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"headline": headline, "runs": results}, indent=2))
    print(f"\n{'':12}{'pushed':>8}{'wall s':>9}{'calls':>7}{'writes':>8}{'calls/s':>9}{'of 19/s':>9}{'429':>7}"
          f"{'records/s':>11}{'SDK loop rec/s':>16}")
    for kind, r in results.items():
        sdk = r["sdk_loop"]["records_per_s"] if r["sdk_loop"] else "-"
        print(f"{kind:12}{r['pushed']:>8}{r['push_wall_s']:>9}{r['general_calls']:>7}{r['write_calls']:>8}"
              f"{r['general_per_s']:>9}{r['ceiling_ratio']:>9.1%}{r['share_429']:>7.1%}{r['records_per_s']:>11}{sdk:>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
