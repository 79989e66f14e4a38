"""Fault injection: which requests get a 429, a 5xx, a partial batch, a timeout, ... .

Rates come from a spec like `429=0.1,5xx=0.05,partial=0.05,timeout=0.02,invalid=0.01,slow=0.05`
and are drawn from a seeded RNG, so a run with the same seed and the same request sequence fails
the same requests. Every request consumes the same number of draws, whatever applies to it, so one
kind of request does not shift the faults of the others.
"""

from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

FAULT_KINDS: tuple[str, ...] = ("429", "5xx", "partial", "timeout", "invalid", "slow")


class FaultSpec(BaseModel):
    """Per-request probabilities of each fault (0 = never, 1 = always)."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    rate_limited: float = Field(0.0, ge=0, le=1, alias="429")
    server_error: float = Field(0.0, ge=0, le=1, alias="5xx")
    partial: float = Field(0.0, ge=0, le=1)
    timeout: float = Field(0.0, ge=0, le=1)
    invalid: float = Field(0.0, ge=0, le=1)
    slow: float = Field(0.0, ge=0, le=1)

    @classmethod
    def parse(cls, text: str | None) -> "FaultSpec":
        """`"429=0.1,5xx=0.05"` -> FaultSpec; "" / None / "off" -> no faults.

        Raises ValueError naming the bad key or value.
        """
        if text is None or text.strip().lower() in ("", "off", "none"):
            return cls()
        values: dict[str, float] = {}
        for item in text.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key = key.strip().lower()
            if not sep:
                raise ValueError(f"fault {item!r} is not KIND=RATE")
            if key not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {key!r}; known: {', '.join(FAULT_KINDS)}")
            try:
                rate = float(raw)
            except ValueError:
                raise ValueError(f"fault {key!r}: rate {raw.strip()!r} is not a number") from None
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault {key!r}: rate {rate} is not between 0 and 1")
            values[key] = rate
        return cls.model_validate(values)

    def __str__(self) -> str:
        data = self.model_dump(by_alias=True)
        return ",".join(f"{k}={v:g}" for k, v in data.items() if v) or "off"

    def kinds(self) -> set[str]:
        """The fault kinds with a non-zero rate, by their spec names ("429", "5xx", ...)."""
        return {k for k, v in self.model_dump(by_alias=True).items() if v}

    def limited_to(self, allowed: Sequence[str], where: str) -> "FaultSpec":
        """This spec, or ValueError naming the kinds that `where` cannot inject."""
        extra = sorted(self.kinds() - set(allowed))
        if extra:
            raise ValueError(f"fault kind(s) {', '.join(extra)} do not apply to {where}; "
                             f"supported: {', '.join(allowed)}")
        return self


@dataclass(frozen=True)
class RequestFaults:
    """What happens to one request. Handlers apply the batch-level ones themselves."""

    rate_limited: bool = False
    server_error: int | None = None  # 502 or 503 (500, 502 or 503 from `draw_keyed`)
    server_error_html: bool = False
    partial: bool = False
    timeout: bool = False
    invalid: bool = False
    slow: bool = False
    key: str | None = None  # what the draws were keyed on (`FaultInjector.draw(key=...)`)

    @property
    def any(self) -> bool:
        return bool(self.rate_limited or self.server_error or self.partial or self.timeout
                    or self.invalid or self.slow)


NO_FAULTS = RequestFaults()


class FaultInjector:
    """Draws faults for each request from a seeded RNG; the spec can be swapped at run time."""

    def __init__(self, spec: FaultSpec | None = None, seed: int = 0) -> None:
        self._spec = spec or FaultSpec()
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._seen: dict[str, int] = {}

    @property
    def spec(self) -> FaultSpec:
        return self._spec

    def configure(self, spec: FaultSpec, seed: int | None = None) -> None:
        with self._lock:
            self._spec = spec
            if seed is not None:
                self._seed = seed
                self._rng = random.Random(seed)
                self._seen.clear()

    def draw(self, *, is_write: bool, is_batch_write: bool, key: str | None = None) -> RequestFaults:
        """The faults of one request. With `key` (the request's method, path and body), the draw
        is a function of the seed, the key and how many times that key came before: clients
        that send several requests at once get the same faults whatever their arrival order.
        Without it, the next numbers of the seeded sequence."""
        spec = self._spec
        with self._lock:
            if key is not None:
                nth = self._seen.get(key, 0) + 1
                self._seen[key] = nth
                key = f"{key}#{nth}"
                seed = self._seed
            else:
                u = [self._rng.random() for _ in range(8)]
        if key is not None:
            u = [_unit(seed, key, f"draw{i}") for i in range(8)]
        if u[0] < spec.rate_limited:
            return RequestFaults(rate_limited=True, key=key)
        if u[1] < spec.server_error:
            return RequestFaults(server_error=502 if u[6] < 0.5 else 503, server_error_html=u[7] < 0.5, key=key)
        return RequestFaults(
            partial=is_batch_write and u[2] < spec.partial,
            timeout=is_write and u[3] < spec.timeout,
            invalid=is_batch_write and u[4] < spec.invalid,
            slow=u[5] < spec.slow,
            key=key,
        )

    def pick_records(self, ids: Sequence[str], share: float = 0.3, key: str | None = None) -> list[str]:
        """The records of a batch that a partial/invalid fault fails: about `share`, at least one
        (keyed by the request's `RequestFaults.key` when it has one, like `draw`)."""
        if not ids:
            return []
        if key is not None:
            picked = [i for i in ids if _unit(self._seed, key, f"pick:{i}") < share]
            return picked or [min(ids, key=lambda i: _unit(self._seed, key, f"pick:{i}"))]
        with self._lock:
            picked = [i for i in ids if self._rng.random() < share]
            if not picked:
                picked = [ids[self._rng.randrange(len(ids))]]
        return picked


def _unit(seed: int, key: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def draw_keyed(spec: FaultSpec, seed: int, key: str) -> RequestFaults:
    """The fault of the request named `key` (e.g. "example.com#3": its 3rd lookup), a pure
    function of (seed, key) instead of a shared RNG: concurrent clients reach the server in any
    order, and the faults must not depend on it. Only the kinds of a plain GET: 429, 5xx
    (500/502/503) and timeout; at most one per request."""
    if not (spec.rate_limited or spec.server_error or spec.timeout):
        return NO_FAULTS
    if _unit(seed, key, "429") < spec.rate_limited:
        return RequestFaults(rate_limited=True)
    if _unit(seed, key, "5xx") < spec.server_error:
        return RequestFaults(server_error=(500, 502, 503)[int(_unit(seed, key, "5xx-code") * 3)])
    if _unit(seed, key, "timeout") < spec.timeout:
        return RequestFaults(timeout=True)
    return NO_FAULTS
