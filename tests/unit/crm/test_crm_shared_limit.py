"""The warehouse-kept token bucket (`leadflow.shared_limit`) on SQLite and PostgreSQL: holders of
one key share one rate, one pause and one stop; the arithmetic is the in-process bucket's. Time is
a fake clock (or the database's, with a sleeper that does not sleep)."""

from __future__ import annotations

import threading

import pytest
from crm_fakes import FakeClock
from sqlalchemy import select

from leadflow.shared_limit import LimitStopped, SharedBucket, SharedLimits, rate_limits, shared_enabled
from leadflow.warehouse.db import get_engine


class BudgetSpent(Exception):
    pass


def bucket(warehouse, clock: FakeClock, key: str = "hubspot:conn:general", rate: float | None = 4.0,
           **kwargs) -> SharedBucket:
    return SharedBucket(warehouse, key, rate, clock=clock, sleeper=clock.sleep, **kwargs)


def test_holders_of_one_key_share_one_rate(warehouse, clock: FakeClock) -> None:
    first, second = bucket(warehouse, clock), bucket(warehouse, clock)
    stamps = []
    for holder in (first, second) * 4:
        holder.acquire()
        stamps.append(clock.now)
    # 4 per second between both, as one bucket would: the first token is the full bucket's.
    assert [round(b - a, 6) for a, b in zip(stamps, stamps[1:])] == [0.25] * 7


def test_keys_are_independent(warehouse, clock: FakeClock) -> None:
    general, search = bucket(warehouse, clock), bucket(warehouse, clock, key="hubspot:conn:search")
    assert general.acquire() == 0.0
    assert search.acquire() == 0.0
    assert general.acquire() == pytest.approx(0.25)


def test_idle_time_refills_up_to_capacity_only(warehouse, clock: FakeClock) -> None:
    holder = bucket(warehouse, clock, rate=10, capacity=2)
    holder.acquire()
    holder.acquire()
    clock.now += 100
    assert holder.available() == pytest.approx(2)
    holder.acquire()
    holder.acquire()
    assert holder.acquire() == pytest.approx(0.1)


def test_a_pause_by_one_holder_makes_the_others_wait_until_it_ends(warehouse, clock: FakeClock) -> None:
    first, second = bucket(warehouse, clock, rate=10, capacity=5), bucket(warehouse, clock, rate=10, capacity=5)
    first.pause(2.0)
    start = clock.now
    second.acquire()
    # The pause drained the bucket: the token is earned after it, no burst follows.
    assert clock.now - start == pytest.approx(2.0 + 0.1)
    assert second.acquire() == pytest.approx(0.1)


def test_a_pause_set_while_a_holder_sleeps_sends_it_to_the_back_of_the_queue(warehouse, clock: FakeClock) -> None:
    other = bucket(warehouse, clock)

    def sleep_while_the_other_sees_a_429(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:
            other.pause(3.0)

    sleeper = SharedBucket(warehouse, other.key, 4.0, clock=clock, sleeper=sleep_while_the_other_sees_a_429)
    sleeper.acquire()  # the full bucket's token
    start = clock.now
    waited = sleeper.acquire()
    # 0.25 s for its token, then the 3 s pause and a new token earned after it.
    assert clock.sleeps == pytest.approx([0.25, 3.25])
    assert waited == pytest.approx(clock.now - start)


def test_a_pause_forgives_the_queue_whose_holders_queue_again_after_it(warehouse, clock: FakeClock) -> None:
    holder = bucket(warehouse, clock)
    holder.acquire()
    for _ in range(3):  # three holders reserve and fall asleep (their sleeper returns at once)
        SharedBucket(warehouse, holder.key, 4.0, clock=clock, sleeper=lambda s: None).acquire()
    assert holder.available() == pytest.approx(-3)
    holder.pause(2.0)
    # Not 2 s + 4 tokens' time: the three sleepers' reservations are void, they queue again.
    assert holder.acquire() == pytest.approx(2.0 + 0.25)


def test_a_stop_by_one_holder_fails_the_others_until_it_expires(warehouse, clock: FakeClock) -> None:
    first = bucket(warehouse, clock)
    second = bucket(warehouse, clock, stop_error=BudgetSpent)
    first.stop("daily API limit spent (429 DAILY)", 600)
    with pytest.raises(BudgetSpent, match=r"stopped by another process for 600 s more \(daily API limit spent"):
        second.acquire()
    first.stop("a shorter stop does not shorten it", 60)
    clock.now += 599
    with pytest.raises(LimitStopped):
        first.acquire()
    clock.now += 1
    assert second.acquire() == 0.0


def test_a_stop_lasts_the_configured_time_unless_told(warehouse, clock: FakeClock) -> None:
    limits = SharedLimits(warehouse, stop_s=120, clock=clock, sleeper=clock.sleep)
    first, second = limits.bucket("k", 4.0), limits.bucket("k", 4.0)
    first.stop("spent")
    clock.now += 119
    with pytest.raises(LimitStopped, match="1 s more"):
        second.acquire()
    clock.now += 1
    assert second.acquire() == 0.0


def test_an_unpaced_bucket_shares_only_pauses_and_stops(warehouse, clock: FakeClock) -> None:
    first, second = bucket(warehouse, clock, rate=None), bucket(warehouse, clock, rate=None)
    assert [first.acquire() for _ in range(50)] == [0.0] * 50
    second.pause(1.5)
    assert first.acquire() == pytest.approx(1.5)
    assert first.acquire() == 0.0  # no pacing after the pause either
    second.stop("spent", 60)
    with pytest.raises(LimitStopped):
        first.acquire()


def test_one_transaction_per_call_and_one_read_after_a_wait(warehouse, clock: FakeClock) -> None:
    holder = bucket(warehouse, clock)
    for _ in range(10):
        holder.acquire()
    assert (holder.acquired, holder.transactions, holder.reads) == (10, 10, 9)  # the first did not wait
    clock.now += 60
    holder.acquire()
    assert (holder.transactions, holder.reads) == (11, 9)


def test_capacity_one_under_the_limit_keeps_every_rolling_window_under_it(warehouse, clock: FakeClock) -> None:
    holders = [bucket(warehouse, clock, rate=5 * (1 - 0.04)) for _ in range(3)]  # 5 per 1 s, 4 % headroom
    stamps = []
    for i in range(60):
        holders[i % 3].acquire()
        stamps.append(clock.now)
    assert max(sum(1 for s in stamps if t <= s <= t + 1.0) for t in stamps) <= 5
    assert (len(stamps) - 1) / (stamps[-1] - stamps[0]) == pytest.approx(4.8)


def test_concurrent_holders_lose_no_update(warehouse, clock: FakeClock) -> None:
    """Several engines (as processes would have) take tokens at once at a frozen time: every
    reservation is counted, none overwritten by a holder that read the row before it."""
    engines = [get_engine(warehouse.url.render_as_string(hide_password=False)) for _ in range(4)]
    holders = [SharedBucket(e, "k", 1.0, clock=clock, sleeper=lambda s: None) for e in engines]
    errors: list[BaseException] = []

    def take(holder: SharedBucket) -> None:
        try:
            for _ in range(25):
                holder.acquire()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=take, args=(h,)) for h in holders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
    with warehouse.connect() as conn:
        tokens = conn.execute(select(rate_limits.c.tokens).where(rate_limits.c.key == "k")).scalar_one()
    assert tokens == pytest.approx(1 - 100)


def test_the_database_clock_paces_without_an_injected_clock(warehouse) -> None:
    slept: list[float] = []
    holder = SharedBucket(warehouse, "k", rate=0.5, sleeper=slept.append)
    assert holder.acquire() == 0.0
    # Not slept for real: the reservation says 2 s, less the few ms the database's clock moved.
    assert 1.5 < holder.acquire() <= 2.0
    assert holder.available() < 0


def test_bad_rate_or_capacity_or_too_many_tokens_are_refused(warehouse, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="rate"):
        bucket(warehouse, clock, rate=0)
    with pytest.raises(ValueError, match="capacity"):
        bucket(warehouse, clock, capacity=0.5)
    with pytest.raises(ValueError, match="exceed capacity"):
        bucket(warehouse, clock).acquire(2)


def test_shared_by_default_on_postgresql_only_unless_configured(warehouse) -> None:
    postgres = warehouse.dialect.name == "postgresql"
    assert shared_enabled(None, warehouse) is postgres
    assert shared_enabled(True, warehouse) is True
    assert shared_enabled(False, warehouse) is False
