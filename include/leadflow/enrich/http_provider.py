"""The HTTP company-enrichment provider (Clearbit-style `GET /v2/companies/find?domain=`).

Per distinct domain, one logical GET through the shared request loop of `leadflow.http_policy`
(the same one the CRM sessions use), with:
- a client-side token bucket shared by all worker threads (stay under the API's limit before
  it has to say 429), paused for everyone after a 429 and when an answer reports an exhausted
  window;
- up to `concurrency` requests in flight (a thread pool);
- answers: 200 -> matched, 404 -> not_found, 202 -> "queued": asked again after
  `pending_delay_s`, at most `pending_rounds` more times in this run, then reported as pending
  (never cached as not found); 429, 5xx and network failures (a read timeout included, one
  attempt each) -> the standard table: `Retry-After` first, else the API's reset header
  (`X-RateLimit-Reset`) or bounded exponential backoff with jitter, at most `max_attempts`
  requests, then the domain is left unresolved for this run as an error (never cached, so the
  next run asks again); 401/403 -> every remaining lookup of the run is abandoned (the key is
  wrong, more calls will not fix it); another 4xx -> an error for that domain, not retried.

Clock, sleeper, jitter and the transport are injected, so tests run the whole policy against a
fake transport without real sleeps. Logs carry counts and statuses, never the key, a domain or
payloads.
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
import requests
from requests.adapters import HTTPAdapter

from leadflow.crm.ratelimit import Clock, Sleeper, TokenBucket
from leadflow.enrich.payloads import PayloadError, parse_company
from leadflow.enrich.providers import (
    ERROR,
    NOT_FOUND,
    PENDING,
    CompanyRecord,
    records_to_frame,
)
from leadflow.enrich.settings import HttpSettings
from leadflow.http_policy import (
    CONNECT_FAILED,
    CONNECTION_LOST,
    READ_TIMEOUT,
    RESPONSE_CUT_OFF,
    ErrorInfo,
    PolicyClient,
    RetryConfig,
    header,
    retry_after_s,
    standard_policy,
)

log = logging.getLogger(__name__)


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
        return header(self.headers, name)


class Transport(Protocol):
    def get(
        self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str], timeout: float
    ) -> HttpResponse: ...


class RequestsTransport:
    """`Transport` over a pooled `requests.Session` (sized for the provider's concurrency)."""

    def __init__(self, pool_size: int = 8) -> None:
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def get(
        self, url: str, *, params: Mapping[str, str], headers: Mapping[str, str], timeout: float
    ) -> HttpResponse:
        try:
            response = self.session.get(url, params=params, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
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

    `Retry-After` (seconds or an HTTP date) wins; else `X-RateLimit-Reset`, which APIs send
    either as seconds until the reset or as an epoch time in seconds (values beyond ~2001 are
    taken as epoch).
    """
    told = retry_after_s(response.header("Retry-After"), wall_now_s)
    if told is not None:
        return told
    for name in ("X-RateLimit-Reset", "RateLimit-Reset"):
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


# --- the error table ---------------------------------------------------------------------------------
class LookupRefused(Exception):
    """401/403: the API refused the key; more calls will not fix it."""


class LookupRejected(Exception):
    """Another 4xx: the request is wrong for this domain; retrying cannot help."""


class LookupNotFound(Exception):
    """404: the API knows no company at this domain (an answer, not a failure)."""


class LookupUnavailable(Exception):
    """429, 5xx or a transport failure, still so after `max_attempts` requests."""


class LookupAbandoned(Exception):
    """The run's remaining lookups were abandoned (a refused key)."""


ERROR_POLICY = standard_policy(
    request=LookupRejected, auth=LookupRefused, not_found=LookupNotFound, unavailable=LookupUnavailable,
)
# `TransportError` carries the name of the requests exception it stands for.
_FAILURE_BY_NAME = {
    "ConnectTimeout": CONNECT_FAILED,
    "ReadTimeout": READ_TIMEOUT,
    "ChunkedEncodingError": RESPONSE_CUT_OFF,
    "ContentDecodingError": RESPONSE_CUT_OFF,
}


# --- the provider -----------------------------------------------------------------------------------
class HttpEnrichmentProvider(PolicyClient[HttpResponse]):
    """`CompanyProvider` over a company-enrichment HTTP API."""

    name = "api"
    remote = True
    api_name = "enrichment API"
    error_policy = ERROR_POLICY
    write_unknown_error = LookupUnavailable  # GETs only: never a write of unknown outcome
    retry_log_level = logging.DEBUG  # per domain; the lookup's summary counts them

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
        super().__init__(
            retry=RetryConfig(self.settings.max_attempts - 1, self.settings.backoff_base_s,
                              self.settings.backoff_max_s),
            sleeper=sleeper,
            jitter=jitter,
            wall_clock=wall_clock,
        )
        self.url = base_url.rstrip("/") + "/" + self.settings.path.lstrip("/")
        self._headers = {"Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._transport = transport or RequestsTransport(self.settings.concurrency)
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

    def _count(self, key: str, amount: float = 1) -> None:
        with self._lock:
            self.stats[key] += amount

    # --- declarations for the request loop -------------------------------------------------------
    def count(self, name: str, amount: float = 1) -> None:
        self._count(name, amount)

    def before_request(self, bucket: str) -> None:
        if self._abort.is_set():
            raise LookupAbandoned()

    def observe(self, response: HttpResponse) -> None:
        self._count(f"http_{response.status_code}")
        if response.status_code != 429 and window_exhausted(response):
            # Spend no request on a window the API already says is empty.
            wait = rate_limit_wait(response, self._wall_clock())
            self.bucket.pause(min(wait, self.retry.retry_after_max_s) if wait is not None else 1.0)

    def rate_limit_wait(self, response: HttpResponse, info: ErrorInfo) -> float | None:
        return rate_limit_wait(response, self._wall_clock())

    def failure_key(self, exc: Exception) -> str | None:
        if isinstance(exc, TransportError):
            return _FAILURE_BY_NAME.get(str(exc), CONNECTION_LOST)
        return None

    # --- one domain --------------------------------------------------------------------------------------
    def _fetch_one(self, domain: str, now_ms: int) -> CompanyRecord:
        def record(status: str) -> CompanyRecord:
            return CompanyRecord(domain, status=status, source=self.name, fetched_at=now_ms)

        def send() -> HttpResponse:
            try:
                return self._transport.get(
                    self.url, params={"domain": domain}, headers=self._headers, timeout=self.settings.timeout_s
                )
            except TransportError as exc:
                self._count("transport_errors")
                self._count(f"transport_{exc}")
                raise

        try:
            response = self.call(send, method="GET", path=self.settings.path, idempotent=True, limiter=self.bucket)
        except LookupNotFound:
            return record(NOT_FOUND)
        except LookupRefused as exc:
            if not self._abort.is_set():
                self._abort.set()
                log.error(
                    "enrichment API refused the key (HTTP %s): remaining lookups abandoned; "
                    "check the password of connection %r",
                    getattr(exc, "status", "?"),
                    self.settings.connection_id,
                )
            return record(ERROR)
        except LookupUnavailable:
            self._count("gave_up")
            return record(ERROR)
        except (LookupRejected, LookupAbandoned):
            return record(ERROR)
        if response.status_code == 200:
            try:
                return parse_company(response.body, domain, source=self.name, fetched_at=now_ms)
            except PayloadError:
                self._count("bad_payload")
                return record(ERROR)
        if response.status_code == 202:
            return record(PENDING)
        return record(ERROR)  # another answer below 400 carries no company
