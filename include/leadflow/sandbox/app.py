"""The sandbox ASGI app: HubSpot routes, enrichment API, admin routes, and the middleware that
applies auth, rate limits, injected faults and request statistics around them.

Auth accepts leadflow's token and every configured principal's (`SandboxSettings.principals`)
and hands the handler who the token belongs to, so each write is attributed to it. Rate limits
count per token, as HubSpot's burst limit counts per app: people and workflows acting in the
portal never spend leadflow's budget. The admin routes (`/_sandbox/...`) take leadflow's token only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response

from leadflow.sandbox import enrichment_api, hubspot_api
from leadflow.sandbox.errors import HubSpotError, correlation_id, error_body
from leadflow.sandbox.faults import FaultInjector, FaultSpec, RequestFaults
from leadflow.sandbox.history import ChangeSource
from leadflow.sandbox.hubspot_api import RequestContext, read_json
from leadflow.sandbox.hubspot_service import HubSpotService
from leadflow.sandbox.properties import OBJECT_TYPES
from leadflow.sandbox.ratelimit import DailyLimiter, Decision, RateSpec, SlidingWindowLimiter
from leadflow.sandbox.responses import JSONResponse as SandboxJSONResponse
from leadflow.sandbox.settings import SandboxSettings
from leadflow.sandbox.store import SandboxStore

log = logging.getLogger(__name__)

Sleeper = Callable[[float], Awaitable[None]]
_BATCH_WRITE = re.compile(r"^/crm/v3/objects/[^/]+/batch/(update|upsert|create|archive)$")
_SEARCH = re.compile(r"^/crm/v3/objects/[^/]+/search$")
_NUMERIC_SEGMENT = re.compile(r"/\d+(?=/|$)")
AUTH_MESSAGE = ("Authentication credentials not found. This API supports OAuth 2.0 authentication and you can "
                "find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview")


class Stats:
    """Request counts per endpoint and per status (what tests assert retries and budgets with)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.by_endpoint: Counter[str] = Counter()
            self.by_status: Counter[str] = Counter()
            self.by_endpoint_status: dict[str, Counter[str]] = {}

    def record(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.by_endpoint[endpoint] += 1
            self.by_status[str(status)] += 1
            self.by_endpoint_status.setdefault(endpoint, Counter())[str(status)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"total": sum(self.by_endpoint.values()), "byEndpoint": dict(self.by_endpoint),
                    "byStatus": dict(self.by_status),
                    "byEndpointStatus": {k: dict(v) for k, v in self.by_endpoint_status.items()}}


def add_stats_routes(router: APIRouter, stats_of: Callable[[Request], Stats]) -> None:
    """`GET /stats` (the counts so far) and `POST /reset-stats` on an admin router; `stats_of`
    finds the app's `Stats` (the HubSpot and the Salesforce app each keep their own)."""

    @router.get("/stats")
    async def stats(request: Request) -> Response:
        return SandboxJSONResponse(stats_of(request).snapshot())

    @router.post("/reset-stats")
    async def reset_stats(request: Request) -> Response:
        stats_of(request).reset()
        return Response(status_code=204)


@dataclass
class Limits:
    general: SlidingWindowLimiter | None
    search: SlidingWindowLimiter | None
    daily: DailyLimiter
    enrichment: SlidingWindowLimiter | None


@dataclass
class SandboxContext:
    settings: SandboxSettings
    store: SandboxStore
    service: HubSpotService
    faults: FaultInjector
    limits: Limits
    enrichment: enrichment_api.EnrichmentState
    stats: Stats = field(default_factory=Stats)
    clock: Callable[[], float] = time.time
    sleep: Sleeper = asyncio.sleep
    _sources: tuple[SandboxSettings, dict[str, ChangeSource]] | None = field(default=None, repr=False)

    def source_of(self, token: str | None) -> ChangeSource | None:
        """Who a HubSpot bearer token belongs to; None for an unknown token."""
        if token is None:
            return None
        # Settings are replaced (never mutated) when limits change at run time.
        if self._sources is None or self._sources[0] is not self.settings:
            self._sources = (self.settings, self.settings.sources_by_token())
        return self._sources[1].get(token)

    def build_limits(self, rate: str, search_rate: str, enrichment_rate: str) -> None:
        """(Re)build the limiters, e.g. when a test switches limits at run time."""
        self.limits = _limits(self.settings, self.clock, rate, search_rate, enrichment_rate)


def _limiter(text: str, clock: Callable[[], float]) -> SlidingWindowLimiter | None:
    spec = RateSpec.parse(text)
    return SlidingWindowLimiter(spec, clock) if spec else None


def _limits(settings: SandboxSettings, clock: Callable[[], float], rate: str, search_rate: str,
            enrichment_rate: str) -> Limits:
    return Limits(general=_limiter(rate, clock), search=_limiter(search_rate, clock),
                  daily=DailyLimiter(settings.daily_limit, clock), enrichment=_limiter(enrichment_rate, clock))


def endpoint_label(method: str, path: str) -> str:
    """`PATCH /crm/v3/objects/contacts/123` -> `PATCH /crm/v3/objects/contacts/{id}`."""
    return f"{method} {_NUMERIC_SEGMENT.sub('/{id}', path)}"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _unauthorized() -> JSONResponse:
    return JSONResponse(error_body(AUTH_MESSAGE, "INVALID_AUTHENTICATION"), status_code=401)


def _rate_limited(policy: str, headers: dict[str, str]) -> JSONResponse:
    messages = {"TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
                "SECONDLY": "You have reached your secondly limit.",
                "DAILY": "You have reached your daily limit."}
    body = {"status": "error", "message": messages[policy], "errorType": "RATE_LIMIT",
            "correlationId": correlation_id(), "policyName": policy, "groupName": f"api:{policy.lower()}"}
    return JSONResponse(body, status_code=429, headers=headers)


def _hubspot_headers(general: Decision | None, daily: Decision, spec: RateSpec | None) -> dict[str, str]:
    headers = {"X-HubSpot-RateLimit-Daily": str(daily.limit),
               "X-HubSpot-RateLimit-Daily-Remaining": str(max(daily.remaining, 0))}
    if general is not None and spec is not None:
        headers.update({"X-HubSpot-RateLimit-Max": str(general.limit),
                        "X-HubSpot-RateLimit-Remaining": str(max(general.remaining, 0)),
                        "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(spec.interval_s * 1000))})
    return headers


def _server_error(faults: RequestFaults) -> Response:
    status = faults.server_error or 502
    if faults.server_error_html:
        # What a gateway in front of the API sends: HTML, not JSON.
        return HTMLResponse(f"<html><head><title>{status} Bad Gateway</title></head><body><h1>{status}</h1>"
                            "<p>The server encountered a temporary error.</p></body></html>", status_code=status)
    return JSONResponse(error_body("Service temporarily unavailable. Please retry.", "INTERNAL_ERROR"),
                        status_code=status)


def create_app(settings: SandboxSettings, *, store: SandboxStore | None = None,
               clock: Callable[[], float] = time.time, sleep: Sleeper = asyncio.sleep) -> FastAPI:
    """Build the sandbox app. `clock` drives rate limits and timestamps; `sleep` the slow and
    timeout faults (tests inject both so they never wait)."""
    store = store or SandboxStore(settings.db_path, clock=clock)
    faults = FaultInjector(settings.fault_spec(), settings.fault_seed)
    service = HubSpotService(store, lifecycle_backward=settings.lifecycle_backward,
                             batch_validation=settings.batch_validation, faults=faults)
    seed = int(json.loads(store.get_meta("world") or "{}").get("seed", 0))
    ctx = SandboxContext(
        settings=settings, store=store, service=service, faults=faults,
        limits=_limits(settings, clock, settings.rate_limit, settings.search_rate_limit,
                       settings.enrichment_rate_limit),
        enrichment=enrichment_api.EnrichmentState(seed, settings.enrichment_queued_share),
        clock=clock, sleep=sleep)

    app = FastAPI(title="leadflow CRM sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = ctx
    app.include_router(hubspot_api.router)
    app.include_router(enrichment_api.router)
    app.include_router(_admin_router())

    @app.exception_handler(HubSpotError)
    async def _hubspot_error(_: Request, exc: HubSpotError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(f"Invalid input: {exc.errors()[:3]}", "VALIDATION_ERROR"), status_code=400)

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        label = endpoint_label(request.method, path)
        response = await _handle(ctx, request, call_next, path)
        if not path.startswith("/_sandbox/"):  # the admin API does not count itself
            ctx.stats.record(label, response.status_code)
        return response

    return app


async def _handle(ctx: SandboxContext, request: Request, call_next: Callable[[Request], Awaitable[Response]],
                  path: str) -> Response:
    if path == "/_sandbox/health":
        return await call_next(request)
    token = _bearer(request)
    if path.startswith("/v2/companies"):
        return await _enrichment_gate(ctx, request, call_next, token)
    if not (path.startswith("/crm/") or path.startswith("/_sandbox/")):
        return await call_next(request)
    source = ctx.source_of(token)
    if source is None:
        return _unauthorized()
    if path.startswith("/_sandbox/"):
        return await call_next(request) if token == ctx.settings.token else _unauthorized()
    if ctx.settings.latency_seconds:
        await ctx.sleep(ctx.settings.latency_seconds)

    is_search = bool(_SEARCH.match(path))
    daily = ctx.limits.daily.hit(token)
    general = None if is_search or ctx.limits.general is None else ctx.limits.general.hit(token)
    headers = {} if is_search else _hubspot_headers(general, daily, ctx.limits.general and ctx.limits.general.spec)
    if not daily.allowed:
        return _rate_limited("DAILY", headers)
    if general is not None and not general.allowed:
        return _rate_limited("TEN_SECONDLY_ROLLING", headers)
    if is_search and ctx.limits.search is not None and not ctx.limits.search.hit(token).allowed:
        return _rate_limited("SECONDLY", headers)

    is_batch_write = bool(_BATCH_WRITE.match(path))
    is_write = request.method in ("POST", "PATCH", "PUT", "DELETE") and not is_search and not path.endswith(
        "/batch/read")
    faults = ctx.faults.draw(is_write=is_write, is_batch_write=is_batch_write,
                             key=await _request_key(request) if ctx.faults.spec.kinds() else None)
    if faults.rate_limited:
        return _rate_limited("SECONDLY" if is_search else "TEN_SECONDLY_ROLLING", headers)
    if faults.server_error:
        return _server_error(faults)
    if faults.slow:
        await ctx.sleep(ctx.settings.slow_seconds)
    rctx = RequestContext(faults, source)
    request.scope["sandbox.ctx"] = rctx
    response = await call_next(request)
    if faults.timeout and rctx.applied:
        # The write is applied; the answer comes too late for any sane client timeout.
        log.info("timeout fault: holding %s %s for %.1fs after applying it", request.method, request.url.path,
                 ctx.settings.timeout_seconds)
        await ctx.sleep(ctx.settings.timeout_seconds)
    for key, value in headers.items():
        response.headers[key] = value
    return response


async def _request_key(request: Request) -> str:
    """What the fault draw of a request is keyed on: method, path, query and, for a batch write,
    the record ids it names (the values carry the time of scoring; the ids do not, so a world
    draws the same write faults run after run), else a digest of the body. Epoch-millisecond
    timestamps (a search's watermark and window bounds) are left out of the key: a world is
    seeded relative to the day it is made, and its faults must not change with the calendar or
    the time of day. Starlette caches the body: the handler reads it again."""
    keyed_on = body = await request.body()
    if _BATCH_WRITE.match(request.url.path):
        try:
            inputs = json.loads(body).get("inputs") or []
            keyed_on = ",".join(sorted(str(i.get("id") or i.get("idProperty") or "") for i in inputs)).encode()
        except (ValueError, AttributeError):
            pass  # not the JSON the handler expects: it answers 400 itself
    else:
        keyed_on = _EPOCH_MS.sub(b"T", body)
    digest = hashlib.blake2b(keyed_on, digest_size=12).hexdigest()
    query = _EPOCH_MS.sub(b"T", request.url.query.encode()).decode()
    return f"{request.method} {request.url.path}?{query} {digest}"


# 12-14 digits: epoch milliseconds from 2001 to 5138; record ids and paging cursors are shorter.
_EPOCH_MS = re.compile(rb"(?<![0-9])[0-9]{12,14}(?![0-9])")


async def _enrichment_gate(ctx: SandboxContext, request: Request,
                           call_next: Callable[[Request], Awaitable[Response]], token: str | None) -> Response:
    if token != ctx.settings.enrichment_key:
        return JSONResponse({"error": {"type": "auth_required", "message": "A valid API key is required "
                                       "(Authorization: Bearer <key>)."}}, status_code=401)
    limiter = ctx.limits.enrichment
    headers: dict[str, str] = {}
    if limiter is not None:
        decision = limiter.hit(token)
        headers = {"X-RateLimit-Limit": str(decision.limit), "X-RateLimit-Remaining": str(max(decision.remaining, 0)),
                   "X-RateLimit-Reset": str(int(decision.reset_s + 0.999))}
        if not decision.allowed:
            return JSONResponse({"error": {"type": "rate_limit", "message": "Rate limit exceeded; retry after "
                                           f"{headers['X-RateLimit-Reset']} s."}}, status_code=429, headers=headers)
    response = await call_next(request)
    for key, value in headers.items():
        response.headers[key] = value
    return response


# --- admin ------------------------------------------------------------------------------------------
def _admin_router() -> Any:
    router = APIRouter(prefix="/_sandbox")

    @router.get("/health")
    async def health(request: Request) -> JSONResponse:
        store: SandboxStore = request.app.state.sandbox.store
        return JSONResponse({"status": "ok", "contacts": store.count("contacts"), "companies": store.count("companies")})

    @router.get("/faults")
    async def get_faults(request: Request) -> JSONResponse:
        return JSONResponse({"spec": str(request.app.state.sandbox.faults.spec)})

    @router.post("/faults")
    async def set_faults(request: Request) -> JSONResponse:
        raw = (await request.body()).decode()
        body = await read_json(request) if raw.strip().startswith("{") else {"spec": raw}
        try:
            spec = FaultSpec.parse(str(body.get("spec", body.get("faults", ""))))
        except ValueError as exc:
            return JSONResponse(error_body(str(exc), "VALIDATION_ERROR"), status_code=400)
        seed = body.get("seed")
        request.app.state.sandbox.faults.configure(spec, int(seed) if seed is not None else None)
        log.info("faults set to %s", spec)
        return JSONResponse({"spec": str(spec)})

    @router.post("/rate-limits")
    async def set_rate_limits(request: Request) -> JSONResponse:
        """Switch limits at run time (`{"rate_limit": "off", "search_rate_limit": "5/1"}`); also
        empties every rolling window."""
        ctx: SandboxContext = request.app.state.sandbox
        body = await read_json(request) or {}
        current = {"rate_limit": ctx.settings.rate_limit, "search_rate_limit": ctx.settings.search_rate_limit,
                   "enrichment_rate_limit": ctx.settings.enrichment_rate_limit}
        unknown = set(body) - set(current)
        if unknown:
            return JSONResponse(error_body(f"unknown keys: {sorted(unknown)}", "VALIDATION_ERROR"), status_code=400)
        current.update({k: str(v) for k, v in body.items()})
        try:
            ctx.settings = ctx.settings.model_copy(update=current)
            ctx.build_limits(current["rate_limit"], current["search_rate_limit"], current["enrichment_rate_limit"])
        except ValueError as exc:
            return JSONResponse(error_body(str(exc), "VALIDATION_ERROR"), status_code=400)
        return JSONResponse(current)

    add_stats_routes(router, lambda request: request.app.state.sandbox.stats)

    @router.get("/writes")
    async def writes(request: Request) -> JSONResponse:
        q = request.query_params
        try:
            entries = request.app.state.sandbox.store.writes(
                since_ms=int(q.get("since", 0)), since_seq=int(q.get("since_seq", 0)),
                object_type=q.get("object_type"), limit=min(int(q.get("limit", 10_000)), 100_000))
        except ValueError:
            return JSONResponse(error_body("since, since_seq and limit must be integers", "VALIDATION_ERROR"),
                                status_code=400)
        return JSONResponse({"results": [e.to_api() for e in entries]})

    @router.post("/touch")
    async def touch(request: Request) -> Response:
        """Give many records one lastmodifieddate (what a bulk import does):
        `{"objectType": "contacts", "ids": [1, 2], "modifiedMs": 1700000000000}`."""
        body = await read_json(request)
        object_type = body.get("objectType", "contacts") if isinstance(body, dict) else None
        if object_type not in OBJECT_TYPES or not isinstance(body.get("ids"), list):
            return JSONResponse(error_body("need objectType and ids", "VALIDATION_ERROR"), status_code=400)
        request.app.state.sandbox.store.touch(object_type, [int(i) for i in body["ids"]], int(body["modifiedMs"]))
        return Response(status_code=204)

    return router
