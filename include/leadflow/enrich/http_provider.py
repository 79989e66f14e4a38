"""The HTTP company-enrichment provider (Clearbit-style `GET /v2/companies/find?domain=`).

Per distinct domain, one GET, with:
- a client-side token bucket shared by all worker threads (stay under the API's limit before
  it has to say 429), paused for everyone when the API reports an exhausted window;
- up to `concurrency` requests in flight (a thread pool);
- answers: 200 -> matched, 404 -> not_found, 202 -> "queued": asked again after
  `pending_delay_s`, at most `pending_rounds` more times in this run, then reported as pending
  (never cached as not found); 429 and 5xx and network failures (a read timeout included, one
  attempt each) -> bounded exponential backoff with jitter, at most `max_attempts` requests,
  then the domain is left unresolved for this run as an error (never cached, so the next run
  asks again); 401/403 -> every remaining lookup of the run is abandoned (the key is wrong, more
  calls will not fix it).

Clock, sleeper, jitter and the transport are injected, so tests run the whole policy against a
fake transport without real sleeps. Logs carry counts and statuses, never the key or payloads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol, Sequence

import pandas as pd

from leadflow.crm.ratelimit import TokenBucket
from leadflow.enrich.payloads import PayloadError, parse_company
from leadflow.enrich.providers import (
    ERROR,
    NOT_FOUND,
    PENDING,
    CompanyRecord,
    records_to_frame,
)
from leadflow.enrich.settings import HttpSettings

log = logging.getLogger(__name__)

Sleeper = Callable[[float], None]
Clock = Callable[[], float]


# --- transport ---------------------------------------------------------------------------------
class TransportError(Exception):
    """The request did not produce a usable HTTP response: connect failure, timeout, reset, or an
    answer cut off or not decodable (requests.RequestException of every kind)."""


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # parsed JSON, or None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None


class Transport(Protocol):
    def get(
        self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str], timeout: float
    ) -> HttpResponse: ...


class RequestsTransport:
    """`Transport` over a pooled `requests.Session` (sized for the provider's concurrency)."""

    def __init__(self, pool_size: int = 8) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self._requests = requests
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def get(
        self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        try:
            response = self.session.get(url, params=params, headers=headers, timeout=timeout)
        except self._requests.RequestException as exc:
            raise TransportError(type(exc).__name__) from None
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        return HttpResponse(response.status_code, dict(response.headers), body)

    def close(self) -> None:
        self.session.close()


# --- pure helpers --------------------------------------------------------------------------------
def rate_limit_wait(response: HttpResponse, wall_now_s: float) -> float | None:
    """Seconds to wait before the API accepts requests again, from its headers, or None.

    `Retry-After` (seconds) wins; else `X-RateLimit-Reset`, which APIs send either as seconds
    until the reset or as an epoch time in seconds (values beyond ~2001 are taken as epoch).
    """
    for name in ("Retry-After", "X-RateLimit-Reset", "RateLimit-Reset"):
        raw = response.header(name)
        if raw is None:
            continue
        try:
            value = float(raw)
        except ValueError:
            continue
        if value > 1e9:
            value -= wall_now_s
        return max(0.0, value)
    return None


def window_exhausted(response: HttpResponse) -> bool:
    """True when the API says no request is left in its current window."""
    raw = response.header("X-RateLimit-Remaining")
    try:
        return raw is not None and float(raw) <= 0
    except ValueError:
        return False


def backoff_delay(attempt: int, base_s: float, max_s: float, jitter: float) -> float:
    """Attempt n (1-based) waits between d/2 and d, d = min(max_s, base_s * 2**(n-1))."""
    ceiling = min(max_s, base_s * (2 ** max(0, attempt - 1)))
    return ceiling * (0.5 + 0.5 * min(1.0, max(0.0, jitter)))


# --- the provider -----------------------------------------------------------------------------------
class HttpEnrichmentProvider:
    """`CompanyProvider` over a company-enrichment HTTP API."""

    name = "api"
    remote = True

    def __init__(
        self,
        base_url: str,
        token: str | None,
        settings: HttpSettings | None = None,
        *,
        transport: Transport | None = None,
        bucket: TokenBucket | None = None,
        sleeper: Sleeper = time.sleep,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings or HttpSettings()
        self.url = base_url.rstrip("/") + "/" + self.settings.path.lstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._transport = transport or RequestsTransport(self.settings.concurrency)
        self._sleeper = sleeper
        self._wall_clock = wall_clock
        self._jitter = jitter
        self.bucket = bucket or TokenBucket(
            self.settings.requests_per_second,
            self.settings.burst,
            clock=clock,
            sleeper=sleeper,
            name="enrichment",
        )
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._asked = 0
        self.stats: Counter[str] = Counter()

    def __repr__(self) -> str:
        return f"HttpEnrichmentProvider(url={self.url!r})"

    def close(self) -> None:
        close = getattr(self._transport, "close", None)
        if close is not None:
            close()

    # --- CompanyProvider ---------------------------------------------------------------------
    def lookup(self, domains: Sequence[str], now_ms: int) -> pd.DataFrame:
        """Ask the API about each distinct domain (within the run's lookup budget)."""
        wanted = list(dict.fromkeys(d for d in domains if d))
        budget = max(0, self.settings.max_lookups_per_run - self._asked)
        if len(wanted) > budget:
            self.stats["skipped_budget"] += len(wanted) - budget
            log.warning(
                "enrichment API: lookup budget reached, %d domains left for later runs",
                len(wanted) - budget,
            )
            wanted = wanted[:budget]
        self._asked += len(wanted)
        if not wanted:
            return records_to_frame([])

        before = Counter(self.stats)
        answers: dict[str, CompanyRecord] = {}
        todo = wanted
        for round_no in range(self.settings.pending_rounds + 1):
            if round_no:
                # The API queued these lookups; give it time to finish them.
                self._sleeper(self.settings.pending_delay_s)
            for record in self._fetch_all(todo, now_ms):
                answers[record.domain] = record
            todo = [d for d in todo if answers[d].status == PENDING]
            if not todo or self._abort.is_set():
                break
        statuses = Counter(r.status for r in answers.values())
        done = Counter(self.stats)
        done.subtract(before)
        log.info(
            "enrichment API: %d domains -> %s (%d requests, %d rate limited, %d server errors, "
            "%d timeouts or network errors, %d retries, %d gave up)",
            len(wanted),
            dict(statuses),
            done["requests"],
            done["rate_limited"],
            done["server_errors"],
            done["transport_errors"],
            done["retries"],
            done["gave_up"],
        )
        if done["gave_up"]:
            log.warning(
                "enrichment API: %d domains unresolved after %d attempts each; not cached, "
                "the next run asks again",
                done["gave_up"],
                self.settings.max_attempts,
            )
        return records_to_frame(answers[d] for d in wanted)

    # --- internals ---------------------------------------------------------------------------------
    def _fetch_all(self, domains: list[str], now_ms: int) -> list[CompanyRecord]:
        if self.settings.concurrency == 1 or len(domains) == 1:
            return [self._fetch_one(d, now_ms) for d in domains]
        with ThreadPoolExecutor(
            max_workers=min(self.settings.concurrency, len(domains)),
            thread_name_prefix="enrich-http",
        ) as pool:
            return list(pool.map(lambda d: self._fetch_one(d, now_ms), domains))

    def _count(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.stats[key] += amount

    def _fetch_one(self, domain: str, now_ms: int) -> CompanyRecord:
        s = self.settings
        for attempt in range(1, s.max_attempts + 1):
            if self._abort.is_set():
                return CompanyRecord(domain, status=ERROR, source=self.name, fetched_at=now_ms)
            self.bucket.acquire()
            self._count("requests")
            try:
                response = self._transport.get(
                    self.url, params={"domain": domain}, headers=self._headers, timeout=s.timeout_s
                )
            except TransportError as exc:
                self._count("transport_errors")
                self._count(f"transport_{exc}")
                if attempt < s.max_attempts:
                    self._retry_wait(attempt)
                continue
            code = response.status_code
            self._count(f"http_{code}")
            if window_exhausted(response) and code != 429:
                # Spend no request on a window the API already says is empty.
                wait = rate_limit_wait(response, self._wall_clock())
                self.bucket.pause(wait if wait is not None else 1.0)
            if code == 200:
                try:
                    return parse_company(response.body, domain, source=self.name, fetched_at=now_ms)
                except PayloadError:
                    self._count("bad_payload")
                    return CompanyRecord(domain, status=ERROR, source=self.name, fetched_at=now_ms)
            if code == 404:
                return CompanyRecord(domain, status=NOT_FOUND, source=self.name, fetched_at=now_ms)
            if code == 202:
                return CompanyRecord(domain, status=PENDING, source=self.name, fetched_at=now_ms)
            if code in (401, 403):
                if not self._abort.is_set():
                    self._abort.set()
                    log.error(
                        "enrichment API refused the key (HTTP %d): remaining lookups abandoned; "
                        "check the password of connection %r",
                        code,
                        s.connection_id,
                    )
                return CompanyRecord(domain, status=ERROR, source=self.name, fetched_at=now_ms)
            if code == 429:
                self._count("rate_limited")
                wait = rate_limit_wait(response, self._wall_clock())
                backoff = backoff_delay(attempt, s.backoff_base_s, s.backoff_max_s, self._jitter())
                # Pause the shared bucket, so every worker waits, not just this one.
                self.bucket.pause(max(wait or 0.0, backoff))
                if attempt < s.max_attempts:
                    self._count("retries")
                continue
            if code >= 500:
                self._count("server_errors")
                if attempt < s.max_attempts:
                    self._retry_wait(attempt)
                continue
            # Other 4xx: the request itself is wrong for this domain; retrying cannot help.
            return CompanyRecord(domain, status=ERROR, source=self.name, fetched_at=now_ms)
        self._count("gave_up")
        return CompanyRecord(domain, status=ERROR, source=self.name, fetched_at=now_ms)

    def _retry_wait(self, attempt: int) -> None:
        s = self.settings
        self._count("retries")
        self._sleeper(backoff_delay(attempt, s.backoff_base_s, s.backoff_max_s, self._jitter()))
