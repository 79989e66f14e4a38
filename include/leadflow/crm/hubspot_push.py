"""Pure planning of HubSpot writes and reading of their answers (no HTTP here).

`plan_update` turns one canonical `RecordUpdate` into the HubSpot properties to send, applying
the write rules: only owned properties, `lifecyclestage` and `hs_lead_status` are ever written;
sales-owned stages are never touched; a stage never moves backwards unless the caller passes
`allow_backward=True` (then it is cleared first, in a separate call, as HubSpot requires).

`RecordUpdate.values` keys:
  - canonical pushed fields (`schema.PUSHED_FIELDS`): the desired values;
  - `crm_lifecycle_stage`: the record's current canonical stage (to detect backward moves);
    other `crm_*` keys (current values of owned fields) are accepted and ignored;
  - `allow_backward` (bool): permit a backward stage move (rollback).
Any other key raises `ForbiddenPropertyError`: a caller asking to write something leadflow
does not own is a bug, not a data problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from leadflow.crm.base import CrmError, RecordResult, RecordUpdate
from leadflow.crm.hubspot_mapping import format_owned_value
from leadflow.crm.mapping import HubSpotMapping
from leadflow.schema import CRM_VALUE_PREFIX, OWNED_FIELDS, PUSHED_FIELDS, SALES_OWNED_STAGES, STAGE_RANK

ALLOW_BACKWARD = "allow_backward"
CURRENT_STAGE = f"{CRM_VALUE_PREFIX}lifecycle_stage"
PUSH_OPTION_KEYS = frozenset({ALLOW_BACKWARD, CURRENT_STAGE})
# Per-record error categories HubSpot reports that succeed when tried again later.
RETRYABLE_CATEGORIES = frozenset({"LOCKED", "RATE_LIMITS", "RATE_LIMIT", "CONFLICT"})
RETRYABLE_STATUSES = frozenset({423, 429})


class ForbiddenPropertyError(CrmError):
    """A write would touch a property leadflow does not own."""


@dataclass
class PlannedUpdate:
    record_id: str
    properties: dict[str, str]
    clear_stage_first: bool = False
    rejection: RecordResult | None = None  # set when the update must not be sent at all


def _reject(record_id: str, category: str, message: str) -> PlannedUpdate:
    return PlannedUpdate(record_id, {}, rejection=RecordResult(record_id, "rejected", message, category))


def plan_update(update: RecordUpdate, mapping: HubSpotMapping) -> PlannedUpdate:
    """Translate one update; a rule violation becomes a "rejected" result, not an exception
    (except a request to write a field leadflow does not own, which raises)."""
    values = update.values
    for key in values:
        if key not in PUSHED_FIELDS and key not in PUSH_OPTION_KEYS and not key.startswith(CRM_VALUE_PREFIX):
            raise ForbiddenPropertyError(
                f"refusing to write {key!r} for record {update.record_id}: leadflow only writes {list(PUSHED_FIELDS)}"
            )
    rid = update.record_id
    props: dict[str, str] = {}
    for field in OWNED_FIELDS:
        if field in values:
            spec = mapping.owned_properties[field]
            try:
                props[spec.name] = format_owned_value(spec.type, values[field])
            except (TypeError, ValueError):
                return _reject(rid, "INVALID_VALUE", f"{field}: value cannot be written as a HubSpot {spec.type}")

    if "lead_status" in values:
        status = values["lead_status"]
        if status is None or status == "":
            props[mapping.lead_status_property] = ""
        else:
            internal = mapping.status_to_crm(str(status))
            if internal is None:
                return _reject(rid, "MAPPING", f"lead status {status!r} has no HubSpot value in the mapping")
            props[mapping.lead_status_property] = internal

    clear_first = False
    if "lifecycle_stage" in values:
        desired = values["lifecycle_stage"] or None
        current = values.get(CURRENT_STAGE) or None
        allow_backward = bool(values.get(ALLOW_BACKWARD, False))
        if desired == current and CURRENT_STAGE in values:
            # Nothing to change; never re-send a stage (it may be sales-owned).
            return PlannedUpdate(rid, props)
        if desired != current:
            if current in SALES_OWNED_STAGES:
                return _reject(rid, "SALES_OWNED_STAGE", f"record is in sales-owned stage {current!r}; leadflow does not change it")
            if desired in SALES_OWNED_STAGES:
                return _reject(rid, "SALES_OWNED_STAGE", f"leadflow never sets the sales-owned stage {desired!r}")
        if desired is None:
            if current is not None and not allow_backward:
                return _reject(rid, "BACKWARD_STAGE", f"clearing stage {current!r} needs allow_backward")
            props[mapping.stage_property] = ""
        else:
            internal = mapping.stage_to_crm(str(desired))
            if internal is None or desired not in STAGE_RANK:
                return _reject(rid, "MAPPING", f"stage {desired!r} has no HubSpot value in the mapping")
            if current is not None and current in STAGE_RANK and STAGE_RANK[desired] < STAGE_RANK[current]:
                if not allow_backward:
                    return _reject(rid, "BACKWARD_STAGE", f"stage {current!r} -> {desired!r} moves backwards")
                clear_first = True  # HubSpot only moves forward: clear, then set
            props[mapping.stage_property] = internal
    return PlannedUpdate(rid, props, clear_stage_first=clear_first)


def assert_writable(inputs: Iterable[Mapping[str, Any]], allowed: frozenset[str]) -> None:
    """Last line of defence before a write leaves the process: every property in a batch
    body must be one leadflow may write."""
    for item in inputs:
        bad = sorted(set(item.get("properties", {})) - allowed)
        if bad:
            raise ForbiddenPropertyError(f"refusing to send properties {bad}: not owned by leadflow")


def classify(category: str | None, status: int | None = None) -> str:
    """A per-record HubSpot error -> "retryable" or "rejected"."""
    if (category or "").upper() in RETRYABLE_CATEGORIES or status in RETRYABLE_STATUSES:
        return "retryable"
    return "rejected"


def _error_ids(error: Mapping[str, Any]) -> list[str]:
    context = error.get("context") or {}
    ids: list[str] = []
    for key in ("ids", "id"):
        value = context.get(key) if isinstance(context, Mapping) else None
        if isinstance(value, list):
            ids.extend(str(v) for v in value)
        elif value is not None:
            ids.append(str(value))
    return ids


def results_from_batch(ids: Sequence[str], status_code: int, body: Any) -> dict[str, RecordResult]:
    """Map a batch/update answer (200 or 207) to one result per requested id.

    207: ids named by an error get that error's classification; ids among `results` are
    confirmed; ids in neither are "unknown" (read back to decide). 200: all confirmed.
    """
    body = body if isinstance(body, Mapping) else {}
    out: dict[str, RecordResult] = {}
    for error in body.get("errors") or []:
        if not isinstance(error, Mapping):
            continue
        category = error.get("category")
        status = error.get("status") if isinstance(error.get("status"), int) else None
        message = str(error.get("message") or "")[:500] or None
        for rid in _error_ids(error):
            if rid in ids and rid not in out:
                out[rid] = RecordResult(rid, classify(category, status), message, category)
    returned = {str(r.get("id")) for r in body.get("results") or [] if isinstance(r, Mapping)}
    for rid in ids:
        if rid in out:
            continue
        if status_code == 200 or rid in returned:
            out[rid] = RecordResult(rid, "confirmed")
        else:
            out[rid] = RecordResult(rid, "unknown", "not in the CRM's answer", "MISSING")
    return out
