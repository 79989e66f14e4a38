"""The Salesforce field mapping (include/config/crm/salesforce.yaml) and pure record translation.

Loading validates the YAML with pydantic and reports every problem with the path of the bad key
(`owned_fields.score.type: ...`). Translation turns a Lead record of a SOQL answer into a canonical
lead (plus a canonical company built from the lead's inline company fields), reporting bad values
as `RecordIssue`s instead of failing. With `converted_leads: follow_contact` a converted Lead is
landed as replaced by its Contact (`merged_into`), and the Contact, translated by `contact_to_row`,
takes its place (`converted_from`). `owned_values` renders the current values of the fields
leadflow owns exactly as `crm_<field>` columns of HubSpot leads are rendered, so the push diff is
CRM-agnostic.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from leadflow.crm.base import RecordIssue
from leadflow.crm.hubspot_mapping import (
    convert,
    format_number,
    format_owned_value,
    normalise_technologies,
    parse_epoch_ms,
    parse_bool,
    parse_number,
    truncate_text,
)
from leadflow.ownership import Observed, Writer
from leadflow.schema import (
    COMPANY_COLUMNS,
    CRM_RAW_PREFIX,
    CRM_RAW_VALUE_COLUMNS,
    CRM_VALUE_PREFIX,
    LEAD_COLUMNS,
    LEAD_REMOVAL_COLUMNS,
    MAX_TEXT_LENGTH,
    CANONICAL_STAGES,
    CANONICAL_STATUSES,
    OWNED_FIELDS,
)
from leadflow.validation import ConfigError, check_column_map, load_yaml_model, validate_document

CRM = "salesforce"
DEFAULT_MAPPING_PATH = Path(__file__).resolve().parents[2] / "config" / "crm" / "salesforce.yaml"
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
REQUIRED_LEAD_COLUMNS = ("updated_at", "lifecycle_stage", "lead_status", "email")
REQUIRED_CONTACT_COLUMNS = ("updated_at", "email")
# The standard object a Lead is converted into, its key prefix (the first 3 characters of its
# ids), and the Lead field naming the Contact a conversion created or used.
CONTACT_SOBJECT = "Contact"
CONTACT_KEY_PREFIX = "003"
CONVERTED_CONTACT_FIELD = "ConvertedContactId"
ISSUE_VALUE_CHARS = 200
# leadflow owned-field type -> the describe types that can hold it
COMPATIBLE_TYPES: dict[str, frozenset[str]] = {
    "double": frozenset({"double", "currency", "percent", "int"}),
    "string": frozenset({"string", "textarea"}),
    "textarea": frozenset({"textarea", "string"}),
    "datetime": frozenset({"datetime"}),
    "boolean": frozenset({"boolean"}),
}
# how each owned type is rendered for comparison (the HubSpot rendering of the same kind)
_RENDER_AS = {"double": "number", "string": "string", "textarea": "string", "datetime": "datetime", "boolean": "bool"}


class MappingConfigError(ConfigError):
    """The mapping file is missing or invalid; the message names the file and the bad keys."""


def _check_name(value: str) -> str:
    if not isinstance(value, str) or not _FIELD_NAME.match(value):
        raise ValueError(f"{value!r} is not a Salesforce field API name (letters, digits, underscores)")
    return value


class OwnedField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    type: Literal["double", "string", "textarea", "datetime", "boolean"]

    @field_validator("name")
    @classmethod
    def _custom(cls, value: str) -> str:
        _check_name(value)
        if not value.endswith("__c"):
            raise ValueError(f"{value!r}: fields leadflow owns must be custom fields (ending in __c)")
        return value


class SalesforceMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    crm: Literal["salesforce"]
    sobject: Literal["Lead"] = "Lead"
    lead_fields: dict[str, str]
    company_fields: dict[str, str] = {}
    converted_field: str = "IsConverted"
    converted_stage: str = "customer"
    # What a converted Lead becomes. `customer`: a won lead (converted_stage), left alone.
    # `follow_contact`: replaced by the Contact it was converted into, which is pulled through
    # `contact_fields` and stays scored (stage converted_stage; leadflow writes only its owned
    # fields there, under the same API names, which an admin creates on Contact too).
    converted_leads: Literal["customer", "follow_contact"] = "customer"
    contact_fields: dict[str, str] = {}
    owned_fields: dict[str, OwnedField]
    lifecycle_stages: dict[str, str]
    rating_field: str | None = None
    rating_by_stage: dict[str, str] = {}
    lead_statuses: dict[str, str | None]
    # Field history tracking is on for the stage and status fields (Setup > Object Manager > Lead
    # > Fields & Relationships > Set History Tracking): LeadHistory then says who set a value.
    # Off, leadflow cannot tell a default from a rep's decision and leaves values it never wrote.
    field_history_tracked: bool = True

    @field_validator("lead_fields")
    @classmethod
    def _lead_columns(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_columns(value, LEAD_COLUMNS, "lead", REQUIRED_LEAD_COLUMNS)

    @field_validator("company_fields")
    @classmethod
    def _company_columns(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted({"crm", "company_id", "updated_at"} & set(value))
        if bad:
            raise ValueError(f"column(s) {bad} are set by the connector, not mapped")
        return _check_columns(value, COMPANY_COLUMNS, "company", ())

    @field_validator("contact_fields")
    @classmethod
    def _contact_columns(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            return value
        shared = sorted({"lifecycle_stage", "lead_status"} & set(value))
        if shared:
            raise ValueError(f"column(s) {shared} are not read from a Contact: a followed Contact's stage is "
                             "converted_stage, and it has no lead status")
        return _check_columns(value, LEAD_COLUMNS, "contact", REQUIRED_CONTACT_COLUMNS)

    @field_validator("converted_field", "rating_field")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value)

    @field_validator("converted_stage")
    @classmethod
    def _converted_stage(cls, value: str) -> str:
        if value not in CANONICAL_STAGES:
            raise ValueError(f"unknown canonical stage {value!r}; allowed: {sorted(CANONICAL_STAGES)}")
        return value

    @field_validator("owned_fields")
    @classmethod
    def _owned(cls, value: dict[str, OwnedField]) -> dict[str, OwnedField]:
        unknown = sorted(set(value) - set(OWNED_FIELDS))
        if unknown:
            raise ValueError(f"unknown owned field(s) {unknown}; allowed: {list(OWNED_FIELDS)}")
        missing = [f for f in OWNED_FIELDS if f not in value]
        if missing:
            raise ValueError(f"missing owned field(s) {missing}: every owned field needs a Salesforce field")
        names = [f.name.lower() for f in value.values()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"field name(s) {dupes} used by more than one owned field")
        return value

    @field_validator("lifecycle_stages")
    @classmethod
    def _stages(cls, value: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in value.items() if v not in CANONICAL_STAGES}
        if bad:
            raise ValueError(f"unknown canonical stage(s) {bad}; allowed: {sorted(CANONICAL_STAGES)}")
        return value

    @field_validator("rating_by_stage")
    @classmethod
    def _ratings(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(set(value) - set(CANONICAL_STAGES))
        if bad:
            raise ValueError(f"unknown canonical stage(s) {bad}; allowed: {sorted(CANONICAL_STAGES)}")
        return value

    @field_validator("lead_statuses")
    @classmethod
    def _statuses(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        bad = {k: v for k, v in value.items() if v is not None and v not in CANONICAL_STATUSES}
        if bad:
            raise ValueError(f"unknown canonical lead status(es) {bad}; allowed: {sorted(CANONICAL_STATUSES)} or null")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "SalesforceMapping":
        owned = {f.name.lower() for f in self.owned_fields.values()}
        inputs = {v.lower() for v in [*self.lead_fields.values(), *self.company_fields.values(),
                                       *self.contact_fields.values()]}
        clash = sorted(owned & inputs)
        if clash:
            raise ValueError(f"owned field(s) {clash} are also mapped as inputs (the model would read its own output)")
        if self.follow_contacts and not self.contact_fields:
            raise ValueError("converted_leads: follow_contact needs contact_fields (canonical column -> Contact "
                             f"field, at least {list(REQUIRED_CONTACT_COLUMNS)})")
        if self.rating_by_stage and not self.rating_field:
            raise ValueError("rating_by_stage needs rating_field")
        return self

    # --- derived views ----------------------------------------------------------------------------
    @property
    def stage_field(self) -> str:
        return self.lead_fields["lifecycle_stage"]

    @property
    def status_field(self) -> str:
        return self.lead_fields["lead_status"]

    @property
    def cursor_field(self) -> str:
        return self.lead_fields["updated_at"]

    @property
    def follow_contacts(self) -> bool:
        return self.converted_leads == "follow_contact"

    @property
    def contact_cursor_field(self) -> str:
        return self.contact_fields["updated_at"]

    @property
    def owned_field_names(self) -> dict[str, str]:
        return {f: spec.name for f, spec in self.owned_fields.items()}

    @property
    def writable_fields(self) -> frozenset[str]:
        names = {*self.owned_field_names.values(), self.stage_field, self.status_field}
        if self.rating_field:
            names.add(self.rating_field)
        return frozenset(names)

    def select_fields(self) -> list[str]:
        """Every Lead field a pull asks for, de-duplicated, Id first."""
        follow = [CONVERTED_CONTACT_FIELD] if self.follow_contacts else []
        return _unique(["Id", "IsDeleted", "MasterRecordId", self.converted_field, *follow, self.cursor_field,
                        *self.lead_fields.values(), *self.company_fields.values(), *self.owned_field_names.values()])

    def contact_select_fields(self) -> list[str]:
        """Every Contact field a pull of followed Contacts asks for, de-duplicated, Id first."""
        return _unique(["Id", "IsDeleted", self.contact_cursor_field, *self.contact_fields.values(),
                        *self.owned_field_names.values()])

    def stage_to_crm(self, canonical: str) -> str | None:
        for value, canon in self.lifecycle_stages.items():
            if canon == canonical:
                return value
        return None

    def status_to_crm(self, canonical: str) -> str | None:
        for value, canon in self.lead_statuses.items():
            if canon == canonical:
                return value
        return None


def _unique(names: Sequence[str]) -> list[str]:
    """Field names without repeats (API names are case-insensitive), first spelling kept."""
    out: dict[str, str] = {}
    for n in names:
        out.setdefault(n.lower(), n)
    return list(out.values())


def is_contact_id(record_id: str) -> bool:
    return str(record_id).startswith(CONTACT_KEY_PREFIX)


def _check_columns(value: dict[str, str], columns: Mapping[str, str], what: str,
                   required: tuple[str, ...]) -> dict[str, str]:
    return check_column_map(value, columns, what, required, _FIELD_NAME, "a Salesforce field API name")


def parse_mapping(data: Any, *, source: str = "mapping") -> SalesforceMapping:
    """Validate an already-loaded mapping document."""
    return validate_document(SalesforceMapping, data, source, MappingConfigError)


def load_mapping(path: str | Path | None = None) -> SalesforceMapping:
    """Load and validate the Salesforce mapping YAML (default: include/config/crm/salesforce.yaml)."""
    file = Path(path) if path is not None else DEFAULT_MAPPING_PATH
    return load_yaml_model(file, SalesforceMapping, "Salesforce mapping", MappingConfigError)


# --- incoming ---------------------------------------------------------------------------------------
def _issue(record_id: str, column: str, problem: str, value: Any) -> RecordIssue:
    return RecordIssue(record_id, column, problem, None if value is None else str(value)[:ISSUE_VALUE_CHARS])


def _get(record: Mapping[str, Any], name: str) -> Any:
    if name in record:
        return record[name]
    lower = name.lower()
    for key, value in record.items():
        if key.lower() == lower:
            return value
    return None


def _convert_into(out: dict[str, Any], rid: str, record: Mapping[str, Any], columns: Mapping[str, str],
                  kinds: Mapping[str, str], issues: list[RecordIssue]) -> None:
    for column, name in columns.items():
        raw = _get(record, name)
        if raw is None:
            out[column] = None
            continue
        kind = kinds[column]
        try:
            value = convert(kind, raw)
        except (ValueError, TypeError, OverflowError):
            problem = {"float": "not a number", "ts": "unparseable date", "bool": "not a boolean"}.get(kind, "bad value")
            issues.append(_issue(rid, column, problem, raw))
            value = None
        if isinstance(value, str):
            value, cut = truncate_text(value)
            if cut:
                issues.append(_issue(rid, column, f"text longer than {MAX_TEXT_LENGTH} characters, truncated", raw))
        out[column] = value


def _lookup(table: Mapping[str, Any], value: str) -> tuple[bool, Any]:
    if value in table:
        return True, table[value]
    folded = value.casefold()
    for key, canonical in table.items():
        if key.casefold() == folded:
            return True, canonical
    return False, None


def lead_to_rows(record: Mapping[str, Any], mapping: SalesforceMapping) -> tuple[dict[str, Any], dict[str, Any] | None,
                                                                              list[RecordIssue]]:
    """One Lead record -> (canonical lead, canonical company or None, issues). Never raises for bad
    data; a record without an Id gets record_id None and an issue (the caller drops it)."""
    columns = {c: f for c, f in mapping.lead_fields.items() if c not in ("lifecycle_stage", "lead_status")}
    lead, issues = _canonical_row(record, columns)
    rid = lead["record_id"] or "?"
    raw_stage = _get(record, mapping.stage_field)
    if raw_stage not in (None, ""):
        lead[f"{CRM_RAW_PREFIX}lifecycle_stage"] = str(raw_stage).strip()
        found, canonical = _lookup(mapping.lifecycle_stages, str(raw_stage).strip())
        if not found:
            issues.append(_issue(rid, "lifecycle_stage", "unknown value (not in the mapping)", raw_stage))
        lead["lifecycle_stage"] = canonical
    if _get(record, mapping.converted_field) is True:
        lead["lifecycle_stage"] = mapping.converted_stage  # a converted lead is won
    raw_status = _get(record, mapping.status_field)
    if raw_status not in (None, ""):
        lead[f"{CRM_RAW_PREFIX}lead_status"] = str(raw_status).strip()
        found, canonical = _lookup(mapping.lead_statuses, str(raw_status).strip())
        if not found:
            issues.append(_issue(rid, "lead_status", "unknown value (not in the mapping)", raw_status))
        lead["lead_status"] = canonical
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
        _convert_into(row, rid, record, mapping.company_fields, COMPANY_COLUMNS, [])
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
        issues.append(_issue("?", "record_id", "record has no id", None))
    lead: dict[str, Any] = dict.fromkeys([*LEAD_COLUMNS, *CRM_RAW_VALUE_COLUMNS, *LEAD_REMOVAL_COLUMNS])
    _convert_into(lead, record_id or "?", record, columns, LEAD_COLUMNS, issues)
    lead["crm"] = CRM
    lead["record_id"] = record_id
    lead["is_deleted"] = _get(record, "IsDeleted") is True
    return lead, issues


def _finish_row(lead: dict[str, Any], record: Mapping[str, Any], mapping: SalesforceMapping,
                columns: Mapping[str, str], issues: list[RecordIssue]) -> None:
    if lead["email"] is None:
        issues.append(_issue(lead["record_id"] or "?", "email", "missing email", None))
    if lead.get("do_not_contact") is None and "do_not_contact" in columns:
        lead["do_not_contact"] = False
    lead.update(owned_values(record, mapping))


def owned_values(record: Mapping[str, Any], mapping: SalesforceMapping) -> dict[str, str | None]:
    """`crm_<field>` -> current value of each owned field, rendered as `format_owned_value` renders
    the same kind for HubSpot (None when empty; an unparseable value is kept verbatim)."""
    out: dict[str, str | None] = {}
    for field, spec in mapping.owned_fields.items():
        raw = _get(record, spec.name)
        key = f"{CRM_VALUE_PREFIX}{field}"
        if raw is None or raw == "":
            out[key] = None
            continue
        try:
            if spec.type == "double":
                number = parse_number(raw)
                rendered = "" if number is None else format_number(number)
            elif spec.type == "datetime":
                rendered = format_owned_value("datetime", parse_epoch_ms(raw))
            elif spec.type == "boolean":
                rendered = format_owned_value("bool", raw)
            else:
                rendered = str(raw)
        except (ValueError, TypeError, OverflowError):
            rendered = str(raw)
        rendered, _ = truncate_text(rendered)
        out[key] = rendered or None
    return out


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
    return _RENDER_AS[owned_type]


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
            found, canonical = (True, None) if raw is None else _lookup(table, raw)
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
