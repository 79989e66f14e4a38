"""HubSpot's write dialect: how a canonical update becomes contact properties, and how a
batch/update answer is read (no HTTP here).

The rules are `leadflow.crm.write_core`'s (only owned properties, `lifecyclestage` and
`hs_lead_status` are written; the stage rule of `leadflow.stage_rule`). HubSpot's own part: values
are strings ("" clears), and a permitted backward stage move is cleared first, in a separate
call, because HubSpot only moves a lifecycle stage forward.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from leadflow.crm.base import RecordResult, RecordUpdate
from leadflow.crm.hubspot_mapping import HubSpotMapping
from leadflow.crm.values import format_owned_value
from leadflow.crm.write_core import ForbiddenPropertyError, PlannedUpdate, WriteDialect
from leadflow.crm.write_core import plan_update as plan_with

# Per-record error categories HubSpot reports that succeed when tried again later.
RETRYABLE_CATEGORIES = frozenset({"LOCKED", "RATE_LIMITS", "RATE_LIMIT", "CONFLICT"})
RETRYABLE_STATUSES = frozenset({423, 429})


def dialect(mapping: HubSpotMapping) -> WriteDialect:
    """HubSpot contacts' `write_core.WriteDialect`: values are strings, "" clears."""
    owned = mapping.owned_properties

    def render(field: str, value: Any) -> tuple[str, str]:
        return owned[field].name, format_owned_value(owned[field].type, value)

    return WriteDialect("HubSpot", mapping.stage_property, mapping.lead_status_property, "", mapping.stage_to_crm,
                        mapping.status_to_crm, render, lambda field: owned[field].type)


def plan_update(update: RecordUpdate, mapping: HubSpotMapping) -> PlannedUpdate:
    """One update as contact properties (`write_core.plan_update` with HubSpot's dialect); a
    backward move (`backward`) is cleared first by the connector."""
    return plan_with(update, dialect(mapping))


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
