"""Progress bars for long steps (pull, push, CSV import, training), for people at a terminal only.

The library calls `track(...)` and advances it; whether anything is drawn is decided here: only
when stderr is a terminal, and never in CI, in an Airflow task or when `LEADFLOW_PROGRESS=0`.
Everywhere else `track` hands back a counter that draws nothing, so logs stay clean and the
library never depends on a terminal. Drawn with tqdm (counts, rate, ETA).
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Callable, Iterable, Iterator, TextIO, TypeVar

from leadflow.env import leadflow_env

T = TypeVar("T")

# Set for every Airflow task process; CI systems set CI.
_QUIET_ENV = ("CI", "AIRFLOW_CTX_DAG_ID")


def enabled(stream: TextIO | None = None) -> bool:
    """Whether progress should be drawn on `stream` (default: stderr)."""
    stream = stream if stream is not None else sys.stderr
    if not leadflow_env().progress:
        return False
    if any(os.environ.get(name) for name in _QUIET_ENV):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def track(description: str, total: int | None = None, unit: str = "rows",
          stream: TextIO | None = None, min_interval_s: float = 0.2) -> Iterator[Callable[[int], None]]:
    """Yield `advance(n)`; draws a bar with count, rate and ETA when `enabled(stream)`, redrawn at
    most every `min_interval_s`. `total` may be None when the size is not known up front (a
    pull): then count and rate only."""
    stream = stream if stream is not None else sys.stderr
    if not enabled(stream):
        yield lambda n=1: None
        return
    # Imported only for a bar: tqdm takes ~0.13 s to import (`python -X importtime`), and Airflow
    # tasks, which have no terminal, never draw one.
    from tqdm import tqdm

    # leave=False: the bar goes away when done; the step's own summary line says what happened.
    with tqdm(total=total, desc=description, unit=f" {unit}", unit_scale=False, file=stream,
              leave=False, dynamic_ncols=True, mininterval=min_interval_s) as bar:
        yield bar.update


def iterate(items: Iterable[T], description: str, total: int | None = None, unit: str = "rows",
            stream: TextIO | None = None, min_interval_s: float = 0.2) -> Iterator[T]:
    """Yield `items` unchanged, advancing a `track` bar by one per item."""
    with track(description, total, unit, stream, min_interval_s) as advance:
        for item in items:
            yield item
            advance(1)
