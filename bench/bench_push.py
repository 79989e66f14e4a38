"""Benchmark of the batched, diff-only push against a one-call-per-record SDK loop.

    python bench/bench_push.py [--contacts 100000] [--change-share 0.01] [--sdk-sample 200]
                               [--fault-contacts 20000] [--out bench/results/push.json]

Part 1, write efficiency (sandbox without rate limits, `rate_limit="off"`, so the run is bound by
this machine, not by HubSpot's 100 calls / 10 s; the API-bound minimum is reported too):
- a world of `--contacts`; run 1 (the first push writes every open lead), then run 2 with no CRM
  change (write calls: expected 0);
- `--change-share` of the contacts change in the CRM (job title, page views and pricing-page views,
  what the model scores; last-modified touched so the pull sees them), run 3: write calls
  (sandbox stats of `POST .../contacts/batch/update`) against ceil(changed records / 100).
  Two counts, reported side by side: *contacts changed* in the CRM (the 1%) and *changed records*,
  the records whose leadflow values (score, grade, stage, ...) differ afterwards and are written.
  The second is smaller: sales-owned (and quarantined) contacts are left alone, and a score that
  moves by less than `min_score_delta` while grade and stage stay is not written;
- baseline: the official SDK (`hubspot-api-client`), `basic_api.update` once per record, timed on
  `--sdk-sample` of the changed records and extrapolated to all of them (a loop that wrote every
  changed contact instead would make one call per contact changed).
Part 2 (`--fault-contacts`, 0 to skip): a world under the faults
`429=0.1,5xx=0.05,partial=0.05,timeout=0.02`, two runs; the share of scored records whose CRM
values equal the warehouse's intent, values written more than once, rows left rejected.
Figures only; the integration tests assert the behaviour.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from leadflow.connections import Connection
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.ownership import SHARED_FIELDS
from leadflow.pipeline import RunContext, run_all
from leadflow.push.diff import compute_changes
from leadflow.sandbox.faults import FaultSpec
from leadflow.sandbox.server import running_sandbox
from leadflow.schema import OWNED_FIELDS
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log

BATCH_UPDATE = "POST /crm/v3/objects/contacts/batch/update"
BATCH_READ = "POST /crm/v3/objects/contacts/batch/read"
FAULTS = "429=0.1,5xx=0.05,partial=0.05,timeout=0.02"
HUBSPOT_CALLS_PER_S = 10.0  # the default private-app burst limit, 100 / 10 s


def _connection(sb, **extra) -> Connection:
    # index_lag_ms 0: the runs follow each other within seconds, not a night apart, and the
    # default 60 s lag would make each pull see the previous run's writes again (the sandbox's
    # search has no index lag to cover).
    settings = {"rate_limit_per_10s": 100_000, "search_rate_per_s": 1_000, "index_lag_ms": 0, **extra}
    return Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http",
                      password=sb.token, extra=settings)


def _run(conn: Connection, url: str, run_id: str) -> tuple[dict, float]:
    started = time.perf_counter()
    summary = run_all(RunContext(crm="hubspot", run_id=run_id, warehouse_url=url, connection=conn, force=True))
    return summary, time.perf_counter() - started


@contextlib.contextmanager
def _write_call_timer():
    """Wall time spent inside leadflow's write calls (`HubSpotConnector.push`), to set beside the
    SDK loop's: the push step's own duration also covers the diff and the push log."""
    spent = [0.0]
    original = HubSpotConnector.push

    def timed(self, updates):
        started = time.perf_counter()
        try:
            return original(self, updates)
        finally:
            spent[0] += time.perf_counter() - started

    HubSpotConnector.push = timed
    try:
        yield spent
    finally:
        HubSpotConnector.push = original


def _write_calls(sb) -> int:
    return int(sb.context.stats.snapshot()["byEndpoint"].get(BATCH_UPDATE, 0))


def _read_calls(sb) -> int:
    """Contact batch reads the sandbox answered: in a run whose pull needs none (the search
    carries every property), the ownership rule's pre-write reads (50 records each)."""
    return int(sb.context.stats.snapshot()["byEndpoint"].get(BATCH_READ, 0))


def _all_ids(store) -> list[int]:
    ids, after = [], 0
    while page := store.list_page("contacts", after_id=after, limit=5_000):
        ids.extend(r.id for r in page)
        after = page[-1].id + 1
    return ids


def _change_contacts(store, ids: list[int]) -> None:
    """What a marketing week does to a lead: a new title, more visits, pricing-page views."""
    rows = store.get_rows("contacts", ids)
    now = store.now_ms()
    for row in rows.values():
        row.props["jobtitle"] = "VP of Engineering" if row.props.get("jobtitle") != "VP of Engineering" else "Intern"
        row.props["hs_analytics_num_page_views"] = int(float(row.props.get("hs_analytics_num_page_views") or 0)) + 40
        row.props["pricing_page_views"] = int(float(row.props.get("pricing_page_views") or 0)) + 5
        row.modified_ms = now
    store.save("contacts", list(rows.values()), [], now)


def _sdk_baseline(sb, record_ids: list[str], conn: Connection, url: str) -> dict:
    """One `basic_api.update` per record with the same values leadflow would send."""
    from hubspot import HubSpot
    from hubspot.crm.contacts import SimplePublicObjectInput

    engine = RunContext(crm="hubspot", run_id="bench", warehouse_url=url).engine
    scores = repo.load_scores(engine, "hubspot").set_index("record_id")
    with HubSpotConnector.from_connection(conn) as connector:
        names = connector.mapping.owned_property_names
        fmt = {f: connector.mapping.owned_properties[f].type for f in names}
    from leadflow.crm.values import format_owned_value

    client = HubSpot(access_token=sb.token, host=sb.base_url)
    before = _write_calls_any(sb)
    started = time.perf_counter()
    for rid in record_ids:
        row = scores.loc[rid]
        props = {names[f]: format_owned_value(fmt[f], row[f]) for f in ("score", "fit_score", "engagement_score",
                                                                         "grade", "bant_count")}
        client.crm.contacts.basic_api.update(rid, simple_public_object_input=SimplePublicObjectInput(properties=props))
    elapsed = time.perf_counter() - started
    calls = _write_calls_any(sb) - before
    return {"records": len(record_ids), "calls": calls, "wall_s": round(elapsed, 3),
            "calls_per_record": round(calls / max(1, len(record_ids)), 3),
            "s_per_record": elapsed / max(1, len(record_ids))}


def _write_calls_any(sb) -> int:
    by = sb.context.stats.snapshot()["byEndpoint"]
    return sum(v for k, v in by.items() if k.startswith("PATCH /crm/v3/objects/contacts") or k == BATCH_UPDATE)


def part_efficiency(args, tmp: Path) -> dict:
    url = f"sqlite:///{tmp / 'wh-efficiency.db'}"
    out: dict = {"contacts": args.contacts, "change_share": args.change_share}
    t0 = time.perf_counter()
    with running_sandbox(contacts=args.contacts, seed=51, db_path=tmp / "crm-efficiency.db",
                         rate_limit="off", search_rate_limit="off") as sb:
        out["seed_s"] = round(time.perf_counter() - t0, 1)
        conn = _connection(sb)
        first, t1 = _run(conn, url, "bench-1")
        calls1, reads1 = _write_calls(sb), _read_calls(sb)
        out["run1"] = {"pushed": first["pushed"], "write_calls": calls1, "wall_s": round(t1, 1),
                       "records_per_call": round(first["pushed"] / max(1, calls1), 1),
                       "prewrite_checks": first.get("prewrite_checks", 0), "prewrite_read_calls": reads1,
                       "calls_per_pushed_record_with_reads": round((calls1 + reads1) / max(1, first["pushed"]), 4)}
        print(f"run 1: {first['pushed']} records in {calls1} write calls, {t1:.0f} s", flush=True)

        sb.context.stats.reset()
        second, t2 = _run(conn, url, "bench-2")
        out["run2_no_change"] = {"write_calls": _write_calls(sb), "changed": second.get("changed", 0),
                                 "wall_s": round(t2, 1)}
        print(f"run 2 (no change): {out['run2_no_change']['write_calls']} write calls, {t2:.0f} s", flush=True)

        ids = _all_ids(sb.store)
        picked = random.Random(7).sample(ids, max(1, int(len(ids) * args.change_share)))
        _change_contacts(sb.store, picked)
        sb.context.stats.reset()
        with _write_call_timer() as write_s:
            third, t3 = _run(conn, url, "bench-3")
        calls3 = _write_calls(sb)
        changed = int(third.get("changed", 0))
        bound = math.ceil(changed / 100) * 1.05
        reads3 = _read_calls(sb)
        by_endpoint3 = dict(sb.context.stats.snapshot()["byEndpoint"])
        nightly_calls = sum(int(v) for v in by_endpoint3.values())
        minimum = max(1, math.ceil(changed / 100))
        engine = RunContext(crm="hubspot", run_id="bench", warehouse_url=url).engine
        with engine.connect() as c:
            logged = {r[0] for r in c.execute(select(push_log.c.record_id).where(
                push_log.c.run_id == "bench-3").distinct())}
            shared_writers = {r[0] for r in c.execute(select(push_log.c.record_id).where(
                push_log.c.run_id == "bench-3", push_log.c.field.in_(SHARED_FIELDS)).distinct())}
        touched = {str(i) for i in picked}
        out["run3_changed"] = {
            "contacts_touched": len(picked), "changed_records": changed,
            "changed_records_among_touched": len(logged & touched),
            "changed_records_not_touched": len(logged - touched), "write_calls": calls3,
            "bound_ceil_changed_100_x1_05": round(bound, 2), "within_bound": calls3 <= bound,
            "calls_per_changed_record": round(calls3 / max(1, changed), 4),
            # The ownership rule's read right before each batch writing a stage or status (50
            # records per read with history): the same run's figure with those reads, beside the
            # write-only one above, and the nightly's API calls over its write-bound minimum.
            "prewrite_read_calls": reads3,
            "changed_records_writing_stage_or_status": len(shared_writers),
            "calls_per_changed_record_with_reads": round((calls3 + reads3) / max(1, changed), 4),
            "api_calls_over_write_minimum": round((calls3 + reads3) / minimum, 3),
            "within_1_3x_write_minimum": (calls3 + reads3) <= 1.3 * minimum,
            # The whole nightly (pull, archived list, companies, checks, writes) beside the same
            # run's calls without the pre-write reads.
            "nightly_api_calls": nightly_calls,
            "nightly_api_calls_without_reads": nightly_calls - reads3,
            "nightly_calls_over_without_reads": round(nightly_calls / max(1, nightly_calls - reads3), 3),
            "calls_by_endpoint": by_endpoint3,
            "overrides": third.get("overrides", 0),
            "calls_per_touched_contact": round(calls3 / max(1, len(picked)), 4), "wall_s": round(t3, 1),
            "push_s": third.get("durations_s", {}).get("push"), "write_calls_s": round(write_s[0], 3),
            "api_bound_min_s": round(calls3 / HUBSPOT_CALLS_PER_S, 1),
            "api_bound_s_with_reads": round((calls3 + reads3) / HUBSPOT_CALLS_PER_S, 1),
        }
        print(f"run 3 ({len(picked)} contacts changed in the CRM, {changed} records with values to write): "
              f"{calls3} write calls (bound {bound:.2f}) + {reads3} pre-write reads for the {len(shared_writers)} "
              f"writing a stage or status, {t3:.0f} s", flush=True)

        with engine.connect() as c:
            written = [r[0] for r in c.execute(select(push_log.c.record_id).where(
                push_log.c.run_id == "bench-3", push_log.c.status == "confirmed").distinct())]
        sample = written[: args.sdk_sample]
        sdk = _sdk_baseline(sb, sample, conn, url)
        per_call_s = sdk["s_per_record"]
        out["sdk_baseline"] = {
            **{k: v for k, v in sdk.items() if k != "s_per_record"},
            "extrapolated_calls": changed, "extrapolated_wall_s": round(per_call_s * changed, 1),
            "api_bound_min_s": round(changed / HUBSPOT_CALLS_PER_S, 1),
        }
        print(f"SDK loop: {sdk['calls']} calls for {sdk['records']} records in {sdk['wall_s']} s "
              f"-> {changed} records ~ {changed} calls, {per_call_s * changed:.0f} s", flush=True)
    return out


def part_faults(args, tmp: Path) -> dict:
    url = f"sqlite:///{tmp / 'wh-faults.db'}"
    out: dict = {"contacts": args.fault_contacts, "faults": FAULTS}
    with running_sandbox(contacts=args.fault_contacts, seed=52, db_path=tmp / "crm-faults.db",
                         rate_limit="off", search_rate_limit="off", timeout_seconds=3.0) as sb:
        # As in tests/integration/test_push_faults.py: the sandbox's 429s are random faults, not a
        # full window, so the client's least wait after one is cut from HubSpot's 2 s / 1 s.
        conn = _connection(sb, read_timeout_s=2.0, backoff_base_s=0.1, backoff_max_s=1.0,
                           rate_limit_wait_s=0.05, search_rate_wait_s=0.05)
        with HubSpotConnector.from_connection(conn) as connector:
            connector.ensure_schema()  # see the report: a timed-out property create fails the run
            mapping = connector.mapping
        sb.context.faults.configure(FaultSpec.parse(FAULTS), seed=5)
        runs = []
        for n in (1, 2):
            summary, wall = _run(conn, url, f"faults-{n}")
            runs.append({"pushed": summary["pushed"], "rejected": summary["rejected"],
                         "unknown": summary.get("unknown", 0), "write_calls": summary["write_calls"],
                         "wall_s": round(wall, 1)})
            print(f"faults run {n}: {runs[-1]}", flush=True)
        out["runs"] = runs
        out["sandbox_statuses"] = sb.context.stats.snapshot()["byStatus"]
        sb.context.faults.configure(FaultSpec())
        ids = [str(i) for i in _all_ids(sb.store)]
        with HubSpotConnector.from_connection(conn) as connector:
            rows = connector.read(ids)
        entries = [e for e in sb.store.writes(object_type="contacts", limit=10_000_000)
                   if e.property in mapping.writable_properties]
    import pandas as pd

    engine = RunContext(crm="hubspot", run_id="bench", warehouse_url=url).engine
    scores = repo.load_scores(engine, "hubspot")
    current = pd.DataFrame(rows).rename(columns={f: f"crm_{f}" for f in OWNED_FIELDS})
    pending = compute_changes(scores, current)
    left = int(pending["record_id"].nunique()) if len(pending) else 0
    counts = Counter((e.object_id, e.property, e.new) for e in entries)
    with engine.connect() as c:
        statuses = Counter(r[0] for r in c.execute(select(push_log.c.status)))
    out.update({
        "scored": len(scores), "converged_share": round(1 - left / max(1, len(scores)), 6),
        "records_still_differing": left,
        "values_written_twice": sum(1 for n in counts.values() if n > 1),
        "push_log_statuses": dict(statuses),
    })
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--change-share", type=float, default=0.01)
    parser.add_argument("--sdk-sample", type=int, default=200)
    parser.add_argument("--fault-contacts", type=int, default=20_000, help="0 skips the faults part")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "push.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("great_expectations", "leadflow.crm.http", "leadflow.push.writer"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        os.environ.setdefault("LEADFLOW_VAR_DIR", str(Path(tmp) / "var"))
        efficiency = part_efficiency(args, Path(tmp))
        faults = part_faults(args, Path(tmp)) if args.fault_contacts else None
    run3, sdk = efficiency["run3_changed"], efficiency["sdk_baseline"]
    headline = {
        "contacts": args.contacts,
        "no_change_run_write_calls": efficiency["run2_no_change"]["write_calls"],
        "contacts_touched": run3["contacts_touched"],
        "changed_records": run3["changed_records"],
        "write_calls": run3["write_calls"],
        "bound": run3["bound_ceil_changed_100_x1_05"],
        "within_bound": run3["within_bound"],
        "calls_per_changed_record": run3["calls_per_changed_record"],
        "prewrite_read_calls": run3["prewrite_read_calls"],
        "calls_per_changed_record_with_reads": run3["calls_per_changed_record_with_reads"],
        "push_calls_over_write_minimum": run3["api_calls_over_write_minimum"],
        "nightly_api_calls": run3["nightly_api_calls"],
        "nightly_calls_over_without_reads": run3["nightly_calls_over_without_reads"],
        "calls_per_touched_contact": run3["calls_per_touched_contact"],
        "sdk_calls_per_record": sdk["calls_per_record"],
        "run_wall_s": [efficiency["run1"]["wall_s"], efficiency["run2_no_change"]["wall_s"], run3["wall_s"]],
        "push_s": run3["push_s"],
        "write_calls_s": run3["write_calls_s"],
        "sdk_extrapolated_s": sdk["extrapolated_wall_s"],
    }
    if faults:
        headline.update({"faults_contacts": faults["contacts"], "faults_converged_share": faults["converged_share"],
                         "faults_values_written_twice": faults["values_written_twice"],
                         "faults_rejected_left": faults["push_log_statuses"].get("rejected", 0)})
    result = {"headline": headline, "efficiency": efficiency, "faults": faults,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
              "notes": "sandbox rate limits off (machine-bound); api_bound_min_s = calls / 10 per s"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print()
    print(f"run 3: {run3['contacts_touched']} contacts changed in the CRM ({args.change_share:.0%} of {args.contacts}); "
          f"{run3['changed_records']} records with values to write ({run3['changed_records_among_touched']} of them "
          f"among the changed contacts, {run3['changed_records_not_touched']} not)")
    print(f"{'':34}{'leadflow':>14}{'SDK loop':>14}")
    print(f"{'write calls for changed records':34}{run3['write_calls']:>14}{run3['changed_records']:>14}")
    print(f"{'calls per changed record':34}{run3['calls_per_changed_record']:>14}{sdk['calls_per_record']:>14}")
    print(f"{'  with the pre-write reads':34}{run3['calls_per_changed_record_with_reads']:>14}{'':>14}")
    sdk_per_contact = round(run3["changed_records"] / max(1, run3["contacts_touched"]), 4)
    print(f"{'calls per contact changed in CRM':34}{run3['calls_per_touched_contact']:>14}{sdk_per_contact:>14}")
    print(f"{'wall time of the write calls (s)':34}{run3['write_calls_s']:>14}{sdk['extrapolated_wall_s']:>14}")
    print(f"{'push step: diff, log, writes (s)':34}{str(run3['push_s']):>14}{'':>14}")
    print(f"{'API-bound minimum at 10/s (s)':34}{run3['api_bound_min_s']:>14}{sdk['api_bound_min_s']:>14}")
    print(f"no-change run write calls: {headline['no_change_run_write_calls']}; "
          f"bound ceil(changed/100)*1.05 = {run3['bound_ceil_changed_100_x1_05']} -> within: {run3['within_bound']}")
    print(f"pre-write reads: {run3['prewrite_read_calls']} for {run3['changed_records_writing_stage_or_status']} "
          f"records writing a stage or status; push calls {run3['api_calls_over_write_minimum']}x the write minimum; "
          f"nightly {run3['nightly_api_calls']} calls = {run3['nightly_calls_over_without_reads']}x the same run "
          f"without the reads")
    if faults:
        print(f"faults ({faults['contacts']} contacts): converged {faults['converged_share']:.2%}, "
              f"values written twice {faults['values_written_twice']}, statuses {faults['push_log_statuses']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
