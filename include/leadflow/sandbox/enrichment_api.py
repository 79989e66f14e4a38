"""A company-enrichment API in the common Clearbit-like shape, on the sandbox's port.

`GET /v2/companies/find?domain=` -> 200 company, 404 unknown domain, 202 `{"status":"queued"}`
the first time for a configurable share of domains (the provider is "still researching"), then
200. Auth is `Authorization: Bearer <enrichment key>`; the per-key rate limit and its
`X-RateLimit-*` headers are applied by the middleware in `app.py`.

Injected faults (`EnrichmentState.configure_faults`, from `--enrichment-faults`): 429 (on top of
the rate limiter), 500/502/503 with a JSON error body, and timeout (the answer is worked out, so
a "queued" domain stops being queued, then held `timeout_seconds` before it is sent). Which
lookup gets which fault is a function of the world seed, the fault seed, the domain and how many
times that domain reached the handler, so runs repeat whatever the order of concurrent requests.
Every lookup that reaches the handler is logged per domain (`lookups()`), a held answer as
"timeout": the sandbox's own stats count it by the status finally sent.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, defaultdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from leadflow.sandbox.faults import FaultSpec, RequestFaults, draw_keyed
from leadflow.sandbox.world import domain_fraction

log = logging.getLogger(__name__)
router = APIRouter()

ENRICHMENT_FAULT_KINDS: tuple[str, ...] = ("429", "5xx", "timeout")
TIMEOUT = "timeout"  # what `lookups()` notes for an answer held past the client's timeout


def parse_enrichment_faults(text: str | None) -> FaultSpec:
    """`"5xx=0.05,timeout=0.02"` -> FaultSpec; ValueError for a bad spec or a kind a GET cannot get
    (partial, invalid, slow)."""
    return FaultSpec.parse(text).limited_to(ENRICHMENT_FAULT_KINDS, "the enrichment API")


class EnrichmentState:
    """Which "queued" domains were already asked for once (they answer 200 from then on), the
    injected faults, and what each lookup was answered."""

    def __init__(self, seed: int, queued_share: float, faults: FaultSpec | None = None,
                 fault_seed: int = 0) -> None:
        self.seed = seed
        self.queued_share = queued_share
        self._asked: set[str] = set()
        self._lock = threading.Lock()
        self._faults = FaultSpec()
        self._fault_seed = 0
        self._reached: Counter[str] = Counter()
        self._lookups: dict[str, list[str]] = defaultdict(list)
        if faults is not None:
            self.configure_faults(faults, fault_seed)

    @property
    def fault_spec(self) -> FaultSpec:
        return self._faults

    def configure_faults(self, spec: FaultSpec | str | None, fault_seed: int = 0) -> None:
        """Set the injected faults (a spec or its text); ValueError for kinds a GET cannot get."""
        parsed = (spec if isinstance(spec, FaultSpec) else FaultSpec.parse(spec)).limited_to(
            ENRICHMENT_FAULT_KINDS, "the enrichment API")
        with self._lock:
            self._faults = parsed
            self._fault_seed = fault_seed

    def draw_fault(self, domain: str) -> RequestFaults:
        """Count one lookup of `domain` reaching the handler and draw its fault."""
        with self._lock:
            self._reached[domain] += 1
            nth = self._reached[domain]
            spec, fault_seed = self._faults, self._fault_seed
        return draw_keyed(spec, fault_seed, f"{self.seed}:{domain}#{nth}")

    def note(self, domain: str, outcome: int | str) -> None:
        """Log what a lookup of `domain` got ("200", "404", "503", "timeout", ...)."""
        with self._lock:
            self._lookups[domain].append(str(outcome))

    def lookups(self) -> dict[str, list[str]]:
        """Per domain, the outcome of each lookup that reached the handler, in order (the rate
        limiter's 429s are answered before it and not logged)."""
        with self._lock:
            return {d: list(v) for d, v in self._lookups.items()}

    def reset_lookups(self) -> None:
        """Forget the log (the fault draws keep counting, so they do not repeat)."""
        with self._lock:
            self._lookups.clear()

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


_SERVER_ERRORS = {500: ("server_error", "Internal server error; please retry."),
                  502: ("bad_gateway", "Upstream provider unavailable; please retry."),
                  503: ("service_unavailable", "Service temporarily unavailable; please retry.")}


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def _answer(sandbox: Any, domain: str) -> JSONResponse:
    record = sandbox.store.enrichment(domain)
    if record is None:
        return _error(404, "unknown_record", f"Unknown domain: {domain}")
    if sandbox.enrichment.first_time_queued(domain):
        return JSONResponse({"status": "queued"}, status_code=202)
    return JSONResponse(record)


@router.get("/v2/companies/find")
async def find_company(request: Request) -> JSONResponse:
    raw = request.query_params.get("domain") or ""
    domain = normalise_domain(raw)
    if not domain or "." not in domain:
        return _error(422, "invalid_domain", "Query parameter 'domain' must be a domain name such as example.com")
    sandbox = request.app.state.sandbox
    state: EnrichmentState = sandbox.enrichment
    faults = state.draw_fault(domain)
    if faults.rate_limited:
        response = _error(429, "rate_limit", "Rate limit exceeded; retry later.")
    elif faults.server_error:
        response = _error(faults.server_error, *_SERVER_ERRORS[faults.server_error])
    else:
        response = _answer(sandbox, domain)
    if faults.timeout:
        # Noted before the hold: the client gives up long before the answer leaves.
        state.note(domain, TIMEOUT)
        log.debug("timeout fault: holding an enrichment answer for %.1fs", sandbox.settings.timeout_seconds)
        await sandbox.sleep(sandbox.settings.timeout_seconds)
    else:
        state.note(domain, response.status_code)
    return response
