"""The CRM sessions' side of the HTTP policy: bearer auth over `requests`, buckets, the CRM
exceptions, and counters.

The request loop, `Retry-After`, the backoff and the standard error table are
`leadflow.http_policy`'s, shared with the enrichment client. A CRM module subclasses
`RestSession` and only *declares* its specifics (`api_name`, how to read an error body, what its
rate-limit answers mean, error-table overrides by error code).

The CRM error table (`ERROR_POLICY` below is this table; the loop reads nothing else). "backoff",
"Retry-After" and "reads only" as in `leadflow.http_policy`:

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
423 locked          yes       Retry-After when sent; else backoff, at     CrmUnavailableError
                              least 2 s
429 rate limited    yes       Retry-After when sent; else backoff, at     CrmUnavailableError;
                              least what the CRM's policy needs (HubSpot  CrmBudgetExhausted at
                              SECONDLY / TEN_SECONDLY); the bucket is     once for a DAILY limit
                              paused for every sharer
500 502 503 504     yes       Retry-After when sent; else backoff         CrmUnavailableError
other 4xx           no        -                                           CrmRequestError
other 5xx           yes       Retry-After when sent; else backoff         CrmUnavailableError
connect failure     yes       backoff (nothing reached the server)        CrmUnavailableError
read timeout        reads     backoff; a *write* is never retried: its    CrmUnavailableError;
                    only      outcome is unknown, the caller reads back   writes: WriteOutcome-
                                                                          Unknown at once
connection lost     reads     as read timeout                             as read timeout
response cut off    reads     as read timeout (the status line came but   as read timeout
                    only      the body broke off or did not decode)
==================  ========  ==========================================  =====================

Salesforce adds a row by error code (403 REQUEST_LIMIT_EXCEEDED, `leadflow.crm.salesforce_session`).
Idempotent calls are GET and anything the caller marks idempotent (search, batch read). Logs carry
method, path, status and counts: never request or response bodies, never the token.
"""

from __future__ import annotations

import json as jsonlib
import logging
import random
import threading
import time
from collections import Counter
from typing import Any, Callable, ClassVar, Iterator, Mapping, Protocol, Self, Sequence

import requests

from leadflow.crm.base import (
    CrmAuthError,
    CrmBudgetExhausted,
    CrmError,
    CrmRequestError,
    CrmUnavailableError,
    RecordResult,
)
from leadflow.crm.ratelimit import Clock, Sleeper, TokenBucket
from leadflow.http_policy import (
    ErrorInfo,
    ErrorRule,
    Failure,
    Limiter,
    PolicyClient,
    RetryConfig,
    lookup,
    make_error,
    standard_policy,
)

__all__ = ["ERROR_POLICY", "BucketFactory", "CrmNotFoundError", "ErrorInfo", "RestSession", "RetryConfig",
           "SessionConnector", "Stats", "WriteOutcomeUnknown", "make_buckets", "make_error", "rule_for"]

log = logging.getLogger(__name__)

_UNSET = object()


class CrmNotFoundError(CrmRequestError):
    """404: the object or endpoint does not exist."""


class WriteOutcomeUnknown(CrmUnavailableError):
    """A write timed out or lost its connection after being sent: it may or may not have been
    applied. Not retried; the caller reads the records back to decide."""


ERROR_POLICY: dict[Any, ErrorRule] = standard_policy(
    request=CrmRequestError, auth=CrmAuthError, not_found=CrmNotFoundError, unavailable=CrmUnavailableError,
)


def rule_for(key: int | str) -> ErrorRule:
    """The CRM table's row for a status code or failure kind."""
    return lookup(ERROR_POLICY, key)


class BucketFactory(Protocol):
    """Makes buckets shared by every process that calls the account
    (`leadflow.shared_limit.SharedLimits`, kept in the warehouse)."""

    def bucket(self, key: str, rate: float | None, capacity: float = 1.0, *, name: str | None = None,
               stop_error: Callable[[str], Exception]) -> Limiter: ...


def shared_stop_error(api_name: str) -> Callable[[str], CrmBudgetExhausted]:
    """The error a shared bucket raises while another process's budget stop is in force: the
    budget error the process would raise itself, marked as not to be shared again."""

    def error(message: str) -> CrmBudgetExhausted:
        exc = CrmBudgetExhausted(f"{api_name}'s daily API budget is spent ({message}): stopping now; the next run "
                                 "resumes from the stored watermark")
        exc.shared_stop = True  # type: ignore[attr-defined]
        return exc

    return error


def make_buckets(api_name: str, conn_id: str, rates: Mapping[str, float | None], *,
                 limits: BucketFactory | None = None, rate_share: float = 1.0,
                 clock: Clock = time.monotonic, sleeper: Sleeper = time.sleep) -> dict[str, Limiter]:
    """A session's buckets, one per name in `rates` (requests per second at the account's whole
    limit; None: not paced), each with capacity 1 (no burst).

    With `limits`, shared by every process calling the account (key `<api>:<conn_id>:<name>`):
    each bucket is the whole account's, `rate_share` does not apply, and pauses and budget stops
    reach every holder. Without, one per process at `rate_share` (0-1] of each rate, the
    process's static part when several call the account at once; an unpaced one is left out."""
    if not 0 < rate_share <= 1:
        raise ValueError(f"rate_share must be in (0, 1], got {rate_share}")
    api = api_name.lower()
    if limits is not None:
        return {name: limits.bucket(f"{api}:{conn_id}:{name}", rate, name=f"{api}-{name}",
                                    stop_error=shared_stop_error(api_name))
                for name, rate in rates.items()}
    return {name: TokenBucket(rate * rate_share, 1.0, clock=clock, sleeper=sleeper, name=f"{api}-{name}")
            for name, rate in rates.items() if rate is not None}


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


class RestSession(PolicyClient[requests.Response]):
    """A `requests.Session` with bearer auth and per-bucket rate limiting, sending through the
    shared request loop with the CRM error table.

    Subclasses set `api_name` and may override `parse_error`, `rate_limit_wait`,
    `auth_error_message`, `before_request` and `observe`, and extend `error_policy`. Buckets are
    passed in, so several sessions (or threads) can share one limiter.
    """

    api_name = "CRM"
    error_policy = ERROR_POLICY
    write_unknown_error = WriteOutcomeUnknown

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        conn_id: str = "",
        buckets: Mapping[str, Limiter] | None = None,
        timeout: tuple[float, float] = (5.0, 30.0),
        retry: RetryConfig = RetryConfig(),
        sleeper: Sleeper = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        stats: Stats | None = None,
    ) -> None:
        super().__init__(retry=retry, sleeper=sleeper, jitter=(rng or random.Random()).random)
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.conn_id = conn_id
        self.buckets: dict[str, Limiter] = dict(buckets or {})
        self.timeout = timeout
        self._session = session or requests.Session()
        self._session.headers.setdefault("User-Agent", "leadflow")
        self.stats = stats or Stats()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, conn_id={self.conn_id!r})"

    def close(self) -> None:
        self._session.close()

    # --- declarations for the loop ---------------------------------------------------------------
    def parse_error(self, response: requests.Response) -> ErrorInfo:
        """Read the CRM's error body. Default: a JSON `message`/`category` if present."""
        body = _json_or_none(response)
        if isinstance(body, dict):
            return ErrorInfo(message=str(body.get("message") or "")[:500], category=body.get("category"))
        return ErrorInfo(message=(response.text or "")[:200])

    def auth_error_message(self, status: int, info: ErrorInfo) -> str:
        scope = f" (missing scope: {', '.join(info.scopes)})" if info.scopes else ""
        return (
            f"{self.api_name} refused the credentials ({status}){scope}: check connection "
            f"{self.conn_id or '?'}. {info.message}"
        ).strip()

    def count(self, name: str, amount: float = 1) -> None:
        self.stats.add(name, amount)

    def final_error(self, failure: Failure) -> Exception:
        if failure.rule.error is CrmAuthError and failure.status is not None:
            return make_error(CrmAuthError, self.auth_error_message(failure.status, failure.info),
                              status=failure.status, info=failure.info)
        return super().final_error(failure)

    # --- requests ----------------------------------------------------------------------------------
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

        def send() -> requests.Response:
            return self._session.request(method, url, json=json, params=params, headers=headers, timeout=self.timeout)

        try:
            return self.call(send, method=method, path=path, idempotent=idempotent, bucket=bucket,
                             limiter=self.buckets.get(bucket))
        except CrmBudgetExhausted as exc:
            self._share_stop(exc)
            raise

    def _share_stop(self, exc: CrmBudgetExhausted) -> None:
        """This process found the daily budget spent: its shared buckets stop every other holder
        too (a stop it was told of is not passed on again)."""
        if getattr(exc, "shared_stop", False):
            return
        status = getattr(exc, "status", None)
        reason = f"a call answered {status}" if status else "the daily reserve reached"
        for name, limiter in self.buckets.items():
            stop = getattr(limiter, "stop", None)
            if stop is None:
                continue
            try:
                stop(reason)
            except Exception as failure:  # the budget error matters more than telling the others
                log.warning("%s bucket %s: budget stop not shared: %s", self.api_name, name, type(failure).__name__)

    def request_json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`request()` and decode the JSON body (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise make_error(
                CrmError, f"{self.api_name} {method} {path}: response is not JSON", status=response.status_code
            ) from None


def _json_or_none(response: requests.Response | None) -> Any:
    if response is None or not response.content:
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        return None


class SessionConnector:
    """What every connector over a `RestSession` shares: building it from a connection, its
    counters (requests, retries, rate_limited, server_errors, timeouts, throttled_s, backoff_s,
    records_pulled, pages, issues, records_pushed, push_<status>, ...), who the CRM says
    leadflow's writes come from, closing the session, and `with`. Each CRM declares its
    `settings_type`, `session_type` and `mapping_loader`."""

    name: str
    max_batch_size: int
    settings_type: ClassVar[Any]
    session_type: ClassVar[Any]
    mapping_loader: ClassVar[Callable[[Any], Any]]
    session: RestSession

    def __init__(self, session: Any, mapping: Any, settings: Any, *,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self.session = session
        self.mapping = mapping
        self.settings = settings
        self.max_batch_size = min(type(self).max_batch_size, settings.batch_size)
        self._wall_clock = wall_clock
        self._own_writer: object = _UNSET

    @classmethod
    def from_connection(cls, connection: Any, *, mapping: Any = None, clock: Clock = time.monotonic,
                        sleeper: Sleeper = time.sleep, wall_clock: Callable[[], float] = time.time,
                        rng: random.Random | None = None, http: requests.Session | None = None,
                        rate_share: float = 1.0, limits: BucketFactory | None = None) -> Self:
        """Build from an Airflow-style connection (the CRM's settings from its `extra`; the
        mapping from the settings' `mapping_path` unless given). `limits`: the account's buckets
        shared by every process (`leadflow.shared_limit`); without them `rate_share` is the
        fraction of the account's rate limits this connector may use (1/N for N parallel workers)."""
        settings = cls.settings_type.from_connection(connection)
        if mapping is None:
            mapping = cls.mapping_loader(settings.mapping_path)
        session = cls.session_type.from_connection(connection, settings, clock=clock, sleeper=sleeper, rng=rng,
                                                   session=http, rate_share=rate_share, limits=limits)
        return cls(session, mapping, settings, wall_clock=wall_clock)

    def _own_writer_id(self, lookup: Callable[[], Any], what: str) -> str | None:
        """The id the CRM attributes leadflow's writes to (`lookup`, asked once). None when it
        cannot be had: leadflow's own values are then recognised by the push log only."""
        if self._own_writer is _UNSET:
            try:
                found = lookup()
            except CrmError as exc:
                log.warning("%s: %s failed (%s); leadflow's own writes are recognised by the push log only",
                            self.name, what, type(exc).__name__)
                found = None
            self._own_writer = None if found in (None, "") else str(found)
        return self._own_writer  # type: ignore[return-value]

    @property
    def stats(self) -> Stats:
        return self.session.stats

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
