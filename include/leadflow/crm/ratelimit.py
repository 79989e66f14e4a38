"""A thread-safe token bucket with an injectable clock and sleeper.

Client-side pacing: the HubSpot session (a bucket per limit) and the enrichment provider take a
token before every attempt, to stay under an API's rate limit *before* the API has to say 429;
after a 429 the request loop (`leadflow.http_policy`) pauses the bucket for every sharer.
Salesforce has no per-second limit to pace against (its budget is the daily allocation).

Why a reserving bucket: `acquire()` takes its token immediately (the balance may go negative)
and then sleeps until that token would have been earned. Concurrent callers therefore queue in
arrival order without holding the lock while they sleep, and the spacing between them is exact.

Rolling windows: APIs such as HubSpot count requests in a *rolling* window ("5 in any 1 s").
A bucket with capacity C and rate r admits at most C + r*W requests in any window of W seconds,
so a full-capacity burst followed by the steady rate overshoots the window. A bucket with
capacity 1 (no burst) and a rate a little under limit/window cannot overshoot: consecutive
requests are spaced by slightly more than window/limit (what `HubSpotSession` builds).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

Clock = Callable[[], float]
Sleeper = Callable[[float], None]


class TokenBucket:
    """`rate` tokens per second, holding at most `capacity` tokens (the allowed burst).

    The bucket starts full. `clock` must be monotonic (seconds); `sleeper` blocks for the given
    number of seconds. Both default to the real ones and are injected by tests.
    """

    def __init__(
        self,
        rate: float,
        capacity: float = 1.0,
        *,
        clock: Clock = time.monotonic,
        sleeper: Sleeper = time.sleep,
        name: str = "bucket",
    ) -> None:
        if rate <= 0:
            raise ValueError(f"TokenBucket {name!r}: rate must be > 0, got {rate}")
        if capacity < 1:
            raise ValueError(f"TokenBucket {name!r}: capacity must be >= 1, got {capacity}")
        self.name = name
        self.rate = float(rate)
        self.capacity = float(capacity)
        self._clock = clock
        self._sleeper = sleeper
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._updated = clock()
        self._paused_until = float("-inf")
        self.acquired = 0

    # --- internals (call with the lock held) ------------------------------------------------
    def _refill(self, now: float) -> None:
        start = max(self._updated, self._paused_until)
        if now > start:
            self._tokens = min(self.capacity, self._tokens + (now - start) * self.rate)
        self._updated = max(self._updated, now)

    def _reserve(self, tokens: float, now: float) -> float:
        """Take `tokens` and return how long the caller must wait before using them."""
        self._refill(now)
        self._tokens -= tokens
        self.acquired += 1
        wait = max(0.0, self._paused_until - now)
        if self._tokens < 0:
            # Tokens are earned only after the pause ends, so the deficit is added to it.
            wait = max(wait, 0.0) + (-self._tokens) / self.rate
        return wait

    # --- public API -----------------------------------------------------------------------------
    def acquire(self, tokens: float = 1.0) -> float:
        """Block until `tokens` may be spent; return the seconds waited."""
        if tokens > self.capacity:
            raise ValueError(f"TokenBucket {self.name!r}: {tokens} tokens exceed capacity")
        with self._lock:
            wait = self._reserve(tokens, self._clock())
        if wait > 0:
            self._sleeper(wait)
        return wait

    def try_acquire(self, tokens: float = 1.0) -> bool:
        """Take `tokens` only if that needs no waiting; never blocks."""
        with self._lock:
            now = self._clock()
            self._refill(now)
            if now < self._paused_until or self._tokens < tokens:
                return False
            self._tokens -= tokens
            self.acquired += 1
            return True

    def pause(self, seconds: float) -> None:
        """Stop handing out tokens for `seconds` (after a 429: every sharer backs off)."""
        if seconds <= 0:
            return
        with self._lock:
            now = self._clock()
            self._refill(now)
            self._paused_until = max(self._paused_until, now + seconds)
            # Drain the bucket so the pause is not followed by a burst.
            self._tokens = min(self._tokens, 0.0)

    def available(self) -> float:
        """Tokens available now (negative while callers are queued)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens

    def __repr__(self) -> str:
        return f"TokenBucket(name={self.name!r}, rate={self.rate:.3f}/s, capacity={self.capacity:g})"
