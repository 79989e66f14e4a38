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


Handler = Callable[[requests.PreparedRequest], "Reply | BaseException"]


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
        response._content = b"" if outcome.body is None else json.dumps(outcome.body).encode()
        response.headers.update({"Content-Type": "application/json", **outcome.headers})
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


def script(*replies: "Reply | BaseException") -> Handler:
    """A handler answering with `replies` in order (the last one repeats)."""
    queue = list(replies)

    def handler(request: requests.PreparedRequest) -> "Reply | BaseException":
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return handler
