"""FastAPI routes of the HubSpot CRM v3 sandbox (objects, search, batch, merge, archive,
properties, associations, and the private-app token introspection).

Handlers only parse the HTTP request and call `HubSpotService`; auth, rate limits, faults and
stats are applied around them by the middleware in `app.py`, which also names the principal of
the request's token (`RequestContext.source`): every write is attributed to it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from typing import Any, Callable

from fastapi import APIRouter, Request
from fastapi.responses import Response

from leadflow.sandbox.errors import HubSpotError, validation_error
from leadflow.sandbox.faults import NO_FAULTS, RequestFaults
from leadflow.sandbox.history import SANDBOX_APP_ID, SANDBOX_HUB_ID, SANDBOX_USER_ID, ChangeSource
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
log = logging.getLogger(__name__)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,99}$")
# HubSpotService.batch_update / batch_upsert / batch_create: (object type, body, faults, source).
BatchWrite = Callable[[str, Any, RequestFaults, ChangeSource | None], BatchAnswer]
__all__ = ["SANDBOX_APP_ID", "SANDBOX_HUB_ID", "SANDBOX_USER_ID", "RequestContext", "router"]


class RequestContext:
    """Per-request state shared between the middleware and a handler (kept in the ASGI scope):
    the faults drawn, whether a write was applied, and who the token belongs to (None: the
    service's default source)."""

    def __init__(self, faults: RequestFaults = NO_FAULTS, source: ChangeSource | None = None) -> None:
        self.faults = faults
        self.source = source
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
        base_url=base, properties_with_history=_csv_param(request, "propertiesWithHistory"))
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


async def _batch_write(request: Request, object_type: str, write: BatchWrite) -> JSONResponse:
    """One batch update, upsert or create: `write` is the service's method for it."""
    ctx = request_context(request)
    answer = write(_object_type(object_type), await read_json(request), ctx.faults, ctx.source)
    return _batch_response(request, answer)


@router.post("/crm/v3/objects/{object_type}/batch/update")
async def batch_update(object_type: str, request: Request) -> JSONResponse:
    return await _batch_write(request, object_type, _service(request).batch_update)


@router.post("/crm/v3/objects/{object_type}/batch/upsert")
async def batch_upsert(object_type: str, request: Request) -> JSONResponse:
    return await _batch_write(request, object_type, _service(request).batch_upsert)


@router.post("/crm/v3/objects/{object_type}/batch/create")
async def batch_create(object_type: str, request: Request) -> JSONResponse:
    return await _batch_write(request, object_type, _service(request).batch_create)


@router.post("/crm/v3/objects/{object_type}")
async def create_object(object_type: str, request: Request) -> JSONResponse:
    ctx = request_context(request)
    body = _service(request).create_one(_object_type(object_type), await read_json(request), ctx.source)
    ctx.applied = True
    return JSONResponse(body, status_code=201)


@router.get("/crm/v3/objects/{object_type}/{object_id}")
async def get_object(object_type: str, object_id: str, request: Request) -> JSONResponse:
    body = _service(request).get(
        _object_type(object_type), object_id, properties=_csv_param(request, "properties"),
        associations=_csv_param(request, "associations") or [], id_property=request.query_params.get("idProperty"),
        archived=_bool_param(request, "archived"), properties_with_history=_csv_param(request, "propertiesWithHistory"))
    return JSONResponse(body)


@router.patch("/crm/v3/objects/{object_type}/{object_id}")
async def update_object(object_type: str, object_id: str, request: Request) -> JSONResponse:
    ctx = request_context(request)
    body = _service(request).update_one(_object_type(object_type), object_id, await read_json(request),
                                        request.query_params.get("idProperty"), ctx.source)
    ctx.applied = True
    return JSONResponse(body)


@router.delete("/crm/v3/objects/{object_type}/{object_id}")
async def archive_object(object_type: str, object_id: str, request: Request) -> Response:
    ctx = request_context(request)
    _service(request).archive(_object_type(object_type), object_id, ctx.source)
    ctx.applied = True
    return Response(status_code=204)


@router.post("/crm/v3/objects/{object_type}/batch/archive")
async def batch_archive(object_type: str, request: Request) -> Response:
    ctx = request_context(request)
    _service(request).batch_archive(_object_type(object_type), await read_json(request), ctx.source)
    ctx.applied = True
    return Response(status_code=204)


@router.post("/crm/v3/objects/{object_type}/merge")
async def merge_objects(object_type: str, request: Request) -> JSONResponse:
    ctx = request_context(request)
    body = _service(request).merge(_object_type(object_type), await read_json(request), ctx.source)
    ctx.applied = True
    return JSONResponse(body)


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


@router.patch("/crm/v3/properties/{object_type}/{name}")
async def update_property(object_type: str, name: str, request: Request) -> JSONResponse:
    """Change a property's definition, e.g. an enumeration's options. Values already stored that
    are no longer options stay as they are (as in HubSpot); new writes must use the new options."""
    object_type = _object_type(object_type)
    store = _service(request).store
    prop = store.properties(object_type).get(name)
    if prop is None:
        raise HubSpotError(404, "OBJECT_NOT_FOUND", f"Unable to find property {name} for object type {object_type}")
    body = await read_json(request)
    updated = _update_property(prop, body, [g["name"] for g in store.groups(object_type)])
    store.update_property(object_type, updated)
    request_context(request).applied = True
    log.info("property %s.%s updated: %s (%d options)", object_type, name, ",".join(sorted(body)),
             len(updated.options))
    return JSONResponse(store.properties(object_type)[name].to_api())


@router.post("/oauth/v2/private-apps/get/access-token-info")
async def access_token_info(request: Request) -> JSONResponse:
    """HubSpot's private-app token introspection: `{"tokenKey": "<token>"}` -> the portal, app,
    user and scopes of that token: leadflow's, or an `app` principal's (its own appId). The token
    travels in the body (no Authorization header is needed); an unknown one, or a user's or
    workflow's (not private-app tokens), is a 401 like everywhere else."""
    body = await read_json(request)
    token = body.get("tokenKey") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise validation_error("Invalid input JSON: expected an object with a 'tokenKey'")
    settings = request.app.state.sandbox.settings
    if token == settings.token:
        return JSONResponse({"userId": SANDBOX_USER_ID, "hubId": SANDBOX_HUB_ID, "appId": SANDBOX_APP_ID,
                             "scopes": list(settings.token_scopes)})
    app = next((p for p in settings.principals if p.token == token and p.kind == "app"), None)
    if app is None:  # user and workflow tokens are not private-app tokens
        raise HubSpotError(401, "INVALID_AUTHENTICATION", "The access token is not valid: it does not exist or "
                           "was rotated or deleted.")
    return JSONResponse({"userId": SANDBOX_USER_ID, "hubId": SANDBOX_HUB_ID, "appId": app.id,
                         "scopes": list(settings.token_scopes)})


def _options_from_request(options: Any) -> list[dict[str, Any]]:
    """An enumeration's options as sent -> stored form (label defaults to the value); at least one,
    each with a value, no value twice."""
    if not isinstance(options, list) or not options or not all(
            isinstance(o, dict) and o.get("value") not in (None, "") for o in options):
        raise validation_error("enumeration properties need 'options' with a 'label' and 'value' each")
    values = [str(o["value"]) for o in options]
    dupes = sorted({v for v in values if values.count(v) > 1})
    if dupes:
        raise validation_error(f"options: the values {dupes} appear more than once; option values must be unique")
    try:
        return [{"label": str(o.get("label") or o["value"]), "value": str(o["value"]),
                 "displayOrder": int(o.get("displayOrder", i)), "hidden": bool(o.get("hidden", False))}
                for i, o in enumerate(options)]
    except (TypeError, ValueError):
        raise validation_error("options: displayOrder must be an integer") from None


# What PATCH /crm/v3/properties/{objectType}/{name} may change: request key -> PropertyDef field.
_UPDATABLE = {"label": "label", "description": "description", "groupName": "group_name",
              "displayOrder": "display_order", "options": "options"}


def _update_property(prop: PropertyDef, body: Any, groups: list[str]) -> PropertyDef:
    """The definition after a PATCH: HubSpot-defined properties only take new options (portals add
    lifecycle stages and lead statuses); custom ones also a new label, description, group and order."""
    if not isinstance(body, dict) or not body:
        raise validation_error("Invalid input JSON: expected an object with the fields to change, e.g. "
                               "{\"options\": [...]}")
    unsupported = sorted(set(body) - set(_UPDATABLE))
    if unsupported:
        raise validation_error(f"The sandbox cannot change {', '.join(unsupported)} of a property; it can change "
                               f"{', '.join(_UPDATABLE)}")
    if prop.hubspot_defined and set(body) - {"options"}:
        raise validation_error(f"{prop.name} is a HubSpot-defined property: only its options can change, not "
                               f"{', '.join(sorted(set(body) - {'options'}))}", sub_category="READ_ONLY_DEFINITION")
    changes: dict[str, Any] = {}
    if "options" in body:
        if prop.type != "enumeration":
            raise validation_error(f"{prop.name} is of type {prop.type}: only enumeration properties have options")
        changes["options"] = _options_from_request(body["options"])
    if "groupName" in body:
        if body["groupName"] not in groups:
            raise validation_error(f"Property group {body['groupName']!r} does not exist.")
        changes["group_name"] = str(body["groupName"])
    if "displayOrder" in body:
        try:
            changes["display_order"] = int(body["displayOrder"])
        except (TypeError, ValueError):
            raise validation_error("displayOrder must be an integer") from None
    for key in ("label", "description"):
        if key in body:
            if not isinstance(body[key], str) or (key == "label" and not body[key].strip()):
                raise validation_error(f"{key} must be a{' non-empty' if key == 'label' else ''} string")
            changes[key] = body[key]
    return dataclasses.replace(prop, **changes)


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
        options = _options_from_request(options)
    elif body["type"] == "bool":
        options = make_options(("true", "false"), {"true": "True", "false": "False"})
    return PropertyDef(name=name, label=str(body["label"]), type=str(body["type"]),
                       field_type=str(body["fieldType"]), group_name=str(body["groupName"]), options=options,
                       description=str(body.get("description") or ""), hubspot_defined=False,
                       display_order=int(body.get("displayOrder", -1)),
                       has_unique_value=bool(body.get("hasUniqueValue", False)))
