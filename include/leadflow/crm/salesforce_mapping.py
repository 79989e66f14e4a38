"""The Salesforce field mapping (include/config/crm/salesforce.yaml): pydantic model and loader.

Loading validates the YAML with pydantic and reports every problem with the path of the bad key
(`owned_fields.score.type: ...`). Record translation is `salesforce_values`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from leadflow.crm.mapping import (
    check_canonical,
    check_owned,
    load_document,
    parse_document,
    to_crm,
)
from leadflow.schema import (
    CANONICAL_STAGES,
    CANONICAL_STATUSES,
    COMPANY_COLUMNS,
    LEAD_COLUMNS,
    OWNED_FIELDS,
)
from leadflow.validation import check_column_map, check_known

DEFAULT_MAPPING_PATH = Path(__file__).resolve().parents[2] / "config" / "crm" / "salesforce.yaml"
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
REQUIRED_LEAD_COLUMNS = ("updated_at", "lifecycle_stage", "lead_status", "email")
REQUIRED_CONTACT_COLUMNS = ("updated_at", "email")
# The standard object a Lead is converted into, its key prefix (the first 3 characters of its
# ids), and the Lead field naming the Contact a conversion created or used.
CONTACT_SOBJECT = "Contact"
CONTACT_KEY_PREFIX = "003"
CONVERTED_CONTACT_FIELD = "ConvertedContactId"
# leadflow owned-field type -> the describe types that can hold it
COMPATIBLE_TYPES: dict[str, frozenset[str]] = {
    "double": frozenset({"double", "currency", "percent", "int"}),
    "string": frozenset({"string", "textarea"}),
    "textarea": frozenset({"textarea", "string"}),
    "datetime": frozenset({"datetime"}),
    "boolean": frozenset({"boolean"}),
}
# how each owned type is rendered for comparison (`values.format_owned_value`'s kinds)
RENDER_AS = {"double": "number", "string": "string", "textarea": "string", "datetime": "datetime", "boolean": "bool"}


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
        check_known([value], CANONICAL_STAGES, "canonical stage")
        return value

    @field_validator("owned_fields")
    @classmethod
    def _owned(cls, value: dict[str, OwnedField]) -> dict[str, OwnedField]:
        # API names are case-insensitive: compared lower-cased.
        return check_owned(value, OWNED_FIELDS, "owned field(s)", [f.name.lower() for f in value.values()],
                           "Salesforce field")

    @field_validator("lifecycle_stages")
    @classmethod
    def _stages(cls, value: dict[str, str]) -> dict[str, str]:
        return check_canonical(value, CANONICAL_STAGES, "stage(s)")

    @field_validator("rating_by_stage")
    @classmethod
    def _ratings(cls, value: dict[str, str]) -> dict[str, str]:
        check_known(value, CANONICAL_STAGES, "canonical stage(s)")
        return value

    @field_validator("lead_statuses")
    @classmethod
    def _statuses(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        return check_canonical(value, CANONICAL_STATUSES, "lead status(es)", nullable=True)

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
        return to_crm(self.lifecycle_stages, canonical)

    def status_to_crm(self, canonical: str) -> str | None:
        return to_crm(self.lead_statuses, canonical)


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
    return parse_document(SalesforceMapping, data, source)


def load_mapping(path: str | Path | None = None) -> SalesforceMapping:
    """Load and validate the Salesforce mapping YAML (default: include/config/crm/salesforce.yaml)."""
    return load_document(SalesforceMapping, path, DEFAULT_MAPPING_PATH, "Salesforce mapping")
