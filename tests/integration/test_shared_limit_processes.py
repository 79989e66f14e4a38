"""Four processes (as four push shards would be) share one PostgreSQL-kept token bucket
(`leadflow.shared_limit`): together they take the bucket's rate, not four times it, and a pause one
of them sets after a 429 holds the others too. Real processes, real clocks, ~5 s."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from leadflow.shared_limit import SharedBucket
from leadflow.warehouse.db import ensure_schema, get_engine

pytestmark = pytest.mark.postgres

RATE = 20.0  # tokens per second: a HubSpot Professional portal's ~19 requests/s
PROCESSES = 4
RUN_S = 4.0
PAUSE_AT_S, PAUSE_S = 1.5, 1.0
KEY = "hubspot:leadflow_hubspot:general"


def _holder(url: str, index: int, start_at: float, results) -> None:
    engine = get_engine(url)
    slept = [0.0]

    def sleep(seconds: float) -> None:
        slept[0] += seconds
        time.sleep(seconds)

    bucket = SharedBucket(engine, KEY, RATE, sleeper=sleep)
    stamps: list[float] = []
    pause: tuple[float, float] | None = None
    in_acquire = 0.0
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < start_at + RUN_S:
        if index == 0 and pause is None and time.time() >= start_at + PAUSE_AT_S:
            before = time.time()
            bucket.pause(PAUSE_S)  # as the request loop does after a 429
            pause = (before, time.time())
        began = time.perf_counter()
        bucket.acquire()
        in_acquire += time.perf_counter() - began
        stamps.append(time.time())
    engine.dispose()
    results.put({"index": index, "stamps": stamps, "pause": pause, "db_s": in_acquire - slept[0],
                 "transactions": bucket.transactions, "reads": bucket.reads, "acquired": bucket.acquired})


def test_processes_sharing_a_postgresql_bucket_keep_its_rate_and_its_pause(new_pg_database) -> None:
    url = new_pg_database()
    engine = get_engine(url)
    ensure_schema(engine)
    engine.dispose()  # nothing of the parent's pool crosses the fork

    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 1.0
    procs = [context.Process(target=_holder, args=(url, i, start_at, results)) for i in range(PROCESSES)]
    for proc in procs:
        proc.start()
    outs = [results.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    assert [proc.exitcode for proc in procs] == [0] * PROCESSES

    stamps = sorted(s for out in outs for s in out["stamps"])
    assert all(out["stamps"] for out in outs), "every process got tokens"
    # Together at the bucket's rate (the last tokens were reserved before the end, used after it).
    paced_s = stamps[-1] - start_at - PAUSE_S
    rate = (len(stamps) - 1) / paced_s
    assert rate == pytest.approx(RATE, rel=0.10), (len(stamps), paced_s)
    assert max(sum(1 for s in stamps if t <= s < t + 1.0) for t in stamps) <= RATE * 1.1
    # Nobody got a token while the pause process 0 set was in force.
    before, after = next(out["pause"] for out in outs if out["pause"])
    assert [s for s in stamps if after + 0.02 < s < before + PAUSE_S - 0.02] == []
    # Round trips: one locked transaction per token, plus one read after each wait.
    calls = sum(out["acquired"] for out in outs)
    transactions = sum(out["transactions"] for out in outs)
    db_ms = 1000 * sum(out["db_s"] for out in outs) / len(stamps)
    print(f"\nshared bucket: {len(stamps)} tokens at {rate:.2f}/s (bucket {RATE}/s); "
          f"{transactions / len(stamps):.2f} locked transactions and "
          f"{sum(out['reads'] for out in outs) / len(stamps):.2f} reads per token; "
          f"{db_ms:.2f} ms in the database per token")
    assert transactions == calls + 1  # and the pause
    assert db_ms < 50
