"""Benchmark of the HubSpot pull against the sandbox at its default rate limits.

    python bench/bench_pull.py [--contacts 20000] [--seed 1] [--repeats 1]
                               [--sdk-paths search,list] [--search-latency | --no-search-latency]
                               [--latency-seconds 0.15]
                               [--latency-contacts 100000] [--out bench/results/pull.json]

What is measured, in one process, against one sandbox (general limit 100 per rolling 10 s,
search limit 5 per rolling 1 s, as HubSpot's Free/Starter portals):

1. leadflow's full pull as extract runs it: `HubSpotConnector.from_connection(...).pull(None)`
   through `leadflow.prefetch.prefetched`, every page consumed. By default it pages from both
   ends at once: the list endpoint from the lowest id up (100 contacts a call, general limit: 10
   calls/s = 1,000 contacts/s here) and a search from the highest id down (200 a call at 5/s =
   1,000 contacts/s), a records ceiling of 2,000/s together. The pulls with `full_pull: list` and
   `full_pull: search` alone are measured too. Each HTTP call the connector makes is timestamped by a recording
   `requests.Session` handed to it. Figures, over the *phase* of the calls on the pull's own
   limit (from sending the first to receiving the answer of the last):
   - phase_rps = those calls / phase seconds; ceiling_ratio = phase_rps / the limit's rate;
   - pacing_rps = (calls - 1) / (last sent - first sent): the spacing alone;
   - max_in_window = most of those calls any rolling window of the limit's length could count;
   - records_per_s against the records ceiling (rate x records per call), the total wall time,
     the other requests (properties reads, companies batch reads), distinct record ids (must
     equal --contacts);
   - the sandbox's own counts per endpoint and status (`GET /_sandbox/stats`), from which
     share_429 = 429 answers / all answers.
2. the official SDK (`hubspot-api-client`) used the straightforward way, same sandbox, same run:
   no client-side limiting; on `ApiException` 429 sleep 1 s and retry. Two straightforward paths:
   - "search": `crm.contacts.search_api.do_search`, sorted by lastmodifieddate, 200 per page,
     paging with `after`; HubSpot refuses to page past 10,000 results (400), where such a client
     stops: records obtained is reported (data loss);
   - "list": `crm.contacts.basic_api.get_page(limit=100, after=...)` to the end (general limit).
     It starts on an empty rolling window, so its first 100 calls go out at once and the rest
     ride the 429s; leadflow paces from the first call (a token bucket of one token), so on a
     pull this short the SDK's wall time is lower while its 429 share is not zero.
   Rolling windows are emptied and sandbox stats reset before every measurement.
3. The leadflow pulls again against a sandbox that answers every call `--latency-seconds` late
   (default 0.15 s, HubSpot answers in about 100-300 ms): records per second against the same
   ceilings. One cursor waits for each answer before asking for the next page.
4. (optional, `--search-latency`) the sandbox's search latency on `--latency-contacts` contacts
   (lastmodifieddate range + sort + limit 200, after=4000): median ms of the store call and of
   the HTTP round trip, limits off. Also reports how long seeding that world took.

Figures only (medians when --repeats > 1); nothing here asserts the targets.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import requests

from leadflow.connections import Connection
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.prefetch import prefetched
from leadflow.sandbox.server import running_sandbox

SEARCH_CEILING = 5.0  # the sandbox's default search limit, requests per second
GENERAL_CEILING = 10.0  # its general limit, 100 per rolling 10 s
SEARCH_PATH = "/crm/v3/objects/contacts/search"
LIST_PATH = "/crm/v3/objects/contacts"
# Per full-pull mode: the calls on the pull's own limit, that limit's rate and window, records a call.
MODES = {
    # From both ends: the list's calls are the phase's; the records' ceiling is both limits' together.
    "both": {"path": LIST_PATH, "method": "GET", "ceiling": GENERAL_CEILING, "window_s": 10.0, "per_call": 100,
             "records_ceiling": GENERAL_CEILING * 100 + SEARCH_CEILING * 200},
    "list": {"path": LIST_PATH, "method": "GET", "ceiling": GENERAL_CEILING, "window_s": 10.0, "per_call": 100},
    "search": {"path": SEARCH_PATH, "method": "POST", "ceiling": SEARCH_CEILING, "window_s": 1.0, "per_call": 200},
}
DEFAULT_RATE_LIMIT = "100/10"
DEFAULT_SEARCH_RATE_LIMIT = "5/1"


# --- helpers -----------------------------------------------------------------------------------
class RecordingSession(requests.Session):
    """A `requests.Session` noting (sent, answered, method, path, status) of every call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[float, float, str, str, int | None]] = []
        self._lock = threading.Lock()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        sent = time.perf_counter()
        status: int | None = None
        try:
            response = super().request(method, url, *args, **kwargs)
            status = response.status_code
            return response
        finally:
            path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
            with self._lock:
                self.calls.append((sent, time.perf_counter(), method.upper(), path, status))


def admin(sb: Any, method: str, path: str, body: Any = None) -> Any:
    r = requests.request(method, f"{sb.base_url}/_sandbox/{path}", json=body, timeout=10,
                         headers={"Authorization": f"Bearer {sb.token}"})
    r.raise_for_status()
    return r.json() if r.content else None


def fresh_windows(sb: Any) -> None:
    """Empty every rolling window (re-set the same limits) and zero the sandbox's stats."""
    admin(sb, "POST", "rate-limits", {"rate_limit": DEFAULT_RATE_LIMIT, "search_rate_limit": DEFAULT_SEARCH_RATE_LIMIT})
    admin(sb, "POST", "reset-stats")


def sandbox_counts(sb: Any) -> dict[str, Any]:
    """Per endpoint: requests, 429s; totals and the 429 share."""
    snap = admin(sb, "GET", "stats")
    per_endpoint = {}
    for endpoint, by_status in sorted(snap["byEndpointStatus"].items()):
        total = sum(by_status.values())
        per_endpoint[endpoint] = {"requests": total, "429": by_status.get("429", 0),
                                  "statuses": dict(sorted(by_status.items()))}
    total = snap["total"]
    limited = int(snap["byStatus"].get("429", 0))
    return {"requests": total, "429": limited, "share_429": round(limited / total, 4) if total else 0.0,
            "per_endpoint": per_endpoint}


def max_in_window(times: list[float], window_s: float) -> int:
    """Most events within any half-open window of `window_s` seconds."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def search_gaps(calls: list[tuple[float, float, str, str, int | None]],
                pace_s: float = 1 / (SEARCH_CEILING * 0.96)) -> dict[str, Any]:
    """Where the time between two consecutive searches goes (sent -> next sent).

    Each gap is the search's own round trip, the companies batch reads made before the next
    search (their round trips), and the rest: client work plus rate-limiter waits. `pace_s` is
    the connector's search spacing (5/s less its default 4 % headroom); the `excess` is the time
    spent beyond it, by how many batch reads the page needed."""
    search_idx = [i for i, c in enumerate(calls) if c[3] == SEARCH_PATH]
    rows = []
    for a, b in zip(search_idx, search_idx[1:]):
        between = calls[a + 1:b]
        reads = [c for c in between if c[3].endswith("/batch/read")]
        gap = calls[b][0] - calls[a][0]
        rt = calls[a][1] - calls[a][0]
        reads_rt = sum(c[1] - c[0] for c in reads)
        rows.append({"gap": gap, "search_rt": rt, "reads": len(reads), "reads_rt": reads_rt,
                     "rest": gap - rt - reads_rt})
    if not rows:
        return {}
    by_reads: dict[int, dict[str, Any]] = {}
    for k in sorted({r["reads"] for r in rows}):
        sel = [r for r in rows if r["reads"] == k]
        by_reads[k] = {"pages": len(sel), "median_gap_ms": round(statistics.median(r["gap"] for r in sel) * 1000, 1),
                       "excess_s": round(sum(max(0.0, r["gap"] - pace_s) for r in sel), 2),
                       "median_search_rt_ms": round(statistics.median(r["search_rt"] for r in sel) * 1000, 1),
                       "median_reads_rt_ms": round(statistics.median(r["reads_rt"] for r in sel) * 1000, 1),
                       "median_rest_ms": round(statistics.median(r["rest"] for r in sel) * 1000, 1)}
    return {"pace_ms": round(pace_s * 1000, 1), "gaps": len(rows),
            "total_gap_s": round(sum(r["gap"] for r in rows), 2),
            "ideal_s": round(len(rows) * pace_s, 2),
            "excess_s": round(sum(max(0.0, r["gap"] - pace_s) for r in rows), 2),
            "paced_gaps": sum(1 for r in rows if r["gap"] <= pace_s * 1.05),
            "by_batch_reads": by_reads}


def median_of(runs: list[dict[str, Any]], key: str) -> Any:
    values = [r[key] for r in runs if r.get(key) is not None]
    if not values:
        return None
    med = statistics.median(values)
    return round(med, 4) if isinstance(med, float) else med


# --- 1. leadflow connector -----------------------------------------------------------------------
def measure_leadflow(sb: Any, contacts: int, mode: str = "list") -> dict[str, Any]:
    spec = MODES[mode]
    fresh_windows(sb)
    http = RecordingSession()
    conn = Connection("leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token,
                      extra={"full_pull": mode})
    connector = HubSpotConnector.from_connection(conn, http=http)
    ids: set[str] = set()
    leads = pages = 0
    started = time.perf_counter()
    try:
        for page in prefetched(connector.pull(None), 2):
            pages += 1
            leads += len(page.leads)
            ids.update(str(lead["record_id"]) for lead in page.leads)
    finally:
        wall = time.perf_counter() - started
        connector.close()
    calls = list(http.calls)
    own = [c for c in calls if c[3] == spec["path"] and c[2] == spec["method"]]
    other = [c for c in calls if c not in own]
    batch_reads = [c for c in other if c[3].endswith("/batch/read")]
    general = [c for c in calls if not c[3].endswith("/search")]
    searches = [c for c in calls if c[3].endswith("/search")]
    search_span = (searches[-1][1] - searches[0][0]) if searches else 0.0
    span = (own[-1][1] - own[0][0]) if own else 0.0
    send_span = (own[-1][0] - own[0][0]) if len(own) > 1 else 0.0
    general_span = (general[-1][1] - general[0][0]) if general else 0.0
    server = sandbox_counts(sb)
    stats = connector.stats.as_dict()
    phase_rps = len(own) / span if span else 0.0
    records_ceiling = spec.get("records_ceiling", spec["ceiling"] * spec["per_call"])
    own_ok = sum(1 for c in own if c[4] == 200)
    return {
        "mode": mode,
        "records": len(ids),
        "leads_yielded": leads,
        "complete": len(ids) == contacts,
        "pages": pages,
        "wall_s": round(wall, 3),
        "records_per_s": round(len(ids) / wall, 1) if wall else 0.0,
        "records_ceiling_per_s": records_ceiling,
        "records_ratio": round(len(ids) / wall / records_ceiling, 4) if wall else 0.0,
        "phase_requests": len(own),
        "phase_requests_ok": own_ok,
        "phase_s": round(span, 3),
        "phase_rps": round(phase_rps, 3),
        "ceiling_rps": spec["ceiling"],
        "ceiling_ratio": round(phase_rps / spec["ceiling"], 4),
        "pacing_rps": round((len(own) - 1) / send_span, 3) if send_span else 0.0,
        "pacing_ratio": round((len(own) - 1) / send_span / spec["ceiling"], 4) if send_span else 0.0,
        "max_in_window": max_in_window([c[0] for c in own], spec["window_s"]),
        "phase_median_ms": round(statistics.median((c[1] - c[0]) * 1000 for c in own), 1) if own else None,
        "other_requests": len(other),
        "batch_read_requests": len(batch_reads),
        "general_requests": len(general),
        "general_rps": round(len(general) / general_span, 3) if general_span else 0.0,
        "general_ratio": round(len(general) / general_span / GENERAL_CEILING, 4) if general_span else 0.0,
        "max_general_in_10s": max_in_window([c[0] for c in general], 10.0),
        "search_requests": len(searches),
        "search_rps": round(len(searches) / search_span, 3) if search_span else 0.0,
        "search_ratio": round(len(searches) / search_span / SEARCH_CEILING, 4) if search_span else 0.0,
        "share_429": server["share_429"],
        "phase_429": server["per_endpoint"].get(f"{spec['method']} {spec['path']}", {}).get("429", 0),
        "sandbox": server,
        "gaps": search_gaps(calls) if mode == "search" else {},
        "connector_stats": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in sorted(stats.items())},
    }


# --- 2. the official SDK, straightforward --------------------------------------------------------
def _sdk_call(fn: Callable[[], Any], counters: dict[str, int]) -> Any:
    """Call once; on 429 sleep 1 s and try again (what the naive client does)."""
    from hubspot.crm.contacts.exceptions import ApiException

    while True:
        counters["requests"] += 1
        try:
            return fn()
        except ApiException as exc:
            if exc.status == 429:
                counters["429"] += 1
                time.sleep(1.0)
                continue
            raise


def measure_sdk(sb: Any, contacts: int, path: str) -> dict[str, Any]:
    from hubspot import HubSpot
    from hubspot.crm.contacts import PublicObjectSearchRequest
    from hubspot.crm.contacts.exceptions import ApiException

    client = HubSpot(access_token=sb.token, host=sb.base_url)
    # One API object per path, made before the clock starts (building it imports the SDK's
    # generated modules, which is not part of the pull).
    search_api = client.crm.contacts.search_api
    basic_api = client.crm.contacts.basic_api
    fresh_windows(sb)
    counters = {"requests": 0, "429": 0}
    ids: set[str] = set()
    stopped = "end of results"
    started = time.perf_counter()
    after: str | None = None
    try:
        while True:
            if path == "search":
                body = PublicObjectSearchRequest(
                    filter_groups=[], sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                    properties=["email", "firstname", "lastname", "lifecyclestage", "lastmodifieddate"],
                    limit=200, after=after or "0")
                page = _sdk_call(lambda: search_api.do_search(public_object_search_request=body),
                                 counters)
            else:
                page = _sdk_call(lambda: basic_api.get_page(limit=100, after=after), counters)
            ids.update(str(r.id) for r in page.results)
            nxt = page.paging.next.after if page.paging and page.paging.next else None
            if not nxt or not page.results:
                break
            after = nxt
    except ApiException as exc:
        stopped = f"HTTP {exc.status} at after={after}"
    wall = time.perf_counter() - started
    server = sandbox_counts(sb)
    return {
        "path": path,
        "records": len(ids),
        "complete": len(ids) == contacts,
        "records_lost": contacts - len(ids),
        "stopped": stopped,
        "wall_s": round(wall, 3),
        "records_per_s": round(len(ids) / wall, 1) if wall else 0.0,
        "requests": counters["requests"],
        "client_429": counters["429"],
        "share_429": server["share_429"],
        "sandbox": server,
    }


# --- 3. search latency on a large world ------------------------------------------------------------
def measure_search_latency(n: int, seed: int, calls: int = 20) -> dict[str, Any]:
    from leadflow.sandbox.search import compile_search, parse_search_request

    started = time.perf_counter()
    with running_sandbox(contacts=n, seed=seed, rate_limit="off", search_rate_limit="off") as sb:
        seed_s = time.perf_counter() - started
        anchor = json.loads(sb.store.get_meta("world"))["anchor_ms"]
        since = anchor - 90 * 86_400_000
        body = {"filterGroups": [{"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE",
                                               "value": str(since)}]}],
                "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                "properties": ["email", "firstname", "lastname", "lifecyclestage", "lastmodifieddate"],
                "limit": 200, "after": "4000"}
        req = parse_search_request(body)
        compiled = compile_search("contacts", req, sb.store.properties("contacts"))
        store_ms = []
        total = 0
        for _ in range(calls):
            t = time.perf_counter()
            total, rows = sb.store.search("contacts", compiled.where_sql, compiled.params, compiled.order_sql,
                                          req.limit, req.after)
            store_ms.append((time.perf_counter() - t) * 1000)
        http_ms = []
        with requests.Session() as session:
            for _ in range(calls):
                t = time.perf_counter()
                r = session.post(f"{sb.base_url}{SEARCH_PATH}", json=body, timeout=30,
                                 headers={"Authorization": f"Bearer {sb.token}"})
                http_ms.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200 or len(r.json()["results"]) != 200:
                    raise RuntimeError(f"latency search failed: HTTP {r.status_code}")
        plan = sb.store.explain("contacts", compiled.where_sql, compiled.params, compiled.order_sql)
    return {"contacts": n, "matches": total, "rows_per_page": len(rows), "calls": calls,
            "setup_s": round(seed_s, 2),
            "store_median_ms": round(statistics.median(store_ms), 2),
            "store_min_ms": round(min(store_ms), 2),
            "http_median_ms": round(statistics.median(http_ms), 2),
            "http_min_ms": round(min(http_ms), 2),
            "query_plan": plan}


# --- report ----------------------------------------------------------------------------------------
def print_table(result: dict[str, Any]) -> None:
    print(f"\npull of {result['contacts']:,} contacts, sandbox limits general {DEFAULT_RATE_LIMIT} s, "
          f"search {DEFAULT_SEARCH_RATE_LIMIT} s; {result['repeats']} repeat(s), medians")
    print(f"{'client':<26}{'records':>9}{'wall s':>9}{'requests':>10}{'429':>6}{'429 share':>11}"
          f"{'calls/s':>9}{'of ceiling':>12}{'records/s':>11}{'of ceiling':>12}")
    for mode, lf in result["leadflow"].items():
        label = f"leadflow ({mode}{', default' if mode == 'both' else ''})"
        print(f"{label:<26}{lf['records']:>9,}{lf['wall_s']:>9.1f}"
              f"{lf['phase_requests'] + lf['other_requests']:>10}{lf['sandbox_429']:>6}{lf['share_429']:>11.2%}"
              f"{lf['phase_rps']:>9.2f}{lf['ceiling_ratio']:>12.1%}{lf['records_per_s']:>11,.0f}{lf['records_ratio']:>12.1%}")
    for path, sdk in result["sdk"].items():
        label = f"SDK naive ({path})"
        rps = sdk.get("rps")
        print(f"{label:<26}{sdk['records']:>9,}{sdk['wall_s']:>9.1f}{sdk['requests']:>10}{sdk['sandbox_429']:>6}"
              f"{sdk['share_429']:>11.2%}{(f'{rps:.2f}' if rps else '-'):>9}{'':>12}{sdk['records_per_s']:>11,.0f}")
    for mode, lf in result["leadflow"].items():
        limit = "search" if mode == "search" else "general"
        print(f"leadflow {mode}: {lf['phase_requests']} calls in a {lf['phase_s']:.2f} s phase on the {limit} limit "
              f"(ceiling {lf['ceiling_rps']:g}/s; pacing {lf['pacing_rps']:.2f}/s = {lf['pacing_ratio']:.1%}; at most "
              f"{lf['max_in_window']} in any window of the limit); {lf['other_requests']} other requests "
              f"({lf['batch_read_requests']} companies batch reads); general limit overall {lf['general_rps']:.2f}/s = "
              f"{lf['general_ratio']:.1%}, at most {lf['max_general_in_10s']} in any 10 s; search limit overall "
              f"{lf['search_rps']:.2f}/s = {lf['search_ratio']:.1%}; complete={lf['complete']}")
    gaps = result.get("leadflow_gaps") or {}
    if gaps:
        print(f"leadflow search spacing: {gaps['gaps']} gaps, {gaps['total_gap_s']:.2f} s vs {gaps['ideal_s']:.2f} s at "
              f"the connector's pace ({gaps['pace_ms']:.0f} ms); {gaps['paced_gaps']} on pace; excess by batch reads "
              "per page:")
        for k, g in gaps["by_batch_reads"].items():
            print(f"  {k} batch read(s): {g['pages']:>3} pages, median gap {g['median_gap_ms']:.0f} ms "
                  f"(search {g['median_search_rt_ms']:.0f} + reads {g['median_reads_rt_ms']:.0f} + client/waits "
                  f"{g['median_rest_ms']:.0f}), excess {g['excess_s']:.2f} s")
    for path, sdk in result["sdk"].items():
        print(f"SDK {path}: stopped at {sdk['stopped']}; {sdk['records_lost']:,} records missing")
    lat = result.get("search_latency")
    if lat:
        print(f"search latency, {lat['contacts']:,} contacts ({lat['matches']:,} matches, after=4000, limit 200): "
              f"store {lat['store_median_ms']:.1f} ms median, HTTP round trip {lat['http_median_ms']:.1f} ms median "
              f"(world set up in {lat['setup_s']:.1f} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--modes", default="both,list,search",
                        help="leadflow full-pull modes to measure, the first the headline's: both, list, search")
    parser.add_argument("--sdk-paths", default="search,list",
                        help="comma-separated straightforward SDK paths to measure: search, list (or none)")
    parser.add_argument("--search-latency", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--latency-seconds", type=float, default=0.15,
                        help="also pull with the sandbox answering each call this late (0: skip)")
    parser.add_argument("--latency-contacts", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "pull.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The connector logs one line per page and one per throttled retry: keep the table readable.
    logging.getLogger("leadflow").setLevel(logging.ERROR)
    sdk_paths = [p for p in args.sdk_paths.split(",") if p and p != "none"]
    modes = [m for m in args.modes.split(",") if m]
    for p in sdk_paths:
        if p not in ("search", "list"):
            parser.error(f"unknown SDK path {p!r}")
    for m in modes:
        if m not in MODES:
            parser.error(f"unknown mode {m!r}")

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    sdk_runs: dict[str, list[dict[str, Any]]] = {p: [] for p in sdk_paths}
    t = time.perf_counter()
    with running_sandbox(contacts=args.contacts, seed=args.seed, rate_limit=DEFAULT_RATE_LIMIT,
                         search_rate_limit=DEFAULT_SEARCH_RATE_LIMIT) as sb:
        setup_s = time.perf_counter() - t
        print(f"sandbox with {args.contacts:,} contacts ready in {setup_s:.1f} s", flush=True)
        for i in range(args.repeats):
            for mode in modes:
                run = measure_leadflow(sb, args.contacts, mode)
                runs[mode].append(run)
                print(f"[{i + 1}/{args.repeats}] leadflow {mode}: {run['records']:,} records in {run['wall_s']:.1f} s, "
                      f"{run['phase_rps']:.2f} calls/s ({run['ceiling_ratio']:.1%} of ceiling), "
                      f"429 share {run['share_429']:.2%}", flush=True)
            for p in sdk_paths:
                sdk = measure_sdk(sb, args.contacts, p)
                sdk_runs[p].append(sdk)
                print(f"[{i + 1}/{args.repeats}] SDK {p}: {sdk['records']:,} records in {sdk['wall_s']:.1f} s, "
                      f"{sdk['requests']} requests, 429 share {sdk['share_429']:.2%} ({sdk['stopped']})", flush=True)

    def summarise(items: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
        out = {k: median_of(items, k) for k in keys}
        out["sandbox_429"] = median_of([{"v": r["sandbox"]["429"]} for r in items], "v")
        return out

    lf_keys = ["records", "wall_s", "records_per_s", "records_ceiling_per_s", "records_ratio", "phase_requests",
               "phase_s", "phase_rps", "ceiling_rps", "ceiling_ratio", "pacing_rps", "pacing_ratio", "max_in_window",
               "phase_median_ms", "other_requests", "batch_read_requests", "general_requests", "general_rps",
               "general_ratio", "max_general_in_10s", "search_requests", "search_rps", "search_ratio", "share_429",
               "phase_429"]
    leadflow = {}
    for mode, items in runs.items():
        leadflow[mode] = summarise(items, lf_keys)
        leadflow[mode]["complete"] = all(r["complete"] for r in items)
    sdk_summary = {}
    for p, items in sdk_runs.items():
        s = summarise(items, ["records", "records_lost", "wall_s", "records_per_s", "requests", "client_429",
                              "share_429"])
        s["stopped"] = items[-1]["stopped"]
        # calls the naive client got answered per second of its run, for comparison
        s["rps"] = median_of([{"v": r["requests"] / r["wall_s"]} for r in items], "v")
        sdk_summary[p] = s

    at_latency: dict[str, dict[str, Any]] = {}
    if args.latency_seconds:
        # The same pulls with the sandbox answering each call after `--latency-seconds`, as a
        # remote CRM does: one cursor makes at most 1 / latency calls a second.
        with running_sandbox(contacts=args.contacts, seed=args.seed, rate_limit=DEFAULT_RATE_LIMIT,
                             search_rate_limit=DEFAULT_SEARCH_RATE_LIMIT, latency_seconds=args.latency_seconds) as sb:
            for mode in modes:
                run = measure_leadflow(sb, args.contacts, mode)
                at_latency[mode] = {k: run[k] for k in ("records", "complete", "wall_s", "records_per_s",
                                                        "records_ratio", "phase_rps", "ceiling_ratio", "share_429")}
                print(f"leadflow {mode} at {args.latency_seconds * 1000:.0f} ms a call: {run['records']:,} records in "
                      f"{run['wall_s']:.1f} s, {run['records_per_s']:.0f} records/s ({run['records_ratio']:.1%} of "
                      f"ceiling), {run['phase_rps']:.2f} calls/s", flush=True)

    latency = None
    if args.search_latency:
        print(f"search latency on {args.latency_contacts:,} contacts ...", flush=True)
        latency = measure_search_latency(args.latency_contacts, args.seed)

    main_mode = modes[0]
    lf = leadflow[main_mode]
    headline: dict[str, Any] = {
        "records": lf["records"],
        "mode": main_mode,
        "leadflow_calls_per_s": lf["phase_rps"],
        "ceiling_ratio": lf["ceiling_ratio"],
        "records_per_s": lf["records_per_s"],
        "records_ratio": lf["records_ratio"],
        "share_429": lf["share_429"],
        "leadflow_wall_s": lf["wall_s"],
    }
    if "search" in leadflow and main_mode != "search":
        headline.update({"search_mode_wall_s": leadflow["search"]["wall_s"],
                         "search_mode_ceiling_ratio": leadflow["search"]["ceiling_ratio"]})
    if "search" in sdk_summary:
        headline.update({"sdk_records": sdk_summary["search"]["records"],
                         "sdk_share_429": sdk_summary["search"]["share_429"],
                         "sdk_wall_s": sdk_summary["search"]["wall_s"]})
    if "list" in sdk_summary:
        headline.update({"sdk_list_records": sdk_summary["list"]["records"],
                         "sdk_list_share_429": sdk_summary["list"]["share_429"],
                         "sdk_list_wall_s": sdk_summary["list"]["wall_s"],
                         "wall_ratio_leadflow_vs_sdk_list": round(lf["wall_s"] / sdk_summary["list"]["wall_s"], 3)})
    if latency:
        headline.update({"search_store_ms_100k": latency["store_median_ms"],
                         "search_http_ms_100k": latency["http_median_ms"]})
    for mode, run in at_latency.items():
        headline[f"{mode}_records_per_s_at_latency"] = run["records_per_s"]
        headline[f"{mode}_records_ratio_at_latency"] = run["records_ratio"]
    # From both ends, each limit's calls (contacts and companies) against its ceiling; else the
    # contact pages' calls against their limit's.
    at_ceiling = min(lf["general_ratio"], lf["search_ratio"]) if main_mode == "both" else lf["ceiling_ratio"]
    headline.update(general_ratio=lf["general_ratio"], search_ratio=lf["search_ratio"])
    headline["targets_met"] = bool(lf["complete"] and at_ceiling >= 0.9 and lf["share_429"] < 0.01)
    result = {
        "headline": headline,
        "contacts": args.contacts, "seed": args.seed, "repeats": args.repeats,
        "limits": {"general": DEFAULT_RATE_LIMIT, "search": DEFAULT_SEARCH_RATE_LIMIT},
        "sandbox_setup_s": round(setup_s, 2),
        "leadflow": leadflow,
        "leadflow_gaps": runs["search"][len(runs["search"]) // 2]["gaps"] if "search" in runs else {},
        "sdk": sdk_summary, "search_latency": latency,
        "at_latency": {"latency_seconds": args.latency_seconds, "leadflow": at_latency},
        "runs": {"leadflow": runs, "sdk": sdk_runs},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg": [round(x, 2) for x in os.getloadavg()]},
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
