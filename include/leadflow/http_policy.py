"""One HTTP policy for every outbound client of leadflow: both CRM sessions and the enrichment API.

A client subclasses `PolicyClient` and only *declares*: its name, its error table
(`standard_policy` plus its overrides), how to read an error body, how to send one attempt (auth,
base URL, transport) and, if it has one, what its rate-limit answers mean. The request loop, the
reading of `Retry-After` and the one backoff formula live here, once.

Each attempt of `PolicyClient.call`:

1. `before_request(bucket)` (a spent daily budget or an abandoned run raises here), then a token
   from the call's limiter (client-side pacing, shared by every caller of the API);
2. the attempt is sent; a transport failure becomes one of the keys below (`failure_key`), an
   answer is shown to `observe` (e.g. to track rate-limit headers);
3. an answer below 400 is returned. Anything else looks up its row of the error table, by
   (status, error code) first, then by status, then "other 4xx" / "other 5xx":

   - a row that is not retried raises its exception at once (`final_error`);
   - a row retried for reads only (`reads_only`: the request was sent, its outcome is unknown)
     raises `write_unknown_error` for a write, at once: the caller reads back;
   - a retried row waits, then tries again. The wait is, in this order:
       1. the answer's `Retry-After` (delay-seconds or an HTTP date), when it has one;
       2. else the larger of the backoff and the least wait: for a rate-limit row the client's
          `rate_limit_wait` (its connection's setting; it may raise instead, e.g. for a daily
          limit), for any other row the row's `min_wait_s`;
     a server-told wait is capped at `RetryConfig.retry_after_max_s`. A rate-limit row also
     pauses the call's limiter for that long, so every caller sharing it backs off;
   - after `max_retries` retries, `exhausted_error`.

The standard table (`standard_policy`; a client names its exceptions and adds overrides):

==================  ========  ===========================================  =============
status / failure    retried?  how                                          error kind
==================  ========  ===========================================  =============
400, 409            no        -                                            request
401, 403            no        -                                            auth
404                 no        -                                            not found
423 locked          yes       Retry-After, else backoff, at least 2 s      unavailable
429 rate limited    yes       Retry-After, else backoff, at least 1 s or   unavailable
                              the client's rate-limit wait
500 502 503 504     yes       Retry-After, else backoff                    unavailable
other 4xx           no        -                                            request
other 5xx           yes       Retry-After, else backoff                    unavailable
connect failure     yes       backoff (nothing reached the server)         unavailable
read timeout        reads     backoff; a write: its outcome is unknown     unavailable
connection lost     reads     as read timeout                              unavailable
response cut off    reads     as read timeout (the status line came but    unavailable
                              the body broke off or did not decode)
==================  ========  ===========================================  =============

Backoff: retry n (1-based) waits between d/2 and d, d = min(backoff_max_s, backoff_base_s *
2**(n-1)); where in that range comes from the injected `jitter` (a number in [0, 1]).

Sleeping goes through an injected `sleeper`, the wall clock (for HTTP-date `Retry-After`) and
the jitter are injected too, so tests run the whole policy without real sleeps. Retry logs carry
the client, method, path, key and counts: never bodies, query strings or credentials.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from datetime import timezone
from typing import Any, Callable, ClassVar, Generic, Mapping, Protocol, TypeVar

import requests
from urllib3.exceptions import NewConnectionError

log = logging.getLogger(__name__)

Sleeper = Callable[[float], None]
Jitter = Callable[[], float]

# Keys of an error table for failures that have no HTTP status, and for statuses without a row.
CONNECT_FAILED = "connect failure"
READ_TIMEOUT = "read timeout"
CONNECTION_LOST = "connection lost"
RESPONSE_CUT_OFF = "response cut off"
OTHER_4XX = "other 4xx"
OTHER_5XX = "other 5xx"

# A cut-off answer (chunked body broken off, a gzip body that does not decode) is not a
# requests.ConnectionError, yet it is as transient: the server was reached and may have acted.
CUT_OFF_ERRORS: tuple[type[requests.RequestException], ...] = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# Failures of the transport, not of the request: worth another try for a read, an unknown outcome
# for a write. For callers outside the loop (a read-back after an unknown write).
TRANSIENT_TRANSPORT_ERRORS: tuple[type[requests.RequestException], ...] = (
    requests.ConnectionError, requests.Timeout, *CUT_OFF_ERRORS,
)

Key = Any  # an HTTP status (int), a failure kind (str), or (status, error code)


@dataclass(frozen=True)
class ErrorRule:
    retry: bool
    error: type[Exception]  # raised when not retried, or when the retries are spent
    min_wait_s: float = 0.0
    reads_only: bool = False  # retried only for idempotent calls; a write -> write_unknown_error
    rate_limit: bool = False  # a rate-limit answer: counted as such, asks `rate_limit_wait`, pauses the limiter


ErrorPolicy = Mapping[Key, ErrorRule]


def standard_policy(
    *,
    request: type[Exception],
    auth: type[Exception],
    not_found: type[Exception],
    unavailable: type[Exception],
) -> dict[Key, ErrorRule]:
    """The standard error table (module docstring) with the client's exception for each kind."""
    retried = ErrorRule(retry=True, error=unavailable)
    read_retried = ErrorRule(retry=True, error=unavailable, reads_only=True)
    return {
        400: ErrorRule(retry=False, error=request),
        401: ErrorRule(retry=False, error=auth),
        403: ErrorRule(retry=False, error=auth),
        404: ErrorRule(retry=False, error=not_found),
        409: ErrorRule(retry=False, error=request),
        423: ErrorRule(retry=True, error=unavailable, min_wait_s=2.0),
        429: ErrorRule(retry=True, error=unavailable, min_wait_s=1.0, rate_limit=True),
        500: retried,
        502: retried,
        503: retried,
        504: retried,
        OTHER_4XX: ErrorRule(retry=False, error=request),
        OTHER_5XX: retried,
        CONNECT_FAILED: retried,
        READ_TIMEOUT: read_retried,
        CONNECTION_LOST: read_retried,
        RESPONSE_CUT_OFF: read_retried,
    }


def lookup(policy: ErrorPolicy, key: int | str, code: str | None = None) -> ErrorRule:
    """The row for a status (and the API's error code, when the table has a row for both) or a
    failure kind; a status without a row falls back to "other 4xx" / "other 5xx"."""
    if code is not None and (key, code) in policy:
        return policy[(key, code)]
    if key in policy:
        return policy[key]
    if isinstance(key, int) and key >= 500:
        return policy[OTHER_5XX]
    return policy[OTHER_4XX]


@dataclass(frozen=True)
class RetryConfig:
    max_retries: int = 5  # attempts = max_retries + 1
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 300.0  # the longest wait a server's Retry-After (or reset) gets


def backoff_delay(retry: int, base_s: float, max_s: float, jitter: float) -> float:
    """Retry n (1-based) waits between d/2 and d, d = min(max_s, base_s * 2**(n-1)); `jitter`
    in [0, 1] picks where."""
    ceiling = min(max_s, base_s * (2 ** max(0, retry - 1)))
    return ceiling * (0.5 + 0.5 * min(1.0, max(0.0, jitter)))


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, whatever the case of its name in `headers`."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, found in headers.items():
        if key.lower() == lowered:
            return found
    return None


def retry_after_s(value: str | None, wall_now_s: float) -> float | None:
    """Seconds a `Retry-After` value asks for: delay-seconds, or an HTTP date (from now on the
    wall clock); None when absent or unreadable. Never negative."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - wall_now_s)


@dataclass(frozen=True)
class ErrorInfo:
    """What an API said in an error body (parsed by the client's `parse_error`)."""

    message: str = ""
    category: str | None = None  # the API's error code
    correlation_id: str | None = None
    policy_name: str | None = None  # rate-limit policy of a 429
    scopes: tuple[str, ...] = ()  # scopes a 403 says are missing


def make_error(cls: type[Exception], message: str, *, status: int | None = None,
               info: ErrorInfo | None = None) -> Exception:
    """An exception of `cls` carrying `.status`, `.category` and `.correlation_id`."""
    exc = cls(message)
    exc.status = status  # type: ignore[attr-defined]
    exc.category = info.category if info else None  # type: ignore[attr-defined]
    exc.correlation_id = info.correlation_id if info else None  # type: ignore[attr-defined]
    return exc


@dataclass(frozen=True)
class Failure:
    """One failed attempt, as the error hooks see it."""

    method: str
    path: str
    bucket: str
    key: int | str
    rule: ErrorRule
    info: ErrorInfo
    attempts: int  # attempts made so far, this one included
    cause: str | None = None  # the transport exception's type, when there was no answer

    @property
    def status(self) -> int | None:
        return self.key if isinstance(self.key, int) else None


class Limiter(Protocol):
    """Client-side pacing (`leadflow.crm.ratelimit.TokenBucket`)."""

    def acquire(self, tokens: float = 1.0) -> float: ...

    def pause(self, seconds: float) -> None: ...


class StatusAnswer(Protocol):
    status_code: int
    headers: Mapping[str, str]


R = TypeVar("R", bound=StatusAnswer)


class PolicyClient(Generic[R]):
    """The request loop and its hooks; a client subclasses it and declares its specifics."""

    api_name: ClassVar[str] = "HTTP API"
    error_policy: ClassVar[ErrorPolicy]
    write_unknown_error: ClassVar[type[Exception]]
    retry_log_level: ClassVar[int] = logging.WARNING

    def __init__(self, *, retry: RetryConfig = RetryConfig(), sleeper: Sleeper = time.sleep,
                 jitter: Jitter, wall_clock: Callable[[], float] = time.time) -> None:
        self.retry = retry
        self._sleeper = sleeper
        self._jitter = jitter
        self._wall_clock = wall_clock

    # --- what a client declares ------------------------------------------------------------------
    def parse_error(self, response: R) -> ErrorInfo:
        """Read the API's error body."""
        return ErrorInfo()

    def rate_limit_wait(self, response: R, info: ErrorInfo) -> float | None:
        """Least seconds to wait after a rate-limit answer without `Retry-After`, or None; raise
        to stop instead (e.g. a daily limit)."""
        return None

    def before_request(self, bucket: str) -> None:
        """Called before each attempt (e.g. to stop when a daily budget is spent)."""

    def observe(self, response: R) -> None:
        """Called with every answer (e.g. to track rate-limit headers)."""

    def count(self, name: str, amount: float = 1) -> None:
        """Add to one of the client's counters."""

    def failure_key(self, exc: Exception) -> str | None:
        """The error-table key of a transport failure; None: not one, raised as it is."""
        return requests_failure_key(exc)

    def final_error(self, failure: Failure) -> Exception:
        """The exception of a row that is not retried."""
        info = failure.info
        category = f" {info.category}" if info.category else ""
        detail = f": {info.message}" if info.message else ""
        return make_error(failure.rule.error,
                          f"{self.api_name} rejected {failure.method} {failure.path} ({failure.key}{category}){detail}",
                          status=failure.status, info=info)

    def exhausted_error(self, failure: Failure) -> Exception:
        """The exception once a retried row has used up the retries."""
        return make_error(failure.rule.error,
                          f"{self.api_name} {failure.method} {failure.path}: still failing with {failure.key} after "
                          f"{failure.attempts} attempts; try the run again later",
                          status=failure.status, info=failure.info)

    # --- the loop --------------------------------------------------------------------------------
    def call(self, send: Callable[[], R], *, method: str, path: str, idempotent: bool,
             bucket: str = "general", limiter: Limiter | None = None) -> R:
        """Send one logical request through `send` (one attempt per call), applying the error
        policy; return the answer below 400. `path` names the call in messages and logs."""
        retries = 0
        while True:
            self.before_request(bucket)
            if limiter is not None:
                waited = limiter.acquire()
                if waited:
                    self.count("throttled_s", waited)
            self.count("requests")
            response: R | None = None
            cause = None
            try:
                response = send()
                key: int | str = response.status_code
            except Exception as exc:
                failure = self.failure_key(exc)
                if failure is None:
                    raise
                key, cause = failure, type(exc).__name__
            if response is not None:
                self.observe(response)
                if response.status_code < 400:
                    return response
            info = self.parse_error(response) if response is not None else ErrorInfo()
            rule = lookup(self.error_policy, key, info.category)
            self._count_failure(key, rule)
            failure = Failure(method, path, bucket, key, rule, info, retries + 1, cause)
            if rule.reads_only and not idempotent:
                raise make_error(self.write_unknown_error,
                                 f"{self.api_name} {method} {path}: {key} after the request was sent; "
                                 "the write may or may not have been applied (read the records back)", info=info)
            if not rule.retry:
                raise self.final_error(failure)
            delay = self._wait(rule, response, info, retries)
            if rule.rate_limit and limiter is not None:
                # Everyone sharing the limiter backs off, not only this caller.
                limiter.pause(delay)
            if retries >= self.retry.max_retries:
                raise self.exhausted_error(failure)
            retries += 1
            self.count("retries")
            self.count("backoff_s", delay)
            log.log(self.retry_log_level, "%s %s %s -> %s; retry %d/%d in %.2f s", self.api_name, method, path,
                    key, retries, self.retry.max_retries, delay)
            self._sleeper(delay)

    def backoff(self, retry_index: int) -> float:
        """The jittered exponential delay before retry number `retry_index` (0-based)."""
        return backoff_delay(retry_index + 1, self.retry.backoff_base_s, self.retry.backoff_max_s, self._jitter())

    def _wait(self, rule: ErrorRule, response: R | None, info: ErrorInfo, retries: int) -> float:
        """How long to wait before the next attempt: Retry-After first, else backoff raised to the
        least wait (module docstring)."""
        client_wait = self.rate_limit_wait(response, info) if rule.rate_limit and response is not None else None
        told = retry_after_s(header(response.headers, "Retry-After"), self._wall_clock()) \
            if response is not None else None
        if told is not None:
            return min(told, self.retry.retry_after_max_s)
        # The client's own rate-limit wait (its connection's setting) replaces the row's default.
        least = rule.min_wait_s if client_wait is None else min(client_wait, self.retry.retry_after_max_s)
        return max(self.backoff(retries), least)

    def _count_failure(self, key: int | str, rule: ErrorRule) -> None:
        if isinstance(key, str):
            self.count("timeouts" if key == READ_TIMEOUT else "connection_errors")
        elif rule.rate_limit:
            self.count("rate_limited")
        elif key >= 500:
            self.count("server_errors")


def requests_failure_key(exc: Exception) -> str | None:
    """The error-table key of a `requests` failure; None for anything else."""
    if isinstance(exc, requests.ConnectTimeout):
        return CONNECT_FAILED
    if isinstance(exc, requests.ReadTimeout):
        return READ_TIMEOUT
    if isinstance(exc, requests.ConnectionError):
        return CONNECT_FAILED if _never_connected(exc) else CONNECTION_LOST
    if isinstance(exc, CUT_OFF_ERRORS):
        return RESPONSE_CUT_OFF
    return None


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection was refused / not established: the request never left."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError):
            return True
        reason = getattr(cur, "reason", None)
        nxt = reason if isinstance(reason, BaseException) else None
        if nxt is None and cur.args and isinstance(cur.args[0], BaseException):
            nxt = cur.args[0]
        cur = nxt or cur.__cause__ or cur.__context__
    return False
