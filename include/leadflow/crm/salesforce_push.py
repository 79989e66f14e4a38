"""Salesforce's write dialect: how a canonical update becomes Lead (or Contact) fields, and how
an sObject Collections answer is read (no HTTP here).

The rules are `leadflow.crm.write_core`'s (only owned fields, the stage field and Status are
written; the stage rule of `leadflow.stage_rule`). Salesforce's own part: values are JSON (None
clears); the Rating is derived from the stage, or restored by a rollback; Salesforce has no
forward-only rule, so a permitted backward move is one write; a followed Contact
(`converted_leads: follow_contact`) takes the owned fields only.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

from leadflow.crm.base import CrmError, RecordResult, RecordUpdate
from leadflow.crm.salesforce_mapping import SalesforceMapping, is_contact_id
from leadflow.crm.salesforce_values import format_write_value
from leadflow.crm.write_core import ForbiddenPropertyError, PlannedUpdate, WriteDialect, check_keys, reject
from leadflow.crm.write_core import plan_update as plan_with

# The Rating leadflow sets with the stage, under its name in the push log and in `read()` rows.
# An update carries it only to restore an earlier value (rollback); a value given wins over the
# one derived from the stage.
RATING = "rating"

# Per-record error codes that succeed when tried again later.
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "ALL_OR_NONE_OPERATION_ROLLED_BACK", "REQUEST_LIMIT_EXCEEDED",
                             "SERVER_UNAVAILABLE", "QUERY_TIMEOUT"})


def dialect(mapping: SalesforceMapping, lengths: Mapping[str, int]) -> WriteDialect:
    """Salesforce's `write_core.WriteDialect`: JSON values, None clears, text cut to the field's
    length (`lengths`: lower-cased field name -> length, from describe); a Rating may be restored."""
    owned = mapping.owned_fields

    def render(field: str, value: Any) -> tuple[str, Any]:
        spec = owned[field]
        return spec.name, format_write_value(spec.type, value, lengths.get(spec.name.lower()))

    return WriteDialect("Salesforce", mapping.stage_field, mapping.status_field, None, mapping.stage_to_crm,
                        mapping.status_to_crm, render, lambda field: owned[field].type,
                        frozenset({RATING}) if mapping.rating_field else frozenset())


def _with_rating(mapping: SalesforceMapping) -> Callable[[dict[str, Any], str | None], None]:
    """The Rating set with the stage: cleared with it, else the new stage's when mapped."""
    def set_rating(fields: dict[str, Any], stage: str | None) -> None:
        if mapping.rating_field and (stage is None or stage in mapping.rating_by_stage):
            fields[mapping.rating_field] = None if stage is None else mapping.rating_by_stage[stage]
    return set_rating


def plan_update(update: RecordUpdate, mapping: SalesforceMapping,
                lengths: Mapping[str, int] | None = None) -> PlannedUpdate:
    """One update as Lead (or Contact) fields (`write_core.plan_update` with Salesforce's
    dialect), the Rating derived from the stage unless the update restores one."""
    rules = dialect(mapping, lengths or {})
    check_keys(update, rules.extra_keys)
    rid = update.record_id
    if is_contact_id(rid):
        shared = sorted(k for k in update.values if k in ("lifecycle_stage", "lead_status", RATING))
        if shared:  # a Contact has no Status or Rating, and its stage is the sales-owned converted_stage
            return reject(rid, "CONTACT_OWNED_FIELDS_ONLY", f"{shared}: leadflow writes only its own fields to "
                          "a Contact")
    plan = plan_with(update, rules, stage_written=_with_rating(mapping))
    # A stage left as it is leaves its Rating too.
    unchanged = "lifecycle_stage" in update.values and (update.values["lifecycle_stage"] or None) == (
        update.current_stage or None)
    if plan.rejection is None and RATING in update.values and mapping.rating_field and not unchanged:
        plan.fields[mapping.rating_field] = update.values[RATING] or None
    return plan


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
