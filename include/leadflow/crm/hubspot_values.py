"""Translation between HubSpot records and leadflow's canonical rows (no HTTP here).

Incoming: every value HubSpot sends is a string (or null), parsed by `leadflow.crm.values` for
each canonical column's kind. Outgoing values are rendered by `values.format_owned_value`, as the
`crm_<field>` values of pulled leads and the rows of `read()` are. Also who last wrote a shared
field, from a property's history.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from leadflow.crm.hubspot_mapping import HubSpotMapping
from leadflow.crm.values import (
    blank,
    convert_columns,
    issue,
    lookup,
    map_shared,
    normalise_technologies,
    parse_epoch_ms,
    render_current,
)
from leadflow.ownership import Observed, Writer
from leadflow.pulled import RecordIssue
from leadflow.schema import (
    COMPANY_COLUMNS,
    COMPANY_OWNED_KNOWN_AT,
    CRM_RAW_VALUE_COLUMNS,
    CRM_VALUE_PREFIX,
    LEAD_COLUMNS,
)

CRM = "hubspot"


# --- records ---------------------------------------------------------------------------------------
def contact_to_lead(record: Mapping[str, Any], mapping: HubSpotMapping) -> tuple[dict[str, Any], list[RecordIssue]]:
    """One HubSpot contact (`{"id", "properties", "createdAt", "updatedAt", "archived"}`) ->
    (canonical lead with every LEAD_COLUMNS and crm_<owned> key, issues). Never raises for bad
    data; a record without any id gets record_id None and an issue (the caller drops it)."""
    props: Mapping[str, Any] = record.get("properties") or {}
    record_id = record.get("id") or props.get("hs_object_id")
    record_id = None if blank(record_id) else str(record_id)
    rid = record_id or "?"
    issues: list[RecordIssue] = []
    if record_id is None:
        issues.append(issue(rid, "record_id", "record has no id", None))

    columns = {c: p for c, p in mapping.contact_properties.items() if c not in ("lifecycle_stage", "lead_status")}
    lead: dict[str, Any] = dict.fromkeys([*LEAD_COLUMNS, *CRM_RAW_VALUE_COLUMNS])
    lead.update(convert_columns(rid, props.get, columns, LEAD_COLUMNS, issues))
    lead["crm"] = CRM
    lead["record_id"] = record_id

    for column, table in (("lifecycle_stage", mapping.lifecycle_stages), ("lead_status", mapping.lead_statuses)):
        map_shared(lead, rid, column, props.get(mapping.contact_properties[column]), table, issues)

    # Fall back to the object's envelope timestamps when the properties are not returned.
    for column, envelope in (("updated_at", "updatedAt"), ("created_at", "createdAt")):
        if lead[column] is None and record.get(envelope):
            try:
                lead[column] = parse_epoch_ms(record[envelope])
            except ValueError:
                issues.append(issue(rid, column, "unparseable date", record[envelope]))
    lead["is_deleted"] = bool(record.get("archived") or False)
    if lead["email"] is None:
        issues.append(issue(rid, "email", "missing email", None))
    else:
        lead["email"] = lead["email"].strip()

    lead.update(owned_values_from_properties(props, mapping))
    return lead, issues


def owned_values_from_properties(props: Mapping[str, Any], mapping: HubSpotMapping) -> dict[str, str | None]:
    """`crm_<field>` -> current value of each owned property, rendered as `format_owned_value`
    would write it (None when empty; a value that does not parse is kept verbatim)."""
    return {f"{CRM_VALUE_PREFIX}{field}": render_current(spec.type, props.get(spec.name))
            for field, spec in mapping.owned_properties.items()}


def owned_company_values(props: Mapping[str, Any], mapping: HubSpotMapping) -> dict[str, str | None]:
    """Owned company field -> its current value, rendered as `format_owned_value` writes it
    (None when empty, as `owned_values_from_properties` for contacts)."""
    return {field: render_current(spec.type, props.get(spec.name))
            for field, spec in mapping.owned_company_properties.items()}


def company_to_row(record: Mapping[str, Any], mapping: HubSpotMapping,
                   owned_read_at_ms: int | None = None) -> tuple[dict[str, Any], list[RecordIssue]]:
    """One HubSpot company -> (canonical company with every COMPANY_COLUMNS key, issues).

    `owned_read_at_ms`: the record was read with every owned company property the portal has, at
    that time: the row also carries their values (`crm_<field>`; a property the portal lacks is
    empty everywhere) and that time as when they were known."""
    props: Mapping[str, Any] = record.get("properties") or {}
    company_id = record.get("id") or props.get("hs_object_id")
    company_id = None if blank(company_id) else str(company_id)
    cid = company_id or "?"
    issues: list[RecordIssue] = []
    row: dict[str, Any] = dict.fromkeys(COMPANY_COLUMNS)
    row.update(convert_columns(cid, props.get, mapping.company_properties, COMPANY_COLUMNS, issues))
    row["crm"] = CRM
    row["company_id"] = company_id
    if row.get("updated_at") is None and record.get("updatedAt"):
        try:
            row["updated_at"] = parse_epoch_ms(record["updatedAt"])
        except ValueError:
            issues.append(issue(cid, "updated_at", "unparseable date", record["updatedAt"]))
    if row.get("technologies"):
        row["technologies"] = normalise_technologies(row["technologies"])
    if row.get("domain"):
        row["domain"] = row["domain"].lower()
    if owned_read_at_ms is not None and mapping.owned_company_properties:
        row.update({f"{CRM_VALUE_PREFIX}{f}": v for f, v in owned_company_values(props, mapping).items()})
        row[COMPANY_OWNED_KNOWN_AT] = owned_read_at_ms
    return row, issues





# --- who changed what (property history) ---------------------------------------------------------
# sourceType values of a person acting in HubSpot (the app, its mobile apps, the inbox/sales tools).
PERSON_SOURCES = frozenset({"CRM_UI", "SALES", "EMAIL", "MOBILE_IOS", "MOBILE_ANDROID", "CONVERSATIONS"})
WORKFLOW_SOURCES = frozenset({"WORKFLOW", "AUTOMATION_PLATFORM"})
# A history entry this close to the record's creation holds the value it was created with.
CREATION_TOLERANCE_MS = 5_000


def history_writer(entries: Sequence[Mapping[str, Any]] | None, *, created_ms: int | None,
                   own_app_id: str | None) -> tuple[Writer, int | None, str | None]:
    """(writer, changed_at ms, changed_by) of a property's current value from its
    `propertiesWithHistory` entries (newest first, as HubSpot returns them).

    A person (CRM_UI, ...) and a workflow are told by `sourceType`; leadflow's own writes are
    INTEGRATION entries from its app (`own_app_id`; when it is not known, UNKNOWN, and the push
    log decides). A value still as the record was created by a form, an import or an API call
    is a DEFAULT, nobody's decision; set later by anything else, it is someone else's.
    """
    if not entries:
        return Writer.UNKNOWN, None, None
    newest = entries[0]
    source = str(newest.get("sourceType") or "").upper()
    source_id = str(newest.get("sourceId") or "") or None
    user = newest.get("updatedByUserId")
    try:
        at = parse_epoch_ms(newest.get("timestamp"))
    except ValueError:
        at = None
    by = f"user:{user}" if user not in (None, "") else source_id
    if source in PERSON_SOURCES:
        return Writer.PERSON, at, by
    if source in WORKFLOW_SOURCES:
        return Writer.WORKFLOW, at, by
    if source == "INTEGRATION" and own_app_id is not None and source_id == str(own_app_id):
        return Writer.LEADFLOW, at, by
    if created_ms is not None and at is not None and at - created_ms <= CREATION_TOLERANCE_MS:
        return Writer.DEFAULT, at, by
    if source == "INTEGRATION" and own_app_id is None:
        return Writer.UNKNOWN, at, by
    return Writer.INTEGRATION, at, by


def observed_shared(record: Mapping[str, Any], mapping: HubSpotMapping,
                    own_app_id: str | None) -> dict[str, Observed]:
    """The shared fields (lifecycle stage, lead status) of one batch-read contact with history."""
    props: Mapping[str, Any] = record.get("properties") or {}
    history: Mapping[str, Any] = record.get("propertiesWithHistory") or {}
    try:
        created_ms = parse_epoch_ms(record.get("createdAt") or props.get("createdate"))
    except ValueError:
        created_ms = None
    out: dict[str, Observed] = {}
    for column, table in (("lifecycle_stage", mapping.lifecycle_stages), ("lead_status", mapping.lead_statuses)):
        name = mapping.contact_properties[column]
        raw = props.get(name)
        raw = None if blank(raw) else str(raw).strip()
        canonical = None if raw is None else lookup(table, raw)[1]
        known = raw is None or canonical is not None
        writer, at, by = history_writer(history.get(name), created_ms=created_ms, own_app_id=own_app_id)
        out[column] = Observed(canonical if known else raw, known=known, writer=writer, changed_at=at, changed_by=by)
    return out


def merged_ids(value: Any) -> list[str]:
    """The ids in a survivor's `hs_merged_object_ids` (";"-separated; HubSpot has also been seen
    sending commas)."""
    if blank(value):
        return []
    return [part.strip() for part in re.split(r"[;,]", str(value)) if part.strip().isdigit()]
