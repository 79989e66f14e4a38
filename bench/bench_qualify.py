"""Benchmark of the vectorised qualification engine against the row-by-row reference.

    python bench/bench_qualify.py [--n 1000000] [--repeat 5] [--reference-n 20000]
                                  [--text-dtype str|object|category] [--out bench/results/qualify.json]

Measures, with the shipped default model, in a process set up like the pipeline's scoring step
(`leadflow.runtime.keep_freed_memory`, as `pipeline.qualify` calls it, opted in with
`LEADFLOW_KEEP_FREED_MEMORY_MB=1024` unless the variable is set; `--default-allocator` measures
without it):
- scoring throughput: `evaluate` + `to_frame(render=False)` (reasons kept as rule ids + points):
  the first full-size call (cold: fresh memory, first-use caches) reported on its own, then the
  median and best of `--repeat` further runs, leads/s;
- reason text rendering for every lead, timed separately;
- peak memory: a child process generates the leads, notes its RSS, scores them once and reports
  its peak RSS (getrusage ru_maxrss); the scoring cost is peak minus the RSS after generation;
- the row-by-row reference (tests/unit/qualify/reference.py, loaded by path) on the first
  `--reference-n` leads: per-lead time ratio, and whether both agree on those leads.
Figures only; nothing here asserts the targets.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from leadflow.qualify import evaluate, load_model, render_reasons, to_frame
from leadflow.runtime import keep_freed_memory

# The pipeline's allocator setting is opt-in; measure the tuned process (children inherit it).
os.environ.setdefault("LEADFLOW_KEEP_FREED_MEMORY_MB", "1024")

ROOT = Path(__file__).resolve().parents[1]
QUALIFY_TESTS = ROOT / "tests" / "unit" / "qualify"


def _load_test_module(filename: str):
    """A helper module of the qualification tests (the reference, the synthetic leads), by path."""
    spec = importlib.util.spec_from_file_location(f"qualify_{Path(filename).stem}", QUALIFY_TESTS / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_synthetic = _load_test_module("synthetic.py")
default_now, generate_leads = _synthetic.default_now, _synthetic.generate_leads


def _memory_child(n: int, text_dtype: str, seed: int, tune: bool) -> dict[str, float]:
    """Run in a child process: RSS after generating, peak RSS after scoring once (MiB)."""
    import psutil

    if tune:
        keep_freed_memory()
    model = load_model()
    leads = generate_leads(n, seed=seed, now=default_now(), text_dtype=text_dtype)
    baseline = psutil.Process().memory_info().rss / 2**20
    reset = _reset_peak_rss()  # so the generation's own peak does not count as scoring's
    to_frame(evaluate(leads, model, default_now()), render=False)
    peak = _peak_rss_mib()
    return {"rss_after_generation_mib": round(baseline, 1), "peak_rss_mib": round(peak, 1),
            "scoring_peak_delta_mib": round(peak - baseline, 1), "peak_reset": reset}


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak_rss_mib() -> float:
    """Peak RSS since the last reset (VmHWM), else the lifetime peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _measure_memory(n: int, text_dtype: str, seed: int, tune: bool) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", "--n", str(n), "--text-dtype", text_dtype,
           "--seed", str(seed)] + ([] if tune else ["--default-allocator"])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n: int, repeat: int, reference_n: int, text_dtype: str, seed: int, tune: bool) -> dict[str, object]:
    keep_mb = keep_freed_memory() if tune else 0
    model = load_model()
    now = default_now()
    t0 = time.perf_counter()
    leads = generate_leads(n, seed=seed, now=now, text_dtype=text_dtype)
    generate_s = time.perf_counter() - t0
    to_frame(evaluate(leads.head(1000), model, now), render=False)  # warm-up: compile, imports
    t = time.perf_counter()
    to_frame(evaluate(leads, model, now), render=False)  # cold: what a one-off task run pays
    cold_s = time.perf_counter() - t

    times, cpu_times = [], []
    evaluation = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        evaluation = evaluate(leads, model, now)
        to_frame(evaluation, render=False)
        times.append(time.perf_counter() - t)
        cpu_times.append(time.process_time() - c)
    assert evaluation is not None
    median = statistics.median(times)

    t = time.perf_counter()
    texts = render_reasons(evaluation)
    render_s = time.perf_counter() - t
    distinct_texts = len(set(texts.tolist()))

    reference = _load_test_module("reference.py")
    sample = leads.head(reference_n)
    t, c = time.perf_counter(), time.process_time()
    ref_rows = reference.score_frame(sample, model, now)
    reference_s = time.perf_counter() - t
    reference_cpu_s = time.process_time() - c
    ref_scores = np.array([r["score"] for r in ref_rows])
    agree = bool(np.array_equal(ref_scores, evaluation.score[: len(sample)]))
    engine_per_lead = median / n
    reference_per_lead = reference_s / len(sample)

    return {
        "n": n,
        "text_dtype": text_dtype,
        "model_version": model.version,
        "allocator_keep_freed_mib": keep_mb,
        "repeat": repeat,
        "score_cold_s": round(cold_s, 4),
        "leads_per_s_cold": round(n / cold_s),
        "score_seconds": [round(x, 4) for x in times],
        "score_median_s": round(median, 4),
        "score_best_s": round(min(times), 4),
        "leads_per_s_median": round(n / median),
        "leads_per_s_best": round(n / min(times)),
        # CPU time of this process: what the engine costs when the machine is shared/busy.
        "score_cpu_median_s": round(statistics.median(cpu_times), 4),
        "leads_per_cpu_s_median": round(n / statistics.median(cpu_times)),
        "render_all_s": round(render_s, 4),
        "render_distinct_texts": distinct_texts,
        "reference_n": len(sample),
        "reference_s": round(reference_s, 3),
        "reference_leads_per_s": round(len(sample) / reference_s),
        "speedup_per_lead": round(reference_per_lead / engine_per_lead, 1),
        "speedup_per_lead_cpu": round(
            (reference_cpu_s / len(sample)) / (statistics.median(cpu_times) / n), 1
        ),
        "reference_agrees_on_scores": agree,
        "generate_s": round(generate_s, 2),
        "memory": _measure_memory(n, text_dtype, seed, tune),
        "memory_method": "child process: RSS after generating the leads, then peak RSS (VmHWM, reset "
        "via /proc/self/clear_refs before scoring) while evaluate + to_frame(render=False) run once",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
    }


def _print_table(result: dict[str, object]) -> None:
    mem = result["memory"]
    rows = [
        ("leads", f"{result['n']:,} ({result['text_dtype']} text)"),
        ("allocator", f"keeps {result['allocator_keep_freed_mib']} MiB freed for reuse" if result["allocator_keep_freed_mib"] else "default"),
        ("score, first full call (cold)", f"{result['score_cold_s']:.3f} s  ->  {result['leads_per_s_cold']:,} leads/s"),
        ("score (ids+points), median", f"{result['score_median_s']:.3f} s  ->  {result['leads_per_s_median']:,} leads/s"),
        ("score, best", f"{result['score_best_s']:.3f} s  ->  {result['leads_per_s_best']:,} leads/s"),
        ("score, CPU time median", f"{result['score_cpu_median_s']:.3f} s  ->  {result['leads_per_cpu_s_median']:,} leads/CPU-s"),
        ("render reason text, all leads", f"{result['render_all_s']:.3f} s ({result['render_distinct_texts']:,} distinct)"),
        ("reference (row by row)", f"{result['reference_leads_per_s']:,} leads/s on {result['reference_n']:,}"),
        ("speed-up per lead", f"{result['speedup_per_lead']:,}x wall, {result['speedup_per_lead_cpu']:,}x CPU "
                              f"(scores agree: {result['reference_agrees_on_scores']})"),
        ("peak RSS (child)", f"{mem['peak_rss_mib']:.0f} MiB; scoring adds {mem['scoring_peak_delta_mib']:.0f} MiB"),
        ("load average (1 min)", f"{result['machine']['loadavg_1m_at_end']}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference-n", type=int, default=20_000)
    parser.add_argument("--text-dtype", choices=["str", "object", "category"], default="str")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "qualify.json")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's allocator as is (the pipeline's scoring step tunes it)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_child:
        print(json.dumps(_memory_child(args.n, args.text_dtype, args.seed, not args.default_allocator)))
        return 0
    result = run(args.n, args.repeat, args.reference_n, args.text_dtype, args.seed, not args.default_allocator)
    _print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
