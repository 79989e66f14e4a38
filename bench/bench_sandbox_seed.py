"""Benchmark of seeding the CRM sandbox (`prepare_store`: generate the world, load SQLite).

    python bench/bench_sandbox_seed.py [--contacts 100000] [--repeats 3] [--million | --no-million]
                                       [--baseline | --no-baseline] [--out bench/results/sandbox_seed.json]

Measured in one process, each seed into a fresh file in a temporary directory:
- a small warm-up seed first (imports, Faker's locale discovery): reported as `warmup_s`;
- `prepare_store(...)` for `--contacts` (default 100,000), `--repeats` times: median wall time,
  split into generation and load as `SeedReport` reports them, and contacts/s;
- `prepare_store(...)` for 1,000,000 contacts once (`--million`, on by default);
- baseline in the same run (`--baseline`, on by default, 100k only): the previous load path,
  kept here as `legacy_seed`: contacts through a pandas DataFrame, rows into a staging table with
  a 31-column executemany, JSON documents built by `json_patch('{}', json_object(...))` in SQL,
  enrichment rows from `to_dict("records")` and `json.dumps` per record. Same generator, same
  indexes and ANALYZE, same file settings. Both paths are checked to produce identical tables.
Figures only; nothing here asserts the targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from leadflow.sandbox import world as W
from leadflow.sandbox.serving import prepare_store
from leadflow.sandbox.store import _INDEXES, SandboxStore

ANCHOR_MS = 1_790_000_000_000  # fixed, so two seeds of one size are comparable row for row


# --- the previous load path (baseline) -----------------------------------------------------------
def _legacy_bulk_load(store: SandboxStore, object_type: str, columns: dict[str, list[Any]],
                      prop_names: tuple[str, ...], chunk: int = 100_000) -> None:
    conn = store._conn
    base = ["id", "created_ms", "modified_ms", "unique_key", "company_id"]
    n = len(columns["id"])
    staging = f"stage_{object_type}"
    json_args = ", ".join(f"'{p}', p{i}" for i, p in enumerate(prop_names))
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute(f"DROP TABLE IF EXISTS temp.{staging}")
    conn.execute(f"CREATE TEMP TABLE {staging} ({', '.join(base)}, "
                 + ", ".join(f"p{i}" for i in range(len(prop_names))) + ")")
    conn.execute("BEGIN")
    for ddl in _INDEXES:
        conn.execute(f"DROP INDEX IF EXISTS {ddl.format(t=object_type).split(' ON ')[0].split()[-1]}")
    marks = ",".join("?" * (len(base) + len(prop_names)))
    lists = [columns[c] for c in base] + [columns[p] for p in prop_names]
    for start in range(0, n, chunk):
        conn.executemany(f"INSERT INTO temp.{staging} VALUES ({marks})", zip(*[c[start:start + chunk] for c in lists]))
    conn.execute(f"INSERT INTO obj_{object_type} (id, created_ms, modified_ms, archived, unique_key, company_id, "
                 f"props) SELECT id, created_ms, modified_ms, 0, unique_key, company_id, "
                 f"json_patch('{{}}', json_object({json_args})) FROM temp.{staging}")
    conn.execute(f"DROP TABLE temp.{staging}")
    for ddl in _INDEXES:
        conn.execute(ddl.format(t=object_type))
    conn.execute("COMMIT")
    conn.execute(f"ANALYZE obj_{object_type}")
    conn.execute("PRAGMA synchronous=NORMAL")


def legacy_seed(db_path: Path, contacts: int, seed: int) -> dict[str, float]:
    c0 = time.process_time()
    store = SandboxStore(db_path)
    config = W.WorldConfig(seed=seed, contacts=contacts, anchor_ms=ANCHOR_MS)
    t0 = time.perf_counter()
    world = W.generate_world(config)  # contacts as a DataFrame
    t1 = time.perf_counter()
    comp, con = world.companies, world.contacts
    _legacy_bulk_load(store, "companies", {
        "id": comp["company_id"].tolist(), "created_ms": comp["created_ms"].tolist(),
        "modified_ms": comp["modified_ms"].tolist(), "unique_key": comp["domain"].str.lower().tolist(),
        "company_id": [None] * len(comp), **{p: W._column(comp[p]) for p in W.COMPANY_PROPS}}, W.COMPANY_PROPS)
    _legacy_bulk_load(store, "contacts", {
        "id": con["id"].tolist(), "created_ms": con["created_ms"].tolist(),
        "modified_ms": con["modified_ms"].tolist(), "unique_key": con["email"].str.lower().tolist(),
        "company_id": W._column(con["company_id"]), **{p: W._column(con[p]) for p in W.CONTACT_PROPS}},
        W.CONTACT_PROPS)
    records = []
    for row in world.universe.to_dict("records"):
        if W.domain_fraction(seed, row["domain"], "known") < config.enrichment_coverage:
            records.append((row["domain"], W.enrichment_record(row, seed)))
    conn = store._conn
    conn.execute("BEGIN")
    conn.executemany("INSERT OR REPLACE INTO enrichment VALUES (?, ?)",
                     ((d, json.dumps(rec, separators=(",", ":"))) for d, rec in records))
    conn.execute("COMMIT")
    store.set_meta("world", json.dumps({"seed": seed, "contacts": contacts, "companies": len(comp),
                                        "anchor_ms": world.anchor_ms, "shared_timestamp_every": 0}))
    t2 = time.perf_counter()
    store.close()
    return {"total_s": t2 - t0, "generate_s": t1 - t0, "load_s": t2 - t1, "cpu_s": time.process_time() - c0}


# --- the shipped path --------------------------------------------------------------------------------
def current_seed(db_path: Path, contacts: int, seed: int) -> dict[str, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    store, report = prepare_store(db_path, contacts=contacts, seed=seed)
    total = time.perf_counter() - t0
    store.close()
    assert report is not None
    return {"total_s": total, "generate_s": report.generate_seconds, "load_s": report.load_seconds,
            "cpu_s": time.process_time() - c0}


def current_seed_fixed_anchor(db_path: Path, contacts: int, seed: int) -> None:
    store = SandboxStore(db_path)
    W.seed_store(store, W.WorldConfig(seed=seed, contacts=contacts, anchor_ms=ANCHOR_MS))
    store.close()


def tables_identical(a: Path, b: Path) -> bool:
    """Every seeded table holds exactly the same rows (values and types) in both files."""
    conn = sqlite3.connect(str(a))
    conn.execute("ATTACH ? AS other", (str(b),))
    try:
        for table in ("obj_contacts", "obj_companies", "enrichment", "sqlite_stat1"):
            for x, y in (("main", "other"), ("other", "main")):
                diff = conn.execute(f"SELECT COUNT(*) FROM (SELECT * FROM {x}.{table} EXCEPT "
                                    f"SELECT * FROM {y}.{table})").fetchone()[0]
                if diff:
                    return False
        return True
    finally:
        conn.close()


def summarise(runs: list[dict[str, float]], contacts: int) -> dict[str, Any]:
    med = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
    med["runs_total_s"] = [round(r["total_s"], 3) for r in runs]
    med["contacts_per_s"] = round(contacts / med["total_s"])
    return med


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--million", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--baseline-repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "sandbox_seed.json")
    args = parser.parse_args(argv)

    result: dict[str, Any] = {"contacts": args.contacts, "seed": args.seed, "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="leadflow-seed-bench-") as tmp:
        root = Path(tmp)
        counter = iter(range(1_000_000))

        def fresh() -> Path:
            return root / f"s{next(counter)}" / "crm.db"

        t = time.perf_counter()
        current_seed(fresh(), 1_000, args.seed)
        result["warmup_s"] = round(time.perf_counter() - t, 3)
        print(f"warm-up (imports, name pools, 1,000 contacts): {result['warmup_s']:.2f} s", flush=True)

        runs = []
        for i in range(args.repeats):
            runs.append(current_seed(fresh(), args.contacts, args.seed))
            print(f"[{i + 1}/{args.repeats}] {args.contacts:,} contacts: {runs[-1]['total_s']:.2f} s "
                  f"(generate {runs[-1]['generate_s']:.2f}, load {runs[-1]['load_s']:.2f})", flush=True)
        result["current"] = summarise(runs, args.contacts)

        if args.baseline:
            legacy_runs, current_runs = [], []
            identical = None
            for i in range(args.baseline_repeats):
                # Interleaved, same anchor: the pair is compared row for row.
                a, b = fresh(), fresh()
                legacy_runs.append(legacy_seed(a, args.contacts, args.seed))
                t, c = time.perf_counter(), time.process_time()
                current_seed_fixed_anchor(b, args.contacts, args.seed)
                current_runs.append({"total_s": time.perf_counter() - t, "cpu_s": time.process_time() - c})
                if identical is None:
                    identical = tables_identical(a, b)
                print(f"[{i + 1}/{args.baseline_repeats}] baseline (previous load path): "
                      f"{legacy_runs[-1]['total_s']:.2f} s (generate {legacy_runs[-1]['generate_s']:.2f}, "
                      f"load {legacy_runs[-1]['load_s']:.2f}); current, interleaved: "
                      f"{current_runs[-1]['total_s']:.2f} s; identical tables: {identical}", flush=True)
            result["baseline"] = summarise(legacy_runs, args.contacts)
            result["baseline_pair_current_s"] = round(statistics.median(r["total_s"] for r in current_runs), 3)
            result["baseline_pair_current_cpu_s"] = round(statistics.median(r["cpu_s"] for r in current_runs), 3)
            result["identical_to_baseline"] = identical
            result["speedup_vs_baseline"] = round(result["baseline"]["total_s"] / result["baseline_pair_current_s"], 2)
            result["cpu_speedup_vs_baseline"] = round(result["baseline"]["cpu_s"] / result["baseline_pair_current_cpu_s"], 2)

        if args.million:
            path = fresh()
            result["million"] = summarise([current_seed(path, 1_000_000, args.seed)], 1_000_000)
            size = sum(p.stat().st_size for p in path.parent.iterdir())
            result["million"]["db_mib"] = round(size / 2**20)
            m = result["million"]
            print(f"1,000,000 contacts: {m['total_s']:.2f} s (generate {m['generate_s']:.2f}, load {m['load_s']:.2f})",
                  flush=True)

    cur = result["current"]
    headline: dict[str, Any] = {f"seed_{args.contacts // 1000}k_s": cur["total_s"],
                                f"seed_{args.contacts // 1000}k_load_s": cur["load_s"],
                                "contacts_per_s": cur["contacts_per_s"]}
    if "baseline" in result:
        headline["baseline_seed_s"] = result["baseline"]["total_s"]
        headline["speedup_vs_baseline"] = result["speedup_vs_baseline"]
        headline["cpu_speedup_vs_baseline"] = result["cpu_speedup_vs_baseline"]
        headline["identical_to_baseline"] = result["identical_to_baseline"]
    if "million" in result:
        headline["seed_1m_s"] = result["million"]["total_s"]
        headline["seed_1m_load_s"] = result["million"]["load_s"]
        headline["seed_1m_cpu_s"] = result["million"]["cpu_s"]
    result["headline"] = headline
    result["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(),
                         "sqlite": sqlite3.sqlite_version, "loadavg": [round(x, 2) for x in os.getloadavg()]}

    print(f"\n{'seeding (prepare_store)':<34}{'total s':>9}{'generate s':>12}{'load s':>9}{'CPU s':>8}{'contacts/s':>12}")
    rows = [(f"{args.contacts:,} contacts (median of {args.repeats})", cur)]
    if "baseline" in result:
        rows.append((f"{args.contacts:,}, previous load path", result["baseline"]))
    if "million" in result:
        rows.append(("1,000,000 contacts", result["million"]))
    for label, r in rows:
        print(f"{label:<34}{r['total_s']:>9.2f}{r['generate_s']:>12.2f}{r['load_s']:>9.2f}{r['cpu_s']:>8.2f}"
              f"{r['contacts_per_s']:>12,}")
    if "baseline" in result:
        print(f"speed-up vs the previous load path, interleaved pair: x{result['speedup_vs_baseline']:.2f} wall, "
              f"x{result['cpu_speedup_vs_baseline']:.2f} CPU "
              f"(tables identical: {result['identical_to_baseline']})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
