"""Pure translation between HubSpot records and leadflow's canonical rows (no HTTP here).

Incoming: every value HubSpot sends is a string (or null). Each canonical column's kind in
`leadflow.schema` picks the parser; a value that does not parse is cleared and reported as a
`RecordIssue`, so one bad record never stops a pull.

Outgoing: `format_owned_value` renders a canonical value the way it is written to HubSpot. The
`crm_<field>` values of pulled leads and the rows of `read()` use the same rendering, so the push
layer can compare `format_owned_value(field, desired)` with them to see what changed.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from typing import Any, Mapping, Sequence

from leadflow.crm.mapping import HubSpotMapping
from leadflow.ownership import Observed, Writer
from leadflow.pulled import RecordIssue
from leadflow.schema import (
    COMPANY_COLUMNS,
    CRM_RAW_PREFIX,
    CRM_RAW_VALUE_COLUMNS,
    CRM_VALUE_PREFIX,
    LEAD_COLUMNS,
    MAX_TEXT_LENGTH,
)

CRM = "hubspot"
ISSUE_VALUE_CHARS = 200
HUBSPOT_MAX_STRING = 65_536
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


# --- scalar parsers (raise ValueError on bad input; None for empty) ---------------------------
def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_number(value: Any) -> float | None:
    """'12', '12.5', 12 -> float; '' / None -> None; anything else (incl. NaN/inf) -> ValueError."""
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError("boolean is not a number")
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def parse_epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds (int or digit string), ISO 8601 datetime or date -> epoch ms (UTC).

    Naive datetimes are taken as UTC; a date alone is midnight UTC (HubSpot's date properties).
    """
    if _blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("not a finite timestamp")
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        day = date.fromisoformat(text)
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(round(moment.timestamp() * 1000))


def parse_bool(value: Any) -> bool | None:
    if _blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def truncate_text(value: str, limit: int = MAX_TEXT_LENGTH) -> tuple[str, bool]:
    """(text cut to `limit` characters, whether it was cut)."""
    return (value[:limit], True) if len(value) > limit else (value, False)


def _issue(record_id: str, column: str, problem: str, value: Any) -> RecordIssue:
    text = None if value is None else str(value)[:ISSUE_VALUE_CHARS]
    return RecordIssue(record_id=record_id, field=column, problem=problem, value=text)


def convert(kind: str, value: Any) -> Any:
    """Parse `value` for a schema column kind ("str", "float", "ts", "bool")."""
    if kind == "float":
        return parse_number(value)
    if kind == "ts":
        return parse_epoch_ms(value)
    if kind == "bool":
        return parse_bool(value)
    return None if _blank(value) else str(value).strip()


def _convert_columns(
    record_id: str,
    props: Mapping[str, Any],
    columns: Mapping[str, str],
    kinds: Mapping[str, str],
    issues: list[RecordIssue],
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, prop in columns.items():
        raw = props.get(prop)
        if raw is None:  # fast path: most records leave most properties empty
            out[column] = None
            continue
        kind = kinds[column]
        try:
            if kind == "str" and isinstance(raw, str):
                value = raw.strip() or None
            else:
                value = convert(kind, raw)
        except (ValueError, TypeError, OverflowError):
            problem = {"float": "not a number", "ts": "unparseable date", "bool": "not a boolean"}.get(kind, "bad value")
            issues.append(_issue(record_id, column, problem, raw))
            value = None
        if isinstance(value, str):
            value, cut = truncate_text(value)
            if cut:
                issues.append(_issue(record_id, column, f"text longer than {MAX_TEXT_LENGTH} characters, truncated", raw))
        out[column] = value
    return out


def _lookup(table: Mapping[str, str], value: str) -> str | None:
    if value in table:
        return table[value]
    folded = value.casefold()
    for key, canonical in table.items():
        if key.casefold() == folded:
            return canonical
    return None


# --- records ---------------------------------------------------------------------------------------
def contact_to_lead(record: Mapping[str, Any], mapping: HubSpotMapping) -> tuple[dict[str, Any], list[RecordIssue]]:
    """One HubSpot contact (`{"id", "properties", "createdAt", "updatedAt", "archived"}`) ->
    (canonical lead with every LEAD_COLUMNS and crm_<owned> key, issues). Never raises for bad
    data; a record without any id gets record_id None and an issue (the caller drops it)."""
    props: Mapping[str, Any] = record.get("properties") or {}
    record_id = record.get("id") or props.get("hs_object_id")
    record_id = None if _blank(record_id) else str(record_id)
    rid = record_id or "?"
    issues: list[RecordIssue] = []
    if record_id is None:
        issues.append(_issue(rid, "record_id", "record has no id", None))

    columns = {c: p for c, p in mapping.contact_properties.items() if c not in ("lifecycle_stage", "lead_status")}
    lead: dict[str, Any] = dict.fromkeys([*LEAD_COLUMNS, *CRM_RAW_VALUE_COLUMNS])
    lead.update(_convert_columns(rid, props, columns, LEAD_COLUMNS, issues))
    lead["crm"] = CRM
    lead["record_id"] = record_id

    for column, table in (("lifecycle_stage", mapping.lifecycle_stages), ("lead_status", mapping.lead_statuses)):
        raw = props.get(mapping.contact_properties[column])
        if _blank(raw):
            continue
        lead[f"{CRM_RAW_PREFIX}{column}"] = str(raw).strip()
        canonical = _lookup(table, str(raw).strip())
        if canonical is None:
            issues.append(_issue(rid, column, "unknown value (not in the mapping)", raw))
        lead[column] = canonical

    # Fall back to the object's envelope timestamps when the properties are not returned.
    for column, envelope in (("updated_at", "updatedAt"), ("created_at", "createdAt")):
        if lead[column] is None and record.get(envelope):
            try:
                lead[column] = parse_epoch_ms(record[envelope])
            except ValueError:
                issues.append(_issue(rid, column, "unparseable date", record[envelope]))
    lead["is_deleted"] = bool(record.get("archived") or False)
    if lead["email"] is None:
        issues.append(_issue(rid, "email", "missing email", None))
    else:
        lead["email"] = lead["email"].strip()

    lead.update(owned_values_from_properties(props, mapping))
    return lead, issues


def owned_values_from_properties(props: Mapping[str, Any], mapping: HubSpotMapping) -> dict[str, str | None]:
    """`crm_<field>` -> current value of each owned property, rendered as `format_owned_value`
    would write it (None when empty; a value that does not parse is kept verbatim)."""
    out: dict[str, str | None] = {}
    for field, spec in mapping.owned_properties.items():
        raw = props.get(spec.name)
        if _blank(raw):
            out[f"{CRM_VALUE_PREFIX}{field}"] = None
            continue
        try:
            parsed = _parse_for_type(spec.type, raw)
            rendered = format_owned_value(spec.type, parsed)
        except (ValueError, TypeError, OverflowError):
            rendered = str(raw)
        rendered, _ = truncate_text(rendered)
        out[f"{CRM_VALUE_PREFIX}{field}"] = rendered or None
    return out


def company_to_row(record: Mapping[str, Any], mapping: HubSpotMapping) -> tuple[dict[str, Any], list[RecordIssue]]:
    """One HubSpot company -> (canonical company with every COMPANY_COLUMNS key, issues)."""
    props: Mapping[str, Any] = record.get("properties") or {}
    company_id = record.get("id") or props.get("hs_object_id")
    company_id = None if _blank(company_id) else str(company_id)
    cid = company_id or "?"
    issues: list[RecordIssue] = []
    row: dict[str, Any] = dict.fromkeys(COMPANY_COLUMNS)
    row.update(_convert_columns(cid, props, mapping.company_properties, COMPANY_COLUMNS, issues))
    row["crm"] = CRM
    row["company_id"] = company_id
    if row.get("updated_at") is None and record.get("updatedAt"):
        try:
            row["updated_at"] = parse_epoch_ms(record["updatedAt"])
        except ValueError:
            issues.append(_issue(cid, "updated_at", "unparseable date", record["updatedAt"]))
    if row.get("technologies"):
        row["technologies"] = normalise_technologies(row["technologies"])
    if row.get("domain"):
        row["domain"] = row["domain"].lower()
    return row, issues


def normalise_technologies(value: str) -> str | None:
    """HubSpot multi-checkbox value 'A; B;;C' -> 'A;B;C' (order kept, duplicates dropped)."""
    items = [t.strip() for t in value.split(";")]
    unique = list(dict.fromkeys(t for t in items if t))
    return ";".join(unique) or None


# --- outgoing ----------------------------------------------------------------------------------------
def _parse_for_type(prop_type: str, raw: Any) -> Any:
    if prop_type == "number":
        return parse_number(raw)
    if prop_type in ("datetime", "date"):
        return parse_epoch_ms(raw)
    if prop_type == "bool":
        return parse_bool(raw)
    return str(raw)


def format_number(value: float) -> str:
    """Plain decimal text: 87 -> '87', 87.25 -> '87.25', never exponent notation."""
    if float(value).is_integer():
        return str(int(value))
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def format_owned_value(prop_type: str, value: Any) -> str:
    """Render a canonical value for a HubSpot property of `prop_type`; None/NaN -> '' (clears)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if prop_type == "number":
        number = parse_number(value) if isinstance(value, str) else float(value)
        return "" if number is None else format_number(number)
    if prop_type in ("datetime", "date"):
        ms = _to_epoch_ms(value)
        if ms is None:
            return ""
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        if prop_type == "date":
            return moment.strftime("%Y-%m-%d")
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if prop_type == "bool":
        parsed = parse_bool(value)
        return "" if parsed is None else ("true" if parsed else "false")
    text = str(value)
    return text[:HUBSPOT_MAX_STRING]


def _to_epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(round(moment.timestamp() * 1000))
    return parse_epoch_ms(value)


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
        raw = None if _blank(raw) else str(raw).strip()
        canonical = None if raw is None else _lookup(table, raw)
        known = raw is None or canonical is not None
        writer, at, by = history_writer(history.get(name), created_ms=created_ms, own_app_id=own_app_id)
        out[column] = Observed(canonical if known else raw, known=known, writer=writer, changed_at=at, changed_by=by)
    return out


def merged_ids(value: Any) -> list[str]:
    """The ids in a survivor's `hs_merged_object_ids` (";"-separated; HubSpot has also been seen
    sending commas)."""
    if _blank(value):
        return []
    return [part.strip() for part in re.split(r"[;,]", str(value)) if part.strip().isdigit()]
