"""A company-enrichment API in the common Clearbit-like shape, on the sandbox's port.

`GET /v2/companies/find?domain=` -> 200 company, 404 unknown domain, 202 `{"status":"queued"}`
the first time for a configurable share of domains (the provider is "still researching"), then
200. Auth is `Authorization: Bearer <enrichment key>`; the per-key rate limit and its
`X-RateLimit-*` headers are applied by the middleware in `app.py`.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from leadflow.sandbox.world import domain_fraction

router = APIRouter()


class EnrichmentState:
    """Which "queued" domains were already asked for once (they answer 200 from then on)."""

    def __init__(self, seed: int, queued_share: float) -> None:
        self.seed = seed
        self.queued_share = queued_share
        self._asked: set[str] = set()
        self._lock = threading.Lock()

    def first_time_queued(self, domain: str) -> bool:
        if domain_fraction(self.seed, domain, "queued") >= self.queued_share:
            return False
        with self._lock:
            if domain in self._asked:
                return False
            self._asked.add(domain)
            return True


def normalise_domain(raw: str) -> str:
    domain = raw.strip().lower()
    for prefix in ("https://", "http://"):
        if domain.startswith(prefix):
            domain = domain[len(prefix):]
    domain = domain.split("/", 1)[0]
    return domain[4:] if domain.startswith("www.") else domain


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


@router.get("/v2/companies/find")
async def find_company(request: Request) -> JSONResponse:
    raw = request.query_params.get("domain") or ""
    domain = normalise_domain(raw)
    if not domain or "." not in domain:
        return _error(422, "invalid_domain", "Query parameter 'domain' must be a domain name such as example.com")
    sandbox = request.app.state.sandbox
    record = sandbox.store.enrichment(domain)
    if record is None:
        return _error(404, "unknown_record", f"Unknown domain: {domain}")
    if sandbox.enrichment.first_time_queued(domain):
        return JSONResponse({"status": "queued"}, status_code=202)
    return JSONResponse(record)
