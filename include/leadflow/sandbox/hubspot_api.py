"""FastAPI routes of the HubSpot CRM v3 sandbox (objects, search, batch, properties, associations,
and the private-app token introspection).

Handlers only parse the HTTP request and call `HubSpotService`; auth, rate limits, faults and
stats are applied around them by the middleware in `app.py`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from leadflow.sandbox.errors import HubSpotError, validation_error
from leadflow.sandbox.faults import NO_FAULTS, RequestFaults
from leadflow.sandbox.responses import JSONResponse
from leadflow.sandbox.hubspot_service import DEFAULT_LIST_LIMIT, BatchAnswer, HubSpotService
from leadflow.sandbox.properties import (
    FIELD_TYPES,
    OBJECT_TYPES,
    PROPERTY_TYPES,
    PropertyDef,
    make_options,
    ms_to_iso,
)
from leadflow.sandbox.search import check_body_size, parse_search_request

router = APIRouter()
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
# The ids the token-info endpoint reports for the sandbox portal and its private app.
SANDBOX_HUB_ID = 24_680_135
SANDBOX_APP_ID = 3_141_592
SANDBOX_USER_ID = 77_001


class RequestContext:
    """Per-request state shared between the middleware and a handler (kept in the ASGI scope)."""

    def __init__(self, faults: RequestFaults = NO_FAULTS) -> None:
        self.faults = faults
        self.applied = False


def request_context(request: Request) -> RequestContext:
    ctx = request.scope.get("sandbox.ctx")
    return ctx if isinstance(ctx, RequestContext) else RequestContext()


def _service(request: Request) -> HubSpotService:
    return request.app.state.sandbox.service


def _object_type(object_type: str) -> str:
    if object_type not in OBJECT_TYPES:
        raise validation_error(f"Unable to infer object type from: {object_type}")
    return object_type


async def read_json(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise validation_error("Invalid input JSON on line 1: the body is not valid JSON") from None


def _csv_param(request: Request, name: str) -> list[str] | None:
    """`?properties=a,b&properties=c` -> ["a", "b", "c"]; None when absent."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def _bool_param(request: Request, name: str) -> bool:
    return (request.query_params.get(name) or "false").lower() == "true"


def _batch_response(request: Request, answer: BatchAnswer) -> JSONResponse:
    request_context(request).applied = answer.applied
    return JSONResponse(answer.body, status_code=answer.status_code)


# --- objects ----------------------------------------------------------------------------------------
@router.get("/crm/v3/objects/{object_type}")
async def list_objects(object_type: str, request: Request) -> JSONResponse:
    object_type = _object_type(object_type)
    limit_raw = request.query_params.get("limit", str(DEFAULT_LIST_LIMIT))
    try:
        limit = int(limit_raw)
    except ValueError:
        raise validation_error(f"limit {limit_raw[:20]!r} is not an integer") from None
    base = str(request.base_url).rstrip("/")
    body = _service(request).list_page(
        object_type, limit=limit, after=request.query_params.get("after"), properties=_csv_param(request, "properties"),
        associations=_csv_param(request, "associations") or [], archived=_bool_param(request, "archived"),
        base_url=base)
    return JSONResponse(body)


@router.post("/crm/v3/objects/{object_type}/search")
async def search_objects(object_type: str, request: Request) -> JSONResponse:
    object_type = _object_type(object_type)
    raw = await request.body()
    check_body_size(raw)
    search = parse_search_request(await read_json(request))
    return JSONResponse(_service(request).search(object_type, search))


@router.post("/crm/v3/objects/{object_type}/batch/read")
async def batch_read(object_type: str, request: Request) -> JSONResponse:
    answer = _service(request).batch_read(_object_type(object_type), await read_json(request))
    return _batch_response(request, answer)


@router.post("/crm/v3/objects/{object_type}/batch/update")
async def batch_update(object_type: str, request: Request) -> JSONResponse:
    answer = _service(request).batch_update(_object_type(object_type), await read_json(request),
                                            request_context(request).faults)
    return _batch_response(request, answer)


@router.post("/crm/v3/objects/{object_type}/batch/upsert")
async def batch_upsert(object_type: str, request: Request) -> JSONResponse:
    answer = _service(request).batch_upsert(_object_type(object_type), await read_json(request),
                                            request_context(request).faults)
    return _batch_response(request, answer)


@router.post("/crm/v3/objects/{object_type}/batch/create")
async def batch_create(object_type: str, request: Request) -> JSONResponse:
    answer = _service(request).batch_create(_object_type(object_type), await read_json(request),
                                            request_context(request).faults)
    return _batch_response(request, answer)


@router.post("/crm/v3/objects/{object_type}")
async def create_object(object_type: str, request: Request) -> JSONResponse:
    body = _service(request).create_one(_object_type(object_type), await read_json(request))
    request_context(request).applied = True
    return JSONResponse(body, status_code=201)


@router.get("/crm/v3/objects/{object_type}/{object_id}")
async def get_object(object_type: str, object_id: str, request: Request) -> JSONResponse:
    body = _service(request).get(
        _object_type(object_type), object_id, properties=_csv_param(request, "properties"),
        associations=_csv_param(request, "associations") or [], id_property=request.query_params.get("idProperty"))
    return JSONResponse(body)


@router.patch("/crm/v3/objects/{object_type}/{object_id}")
async def update_object(object_type: str, object_id: str, request: Request) -> JSONResponse:
    body = _service(request).update_one(_object_type(object_type), object_id, await read_json(request),
                                        request.query_params.get("idProperty"))
    request_context(request).applied = True
    return JSONResponse(body)


@router.delete("/crm/v3/objects/{object_type}/{object_id}")
async def archive_object(object_type: str, object_id: str, request: Request) -> Response:
    _service(request).archive(_object_type(object_type), object_id)
    request_context(request).applied = True
    return Response(status_code=204)


# --- associations (v4) ------------------------------------------------------------------------------
@router.post("/crm/v4/associations/contacts/companies/batch/read")
async def associations_batch_read(request: Request) -> JSONResponse:
    body = await read_json(request)
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs or len(inputs) > 1000:
        raise validation_error("inputs must be a list of 1 to 1000 {\"id\"} objects")
    service = _service(request)
    ids = [str(i.get("id")) for i in inputs if isinstance(i, dict)]
    rows = service.store.get_rows("contacts", [int(i) for i in ids if i.isdigit()])
    results, missing = [], []
    for key in dict.fromkeys(ids):
        row = rows.get(int(key)) if key.isdigit() else None
        if row is None:
            missing.append(key)
        elif row.company_id:
            results.append({"from": {"id": key}, "to": [{"toObjectId": row.company_id, "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"},
                {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}]}]})
    now = service.store.now_ms()
    out: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": ms_to_iso(now),
                           "completedAt": ms_to_iso(now)}
    if missing:
        out["numErrors"] = len(missing)
        out["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND", "message": "No contacts with these ids",
                          "context": {"ids": missing}, "links": {}, "errors": []}]
        return JSONResponse(out, status_code=207)
    return JSONResponse(out)


# --- properties -------------------------------------------------------------------------------------
@router.get("/crm/v3/properties/{object_type}/groups")
async def list_groups(object_type: str, request: Request) -> JSONResponse:
    return JSONResponse({"results": _service(request).store.groups(_object_type(object_type))})


@router.post("/crm/v3/properties/{object_type}/groups")
async def create_group(object_type: str, request: Request) -> JSONResponse:
    object_type = _object_type(object_type)
    body = await read_json(request)
    if not isinstance(body, dict) or not body.get("name") or not body.get("label"):
        raise validation_error("a property group needs 'name' and 'label'")
    name = str(body["name"])
    if not _NAME_RE.match(name):
        raise validation_error(f"group name {name!r} must be lower case letters, digits and underscores")
    store = _service(request).store
    if any(g["name"] == name for g in store.groups(object_type)):
        raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"A property group named '{name}' already exists.")
    store.add_group(object_type, name, str(body["label"]), body.get("displayOrder"))
    request_context(request).applied = True
    group = next(g for g in store.groups(object_type) if g["name"] == name)
    return JSONResponse(group, status_code=201)


@router.get("/crm/v3/properties/{object_type}")
async def list_properties(object_type: str, request: Request) -> JSONResponse:
    props = _service(request).store.properties(_object_type(object_type))
    return JSONResponse({"results": [p.to_api() for p in props.values()]})


@router.get("/crm/v3/properties/{object_type}/{name}")
async def get_property(object_type: str, name: str, request: Request) -> JSONResponse:
    prop = _service(request).store.properties(_object_type(object_type)).get(name)
    if prop is None:
        raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name} for object type {object_type}")
    return JSONResponse(prop.to_api())


@router.post("/crm/v3/properties/{object_type}")
async def create_property(object_type: str, request: Request) -> JSONResponse:
    object_type = _object_type(object_type)
    body = await read_json(request)
    prop = _property_from_request(body)
    store = _service(request).store
    if prop.name in store.properties(object_type):
        raise HubSpotError(409, "OBJECT_ALREADY_EXISTS", f"A property named '{prop.name}' already exists.")
    if not any(g["name"] == prop.group_name for g in store.groups(object_type)):
        raise validation_error(f"Property group {prop.group_name!r} does not exist.")
    store.add_property(object_type, prop)
    request_context(request).applied = True
    return JSONResponse(store.properties(object_type)[prop.name].to_api(), status_code=201)


@router.post("/oauth/v2/private-apps/get/access-token-info")
async def access_token_info(request: Request) -> JSONResponse:
    """HubSpot's private-app token introspection: `{"tokenKey": "<token>"}` -> the portal, app,
    user and scopes of that token. The token travels in the body (no Authorization header is
    needed); an unknown one is a 401 like everywhere else."""
    body = await read_json(request)
    token = body.get("tokenKey") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise validation_error("Invalid input JSON: expected an object with a 'tokenKey'")
    settings = request.app.state.sandbox.settings
    if token != settings.token:
        raise HubSpotError(401, "INVALID_AUTHENTICATION", "The access token is not valid: it does not exist or "
                           "was rotated or deleted.")
    return JSONResponse({"userId": SANDBOX_USER_ID, "hubId": SANDBOX_HUB_ID, "appId": SANDBOX_APP_ID,
                         "scopes": list(settings.token_scopes)})


def _property_from_request(body: Any) -> PropertyDef:
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected a property object")
    missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
    if missing:
        raise validation_error(f"Missing required fields: {', '.join(missing)}")
    name = str(body["name"])
    if not _NAME_RE.match(name):
        raise validation_error(f"property name {name!r} must start with a letter and use lower case letters, "
                               "digits and underscores")
    if body["type"] not in PROPERTY_TYPES:
        raise validation_error(f"type {body['type']!r} is not one of {', '.join(sorted(PROPERTY_TYPES))}")
    if body["fieldType"] not in FIELD_TYPES:
        raise validation_error(f"fieldType {body['fieldType']!r} is not one of {', '.join(sorted(FIELD_TYPES))}")
    options = body.get("options") or []
    if body["type"] == "enumeration":
        if not options or not all(isinstance(o, dict) and o.get("value") not in (None, "") for o in options):
            raise validation_error("enumeration properties need 'options' with a 'label' and 'value' each")
        options = [{"label": str(o.get("label") or o["value"]), "value": str(o["value"]),
                    "displayOrder": int(o.get("displayOrder", i)), "hidden": bool(o.get("hidden", False))}
                   for i, o in enumerate(options)]
    elif body["type"] == "bool":
        options = make_options(("true", "false"), {"true": "True", "false": "False"})
    return PropertyDef(name=name, label=str(body["label"]), type=str(body["type"]),
                       field_type=str(body["fieldType"]), group_name=str(body["groupName"]), options=options,
                       description=str(body.get("description") or ""), hubspot_defined=False,
                       display_order=int(body.get("displayOrder", -1)),
                       has_unique_value=bool(body.get("hasUniqueValue", False)))
