"""The shared REST session of every CRM connector: auth, rate limiting, retries, error mapping.

A CRM module subclasses `RestSession` and only *declares* its specifics (name, how to read an
error body, what its 429s mean); the retry loop and the error policy live here, once.

Error policy (`ERROR_POLICY` below is this table; the code reads nothing else):

==================  ========  ==========================================  =====================
status / failure    retried?  how                                         raised when not
                                                                          retried / exhausted
==================  ========  ==========================================  =====================
400                 no        -                                           CrmRequestError (CRM's
                                                                          message and category)
401                 no        -                                           CrmAuthError (check the
                                                                          connection's token)
403                 no        -                                           CrmAuthError (names the
                                                                          missing scope if known)
404                 no        -                                           CrmNotFoundError
409                 no        -                                           CrmRequestError
423 locked          yes       backoff, at least 2 s                       CrmUnavailableError
429 rate limited    yes       backoff, at least what the CRM's policy     CrmUnavailableError;
                              needs (HubSpot SECONDLY / TEN_SECONDLY);    CrmBudgetExhausted at
                              the bucket is paused for every sharer       once for a DAILY limit
500 502 503 504     yes       backoff                                     CrmUnavailableError
other 4xx           no        -                                           CrmRequestError
other 5xx           yes       backoff                                     CrmUnavailableError
connect failure     yes       backoff (nothing reached the server)        CrmUnavailableError
read timeout        reads     backoff; a *write* is never retried: its    CrmUnavailableError;
                    only      outcome is unknown, the caller reads back   writes: WriteOutcome-
                                                                          Unknown at once
connection lost     reads     as read timeout                             as read timeout
response cut off    reads     as read timeout (the status line came but   as read timeout
                    only      the body broke off or did not decode)
==================  ========  ==========================================  =====================

"backoff" is bounded exponential with jitter: attempt n waits between d/2 and d where
d = min(backoff_max_s, backoff_base_s * 2**n), raised to the rule's minimum wait.
Idempotent calls are GET and anything the caller marks idempotent (search, batch read).

Sleeping goes through an injected `sleeper` (the buckets take the clock) and jitter through
`rng`, so tests run the whole policy without real sleeps. Logs carry method, path, status and
counts: never request or response bodies, never the token.
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Mapping, Sequence

import requests
from urllib3.exceptions import NewConnectionError

from leadflow.crm.base import (
    CrmAuthError,
    CrmError,
    CrmRequestError,
    CrmUnavailableError,
    RecordResult,
)
from leadflow.crm.ratelimit import Sleeper, TokenBucket

log = logging.getLogger(__name__)


class CrmNotFoundError(CrmRequestError):
    """404: the object or endpoint does not exist."""


class WriteOutcomeUnknown(CrmUnavailableError):
    """A write timed out or lost its connection after being sent: it may or may not have been
    applied. Not retried; the caller reads the records back to decide."""


# Keys of ERROR_POLICY for failures that have no HTTP status.
CONNECT_FAILED = "connect failure"
READ_TIMEOUT = "read timeout"
CONNECTION_LOST = "connection lost"
RESPONSE_CUT_OFF = "response cut off"

# A cut-off answer (chunked body broken off, a gzip body that does not decode) is not a
# requests.ConnectionError, yet it is as transient: the server was reached and may have acted.
CUT_OFF_ERRORS: tuple[type[requests.RequestException], ...] = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# Failures of the transport, not of the request: worth another try for a read, an unknown outcome
# for a write. For callers outside `RestSession.request` (a read-back, an OAuth token request).
TRANSIENT_TRANSPORT_ERRORS: tuple[type[requests.RequestException], ...] = (
    requests.ConnectionError, requests.Timeout, *CUT_OFF_ERRORS,
)


@dataclass(frozen=True)
class ErrorRule:
    retry: bool
    error: type[CrmError]
    min_wait_s: float = 0.0
    reads_only: bool = False  # retried only for idempotent calls; a write -> WriteOutcomeUnknown


ERROR_POLICY: dict[int | str, ErrorRule] = {
    400: ErrorRule(retry=False, error=CrmRequestError),
    401: ErrorRule(retry=False, error=CrmAuthError),
    403: ErrorRule(retry=False, error=CrmAuthError),
    404: ErrorRule(retry=False, error=CrmNotFoundError),
    409: ErrorRule(retry=False, error=CrmRequestError),
    423: ErrorRule(retry=True, error=CrmUnavailableError, min_wait_s=2.0),
    429: ErrorRule(retry=True, error=CrmUnavailableError, min_wait_s=1.0),
    500: ErrorRule(retry=True, error=CrmUnavailableError),
    502: ErrorRule(retry=True, error=CrmUnavailableError),
    503: ErrorRule(retry=True, error=CrmUnavailableError),
    504: ErrorRule(retry=True, error=CrmUnavailableError),
    CONNECT_FAILED: ErrorRule(retry=True, error=CrmUnavailableError),
    READ_TIMEOUT: ErrorRule(retry=True, error=CrmUnavailableError, reads_only=True),
    CONNECTION_LOST: ErrorRule(retry=True, error=CrmUnavailableError, reads_only=True),
    RESPONSE_CUT_OFF: ErrorRule(retry=True, error=CrmUnavailableError, reads_only=True),
}
_OTHER_4XX = ErrorRule(retry=False, error=CrmRequestError)
_OTHER_5XX = ErrorRule(retry=True, error=CrmUnavailableError)


def rule_for(key: int | str) -> ErrorRule:
    """The policy row for a status code or failure kind."""
    if key in ERROR_POLICY:
        return ERROR_POLICY[key]
    if isinstance(key, int) and key >= 500:
        return _OTHER_5XX
    return _OTHER_4XX


@dataclass(frozen=True)
class RetryConfig:
    max_retries: int = 5  # attempts = max_retries + 1
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass(frozen=True)
class ErrorInfo:
    """What a CRM said in an error body (parsed by the CRM's session subclass)."""

    message: str = ""
    category: str | None = None
    correlation_id: str | None = None
    policy_name: str | None = None  # rate-limit policy of a 429
    scopes: tuple[str, ...] = ()  # scopes a 403 says are missing


class Stats(Mapping[str, float]):
    """Thread-safe named counters shared by a session and its connector (run summaries, bench).

    Read as attributes (`stats.retries`, 0 when never counted) or as a mapping (`dict(stats)`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = {}

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + amount

    def count_results(self, results: Sequence[RecordResult]) -> None:
        """Add a push's per-record outcomes as `push_<status>` counters."""
        for status, count in Counter(r.status for r in results).items():
            self.add(f"push_{status}", count)

    def get(self, name: str, default: float = 0) -> float:  # type: ignore[override]
        with self._lock:
            return self._values.get(name, default)

    def __getattr__(self, name: str) -> float:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.get(name)

    def __getitem__(self, name: str) -> float:
        with self._lock:
            return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)

    def as_dict(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def __repr__(self) -> str:
        return f"Stats({self.as_dict()})"


def make_error(cls: type[CrmError], message: str, *, status: int | None = None, info: ErrorInfo | None = None) -> CrmError:
    """An exception of `cls` carrying `.status`, `.category` and `.correlation_id`."""
    exc = cls(message)
    exc.status = status  # type: ignore[attr-defined]
    exc.category = info.category if info else None  # type: ignore[attr-defined]
    exc.correlation_id = info.correlation_id if info else None  # type: ignore[attr-defined]
    return exc


class RestSession:
    """A `requests.Session` with bearer auth, per-bucket rate limiting and the error policy.

    Subclasses set `crm_name` (and `also_charge`) and may override `parse_error`,
    `rate_limit_wait`, `auth_error_message`, `before_request` and `observe`. Buckets are passed
    in, so several sessions (or threads) can share one limiter.
    """

    crm_name: ClassVar[str] = "CRM"
    # bucket -> other buckets each of its requests is also charged to
    also_charge: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        conn_id: str = "",
        buckets: Mapping[str, TokenBucket] | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryConfig = RetryConfig(),
        sleeper: Sleeper = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.conn_id = conn_id
        self.buckets: dict[str, TokenBucket] = dict(buckets or {})
        self.timeout = timeout
        self.retry = retry
        self._sleeper = sleeper
        self._rng = rng or random.Random()
        self._session = session or requests.Session()
        self._session.headers.setdefault("User-Agent", "leadflow")
        self.stats = stats or Stats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, conn_id={self.conn_id!r})"

    def close(self) -> None:
        self._session.close()

    # --- hooks a CRM declares ------------------------------------------------------------------
    def parse_error(self, response: requests.Response) -> ErrorInfo:
        """Read the CRM's error body. Default: a JSON `message`/`category` if present."""
        body = _json_or_none(response)
        if isinstance(body, dict):
            return ErrorInfo(message=str(body.get("message") or "")[:500], category=body.get("category"))
        return ErrorInfo(message=(response.text or "")[:200])

    def rate_limit_wait(self, response: requests.Response, info: ErrorInfo) -> float:
        """Minimum seconds to wait after this 429; raise CrmBudgetExhausted to stop instead."""
        return rule_for(429).min_wait_s

    def auth_error_message(self, status: int, info: ErrorInfo) -> str:
        scope = f" (missing scope: {', '.join(info.scopes)})" if info.scopes else ""
        return (
            f"{self.crm_name} refused the credentials ({status}){scope}: check connection "
            f"{self.conn_id or '?'}. {info.message}"
        ).strip()

    def before_request(self, bucket: str) -> None:
        """Called before each attempt (e.g. to stop when a daily budget is spent)."""

    def observe(self, response: requests.Response) -> None:
        """Called with every response (e.g. to track rate-limit headers)."""

    # --- the request loop ------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        bucket: str = "general",
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send one logical request, applying the error policy; return the 2xx response.

        `idempotent` defaults to True for GET/HEAD; pass True for POSTs that only read
        (search, batch read) so that timeouts on them are retried.
        """
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD")
        url = f"{self.base_url}{path}"
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        limiter = self.buckets.get(bucket)
        retries = 0
        while True:
            self.before_request(bucket)
            waited = 0.0
            for name in self.also_charge.get(bucket, ()):
                if name in self.buckets:
                    waited += self.buckets[name].acquire()
            if limiter is not None:
                waited += limiter.acquire()
            if waited:
                self.stats.add("throttled_s", waited)
            self.stats.add("requests")
            response: requests.Response | None = None
            try:
                response = self._session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout
                )
                key: int | str = response.status_code
            except requests.ConnectTimeout:
                key = CONNECT_FAILED
            except requests.ReadTimeout:
                key = READ_TIMEOUT
            except requests.ConnectionError as exc:
                key = CONNECT_FAILED if _never_connected(exc) else CONNECTION_LOST
            except CUT_OFF_ERRORS:
                key = RESPONSE_CUT_OFF
            if response is not None:
                self.observe(response)
                if response.status_code < 400:
                    return response
            rule = rule_for(key)
            if isinstance(key, str):
                self.stats.add("timeouts" if key == READ_TIMEOUT else "connection_errors")
            elif key == 429:
                self.stats.add("rate_limited")
            elif key >= 500:
                self.stats.add("server_errors")
            info = self.parse_error(response) if response is not None else ErrorInfo()
            if rule.reads_only and not idempotent:
                raise make_error(
                    WriteOutcomeUnknown,
                    f"{self.crm_name} {method} {path}: {key} after the request was sent; "
                    "the write may or may not have been applied (read the records back)",
                    info=info,
                )
            if not rule.retry:
                raise self._final_error(rule, key, method, path, info)
            min_wait = rule.min_wait_s
            if key == 429 and response is not None:
                min_wait = self.rate_limit_wait(response, info)  # may raise CrmBudgetExhausted
            if retries >= self.retry.max_retries:
                raise make_error(
                    rule.error,
                    f"{self.crm_name} {method} {path}: still failing with {key} after "
                    f"{retries + 1} attempts; try the run again later",
                    status=key if isinstance(key, int) else None,
                    info=info,
                )
            delay = max(self.backoff(retries), min_wait)
            retries += 1
            self.stats.add("retries")
            self.stats.add("backoff_s", delay)
            if key == 429 and limiter is not None:
                # Everyone sharing this bucket backs off, not only this caller.
                limiter.pause(delay)
            log.warning(
                "%s %s %s -> %s; retry %d/%d in %.2f s",
                self.crm_name, method, path, key, retries, self.retry.max_retries, delay,
            )
            self._sleeper(delay)

    def backoff(self, retry_index: int) -> float:
        """Jittered exponential delay before retry number `retry_index` (0-based)."""
        ceiling = min(self.retry.backoff_max_s, self.retry.backoff_base_s * (2**retry_index))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _final_error(self, rule: ErrorRule, key: int | str, method: str, path: str, info: ErrorInfo) -> CrmError:
        status = key if isinstance(key, int) else None
        if rule.error is CrmAuthError and status is not None:
            return make_error(CrmAuthError, self.auth_error_message(status, info), status=status, info=info)
        category = f" {info.category}" if info.category else ""
        detail = f": {info.message}" if info.message else ""
        return make_error(
            rule.error,
            f"{self.crm_name} rejected {method} {path} ({key}{category}){detail}",
            status=status,
            info=info,
        )

    # --- conveniences ----------------------------------------------------------------------------
    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request()` and decode the JSON body (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise make_error(
                CrmError, f"{self.crm_name} {method} {path}: response is not JSON", status=response.status_code
            ) from None


def _json_or_none(response: requests.Response | None) -> Any:
    if response is None or not response.content:
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
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

