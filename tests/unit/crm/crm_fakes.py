"""Fakes for the CRM unit tests: a fake clock/sleeper and an in-process HTTP transport.

`FakeTransport` is mounted on a real `requests.Session`, so the code under test runs its real
request path (headers, timeouts, exceptions) without a socket. (A uniquely named module rather
than conftest.py so test files can import it.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import requests
from requests.adapters import BaseAdapter
from urllib3.exceptions import DecodeError, ProtocolError


class FakeClock:
    """Monotonic clock whose sleeper advances time instead of blocking."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class CutOff:
    """An answer whose status line arrives but whose body breaks off (a chunked body cut short)
    or does not decode (a broken gzip body): requests itself raises ChunkedEncodingError or
    ContentDecodingError while reading it, as it does on a real socket."""

    status: int = 200
    undecodable: bool = False


class _BrokenBody:
    """The `raw` of a cut-off response: a first bytes, then urllib3's error."""

    def __init__(self, undecodable: bool) -> None:
        self.undecodable = undecodable

    def stream(self, chunk_size: int, decode_content: bool = True):
        yield b'{"results": [{"id'
        if self.undecodable:
            raise DecodeError("Received response with content-encoding: gzip, but failed to decode it.")
        raise ProtocolError("Connection broken: IncompleteRead(17 bytes read, 240 more expected)")

    def release_conn(self) -> None:
        pass


Handler = Callable[[requests.PreparedRequest], "Reply | CutOff | BaseException"]


class FakeTransport(BaseAdapter):
    """Answers every request with `handler(request)`; records what was sent."""

    def __init__(self, handler: Handler) -> None:
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []
        self.timeouts: list[Any] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):  # noqa: D401
        self.requests.append(request)
        self.timeouts.append(timeout)
        outcome = self.handler(request)
        if isinstance(outcome, BaseException):
            raise outcome
        response = requests.Response()
        response.status_code = outcome.status
        response.headers["Content-Type"] = "application/json"
        if isinstance(outcome, CutOff):
            response.raw = _BrokenBody(outcome.undecodable)  # read by requests after send()
        else:
            response._content = b"" if outcome.body is None else json.dumps(outcome.body).encode()
            response.headers.update(outcome.headers)
        response.url = request.url
        response.request = request
        return response

    def close(self) -> None:
        pass

    def bodies(self) -> list[Any]:
        return [json.loads(r.body) if r.body else None for r in self.requests]


def make_http(handler: Handler) -> tuple[requests.Session, FakeTransport]:
    transport = FakeTransport(handler)
    session = requests.Session()
    session.mount("http://", transport)
    session.mount("https://", transport)
    return session, transport


def script(*replies: "Reply | CutOff | BaseException") -> Handler:
    """A handler answering with `replies` in order (the last one repeats)."""
    queue = list(replies)

    def handler(request: requests.PreparedRequest) -> "Reply | CutOff | BaseException":
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler
