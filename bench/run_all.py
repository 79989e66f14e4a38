"""`make bench`: run every benchmark in its own process and print one summary table.

Each `bench_*.py` measures its own baseline in the same run and writes JSON to
bench/results/<name>.json; this script collects the headline figures.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ORDER = ["qualify", "pull", "enrich", "quality", "predictive", "push", "e2e", "sandbox_seed"]


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    names = [n for n in ORDER if (HERE / f"bench_{n}.py").exists()]
    names += sorted(p.stem[6:] for p in HERE.glob("bench_*.py") if p.stem[6:] not in names)
    failed = []
    for name in names:
        out = RESULTS / f"{name}.json"
        print(f"\n=== bench_{name} ===", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(HERE / f"bench_{name}.py"), "--out", str(out)])
        print(f"(bench_{name}: exit {code}, {time.perf_counter() - started:.0f} s)", flush=True)
        if code != 0:
            failed.append(name)
    print("\n=== summary (details in bench/results/*.json) ===")
    for name in names:
        path = RESULTS / f"{name}.json"
        if path.exists():
            data = json.loads(path.read_text())
            headline = data.get("headline", data)
            print(f"{name:>11}: {json.dumps(headline, sort_keys=True)[:400]}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
