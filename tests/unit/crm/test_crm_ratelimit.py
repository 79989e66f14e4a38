"""Token bucket: pacing, bursts, pauses and thread safety, all on a fake clock."""

from __future__ import annotations

import threading

import pytest
from crm_fakes import FakeClock

from leadflow.crm.ratelimit import TokenBucket


def test_given_full_bucket_when_acquiring_capacity_then_no_wait(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=2, capacity=3, clock=clock, sleeper=clock.sleep)
    waits = [bucket.acquire() for _ in range(3)]
    assert waits == [0.0, 0.0, 0.0]
    assert clock.sleeps == []


def test_given_empty_bucket_then_callers_are_spaced_by_one_over_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=4, capacity=1, clock=clock, sleeper=clock.sleep)
    bucket.acquire()
    for _ in range(3):
        bucket.acquire()
    assert clock.sleeps == pytest.approx([0.25, 0.25, 0.25])


def test_given_idle_time_then_tokens_refill_up_to_capacity_only(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, capacity=2, clock=clock, sleeper=clock.sleep)
    bucket.acquire()
    bucket.acquire()
    clock.now += 100  # long idle: refills to 2, not 1000
    assert bucket.available() == pytest.approx(2)
    bucket.acquire()
    bucket.acquire()
    assert bucket.acquire() == pytest.approx(0.1)


def test_given_capacity_one_and_rate_under_the_limit_then_no_rolling_window_exceeds_it(clock: FakeClock) -> None:
    bucket = TokenBucket(5 * (1 - 0.04), 1.0, clock=clock, sleeper=clock.sleep)  # 5 per 1 s, 4 % headroom
    stamps = []
    for _ in range(200):
        bucket.acquire()
        stamps.append(clock.now)
    # Any window [t, t + 1 s] holds at most 5 requests ...
    worst = max(sum(1 for s in stamps if t <= s <= t + 1.0) for t in stamps)
    assert worst <= 5
    # ... while the sustained rate stays above 90 % of the ceiling.
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert rate == pytest.approx(4.8, rel=1e-6)
    assert rate >= 0.9 * 5


def test_given_pause_then_next_acquire_waits_until_pause_ends(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=10, capacity=5, clock=clock, sleeper=clock.sleep)
    bucket.pause(2.0)
    start = clock.now
    bucket.acquire()
    assert clock.now - start == pytest.approx(2.0 + 0.1)
    assert bucket.try_acquire() is False  # drained: no burst right after a pause


def test_try_acquire_takes_only_when_no_wait_is_needed(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=1, capacity=1, clock=clock, sleeper=clock.sleep)
    assert bucket.try_acquire() is True
    assert bucket.try_acquire() is False
    clock.now += 1.0
    assert bucket.try_acquire() is True
    assert clock.sleeps == []


@pytest.mark.parametrize("kwargs", [{"rate": 0}, {"rate": -1}, {"rate": 1, "capacity": 0.5}])
def test_given_invalid_parameters_then_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        TokenBucket(**kwargs)


def test_given_tokens_above_capacity_then_acquire_raises(clock: FakeClock) -> None:
    bucket = TokenBucket(rate=1, capacity=2, clock=clock, sleeper=clock.sleep)
    with pytest.raises(ValueError, match="exceed capacity"):
        bucket.acquire(3)


def test_given_concurrent_callers_then_reservations_are_distinct_and_evenly_spaced() -> None:
    # Frozen clock: every caller reserves at the same instant, so the waits handed out must
    # be exactly 0, 1/r, 2/r, ... with no two callers sharing a slot.
    frozen = FakeClock()
    waits: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    bucket = TokenBucket(rate=10, capacity=1, clock=frozen, sleeper=record)
    threads = [threading.Thread(target=bucket.acquire) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(round(w, 6) for w in waits) == [round(i / 10, 6) for i in range(1, 50)]
    assert bucket.acquired == 50
