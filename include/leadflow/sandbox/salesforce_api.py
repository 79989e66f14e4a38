"""The Salesforce part of the sandbox as an ASGI app (served over TLS on its own port).

Routes (any API version `vNN.N` from 20.0):
  POST  /services/oauth2/token                       client_credentials and password grants
  GET   /services/oauth2/userinfo                    the user a session acts as (user_id)
  GET   /services/data/                              versions
  GET   /services/data/vNN.N/query?q= | queryAll?q=  SOQL (see salesforce_soql), 2,000 per batch
  GET   /services/data/vNN.N/query/<locator>         next batch (`nextRecordsUrl`)
  GET   /services/data/vNN.N/sobjects/Lead/describe | sobjects/LeadHistory/describe | sobjects/Contact/describe
  GET|PATCH|DELETE /services/data/vNN.N/sobjects/Lead/<id>   PATCH honours If-Unmodified-Since (412)
  GET|PATCH /services/data/vNN.N/sobjects/Contact/<id>       the Contacts converted leads became
  PATCH /services/data/vNN.N/composite/sobjects      up to 200 records (Leads and Contacts), allOrNone,
                                                     per-record results
  GET   /services/data/vNN.N/limits
  /_sandbox/health|stats|faults|limits|touch          admin (org session), not counted
  /_sandbox/users | picklist-values | merge | convert   sandbox-only stand-ins for what people do in
                                                        the Salesforce UI and Setup (see below)
Every /services/data call is made by a user: the integration user (the org session, which the
OAuth token endpoint hands out) or one of the configured reps and admins, each with its own session
id (`GET /_sandbox/users`; the password flow also logs them in with the org's sandbox password).
Every /services/data answer carries `Sforce-Limit-Info: api-usage=N/M`; once the allocation is
spent the answer is 403 REQUEST_LIMIT_EXCEEDED. Fault flags are the HubSpot part's: 429 becomes
Salesforce's transient 403 "ConcurrentPerOrgLongTxn Limit exceeded.", 5xx a 503, partial and
invalid fail some records of a collection, timeout holds the answer after applying a write.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qs

from leadflow.sandbox.app import Stats, add_stats_routes
from leadflow.sandbox.faults import FaultInjector, FaultSpec, RequestFaults
from leadflow.sandbox.responses import JSONResponse
from leadflow.sandbox.salesforce_service import (
    DEFAULT_TRACKED_FIELDS,
    MAX_BATCH,
    ApiUsage,
    SalesforceApiError,
    SalesforceService,
    check_tracked_fields,
)
from leadflow.sandbox.salesforce_store import SalesforceStore
from leadflow.sandbox.salesforce_schema import CONTACT, LEAD, SObjectType
from leadflow.sandbox.salesforce_users import INTEGRATION_USER_ID, SalesforceUser, UserDirectory

log = logging.getLogger(__name__)
Sleeper = Callable[[float], Awaitable[None]]
_ID_SEGMENT = re.compile(r"/(00Q[0-9A-Za-z]{12,15}|01g[0-9A-Fa-f]+-\d+)(?=/|$)")
ORG_ID = "00D5g000000LfLwEAK"
USER_ID = INTEGRATION_USER_ID


class SalesforceSettings(BaseModel):
    """Settings of the Salesforce part (from CLI flags or Python); errors name the bad key."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(default_factory=lambda: "00D5g000000LfLw!sandbox." + secrets.token_hex(20), min_length=8)
    client_id: str = Field(default_factory=lambda: "3MVG9sandbox" + secrets.token_hex(12), min_length=4)
    client_secret: str = Field(default_factory=lambda: secrets.token_hex(16), min_length=4)
    username: str = "leadflow@sandbox.example"
    password: str = Field(default_factory=lambda: secrets.token_hex(12), min_length=4)
    daily_limit: int = Field(100_000, ge=1, description="API requests per 24 h (Sforce-Limit-Info)")
    faults: str = "off"
    fault_seed: int = 0
    timeout_seconds: float = Field(30.0, ge=0)
    slow_seconds: float = Field(1.5, ge=0)
    api_version: str = "59.0"
    users: int = Field(3, ge=0, le=100, description="sales reps, each with its own session (--salesforce-users)")
    admins: int = Field(1, ge=0, le=100, description="system administrators with their own session")
    history_fields: tuple[str, ...] = Field(DEFAULT_TRACKED_FIELDS,
                                            description="Lead fields with field history tracking (LeadHistory)")

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, value: str) -> str:
        FaultSpec.parse(value)
        return value

    @field_validator("history_fields")
    @classmethod
    def _check_history_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return check_tracked_fields(value)


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse([{"message": message, "errorCode": code}], status_code=status, headers=headers)


def endpoint_label(method: str, path: str) -> str:
    path = _ID_SEGMENT.sub("/{id}", path)
    path = re.sub(r"^/services/data/v\d+\.\d", "/services/data/vXX.X", path)
    return f"{method} {path}"


class SalesforceContext:
    def __init__(self, settings: SalesforceSettings, store: SalesforceStore, clock: Callable[[], float],
                 sleep: Sleeper) -> None:
        self.settings = settings
        self.store = store
        self.faults = FaultInjector(FaultSpec.parse(settings.faults), settings.fault_seed)
        self.users = UserDirectory(settings.token, reps=settings.users, admins=settings.admins,
                                   username=settings.username)
        self.service = SalesforceService(store, faults=self.faults, clock=clock, version=settings.api_version,
                                         users=self.users, tracked_fields=settings.history_fields)
        self.usage = ApiUsage(settings.daily_limit)
        self.stats = Stats()
        self.clock = clock
        self.sleep = sleep
        self.instance_url = ""  # set by the server once the port is known


def create_salesforce_app(settings: SalesforceSettings, store: SalesforceStore, *,
                          clock: Callable[[], float] = time.time, sleep: Sleeper = asyncio.sleep) -> FastAPI:
    ctx = SalesforceContext(settings, store, clock, sleep)
    app = FastAPI(title="leadflow Salesforce sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.salesforce = ctx
    app.include_router(_oauth_router())
    app.include_router(_data_router())
    app.include_router(_admin_router())

    @app.exception_handler(SalesforceApiError)
    async def _sf_error(_: Request, exc: SalesforceApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def _gate(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        response = await _handle(ctx, request, call_next, path)
        if not path.startswith("/_sandbox/"):
            ctx.stats.record(endpoint_label(request.method, path), response.status_code)
        return response

    return app


def _session_token(request: Request) -> str | None:
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


async def _handle(ctx: SalesforceContext, request: Request, call_next: Callable[[Request], Awaitable[Response]],
                  path: str) -> Response:
    if path == "/_sandbox/health" or path.startswith("/services/oauth2/"):
        return await call_next(request)
    token = _session_token(request)
    if path.startswith("/_sandbox/"):
        if token != ctx.settings.token:
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        return await call_next(request)
    if not path.startswith("/services/data"):
        return _error(404, "NOT_FOUND", "The requested resource does not exist")
    user = ctx.users.by_token(token)
    if user is None:
        return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
    request.scope["salesforce.user"] = user
    if not ctx.usage.hit():
        return _error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.",
                      {"Sforce-Limit-Info": ctx.usage.header()})
    headers = {"Sforce-Limit-Info": ctx.usage.header()}
    is_collection = path.endswith("/composite/sobjects")
    is_write = request.method in ("PATCH", "POST", "DELETE", "PUT")
    faults = ctx.faults.draw(is_write=is_write, is_batch_write=is_collection and request.method == "PATCH")
    if faults.rate_limited:
        return _error(403, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.", headers)
    if faults.server_error:
        return _error(503, "SERVER_UNAVAILABLE", "Server temporarily unavailable, please retry.", headers)
    if faults.slow:
        await ctx.sleep(ctx.settings.slow_seconds)
    request.scope["salesforce.faults"] = faults
    request.scope["salesforce.applied"] = False
    response = await call_next(request)
    if faults.timeout and request.scope.get("salesforce.applied"):
        log.info("timeout fault: holding %s %s for %.1fs after applying it", request.method, path,
                 ctx.settings.timeout_seconds)
        await ctx.sleep(ctx.settings.timeout_seconds)
    for key, value in headers.items():
        response.headers[key] = value
    return response


# --- OAuth -----------------------------------------------------------------------------------------
def _oauth_router() -> APIRouter:
    router = APIRouter()

    @router.post("/services/oauth2/token")
    async def token(request: Request) -> JSONResponse:
        ctx: SalesforceContext = request.app.state.salesforce
        s = ctx.settings
        raw = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        form.update({k: v for k, v in request.query_params.items() if k not in form})
        grant = form.get("grant_type")
        if grant not in ("client_credentials", "password"):
            return JSONResponse({"error": "unsupported_grant_type", "error_description": "grant type not supported"},
                                status_code=400)
        if form.get("client_id") != s.client_id:
            return JSONResponse({"error": "invalid_client_id", "error_description": "client identifier invalid"},
                                status_code=400)
        if form.get("client_secret") != s.client_secret:
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"},
                                status_code=400)
        user = ctx.users.integration
        if grant == "password":
            # the org's people log in with their username and the org's sandbox password
            found = ctx.users.find(form.get("username") or "")
            if found is None or found.token is None or not form.get("password", "").startswith(s.password):
                return JSONResponse({"error": "invalid_grant", "error_description": "authentication failure"},
                                    status_code=400)
            user = found
        issued = str(int(ctx.clock() * 1000))
        identity = f"{ctx.instance_url}/id/{ORG_ID}/{user.id}"
        signature = base64.b64encode(hmac.new(s.client_secret.encode(), (identity + issued).encode(),
                                              hashlib.sha256).digest()).decode()
        return JSONResponse({"access_token": user.token, "instance_url": ctx.instance_url, "id": identity,
                             "token_type": "Bearer", "issued_at": issued, "signature": signature,
                             "scope": "api"})

    @router.get("/services/oauth2/userinfo")
    async def userinfo(request: Request) -> JSONResponse:
        """OpenID Connect userinfo: who the session's token acts as (leadflow asks it once to
        tell its own writes in LeadHistory apart)."""
        ctx: SalesforceContext = request.app.state.salesforce
        user = ctx.users.by_token(_session_token(request))
        if user is None:
            return JSONResponse({"error": "invalid_token", "error_description": "Session expired or invalid"},
                                status_code=401)
        return JSONResponse({"sub": f"{ctx.instance_url}/id/{ORG_ID}/{user.id}", "user_id": user.id,
                             "organization_id": ORG_ID, "preferred_username": user.username, "name": user.name})

    return router


# --- data API ----------------------------------------------------------------------------------------
def _version(request: Request, version: str) -> str:
    match = re.fullmatch(r"v(\d{2,3}\.\d)", version)
    if not match or float(match.group(1)) < 20.0:
        raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
    return match.group(1)


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Unexpected character in the request body") from None


def _user(request: Request) -> SalesforceUser:
    """The user whose session made the call (set by the gate)."""
    user = request.scope.get("salesforce.user")
    return user if user is not None else request.app.state.salesforce.users.integration


def _unmodified_since_ms(request: Request) -> int | None:
    """`If-Unmodified-Since` (an HTTP date) as epoch ms; an unreadable one is 400, as Salesforce
    answers an invalid conditional header on PATCH."""
    raw = request.headers.get("if-unmodified-since")
    if raw is None:
        return None
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SalesforceApiError(400, "INVALID_HEADER_VALUE", "If-Unmodified-Since must be an HTTP date in GMT, "
                                 "e.g. 'Wed, 21 Oct 2026 07:28:00 GMT'")
    return int(moment.timestamp() * 1000)


def _batch_size(request: Request) -> int:
    options = request.headers.get("sforce-query-options") or ""
    match = re.search(r"batchSize\s*=\s*(\d+)", options)
    return int(match.group(1)) if match else MAX_BATCH


def _data_router() -> APIRouter:
    router = APIRouter(prefix="/services/data")

    @router.get("/")
    async def versions(request: Request) -> JSONResponse:
        return JSONResponse([{"label": "Winter '24", "url": "/services/data/v59.0", "version": "59.0"}])

    for kind in ("query", "queryAll"):
        def make(all_rows: bool) -> tuple[Any, Any]:
            async def run(request: Request, version: str) -> JSONResponse:
                ver = _version(request, version)
                soql = request.query_params.get("q")
                if soql is None:
                    raise SalesforceApiError(400, "MALFORMED_QUERY", "A query string (q) is required")
                ctx: SalesforceContext = request.app.state.salesforce
                return JSONResponse(ctx.service.query(soql, all_rows=all_rows, batch_size=_batch_size(request),
                                                      version=ver))

            async def more(request: Request, version: str, locator: str) -> JSONResponse:
                ver = _version(request, version)
                ctx: SalesforceContext = request.app.state.salesforce
                return JSONResponse(ctx.service.more(locator, version=ver))

            return run, more

        run, more = make(kind == "queryAll")
        router.add_api_route(f"/{{version}}/{kind}", run, methods=["GET"])
        router.add_api_route(f"/{{version}}/{kind}/", run, methods=["GET"])
        router.add_api_route(f"/{{version}}/{kind}/{{locator}}", more, methods=["GET"])

    @router.get("/{version}/sobjects/Lead/describe")
    @router.get("/{version}/sobjects/Lead/describe/")
    async def describe(request: Request, version: str) -> JSONResponse:
        _version(request, version)
        return JSONResponse(request.app.state.salesforce.service.describe())

    @router.get("/{version}/sobjects/LeadHistory/describe")
    @router.get("/{version}/sobjects/LeadHistory/describe/")
    async def describe_history(request: Request, version: str) -> JSONResponse:
        _version(request, version)
        return JSONResponse(request.app.state.salesforce.service.describe("LeadHistory"))

    @router.get("/{version}/sobjects/Contact/describe")
    @router.get("/{version}/sobjects/Contact/describe/")
    async def describe_contact(request: Request, version: str) -> JSONResponse:
        _version(request, version)
        return JSONResponse(request.app.state.salesforce.service.describe(CONTACT.name))

    @router.get("/{version}/limits")
    @router.get("/{version}/limits/")
    async def limits(request: Request, version: str) -> JSONResponse:
        _version(request, version)
        usage: ApiUsage = request.app.state.salesforce.usage
        return JSONResponse({"DailyApiRequests": {"Max": usage.limit, "Remaining": max(usage.limit - usage.used, 0)}})

    @router.patch("/{version}/composite/sobjects")
    async def update_collection(request: Request, version: str) -> JSONResponse:
        _version(request, version)
        ctx: SalesforceContext = request.app.state.salesforce
        body = await _json_body(request)
        faults: RequestFaults = request.scope.get("salesforce.faults") or RequestFaults()
        results, applied = ctx.service.update_collection(body, faults, _user(request))
        request.scope["salesforce.applied"] = applied
        return JSONResponse(results)

    for sobject in (LEAD, CONTACT):
        def make_record_routes(sobject: SObjectType) -> tuple[Any, Any]:
            async def get_record(request: Request, version: str, record_id: str) -> JSONResponse:
                ver = _version(request, version)
                fields = request.query_params.get("fields")
                names = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
                return JSONResponse(request.app.state.salesforce.service.get_record(record_id, ver, names, sobject))

            async def update_record(request: Request, version: str, record_id: str) -> Response:
                _version(request, version)
                body = await _json_body(request)
                request.app.state.salesforce.service.update_one(record_id, body, _user(request),
                                                                unmodified_since_ms=_unmodified_since_ms(request),
                                                                sobject=sobject)
                request.scope["salesforce.applied"] = True
                return Response(status_code=204)

            return get_record, update_record

        get_record, update_record = make_record_routes(sobject)
        router.add_api_route(f"/{{version}}/sobjects/{sobject.name}/{{record_id}}", get_record, methods=["GET"])
        router.add_api_route(f"/{{version}}/sobjects/{sobject.name}/{{record_id}}", update_record, methods=["PATCH"])

    @router.delete("/{version}/sobjects/Lead/{record_id}")
    async def delete_record(request: Request, version: str, record_id: str) -> Response:
        _version(request, version)
        request.app.state.salesforce.service.delete(record_id, _user(request))
        request.scope["salesforce.applied"] = True
        return Response(status_code=204)

    @router.api_route("/{version}/sobjects/{sobject}/{rest:path}", methods=["GET", "PATCH", "POST", "DELETE"])
    async def other_sobject(request: Request, version: str, sobject: str, rest: str) -> JSONResponse:
        _version(request, version)
        return _error(404, "NOT_FOUND", "The requested resource does not exist (the sandbox serves Lead and Contact "
                      "rows and the Lead, LeadHistory and Contact describes)")

    return router


# --- admin ---------------------------------------------------------------------------------------------
def _admin_router() -> APIRouter:
    router = APIRouter(prefix="/_sandbox")

    @router.get("/health")
    async def health(request: Request) -> JSONResponse:
        ctx: SalesforceContext = request.app.state.salesforce
        return JSONResponse({"status": "ok", "leads": ctx.store.count()})

    add_stats_routes(router, lambda request: request.app.state.salesforce.stats)

    @router.post("/faults")
    async def set_faults(request: Request) -> JSONResponse:
        body = await _json_body(request) or {}
        try:
            spec = FaultSpec.parse(str(body.get("spec", "")))
        except ValueError as exc:
            return _error(400, "INVALID_INPUT", str(exc))
        seed = body.get("seed")
        request.app.state.salesforce.faults.configure(spec, int(seed) if seed is not None else None)
        return JSONResponse({"spec": str(spec)})

    @router.post("/limits")
    async def set_limits(request: Request) -> JSONResponse:
        """`{"daily_limit": 100, "used": 95}`: change the API allocation at run time."""
        body = await _json_body(request) or {}
        unknown = set(body) - {"daily_limit", "used"}
        if unknown:
            return _error(400, "INVALID_INPUT", f"unknown keys: {sorted(unknown)}")
        usage: ApiUsage = request.app.state.salesforce.usage
        usage.set(limit=body.get("daily_limit"), used=body.get("used"))
        return JSONResponse({"daily_limit": usage.limit, "used": usage.used})

    @router.get("/users")
    async def users(request: Request) -> JSONResponse:
        """The org's users with their session ids (for tests and manual runs: this is the admin API)."""
        directory: UserDirectory = request.app.state.salesforce.users
        return JSONResponse({"users": [u.describe(with_token=u.token is not None) for u in directory.all]})

    @router.post("/picklist-values")
    async def add_picklist_value(request: Request) -> JSONResponse:
        """`{"field": "Status", "value": "Recycled", "converted": false}`: add a value to the org's
        picklist (in Salesforce an admin does this in Setup or with the Metadata API)."""
        body = await _admin_body(request, required={"field", "value"}, optional={"converted"})
        service: SalesforceService = request.app.state.salesforce.service
        try:
            return JSONResponse(service.add_picklist_value(str(body["field"]), body["value"],
                                                           converted=bool(body.get("converted", False))))
        except ValueError as exc:
            return _error(400, "INVALID_INPUT", str(exc))

    @router.post("/merge")
    async def merge(request: Request) -> JSONResponse:
        """`{"masterId": A, "mergedId": B, "asUser": id or username}`: merge lead B into A as that
        user (default: the integration user), as a person does in the Salesforce UI."""
        body = await _admin_body(request, required={"masterId", "mergedId"}, optional={"asUser"})
        ctx: SalesforceContext = request.app.state.salesforce
        user = _acting(ctx, body)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(ctx.service.merge(str(body["masterId"]), str(body["mergedId"]), user))

    @router.post("/convert")
    async def convert(request: Request) -> JSONResponse:
        """`{"leadId": L, "asUser": ..., "convertedStatus"?, "accountId"?, "createOpportunity"?}`:
        convert the lead as that user (Salesforce's convertLead)."""
        body = await _admin_body(request, required={"leadId"},
                                 optional={"asUser", "convertedStatus", "accountId", "createOpportunity"})
        ctx: SalesforceContext = request.app.state.salesforce
        user = _acting(ctx, body)
        if isinstance(user, JSONResponse):
            return user
        return JSONResponse(ctx.service.convert(
            str(body["leadId"]), user, converted_status=body.get("convertedStatus"),
            account_id=body.get("accountId"), create_opportunity=bool(body.get("createOpportunity", False))))

    @router.post("/touch")
    async def touch(request: Request) -> Response:
        """`{"ids": [...], "modstampMs": 1700000000000}`: give many leads one SystemModstamp."""
        body = await _json_body(request) or {}
        if not isinstance(body.get("ids"), list) or "modstampMs" not in body:
            return _error(400, "INVALID_INPUT", "need ids and modstampMs")
        request.app.state.salesforce.store.set_modstamp([str(i) for i in body["ids"]], int(body["modstampMs"]))
        return Response(status_code=204)

    return router


async def _admin_body(request: Request, *, required: set[str], optional: set[str]) -> dict[str, Any]:
    """The JSON object of an admin call, with exactly the keys it may have (400 naming the rest)."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise SalesforceApiError(400, "INVALID_INPUT", f"expected a JSON object with {sorted(required)}")
    missing = required - set(body)
    unknown = set(body) - required - optional
    if missing or unknown:
        raise SalesforceApiError(400, "INVALID_INPUT", f"missing keys: {sorted(missing)}; unknown keys: "
                                 f"{sorted(unknown)} (allowed: {sorted(required | optional)})")
    return body


def _acting(ctx: SalesforceContext, body: dict[str, Any]) -> SalesforceUser | JSONResponse:
    try:
        return ctx.users.acting(body.get("asUser"))
    except ValueError as exc:
        return _error(400, "INVALID_INPUT", str(exc))
