"""End-to-end benchmark: a full first run and a 1%-changed nightly run against a sandbox that
enforces HubSpot Professional's limits (190 requests / 10 s, search 5 / s).

    python bench/bench_e2e.py [--contacts 100000] [--change-share 0.01] [--out bench/results/e2e.json]

For each run: wall time, the API calls made (the sandbox's own stats, read as each step ends),
and the minimum time the rate limits allow for them. The steps run one after the other, and within
a step the two limits can be spent at once (the list pull's companies are searched for while it
lists), so a step's minimum is its busiest limit's: max(searches / 5, other calls / 19), and the
run's minimum is the sum over its steps. Printed per step too: where the wall time goes beyond it.
Targets: wall <= 1.1 x minimum (issue 15); the older, looser one, 1.3 x minimum + 60 s.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_push import _all_ids, _change_contacts  # noqa: E402  (same sandbox helpers)

from leadflow.connections import Connection  # noqa: E402
from leadflow.pipeline import RunContext, run_all  # noqa: E402
from leadflow.sandbox.server import running_sandbox  # noqa: E402

SEARCH_PER_S = 5.0
GENERAL_PER_S = 19.0
SEARCH = "POST /crm/v3/objects/contacts/search"


def _calls(sb) -> dict:
    by = sb.context.stats.snapshot()["byEndpoint"]
    search = sum(v for k, v in by.items() if k.endswith("/search"))
    other = sum(v for k, v in by.items() if not k.endswith("/search") and "/_sandbox" not in k
                and "/v2/companies" not in k)
    return {"search": int(search), "other": int(other)}


def _minimum(calls: dict) -> float:
    return max(calls["search"] / SEARCH_PER_S, calls["other"] / GENERAL_PER_S)


def _measure(sb, conn: Connection, url: str, run_id: str) -> dict:
    sb.context.stats.reset()
    steps: dict[str, dict] = {}
    mark = {"t": time.perf_counter(), "calls": {"search": 0, "other": 0}}

    def on_step(name: str, _summary: dict) -> None:
        now, calls = time.perf_counter(), _calls(sb)
        spent = {k: calls[k] - mark["calls"][k] for k in calls}
        steps[name] = {"wall_s": round(now - mark["t"], 2), "calls": spent, "min_s": round(_minimum(spent), 2)}
        mark.update(t=now, calls=calls)

    started = time.perf_counter()
    summary = run_all(RunContext(crm="hubspot", run_id=run_id, warehouse_url=url, connection=conn), on_step=on_step)
    wall = time.perf_counter() - started
    calls = _calls(sb)
    minimum = sum(s["min_s"] for s in steps.values())
    sequential = calls["search"] / SEARCH_PER_S + calls["other"] / GENERAL_PER_S
    return {
        "wall_s": round(wall, 1), "calls": calls, "api_bound_min_s": round(minimum, 1),
        "min_if_limits_never_overlap_s": round(sequential, 1),
        "ratio_to_min": round(wall / minimum, 3) if minimum else None,
        "within_1_1": wall <= 1.1 * minimum,
        "target_s": round(1.3 * minimum + 60, 1), "within_target": wall <= 1.3 * minimum + 60,
        "pulled": summary["pulled"], "scored": summary["scored"], "changed": summary["changed"],
        "pushed": summary["pushed"], "steps": steps, "durations_s": summary.get("durations_s", {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--change-share", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "e2e.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("great_expectations", "leadflow"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        os.environ.setdefault("LEADFLOW_VAR_DIR", str(Path(tmp) / "var"))
        url = f"sqlite:///{Path(tmp) / 'warehouse.db'}"
        with running_sandbox(contacts=args.contacts, seed=args.seed, db_path=Path(tmp) / "crm.db",
                             rate_limit="190/10", search_rate_limit="5/1") as sb:
            extra = {"rate_limit_per_10s": 190, "search_rate_per_s": 5}
            conn = Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http",
                              password=sb.token, extra=extra)
            first = _measure(sb, conn, url, "bench-first")
            ids = _all_ids(sb.store)
            picked = random.Random(7).sample(ids, max(1, int(len(ids) * args.change_share)))
            _change_contacts(sb.store, picked)
            nightly = _measure(sb, conn, url, "bench-nightly")
    headline = {
        "contacts": args.contacts,
        "first_run_s": first["wall_s"], "first_min_s": first["api_bound_min_s"],
        "first_ratio": first["ratio_to_min"], "first_within_1_1": first["within_1_1"],
        "nightly_run_s": nightly["wall_s"], "nightly_min_s": nightly["api_bound_min_s"],
        "nightly_ratio": nightly["ratio_to_min"], "nightly_within_1_1": nightly["within_1_1"],
    }
    result = {"headline": headline, "first": first, "nightly": nightly, "contacts_changed": len(picked)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\n{'':22}{'wall s':>9}{'calls (search/other)':>24}{'API-bound min s':>18}{'ratio':>8}")
    for name, r in (("first run", first), (f"nightly ({len(picked)} changed)", nightly)):
        calls = f"{r['calls']['search']}/{r['calls']['other']}"
        print(f"{name:22}{r['wall_s']:>9}{calls:>24}{r['api_bound_min_s']:>18}{r['ratio_to_min']:>8}")
    for name, r in (("first run", first), ("nightly", nightly)):
        print(f"{name}, per step (wall s / API-bound min s / calls search+other):")
        print("  " + "; ".join(f"{step} {s['wall_s']}/{s['min_s']}/{s['calls']['search']}+{s['calls']['other']}"
                               for step, s in r["steps"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
