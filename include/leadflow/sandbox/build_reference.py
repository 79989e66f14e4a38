"""Build the enrichment's bundled reference file from the sandbox world's company universe.

    python -m leadflow.sandbox.build_reference [--seed 42] [--companies 125000] [--out PATH]

The sandbox's universe is prefix-stable (the first m companies of a seed are the same for any
world size), so one file of N companies covers every sandbox world of that seed with up to
8 x N contacts. The output is deterministic: same seed and size, same bytes.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

import pandas as pd

from leadflow.enrich.reference import BUNDLED_REFERENCE, REFERENCE_COLUMNS
from leadflow.sandbox.world import company_universe

log = logging.getLogger(__name__)

DEFAULT_SEED = 42
# The largest sandbox world has 1,000,000 contacts, about 8 per company.
DEFAULT_COMPANIES = 125_000


def reference_frame(seed: int = DEFAULT_SEED, companies: int = DEFAULT_COMPANIES) -> pd.DataFrame:
    """The reference rows for the sandbox world `seed`, in the file's column order."""
    universe = company_universe(seed, companies)
    out = pd.DataFrame(
        {
            "domain": universe["domain"].astype("str"),
            "name": universe["name"].astype("str"),
            "industry": universe["industry"].astype("str"),
            "employee_count": universe["employees"].astype("int64"),
            "annual_revenue_usd": universe["annual_revenue"].astype("int64"),
            "country_code": universe["country_code"].astype("str"),
            "founded_year": universe["founded_year"].astype("int64"),
            "technologies": universe["technologies"].astype("str"),
        }
    )
    return out[list(REFERENCE_COLUMNS)]


def write_reference(frame: pd.DataFrame, path: Path) -> Path:
    """Write CSV or Parquet, by the path's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False, compression="zstd")
    else:
        frame.to_csv(path, index=False, lineterminator="\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--companies", type=int, default=DEFAULT_COMPANIES)
    parser.add_argument("--out", type=Path, default=BUNDLED_REFERENCE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    frame = reference_frame(args.seed, args.companies)
    path = write_reference(frame, args.out)
    log.info("wrote %d companies to %s", len(frame), path)
    print(f"{len(frame)} companies -> {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
