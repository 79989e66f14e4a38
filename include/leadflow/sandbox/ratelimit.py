"""Rolling-window rate limits with an injectable clock (so tests never sleep).

HubSpot counts requests per token in a rolling window ("ten_secondly_rolling", "secondly") and
per day; the enrichment API counts per key per minute. One `SlidingWindowLimiter` per policy.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

Clock = Callable[[], float]  # seconds since the epoch


@dataclass(frozen=True)
class RateSpec:
    """`max_requests` per `interval_s` seconds; `None` means unlimited ("off")."""

    max_requests: int
    interval_s: float

    @classmethod
    def parse(cls, text: str) -> "RateSpec | None":
        """"100/10" -> 100 per 10 s, "600/60", "5/1"; "off" -> None."""
        text = text.strip().lower()
        if text in ("off", "none", "0"):
            return None
        match = re.fullmatch(r"(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*(s|m|min)?", text)
        if not match:
            raise ValueError(f"rate limit {text!r} is not of the form N/SECONDS (e.g. 100/10) or 'off'")
        count, interval, unit = int(match.group(1)), float(match.group(2)), match.group(3)
        if unit in ("m", "min"):
            interval *= 60
        if count <= 0 or interval <= 0:
            raise ValueError(f"rate limit {text!r} needs a positive count and interval")
        return cls(max_requests=count, interval_s=interval)

    def __str__(self) -> str:
        return f"{self.max_requests}/{self.interval_s:g}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_s: float  # seconds until the oldest counted request leaves the window


class SlidingWindowLimiter:
    """Counts requests per key over the last `interval_s` seconds (a rolling log, exact).

    A refused request is not counted, like HubSpot: hammering after a 429 does not extend it.
    """

    def __init__(self, spec: RateSpec, clock: Clock = time.time) -> None:
        self.spec = spec
        self._clock = clock
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Decision:
        now = self._clock()
        cutoff = now - self.spec.interval_s
        with self._lock:
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= cutoff:
                hits.popleft()
            allowed = len(hits) < self.spec.max_requests
            if allowed:
                hits.append(now)
            reset = (hits[0] + self.spec.interval_s - now) if hits else 0.0
            return Decision(allowed, self.spec.max_requests, self.spec.max_requests - len(hits), max(reset, 0.0))


class DailyLimiter:
    """Requests per key per UTC day (HubSpot's daily allocation resets at midnight)."""

    def __init__(self, max_per_day: int, clock: Clock = time.time) -> None:
        self.max_per_day = max_per_day
        self._clock = clock
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def hit(self, key: str) -> Decision:
        day = datetime.fromtimestamp(self._clock(), tz=timezone.utc).strftime("%Y-%m-%d")
        with self._lock:
            used = self._counts.get((key, day), 0)
            allowed = used < self.max_per_day
            if allowed:
                used += 1
                self._counts[(key, day)] = used
            return Decision(allowed, self.max_per_day, self.max_per_day - used, 0.0)
