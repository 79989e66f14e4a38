"""Helpers of the enrichment tests: a small reference world, a fake HTTP transport, fake time."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
import pytest

from leadflow.crm.ratelimit import TokenBucket
from leadflow.enrich.http_provider import HttpEnrichmentProvider, HttpResponse, TransportError
from leadflow.enrich.reference import ReferenceProvider
from leadflow.enrich.settings import HttpSettings
from leadflow.schema import COMPANY_COLUMNS, LEAD_COLUMNS

REFERENCE_ROWS = [
    # domain, name, industry, employees, revenue, country, founded, technologies
    ("acme.com", "Acme Inc", "Software", 120, 2.5e7, "US", 2001, "Salesforce;AWS"),
    ("globex.co.uk", "Globex Corporation", "Manufacturing", 5400, 9.0e8, "GB", 1975, "SAP"),
    ("initech.io", "Initech", "Financial Services", 40, 4.0e6, "DE", 2015, ""),
    ("umbrella.com", "Umbrella Pharma", "Healthcare", 20000, 5.0e9, "US", 1968, "Snowflake"),
    ("smallumbrella.com", "Umbrella Pharma", "Healthcare", 8, 5.0e5, "CA", 2020, ""),
]


def reference_frame() -> pd.DataFrame:
    return pd.DataFrame(
        REFERENCE_ROWS,
        columns=[
            "domain",
            "name",
            "industry",
            "employee_count",
            "annual_revenue_usd",
            "country_code",
            "founded_year",
            "technologies",
        ],
    )


@pytest.fixture
def reference() -> ReferenceProvider:
    return ReferenceProvider(reference_frame(), fetched_at=1_000, label="test")


def make_leads(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    """A leads frame with every LEAD_COLUMNS column; missing values are None/NaN."""
    data: dict[str, Any] = {}
    for name, kind in LEAD_COLUMNS.items():
        values = [row.get(name) for row in rows]
        if kind in ("float", "ts"):
            data[name] = pd.Series(values, dtype="float64")
        elif kind == "bool":
            data[name] = pd.Series([bool(v) for v in values], dtype=bool)
        else:
            data[name] = pd.Series(values, dtype="str")
    frame = pd.DataFrame(data)
    frame["crm"] = frame["crm"].fillna("hubspot")
    return frame


def make_companies(rows: list[Mapping[str, Any]]) -> pd.DataFrame:
    data: dict[str, Any] = {}
    for name, kind in COMPANY_COLUMNS.items():
        values = [row.get(name) for row in rows]
        data[name] = pd.Series(values, dtype="float64" if kind in ("float", "ts") else "str")
    frame = pd.DataFrame(data)
    frame["crm"] = frame["crm"].fillna("hubspot")
    return frame


class FakeClock:
    """Monotonic time that only moves when someone sleeps (thread-safe)."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += max(0.0, seconds)


def company_body(domain: str, name: str = "Company", **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "domain": domain,
        "category": {"sector": "Technology", "industry": "Software"},
        "geo": {"country": "Germany", "countryCode": "DE"},
        "metrics": {"employees": 250, "employeesRange": "251-1K", "annualRevenue": 3.0e7},
        "tech": ["google_analytics", "aws"],
        "foundedYear": 2010,
    }
    body.update(extra)
    return body


Script = Callable[[str, int], HttpResponse | Exception]


class FakeTransport:
    """Answers GETs from a script: `responses[domain]` is a list consumed one per call (the last
    entry repeats); unknown domains get 404. Records every call; thread-safe."""

    def __init__(
        self,
        responses: Mapping[str, list[HttpResponse | Exception]] | None = None,
        *,
        on_call: Callable[[str], None] | None = None,
    ) -> None:
        self.responses = {k: list(v) for k, v in (responses or {}).items()}
        self.calls: list[str] = []
        self.headers_seen: list[Mapping[str, str]] = []
        self.per_domain: dict[str, int] = defaultdict(int)
        self.in_flight = 0
        self.max_in_flight = 0
        self.on_call = on_call
        self._lock = threading.Lock()

    def get(self, url: str, *, params, headers, timeout) -> HttpResponse:
        domain = params["domain"]
        with self._lock:
            self.calls.append(domain)
            self.headers_seen.append(dict(headers))
            index = self.per_domain[domain]
            self.per_domain[domain] += 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.on_call is not None:
                self.on_call(domain)
            script = self.responses.get(domain)
            if not script:
                return HttpResponse(404, {}, {"error": {"type": "unknown_record"}})
            answer = script[min(index, len(script) - 1)]
            if isinstance(answer, Exception):
                raise answer
            return answer
        finally:
            with self._lock:
                self.in_flight -= 1


def ok(domain: str, **extra: Any) -> HttpResponse:
    return HttpResponse(200, {"X-RateLimit-Remaining": "100"}, company_body(domain, **extra))


def status(code: int, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return HttpResponse(code, dict(headers or {}), None)


def transport_error() -> TransportError:
    return TransportError("ConnectionError")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_provider(clock: FakeClock):
    """Build an HttpEnrichmentProvider on a fake transport and fake time."""

    def build(transport: FakeTransport, **settings: Any) -> HttpEnrichmentProvider:
        options = {"concurrency": 1, "requests_per_second": 10.0, "burst": 10, **settings}
        http = HttpSettings(**options)
        bucket = TokenBucket(http.requests_per_second, http.burst, clock=clock, sleeper=clock.sleep)
        return HttpEnrichmentProvider(
            "http://127.0.0.1:9",
            "secret-key",
            http,
            transport=transport,
            bucket=bucket,
            sleeper=clock.sleep,
            clock=clock,
            wall_clock=lambda: 1_700_000_000.0,
            jitter=lambda: 1.0,
        )

    return build


def as_list(values: pd.Series | np.ndarray) -> list[Any]:
    """Values with every missing value as None (NaN/NA compare unequal to themselves)."""
    return [None if (v is None or (isinstance(v, float) and v != v) or v is pd.NA) else v for v in list(values)]
