"""One token bucket per API account, shared by every process that calls it: kept in the warehouse.

A per-process bucket (`leadflow.crm.ratelimit.TokenBucket`) cannot know what another worker
spends, so parallel tasks had to split the account's rate statically (`1 / shards`) and a 429 or a
spent daily budget seen by one of them was unknown to the others. `SharedBucket` keeps the bucket
in one row of the warehouse table `rate_limits` instead: every task, worker and host that uses
the same warehouse and key draws from one rate, honours one pause after a 429, and stops at one
daily-budget stop.

`acquire` is one short transaction. It locks the key's row (`SELECT ... FOR UPDATE` on
PostgreSQL; on SQLite `BEGIN IMMEDIATE`, which takes the database's write lock before the read),
refills it by the time passed, takes the token, stores the row and commits. As in `TokenBucket`
the balance may go negative: the token is *reserved*, and the caller sleeps outside the
transaction until it is due, so the lock is held for one round trip's time and callers of every
process queue in arrival order. After a sleep the row's pause is read once more (no lock): a
pause set by another process while this one slept is honoured too, with a new token after it.

Database round trips per API call: one locked transaction (select, update, commit: 3
statements) when no wait is needed, plus one read after a wait. Measured on the test suite's
PostgreSQL, `acquire` takes 0.7 ms (1.7 ms with the read), against the 40-200 ms between two calls
at the CRMs' rates: no local fast path (leases of several tokens) is needed, and none is kept,
since leased tokens a process no longer needs would be lost to the others.

Time is the database's clock (`clock_timestamp()` on PostgreSQL, `julianday('now')` on SQLite):
the one clock all workers share. Host clocks a few milliseconds apart would each refill the row
from their own "now", and every alternation between two of them would mint tokens. Tests inject
`clock` (seconds) and `sleeper` instead.

The arithmetic (`BucketState`) is the in-process `TokenBucket`'s: `rate` tokens per second, at
most `capacity`, tokens earned only after a pause ends, a pause empties the bucket so that it is
not followed by a burst. One difference: a pause also forgives the queue's reservations, because
their holders queue again after it instead of firing into it.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Column, Engine, Float, String, Table, Text, func, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from leadflow.warehouse.db import upsert
from leadflow.warehouse.tables import metadata

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleeper = Callable[[float], None]

# One row per shared bucket (e.g. "hubspot:leadflow_hubspot:general"). Times are epoch seconds of
# the database's clock (or the injected one); a zero means "never".
rate_limits = Table(
    "rate_limits",
    metadata,
    Column("key", String(250), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("paused_until", Float, nullable=False),
    Column("stopped_until", Float, nullable=False),
    Column("stop_reason", Text, nullable=True),
)

# A pause that ends less than this after a sleep is over: the two clocks (sleep, database) differ.
_PAUSE_SLACK_S = 0.001


class LimitStopped(RuntimeError):
    """Another process stopped the bucket (e.g. the daily API budget is spent): no more calls."""


@dataclass
class BucketState:
    """A bucket's balance at `updated`, and until when it is paused."""

    tokens: float
    updated: float
    paused_until: float = 0.0

    def refill(self, now: float, rate: float | None, capacity: float) -> None:
        start = max(self.updated, self.paused_until)
        if rate is None:  # not paced: always full
            self.tokens = capacity
        elif now > start:
            self.tokens = min(capacity, self.tokens + (now - start) * rate)
        self.updated = max(self.updated, now)

    def reserve(self, tokens: float, now: float, rate: float | None, capacity: float) -> float:
        """Take `tokens` (the balance may go negative) and return how long the caller must wait
        before using them: the rest of a pause, plus the deficit earned after it."""
        self.refill(now, rate, capacity)
        wait = max(0.0, self.paused_until - now)
        if rate is None:
            return wait
        self.tokens -= tokens
        if self.tokens < 0:
            wait += -self.tokens / rate
        return wait

    def pause(self, seconds: float, now: float, rate: float | None, capacity: float) -> None:
        """Hand out nothing for `seconds`, then start from an empty bucket (no burst after the
        pause). The queue's debt is forgiven: its holders are asleep with reservations the pause
        voids, and each takes a new token after it (`SharedBucket.acquire`)."""
        self.refill(now, rate, capacity)
        self.paused_until = max(self.paused_until, now + seconds)
        self.tokens = 0.0


class SharedBucket:
    """`rate` tokens per second, at most `capacity`, for every holder of `key` in `engine`'s
    warehouse. Interface of `leadflow.http_policy.Limiter` (`acquire`, `pause`) plus `stop`.

    `rate` None: not paced, only the pauses and stops are shared (an API whose limit is not a
    rate, such as Salesforce's concurrent requests and daily total). `stop_error` builds the
    exception `acquire` raises while a stop is in force (the CRM's budget error, so a stop set by
    one process fails the others the way their own would); `stop_s` is how long `stop` lasts
    unless told. `clock`: None for the database's clock; tests pass a fake one with its `sleeper`.
    """

    def __init__(
        self,
        engine: Engine,
        key: str,
        rate: float | None,
        capacity: float = 1.0,
        *,
        clock: Clock | None = None,
        sleeper: Sleeper = time.sleep,
        name: str | None = None,
        stop_error: Callable[[str], Exception] = LimitStopped,
        stop_s: float = 900.0,
    ) -> None:
        if rate is not None and rate <= 0:
            raise ValueError(f"SharedBucket {key!r}: rate must be > 0, got {rate}")
        if capacity < 1:
            raise ValueError(f"SharedBucket {key!r}: capacity must be >= 1, got {capacity}")
        if engine.dialect.name not in ("postgresql", "sqlite"):
            raise ValueError(f"SharedBucket: unsupported database {engine.dialect.name!r}")
        self.engine = engine
        self.key = key
        self.name = name or key
        self.rate = None if rate is None else float(rate)
        self.capacity = float(capacity)
        self.stop_s = stop_s
        self._clock = clock
        self._sleeper = sleeper
        self._stop_error = stop_error
        self._row_exists = False
        # Counters for the round-trip measurement (not thread-safe; approximate under threads).
        self.acquired = 0
        self.transactions = 0
        self.reads = 0

    def __repr__(self) -> str:
        rate = "not paced" if self.rate is None else f"{self.rate:.3f}/s"
        return f"SharedBucket(key={self.key!r}, rate={rate}, capacity={self.capacity:g})"

    # --- public API -----------------------------------------------------------------------------
    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` may be spent; return the seconds waited. Raises `stop_error`
        while a stop is in force."""
        if tokens > self.capacity:
            raise ValueError(f"SharedBucket {self.name!r}: {tokens} tokens exceed capacity")
        waited = 0.0
        while True:
            wait = self._locked(lambda state, now: state.reserve(tokens, now, self.rate, self.capacity))
            self.acquired += 1
            if wait <= 0:
                return waited
            self._sleeper(wait)
            waited += wait
            # A pause another process set while this one slept: its token was drained by the
            # pause; wait for the pause to end and queue again.
            if self._pause_left() <= _PAUSE_SLACK_S:
                return waited

    def pause(self, seconds: float) -> None:
        """Stop handing out tokens for `seconds`, for every holder of the key (after a 429)."""
        if seconds <= 0:
            return
        self._locked(lambda state, now: state.pause(seconds, now, self.rate, self.capacity))
        log.info("shared rate limit %s paused for %.2f s", self.name, seconds)

    def stop(self, reason: str, seconds: float | None = None) -> None:
        """Make every holder's `acquire` raise for `seconds` (default `stop_s`): the API's daily
        budget is spent. `reason` is shown in their error: counts and names only, never values."""
        seconds = self.stop_s if seconds is None else seconds
        if seconds <= 0:
            return
        with self._locked_row(check_stop=False) as (conn, row, now):
            conn.execute(update(rate_limits).where(rate_limits.c.key == self.key).values(
                stopped_until=max(row.stopped_until, now + seconds), stop_reason=reason[:500]))
        log.warning("shared rate limit %s stopped for %.0f s", self.name, seconds)

    def available(self) -> float:
        """Tokens available now (negative while callers are queued). Read only."""
        with self.engine.connect() as conn:
            self._ensure_row(conn)
            row, now = self._read(conn, lock=False)
        state = BucketState(row.tokens, row.updated_at, row.paused_until)
        state.refill(now, self.rate, self.capacity)
        return state.tokens

    # --- internals ------------------------------------------------------------------------------
    def _now_column(self) -> ColumnElement[float]:
        if self._clock is not None:
            return literal(self._clock(), Float)
        if self.engine.dialect.name == "postgresql":
            # clock_timestamp(), not now(): now() is the transaction's start, before the lock wait.
            return func.extract("epoch", func.clock_timestamp()).cast(Float)
        return ((func.julianday("now") - 2440587.5) * 86400.0).cast(Float)

    def _read(self, conn: Connection, *, lock: bool):
        query = select(rate_limits, self._now_column().label("now")).where(rate_limits.c.key == self.key)
        if lock:
            query = query.with_for_update()
        row = conn.execute(query).one()
        return row, float(row.now)

    def _ensure_row(self, conn: Connection) -> None:
        if self._row_exists:
            return
        # updated_at 0: the first refill fills the bucket to capacity.
        upsert(conn, rate_limits, [{"key": self.key, "tokens": self.capacity, "updated_at": 0.0,
                                    "paused_until": 0.0, "stopped_until": 0.0, "stop_reason": None}],
               update_columns=())
        conn.commit()
        self._row_exists = True

    @contextmanager
    def _locked_row(self, *, check_stop: bool = True) -> Iterator[tuple[Connection, Any, float]]:
        """The row locked in a transaction that commits when the block ends (closing the
        connection on an exception rolls it back); the stop error, if a stop is in force and
        `check_stop`, before the block changes anything."""
        with self.engine.connect() as conn:
            self._ensure_row(conn)
            if conn.dialect.name == "sqlite":
                # The write lock before the read: two deferred transactions that both read, then
                # both try to write, would fail with "database is locked" instead of queueing.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            row, now = self._read(conn, lock=True)
            self.transactions += 1
            if check_stop and row.stopped_until > now:
                raise self._stop_error(f"{self.name}: stopped by another process for {row.stopped_until - now:.0f} s "
                                       f"more ({row.stop_reason or 'no reason given'})")
            yield conn, row, now
            conn.commit()

    def _locked(self, change: Callable[[BucketState, float], float | None]) -> float:
        """Apply `change` to the row's state under its lock; raise while a stop is in force."""
        with self._locked_row() as (conn, row, now):
            state = BucketState(row.tokens, row.updated_at, row.paused_until)
            result = change(state, now)
            conn.execute(update(rate_limits).where(rate_limits.c.key == self.key).values(
                tokens=state.tokens, updated_at=state.updated, paused_until=state.paused_until))
        return result or 0.0

    def _pause_left(self) -> float:
        with self.engine.connect() as conn:
            self.reads += 1
            row = conn.execute(select(rate_limits.c.paused_until, self._now_column().label("now"))
                               .where(rate_limits.c.key == self.key)).one()
        return float(row.paused_until) - float(row.now)


@dataclass(frozen=True)
class SharedLimits:
    """Where the shared buckets live (a warehouse) and how long a stop lasts: what a CRM connector
    is given instead of per-process buckets; it names and sizes its buckets (`bucket`)."""

    engine: Engine
    stop_s: float = 900.0
    clock: Clock | None = None
    sleeper: Sleeper = time.sleep

    def bucket(self, key: str, rate: float | None, capacity: float = 1.0, *, name: str | None = None,
               stop_error: Callable[[str], Exception] = LimitStopped) -> SharedBucket:
        return SharedBucket(self.engine, key, rate, capacity, clock=self.clock, sleeper=self.sleeper, name=name,
                            stop_error=stop_error, stop_s=self.stop_s)


class RateLimitSettings(BaseModel):
    """`rate_limit:` in the pipeline settings."""

    model_config = ConfigDict(extra="forbid")

    # True / False; absent: shared when the warehouse is PostgreSQL (`shared_enabled`).
    shared: bool | None = None
    # How long a daily-budget stop found by one process stops the others' calls: long enough
    # for the run's parallel tasks, short enough that the next run tries again.
    budget_stop_s: float = Field(900.0, gt=0)


def shared_enabled(setting: bool | None, engine: Engine) -> bool:
    """Whether to use the shared limiter: the setting when given; by default on PostgreSQL only.
    A SQLite warehouse is one host's file, and the pipeline's long write transactions (a pull's
    pages, the push's bookkeeping) would hold every API call of the other processes behind them."""
    if setting is not None:
        return setting
    return engine.dialect.name == "postgresql"


def connector_limits(engine: Engine, settings: RateLimitSettings, rate_share: float = 1.0) -> dict[str, Any]:
    """A CRM connector's rate-limit options: `limits` (the buckets shared in `engine`'s warehouse)
    when the shared limiter is on, else this process's static `rate_share` of each limit."""
    if shared_enabled(settings.shared, engine):
        return {"limits": SharedLimits(engine, stop_s=settings.budget_stop_s)}
    return {"rate_share": rate_share} if rate_share != 1.0 else {}
