"""The one HTTP policy (leadflow.http_policy), table by table, on a scripted client: fake answers,
fake sleeps, fixed jitter; no sockets, no real sleeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest
import requests

from leadflow.http_policy import (
    OTHER_4XX,
    ErrorInfo,
    ErrorRule,
    PolicyClient,
    RetryConfig,
    backoff_delay,
    lookup,
    retry_after_s,
    standard_policy,
)

WALL_NOW = 1_700_000_000.0


class Request(Exception): ...
class Auth(Exception): ...
class NotFound(Exception): ...
class Unavailable(Exception): ...
class Unknown(Exception): ...
class Stop(Exception): ...


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str] = field(default_factory=dict)
    code: str | None = None  # the API's error code, as its body would say


@dataclass
class FakeLimiter:
    pauses: list[float] = field(default_factory=list)

    def acquire(self, tokens: float = 1.0) -> float:
        return 0.0

    def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


class Scripted(PolicyClient[Answer]):
    """A client declaring the standard table, sending from a script (the last entry repeats)."""

    api_name = "Test API"
    error_policy = standard_policy(request=Request, auth=Auth, not_found=NotFound, unavailable=Unavailable)
    write_unknown_error = Unknown

    def __init__(self, *script: Answer | Exception, client_wait: float | None = None, **retry: float) -> None:
        self.sleeps: list[float] = []
        super().__init__(retry=RetryConfig(**{"backoff_base_s": 1.0, "backoff_max_s": 8.0, **retry}),
                         sleeper=self.sleeps.append, jitter=lambda: 1.0, wall_clock=lambda: WALL_NOW)
        self.script = list(script)
        self.sent = 0
        self.client_wait = client_wait
        self.counts: dict[str, float] = {}

    def send(self) -> Answer:
        answer = self.script[min(self.sent, len(self.script) - 1)]
        self.sent += 1
        if isinstance(answer, Exception):
            raise answer
        return answer

    def get(self, *, idempotent: bool = True, limiter: FakeLimiter | None = None) -> Answer:
        return self.call(self.send, method="GET" if idempotent else "PATCH", path="/things",
                         idempotent=idempotent, limiter=limiter)

    def parse_error(self, response: Answer) -> ErrorInfo:
        return ErrorInfo(message="no", category=response.code)

    def rate_limit_wait(self, response: Answer, info: ErrorInfo) -> float | None:
        if info.category == "DAILY":
            raise Stop("daily limit")
        return self.client_wait

    def count(self, name: str, amount: float = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount


OK = Answer(200)


def http_date(seconds_from_now: float) -> str:
    return format_datetime(datetime.fromtimestamp(WALL_NOW + seconds_from_now, tz=timezone.utc), usegmt=True)


# --- 429 and Retry-After ---------------------------------------------------------------------------------
def test_given_429_with_retry_after_then_waits_that_long_and_retries() -> None:
    client = Scripted(Answer(429, {"Retry-After": "7"}), OK)
    assert client.get() is OK
    assert client.sleeps == [7.0] and client.sent == 2
    assert client.counts["rate_limited"] == 1 and client.counts["retries"] == 1


def test_given_429_with_retry_after_as_an_http_date_then_waits_until_that_date() -> None:
    client = Scripted(Answer(429, {"retry-after": http_date(42)}), OK)
    client.get()
    assert client.sleeps == [pytest.approx(42.0)]


def test_given_retry_after_beyond_the_cap_then_waits_the_cap() -> None:
    client = Scripted(Answer(429, {"Retry-After": "86400"}), OK, retry_after_max_s=60.0)
    client.get()
    assert client.sleeps == [60.0]


def test_given_retry_after_shorter_than_the_backoff_then_it_still_wins() -> None:
    client = Scripted(Answer(503), Answer(503, {"Retry-After": "0.5"}), OK)
    client.get()
    assert client.sleeps == [1.0, 0.5]  # backoff, then what the server asked for


@pytest.mark.parametrize(
    ("client_wait", "sleeps"),
    [pytest.param(5.0, [5.0, 5.0, 5.0], id="the-client's-rate-limit-wait-as-a-floor"),
     pytest.param(None, [1.0, 2.0, 4.0], id="else-backoff-(at-least-the-row's-1-s)"),
     pytest.param(900.0, [300.0, 300.0, 300.0], id="the-client's-wait-is-capped-too")],
)
def test_given_429_without_retry_after_then_client_wait_else_backoff(client_wait, sleeps) -> None:
    client = Scripted(Answer(429), Answer(429), Answer(429), OK, client_wait=client_wait)
    client.get()
    assert client.sleeps == sleeps


def test_given_a_client_rate_limit_wait_under_the_rows_default_then_it_replaces_the_default() -> None:
    # A connection may set a short wait (a sandbox with random 429s): the row's 1 s must not win.
    client = Scripted(Answer(429), Answer(429), OK, client_wait=0.05, backoff_base_s=0.1)
    client.get()
    assert client.sleeps == [0.1, 0.2]


def test_given_429_then_the_limiter_is_paused_for_every_sharer_even_when_giving_up() -> None:
    limiter = FakeLimiter()
    client = Scripted(Answer(429, {"Retry-After": "3"}), max_retries=1)
    with pytest.raises(Unavailable, match="still failing with 429 after 2 attempts"):
        client.get(limiter=limiter)
    assert limiter.pauses == [3.0, 3.0] and client.sleeps == [3.0]


def test_given_a_5xx_then_the_limiter_is_not_paused() -> None:
    limiter = FakeLimiter()
    Scripted(Answer(502), OK).get(limiter=limiter)
    assert limiter.pauses == []


def test_given_rate_limit_wait_raises_then_stops_at_once_without_sleeping() -> None:
    client = Scripted(Answer(429, {"Retry-After": "1"}, code="DAILY"), OK)
    with pytest.raises(Stop):
        client.get()
    assert client.sent == 1 and client.sleeps == []


# --- 5xx backoff ------------------------------------------------------------------------------------------
def test_given_5xx_then_backoff_grows_and_is_capped_then_gives_up() -> None:
    client = Scripted(Answer(500), max_retries=5)
    with pytest.raises(Unavailable, match=r"Test API GET /things: still failing with 500 after 6 attempts"):
        client.get()
    assert client.sleeps == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert client.sent == 6 and client.counts["server_errors"] == 6 and client.counts["retries"] == 5


@pytest.mark.parametrize(("status", "least"), [(423, 2.0), (503, 0.0), (599, 0.0)])
def test_given_retried_status_then_the_row_sets_the_least_wait(status, least) -> None:
    client = Scripted(Answer(status), OK, backoff_base_s=0.1)
    client.get()
    assert client.sleeps == [max(0.1, least)]


def test_backoff_spans_half_to_all_of_the_doubling_ceiling() -> None:
    assert [backoff_delay(n, 1.0, 5.0, 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert [backoff_delay(n, 1.0, 5.0, 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert backoff_delay(3, 1.0, 5.0, 7.0) == 4.0  # jitter is clamped to [0, 1]


# --- not retried --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "raised"),
    [(400, Request), (401, Auth), (403, Auth), (404, NotFound), (409, Request), (418, Request), (422, Request)],
)
def test_given_non_retryable_4xx_then_raises_at_once(status, raised) -> None:
    client = Scripted(Answer(status, {"Retry-After": "5"}), OK)
    with pytest.raises(raised, match=rf"Test API rejected GET /things \({status}\): no") as info:
        client.get()
    assert client.sent == 1 and client.sleeps == []
    assert info.value.status == status


def test_given_a_row_for_status_and_error_code_then_it_wins_over_the_status_row() -> None:
    policy = {**standard_policy(request=Request, auth=Auth, not_found=NotFound, unavailable=Unavailable),
              (403, "BUSY"): ErrorRule(retry=True, error=Unavailable, rate_limit=True)}
    assert lookup(policy, 403, "BUSY").retry is True
    assert lookup(policy, 403, "OTHER").error is Auth
    assert lookup(policy, 403).error is Auth
    assert lookup(policy, 451) is policy[OTHER_4XX]


# --- transport failures -----------------------------------------------------------------------------------
CUT_OFF = [requests.exceptions.ChunkedEncodingError("cut"), requests.exceptions.ContentDecodingError("gzip")]


@pytest.mark.parametrize("cut", CUT_OFF, ids=type)
def test_given_cut_off_read_then_retried(cut) -> None:
    client = Scripted(cut, cut, OK)
    assert client.get() is OK
    assert client.sent == 3 and client.sleeps == [1.0, 2.0]
    assert client.counts["connection_errors"] == 2


@pytest.mark.parametrize("cut", [*CUT_OFF, requests.ReadTimeout("slow")], ids=type)
def test_given_cut_off_or_timed_out_write_then_outcome_unknown_at_once(cut) -> None:
    client = Scripted(cut, OK)
    with pytest.raises(Unknown, match="may or may not have been applied"):
        client.get(idempotent=False)
    assert client.sent == 1 and client.sleeps == []


def test_given_connect_failure_on_a_write_then_retried_because_nothing_was_sent() -> None:
    client = Scripted(requests.ConnectTimeout("no route"), OK)
    assert client.get(idempotent=False) is OK
    assert client.sent == 2


def test_given_an_exception_that_is_no_transport_failure_then_it_is_raised_as_it_is() -> None:
    client = Scripted(ValueError("a bug"), OK)
    with pytest.raises(ValueError, match="a bug"):
        client.get()
    assert client.sleeps == []


# --- reading Retry-After ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "seconds"),
    [("3", 3.0), (" 120 ", 120.0), ("0", 0.0), ("-4", 0.0), ("1.5", 1.5),
     (http_date(90), 90.0), (http_date(-30), 0.0), ("Wed, 21 Oct 2015 07:28:00", 0.0),
     ("soon", None), ("", None), (None, None)],
)
def test_retry_after_reads_seconds_and_http_dates(value, seconds) -> None:
    assert retry_after_s(value, WALL_NOW) == (pytest.approx(seconds) if seconds is not None else None)
