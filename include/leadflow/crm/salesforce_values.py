"""Translation between Salesforce records and leadflow's canonical rows (no HTTP here).

A Lead record of a SOQL answer becomes a canonical lead (plus a canonical company built from the
lead's inline company fields), bad values reported as `RecordIssue`s instead of failing. With
`converted_leads: follow_contact` a converted Lead is landed as replaced by its Contact
(`merged_into`), and the Contact, translated by `contact_to_row`, takes its place
(`converted_from`). `owned_values` renders the current values of the fields leadflow owns as
`values.format_owned_value` does for both CRMs, so the push diff is CRM-agnostic. Outgoing,
`format_write_value` renders a canonical value as Salesforce's JSON. Also who last wrote a shared
field, from the field history.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from leadflow.crm.salesforce_mapping import CONVERTED_CONTACT_FIELD, RENDER_AS, SalesforceMapping
from leadflow.crm.values import (
    convert_columns,
    format_owned_value,
    issue,
    lookup,
    map_shared,
    normalise_technologies,
    parse_bool,
    parse_epoch_ms,
    parse_number,
    render_current,
)
from leadflow.ownership import Observed, Writer
from leadflow.pulled import RecordIssue
from leadflow.schema import (
    COMPANY_COLUMNS,
    CRM_RAW_VALUE_COLUMNS,
    CRM_VALUE_PREFIX,
    LEAD_COLUMNS,
    LEAD_REMOVAL_COLUMNS,
)

CRM = "salesforce"


# --- incoming ---------------------------------------------------------------------------------------
def _get(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    lower = name.lower()
    for key, value in record.items():
        if key.lower() == lower:
            return value
    return None


def lead_to_rows(record: Mapping[str, Any], mapping: SalesforceMapping) -> tuple[dict[str, Any], dict[str, Any] | None,
                                                                              list[RecordIssue]]:
    """One Lead record -> (canonical lead, canonical company or None, issues). Never raises for bad
    data; a record without an Id gets record_id None and an issue (the caller drops it)."""
    columns = {c: f for c, f in mapping.lead_fields.items() if c not in ("lifecycle_stage", "lead_status")}
    lead, issues = _canonical_row(record, columns)
    rid = lead["record_id"] or "?"
    map_shared(lead, rid, "lifecycle_stage", _get(record, mapping.stage_field), mapping.lifecycle_stages, issues)
    if _get(record, mapping.converted_field) is True:
        lead["lifecycle_stage"] = mapping.converted_stage  # a converted lead is won
    map_shared(lead, rid, "lead_status", _get(record, mapping.status_field), mapping.lead_statuses, issues)
    master = _get(record, "MasterRecordId")
    if lead["is_deleted"] and master not in (None, ""):
        lead["merged_into"] = str(master)  # the loser of a merge (queryAll shows it deleted)
    contact = followed_contact_id(record, mapping)
    if contact is not None:  # replaced by its Contact: out of the population, as a merge loser is
        lead["is_deleted"] = True
        lead["merged_into"] = contact
    _finish_row(lead, record, mapping, columns, issues)

    company: dict[str, Any] | None = None
    record_id = lead["record_id"]
    if mapping.company_fields and record_id is not None:
        row: dict[str, Any] = dict.fromkeys(COMPANY_COLUMNS)
        row.update(convert_columns(rid, lambda name: _get(record, name), mapping.company_fields, COMPANY_COLUMNS, []))
        if any(row.get(c) is not None for c in mapping.company_fields):
            row["crm"] = CRM
            row["company_id"] = record_id
            row["updated_at"] = lead["updated_at"]
            if row.get("domain"):
                row["domain"] = str(row["domain"]).lower()
            if row.get("technologies"):
                row["technologies"] = normalise_technologies(str(row["technologies"]))
            company = row
            lead["company_id"] = record_id
    return lead, company, issues


def followed_contact_id(record: Mapping[str, Any], mapping: SalesforceMapping) -> str | None:
    """The Contact a converted Lead record was converted into, when the mapping follows converted
    leads (`converted_leads: follow_contact`); None otherwise."""
    if not mapping.follow_contacts or _get(record, mapping.converted_field) is not True:
        return None
    contact = _get(record, CONVERTED_CONTACT_FIELD)
    return None if contact in (None, "") else str(contact)


def contact_to_row(record: Mapping[str, Any], mapping: SalesforceMapping,
                   converted_from: str | None) -> tuple[dict[str, Any], list[RecordIssue]]:
    """One followed Contact record -> (canonical lead, issues), like `lead_to_rows`: read through
    `contact_fields`, in stage `converted_stage`, with no lead status and no company of its own;
    `converted_from` is the Lead converted into it."""
    lead, issues = _canonical_row(record, mapping.contact_fields)
    lead["lifecycle_stage"] = mapping.converted_stage
    lead["converted_from"] = converted_from
    _finish_row(lead, record, mapping, mapping.contact_fields, issues)
    return lead, issues


def _canonical_row(record: Mapping[str, Any], columns: Mapping[str, str]) -> tuple[dict[str, Any], list[RecordIssue]]:
    """A canonical lead row with the `columns` read from `record`, its id and deleted flag."""
    raw_id = _get(record, "Id")
    record_id = str(raw_id).strip() if raw_id not in (None, "") else None
    issues: list[RecordIssue] = []
    if record_id is None:
        issues.append(issue("?", "record_id", "record has no id", None))
    lead: dict[str, Any] = dict.fromkeys([*LEAD_COLUMNS, *CRM_RAW_VALUE_COLUMNS, *LEAD_REMOVAL_COLUMNS])
    lead.update(convert_columns(record_id or "?", lambda name: _get(record, name), columns, LEAD_COLUMNS, issues))
    lead["crm"] = CRM
    lead["record_id"] = record_id
    lead["is_deleted"] = _get(record, "IsDeleted") is True
    return lead, issues


def _finish_row(lead: dict[str, Any], record: Mapping[str, Any], mapping: SalesforceMapping,
                columns: Mapping[str, str], issues: list[RecordIssue]) -> None:
    if lead["email"] is None:
        issues.append(issue(lead["record_id"] or "?", "email", "missing email", None))
    if lead.get("do_not_contact") is None and "do_not_contact" in columns:
        lead["do_not_contact"] = False
    lead.update(owned_values(record, mapping))


def owned_values(record: Mapping[str, Any], mapping: SalesforceMapping) -> dict[str, str | None]:
    """`crm_<field>` -> current value of each owned field, rendered as `values.format_owned_value`
    renders its kind (None when empty; an unparseable value is kept verbatim)."""
    return {f"{CRM_VALUE_PREFIX}{field}": render_current(RENDER_AS[spec.type], _get(record, spec.name))
            for field, spec in mapping.owned_fields.items()}


# --- outgoing -------------------------------------------------------------------------------------------
def format_write_value(owned_type: str, value: Any, max_length: int | None = None) -> Any:
    """A canonical value as JSON for a Salesforce field: numbers as numbers, datetimes as ISO 8601
    UTC strings, text cut to the field's length; None/NaN/"" -> None (clears the field), except
    for a checkbox, which cannot be empty: false."""
    if owned_type == "boolean":
        return parse_bool(None if isinstance(value, float) and math.isnan(value) else value) is True
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if owned_type == "double":
        number = parse_number(value) if isinstance(value, str) else float(value)
        if number is None:
            return None
        return int(number) if float(number).is_integer() else float(number)
    if owned_type == "datetime":
        if isinstance(value, datetime):
            moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            ms = int(round(moment.timestamp() * 1000))
        else:
            ms = parse_epoch_ms(value)
        if ms is None:
            return None
        return format_owned_value("datetime", ms)
    text = str(value)
    if max_length:
        text = text[:max_length]
    return text


def render_kind(owned_type: str) -> str:
    return RENDER_AS[owned_type]


# --- who changed what (LastModifiedById, LeadHistory) ----------------------------------------------
def observed_shared(record: Mapping[str, Any], history: Sequence[Mapping[str, Any]], mapping: SalesforceMapping,
                    own_user_id: str | None, *, history_tracked: bool = True) -> dict[str, Observed]:
    """The shared fields (lifecycle stage, lead status) of one Lead as read right before a write.

    `history`: the record's LeadHistory rows for those fields, newest first. The newest row of
    a field says who set its value: leadflow's own user, or someone else (Salesforce does not
    tell a person from a flow running as one: both are someone else's decision). No row means
    the value is the one the lead was created with (a DEFAULT), when field history is tracked;
    when it is not (`history_tracked` False), nobody can tell, and the push log decides.
    A value outside the mapping (or mapped to no canonical value) is someone else's.
    """
    out: dict[str, Observed] = {}
    fields = [("lifecycle_stage", mapping.stage_field, mapping.lifecycle_stages),
              ("lead_status", mapping.status_field, mapping.lead_statuses)]
    if mapping.rating_field:  # set with the stage: shared the same way (every value "mapped")
        fields.append(("rating", mapping.rating_field, None))
    for column, name, table in fields:
        raw = _get(record, name)
        raw = None if raw in (None, "") else str(raw).strip()
        if table is None:
            found, canonical = True, raw
        else:
            found, canonical = (True, None) if raw is None else lookup(table, raw)
        known = raw is None or (found and canonical is not None)
        rows = [h for h in history if str(_get(h, "Field") or "").casefold() == name.casefold()]
        if rows:
            by = str(_get(rows[0], "CreatedById") or "") or None
            try:
                at = parse_epoch_ms(_get(rows[0], "CreatedDate"))
            except ValueError:
                at = None
            if own_user_id is None:
                writer = Writer.UNKNOWN
            else:
                writer = Writer.LEADFLOW if by == own_user_id else Writer.PERSON
        else:
            by, at = None, None
            writer = Writer.DEFAULT if history_tracked else Writer.UNKNOWN
        out[column] = Observed(canonical if known else raw, known=known, writer=writer, changed_at=at, changed_by=by)
    return out
