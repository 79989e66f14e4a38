"""End-to-end benchmark: a full first run and two 1%-changed nightly runs against a sandbox that
enforces HubSpot Professional's limits (190 requests / 10 s, search 5 / s).

    python bench/bench_e2e.py [--contacts 100000] [--change-share 0.01] [--out bench/results/e2e.json]

For each run: wall time, the API calls made (the sandbox's own stats, read as each step ends),
and the minimum time the rate limits allow for them. The steps run one after the other, and within
a step the two limits can be spent at once (the list pull's companies are searched for while it
lists), so a step's minimum is its busiest limit's: max(searches / 5, other calls / 19), and the
run's minimum is the sum over its steps. Printed per step too: where the wall time goes beyond it.
Targets: wall <= 1.1 x minimum (issue 15); the older, looser one, 1.3 x minimum + 60 s. Beside
them, the steps that call the CRM against their own minimum, and the compute (the steps that do
not): how close leadflow keeps to the limits, and what it adds that the API does not ask for.

The two nights differ. The night after the first run re-pulls every contact: leadflow's own writes
touched each one it scored, and the pull cannot tell its writes from anyone else's. A later night
(`steady`) pulls only what changed since, yet scores every open lead as of its day, as every night
must (engagement points decay): it shows what a run costs on most nights.

The sandbox runs in a process of its own (`leadflow sandbox serve`), as a CRM would be elsewhere:
served from this process it would take its share of this interpreter's lock from the pipeline it
measures. Between the two runs a share of the contacts changes through the CRM's API, as another
integration would change them.
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

from sandbox_process import SandboxProcess

from leadflow.crm.hubspot_settings import HubSpotSettings
from leadflow.pipeline import RunContext, run_all
from leadflow.sandbox.store import SandboxStore

SEARCH_PER_S = 5.0
GENERAL_PER_S = 19.0
SEARCH = "POST /crm/v3/objects/contacts/search"
# A night's pull starts at the last one's start less the index lag, so what a run writes in its
# last `index_lag_ms` is pulled again by the next. Nights are hours apart; back to back, the next
# run would re-pull the end of the last run's push. So each run after the first waits that long.
NIGHT_GAP_S = HubSpotSettings().index_lag_ms / 1000 + 5


def _calls(sb: SandboxProcess) -> dict:
    by = sb.admin("GET", "stats")["byEndpoint"]
    search = sum(v for k, v in by.items() if k.endswith("/search"))
    other = sum(v for k, v in by.items() if not k.endswith("/search") and "/_sandbox" not in k
                and "/v2/companies" not in k)
    return {"search": int(search), "other": int(other)}


def _change_contacts(sb: SandboxProcess, share: float, seed: int) -> int:
    """What a marketing week does to `share` of the leads, written through the CRM's API: a new
    title, more visits, pricing-page views. Returns how many contacts changed."""
    store = SandboxStore(sb.db_path)
    try:
        ids, after = [], 0
        while page := store.list_page("contacts", after_id=after, limit=5_000):
            ids.extend(r.id for r in page)
            after = page[-1].id + 1
        picked = random.Random(seed).sample(ids, max(1, int(len(ids) * share)))
        rows = store.get_rows("contacts", picked)
    finally:
        store.close()
    inputs = [{"id": str(row.id), "properties": {
        "jobtitle": "Intern" if row.props.get("jobtitle") == "VP of Engineering" else "VP of Engineering",
        "hs_analytics_num_page_views": str(int(float(row.props.get("hs_analytics_num_page_views") or 0)) + 40),
        "pricing_page_views": str(int(float(row.props.get("pricing_page_views") or 0)) + 5)}}
        for row in rows.values()]
    for start in range(0, len(inputs), 100):
        while True:
            response = sb.http.post(f"{sb.base_url}/crm/v3/objects/contacts/batch/update",
                                    json={"inputs": inputs[start:start + 100]}, timeout=60)
            if response.status_code != 429:
                response.raise_for_status()
                break
            time.sleep(1.0)
    return len(inputs)


def _minimum(calls: dict) -> float:
    return max(calls["search"] / SEARCH_PER_S, calls["other"] / GENERAL_PER_S)


def _measure(sb: SandboxProcess, url: str, run_id: str, quiet_s: float = 10.0) -> dict:
    time.sleep(quiet_s)  # an empty rolling window, as a nightly run finds it
    sb.admin("POST", "reset-stats")
    steps: dict[str, dict] = {}
    mark = {"t": time.perf_counter(), "calls": {"search": 0, "other": 0}}

    def on_step(name: str, _summary: dict) -> None:
        now, calls = time.perf_counter(), _calls(sb)
        spent = {k: calls[k] - mark["calls"][k] for k in calls}
        steps[name] = {"wall_s": round(now - mark["t"], 2), "calls": spent, "min_s": round(_minimum(spent), 2)}
        mark.update(t=now, calls=calls)

    started = time.perf_counter()
    summary = run_all(RunContext(crm="hubspot", run_id=run_id, warehouse_url=url, connection=sb.conn),
                      on_step=on_step)
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


def _split(run: dict) -> dict:
    """The run's steps that called the CRM (their wall time against their minimum) and the
    compute: the steps that did not."""
    crm = [s for s in run["steps"].values() if s["calls"]["search"] or s["calls"]["other"]]
    crm_wall = sum(s["wall_s"] for s in crm)
    crm_min = sum(s["min_s"] for s in crm)
    return {"crm_wall_s": round(crm_wall, 1), "crm_ratio": round(crm_wall / crm_min, 3) if crm_min else None,
            "compute_s": round(sum(s["wall_s"] for s in run["steps"].values()) - crm_wall, 1)}


def _print_table(runs: tuple[tuple[str, dict], ...]) -> None:
    print(f"\n{'':30}{'wall s':>8}{'calls (search/other)':>22}{'min s':>8}{'ratio':>7}"
          f"{'CRM steps s':>13}{'ratio':>7}{'compute s':>11}")
    for name, r in runs:
        calls = f"{r['calls']['search']}/{r['calls']['other']}"
        split = _split(r)
        print(f"{name:30}{r['wall_s']:>8}{calls:>22}{r['api_bound_min_s']:>8}{r['ratio_to_min']:>7}"
              f"{split['crm_wall_s']:>13}{split['crm_ratio']:>7}{split['compute_s']:>11}")
    for name, r in runs:
        print(f"{name}, per step (wall s / API-bound min s / calls search+other):")
        print("  " + "; ".join(f"{step} {s['wall_s']}/{s['min_s']}/{s['calls']['search']}+{s['calls']['other']}"
                               for step, s in r["steps"].items()))


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
        started = time.perf_counter()
        sb = SandboxProcess(Path(tmp) / "sandbox", args.contacts, ["--seed", str(args.seed), "--rate-limit", "190/10",
                                                                 "--search-rate-limit", "5/1"], timeout=900)
        print(f"sandbox with {args.contacts:,} contacts serving in its own process after "
              f"{time.perf_counter() - started:.0f} s", flush=True)
        try:
            first = _measure(sb, url, "bench-first")
            changed = _change_contacts(sb, args.change_share, seed=7)
            nightly = _measure(sb, url, "bench-nightly", quiet_s=NIGHT_GAP_S)
            _change_contacts(sb, args.change_share, seed=8)
            steady = _measure(sb, url, "bench-steady", quiet_s=NIGHT_GAP_S)
        finally:
            sb.close()
    headline = {
        "contacts": args.contacts,
        "first_run_s": first["wall_s"], "first_min_s": first["api_bound_min_s"],
        "first_ratio": first["ratio_to_min"], "first_within_1_1": first["within_1_1"],
        "nightly_run_s": nightly["wall_s"], "nightly_min_s": nightly["api_bound_min_s"],
        "nightly_ratio": nightly["ratio_to_min"], "nightly_within_1_1": nightly["within_1_1"],
        "steady_night_s": steady["wall_s"], "steady_min_s": steady["api_bound_min_s"],
        "steady_ratio": steady["ratio_to_min"], "steady_within_1_1": steady["within_1_1"],
        **{f"{name}_{key}": value for name, run in (("first", first), ("nightly", nightly), ("steady", steady))
           for key, value in _split(run).items()},
    }
    result = {"headline": headline, "first": first, "nightly": nightly, "steady": steady, "contacts_changed": changed,
              "sandbox": "own process (leadflow sandbox serve), Professional limits 190/10 s, search 5/1 s"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    _print_table((("first run", first), (f"night after ({changed} changed)", nightly),
                  (f"a later night ({changed} changed)", steady)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
