"""Process settings for the pipeline's steps.

`keep_freed_memory` tells glibc's allocator to keep freed memory for reuse instead of handing it
back to the kernel. The vectorised steps allocate and free hundreds of arrays of 1-8 MB per
million leads; by default glibc maps each of them fresh (and unmaps it on free), so every array
is page-faulted and zeroed again by the kernel: measured 0.1-0.7 s of system time per scoring
pass of 1M leads on the 2-vCPU runners, most of the pass-to-pass variance. With it, the second
and later passes fault almost nothing. The cost: the process keeps up to the configured amount of
freed heap until it exits (Airflow runs each task in its own process). It changes the whole
process's allocator, so it is opt-in: off unless `LEADFLOW_KEEP_FREED_MEMORY_MB` is set.

`objects_frozen` keeps the objects a process holds out of the cyclic garbage collector's full
passes while a pipeline step runs. A full pass walks every container object in the process: with
Airflow, Great Expectations and pandas imported, 0.2 s before any data, 0.3-0.5 s with a 100,000
lead run's frames and plans, a few times per step. It holds the interpreter lock, so in the pull
and the push the calls waited for it and that moment's share of the portal's rate limit went
unused; at 100,000 leads the passes took 12 s of a first run (bench/bench_e2e.py).

`peak_rss_mib` is the process's peak resident memory so far: each pipeline step records it in its
summary (Airflow runs every task in a process of its own, so there it is the task's peak).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import resource
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from leadflow.env import LeadflowEnvError, leadflow_env

logger = logging.getLogger(__name__)

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to this size come from the heap: the (rules x leads) points matrix of 1M leads is
# ~120 MiB, every other array at most 8 MiB per million leads.
MMAP_THRESHOLD_MB = 256

_applied: int | None = None


def keep_freed_memory() -> int:
    """Apply the allocator setting once per process; returns the MiB kept (0: not applied).

    `LEADFLOW_KEEP_FREED_MEMORY_MB` sets the amount (default 0: off; 1024 is what the benchmarks
    use). Only glibc (Linux) is tuned; elsewhere this does nothing.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = 0
    try:
        keep_mb = leadflow_env().keep_freed_memory_mb
    except LeadflowEnvError as exc:
        # A tuning knob must not fail a run: say what is wrong and leave the allocator alone.
        logger.warning("%s; allocator left as is", exc)
        return 0
    if keep_mb <= 0 or not sys.platform.startswith("linux"):
        return 0
    keep_mb = min(keep_mb, 2047)  # mallopt takes a C int of bytes
    try:
        # The running process's own symbols: libc is loaded already (no library search).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # C libraries without mallopt (musl)
        return 0
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Blocks up to the threshold come from the heap (and are reused); freed heap is kept up to
    # keep_mb. Older glibc caps the threshold at 32 MiB: then the matrix is mapped per call.
    threshold = min(MMAP_THRESHOLD_MB, keep_mb) * 2**20
    applied = (
        (mallopt(_M_MMAP_THRESHOLD, threshold) == 1 or mallopt(_M_MMAP_THRESHOLD, 32 * 2**20) == 1)
        and mallopt(_M_TRIM_THRESHOLD, keep_mb * 2**20) == 1
    )
    if not applied:
        logger.info("allocator setting refused by the C library; left as is")
        return 0
    _applied = keep_mb
    logger.debug("allocator keeps up to %d MiB of freed memory for reuse", keep_mb)
    return keep_mb


@contextmanager
def objects_frozen() -> Iterator[Callable[[], None]]:
    """Move the objects that exist now out of the garbage collector's passes (`gc.freeze`) for
    the block, and back in after it. Yields `gc.freeze`, for objects made since that live as
    long (a push part prepared on another thread, frozen before its calls start).

    Frozen objects are still freed when their last reference goes; only garbage caught in
    reference cycles among them waits for a full pass after the block (in `leadflow run`, whose
    steps follow each other at once, for the run's end: a 100,000-lead run's memory per step
    stayed within 25 MiB of what it was without this). A process that had frozen objects
    already (a parent freezing before it forks) keeps its own and the block's frozen: there is
    no giving back only the block's."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield gc.freeze
    finally:
        if not frozen_before:
            gc.unfreeze()


def peak_rss_mib() -> float:
    """This process's peak resident set size so far, in MiB. On Linux the high-water mark of its
    own memory (`VmHWM` in /proc/self/status): `getrusage`'s `ru_maxrss` keeps the largest figure
    the process had before an exec, so a task started by a large parent would report the parent's
    size. Elsewhere `ru_maxrss` (KiB, bytes on macOS)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)
