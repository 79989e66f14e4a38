"""Pure planning of Salesforce writes and reading of sObject Collections answers (no HTTP here).

Same write rules as HubSpot (`hubspot_push`): only owned fields, the stage field (plus Rating,
derived from the stage, or restored by a rollback) and Status are ever written; sales-owned stages are never touched; a stage
never moves backwards unless `allow_backward=True` (rollback). Salesforce has no forward-only
rule, so a permitted backward move is one write, not clear-then-set. A followed Contact
(`converted_leads: follow_contact`) takes the owned fields only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from leadflow.crm.base import CrmError, RecordResult, RecordUpdate
from leadflow.crm.hubspot_push import ALLOW_BACKWARD, CURRENT_STAGE, PUSH_OPTION_KEYS, ForbiddenPropertyError
from leadflow.crm.salesforce_mapping import SalesforceMapping, format_write_value, is_contact_id
from leadflow.schema import CRM_VALUE_PREFIX, OWNED_FIELDS, PUSHED_FIELDS, SALES_OWNED_STAGES, STAGE_RANK

# The Rating leadflow sets with the stage, under its name in the push log and in `read()` rows.
# An update carries it only to restore an earlier value (rollback); a value given wins over the
# one derived from the stage.
RATING = "rating"

# Per-record error codes that succeed when tried again later.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUEST_LIMIT_EXCEEDED",
                             "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"})


@dataclass
class PlannedUpdate:
    record_id: str
    fields: dict[str, Any]
    rejection: RecordResult | None = None


def _reject(record_id: str, category: str, message: str) -> PlannedUpdate:
    return PlannedUpdate(record_id, {}, RecordResult(record_id, "rejected", message, category))


def plan_update(update: RecordUpdate, mapping: SalesforceMapping,
                lengths: Mapping[str, int] | None = None) -> PlannedUpdate:
    """Translate one canonical update into Lead (or Contact) field values (rule violations ->
    "rejected"; a field leadflow does not own -> ForbiddenPropertyError)."""
    values = update.values
    for key in values:
        if key == RATING and mapping.rating_field:
            continue
        if key not in PUSHED_FIELDS and key not in PUSH_OPTION_KEYS and not key.startswith(CRM_VALUE_PREFIX):
            raise ForbiddenPropertyError(
                f"refusing to write {key!r} for record {update.record_id}: leadflow only writes {list(PUSHED_FIELDS)}")
    rid = update.record_id
    if is_contact_id(rid):
        shared = sorted(k for k in values if k in ("lifecycle_stage", "lead_status", RATING))
        if shared:  # a Contact has no Status or Rating, and its stage is the sales-owned converted_stage
            return _reject(rid, "CONTACT_OWNED_FIELDS_ONLY", f"{shared}: leadflow writes only its own fields to "
                           "a Contact")
    lengths = lengths or {}
    fields: dict[str, Any] = {}
    for field in OWNED_FIELDS:
        if field in values:
            spec = mapping.owned_fields[field]
            try:
                fields[spec.name] = format_write_value(spec.type, values[field], lengths.get(spec.name.lower()))
            except (TypeError, ValueError):
                return _reject(rid, "INVALID_VALUE", f"{field}: value cannot be written as a Salesforce {spec.type}")
    if "lead_status" in values:
        status = values["lead_status"]
        if status in (None, ""):
            fields[mapping.status_field] = None
        else:
            picked = mapping.status_to_crm(str(status))
            if picked is None:
                return _reject(rid, "MAPPING", f"lead status {status!r} has no Salesforce Status value in the mapping")
            fields[mapping.status_field] = picked
    if "lifecycle_stage" in values:
        desired = values["lifecycle_stage"] or None
        current = values.get(CURRENT_STAGE) or None
        allow_backward = bool(values.get(ALLOW_BACKWARD, False))
        if desired == current and CURRENT_STAGE in values:
            return PlannedUpdate(rid, fields)
        if desired != current:
            if current in SALES_OWNED_STAGES:
                return _reject(rid, "SALES_OWNED_STAGE", f"record is in sales-owned stage {current!r}; leadflow does not change it")
            if desired in SALES_OWNED_STAGES:
                return _reject(rid, "SALES_OWNED_STAGE", f"leadflow never sets the sales-owned stage {desired!r}")
        if desired is None:
            if current is not None and not allow_backward:
                return _reject(rid, "BACKWARD_STAGE", f"clearing stage {current!r} needs allow_backward")
            fields[mapping.stage_field] = None
            if mapping.rating_field:
                fields[mapping.rating_field] = None
        else:
            picked = mapping.stage_to_crm(str(desired))
            if picked is None or desired not in STAGE_RANK:
                return _reject(rid, "MAPPING", f"stage {desired!r} has no Salesforce value in the mapping")
            if (current is not None and current in STAGE_RANK and STAGE_RANK[desired] < STAGE_RANK[current]
                    and not allow_backward):
                return _reject(rid, "BACKWARD_STAGE", f"stage {current!r} -> {desired!r} moves backwards")
            fields[mapping.stage_field] = picked
            if mapping.rating_field and desired in mapping.rating_by_stage:
                fields[mapping.rating_field] = mapping.rating_by_stage[desired]
    if RATING in values and mapping.rating_field:
        fields[mapping.rating_field] = values[RATING] or None
    return PlannedUpdate(rid, fields)


def assert_writable(records: Iterable[Mapping[str, Any]], allowed: frozenset[str]) -> None:
    """Last line of defence before a write leaves the process."""
    allowed_lower = {a.lower() for a in allowed}
    for record in records:
        bad = sorted(k for k in record if k not in ("attributes", "id") and k.lower() not in allowed_lower)
        if bad:
            raise ForbiddenPropertyError(f"refusing to send fields {bad}: not owned by leadflow")


def classify(code: str | None) -> str:
    return "retryable" if (code or "").upper() in RETRYABLE_CODES else "rejected"


def results_from_collection(ids: Sequence[str], body: Any) -> dict[str, RecordResult]:
    """Map an sObject Collections answer (an ordered list, one entry per record sent) to results.

    Entries are matched by position (failed entries usually carry no id); a missing or
    unreadable entry is "unknown" (read back to decide)."""
    entries = body if isinstance(body, list) else []
    out: dict[str, RecordResult] = {}
    for index, rid in enumerate(ids):
        entry = entries[index] if index < len(entries) and isinstance(entries[index], Mapping) else None
        if entry is None:
            out[rid] = RecordResult(rid, "unknown", "not in the CRM's answer", "MISSING")
            continue
        if entry.get("id") not in (None, rid) and str(entry.get("id"))[:15] != rid[:15]:
            raise CrmError(f"Salesforce answered for record {entry.get('id')} at the position of {rid}: "
                           "results out of order")
        if entry.get("success") is True:
            out[rid] = RecordResult(rid, "confirmed")
            continue
        errors = [e for e in entry.get("errors") or [] if isinstance(e, Mapping)]
        first = errors[0] if errors else {}
        code = str(first.get("statusCode") or "UNKNOWN_ERROR")
        message = "; ".join(str(e.get("message") or "") for e in errors)[:500] or None
        out[rid] = RecordResult(rid, classify(code), message, code)
    return out
