"""The HubSpot property mapping (include/config/crm/hubspot.yaml): pydantic model and loader.

The YAML says which HubSpot property feeds each canonical column of `leadflow.schema`, which
properties leadflow owns (and creates), and how HubSpot's internal lifecycle-stage and
lead-status values translate to canonical ones. Loading validates all of it and reports every
problem with the path of the bad key (`owned_properties.score.type: ...`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.crm.mapping import check_canonical, check_owned, load_document, parse_document, to_crm
from leadflow.schema import (
    CANONICAL_STAGES,
    CANONICAL_STATUSES,
    COMPANY_COLUMNS,
    COMPANY_OWNED_FIELDS,
    LEAD_COLUMNS,
    OWNED_FIELDS,
)
from leadflow.validation import check_column_map

DEFAULT_MAPPING_PATH = Path(__file__).resolve().parents[2] / "config" / "crm" / "hubspot.yaml"

# HubSpot internal names: lowercase letters, digits, underscores, starting with a letter.
_PROPERTY_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
PROPERTY_TYPES = ("bool", "date", "datetime", "enumeration", "number", "phone_number", "string")
# Columns the connector cannot work without.
REQUIRED_CONTACT_COLUMNS = ("updated_at", "lifecycle_stage", "lead_status", "email")


def _check_property_name(value: str) -> str:
    if not _PROPERTY_NAME.match(value):
        raise ValueError(f"{value!r} is not a HubSpot internal property name (lowercase, a-z0-9_)")
    return value


class PropertyGroup(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    label: str

    _name = field_validator("name")(_check_property_name)


class OwnedProperty(BaseModel):
    """A contact property leadflow creates and writes."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str
    type: Literal["bool", "date", "datetime", "enumeration", "number", "phone_number", "string"]
    field_type: str = Field(alias="fieldType")
    label: str
    description: str = ""

    _name = field_validator("name")(_check_property_name)

    def create_body(self, group_name: str) -> dict[str, Any]:
        """The body of `POST /crm/v3/properties/contacts` for this property."""
        body: dict[str, Any] = {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": group_name,
        }
        if self.description:
            body["description"] = self.description
        if self.type == "bool":  # HubSpot's checkbox needs its two options
            body["options"] = [{"label": "Yes", "value": "true", "displayOrder": 0},
                               {"label": "No", "value": "false", "displayOrder": 1}]
        return body


class HubSpotMapping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    crm: Literal["hubspot"]
    contact_properties: dict[str, str]
    company_properties: dict[str, str]
    property_group: PropertyGroup
    owned_properties: dict[str, OwnedProperty]
    # Company properties leadflow creates and writes (the account view); none: no company writes.
    owned_company_properties: dict[str, OwnedProperty] = Field(default_factory=dict)
    lifecycle_stages: dict[str, str]
    lead_statuses: dict[str, str]

    @field_validator("contact_properties")
    @classmethod
    def _contact_columns(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_columns(value, LEAD_COLUMNS, "lead", REQUIRED_CONTACT_COLUMNS)

    @field_validator("company_properties")
    @classmethod
    def _company_columns(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_columns(value, COMPANY_COLUMNS, "company", ())

    @field_validator("owned_properties")
    @classmethod
    def _owned_fields(cls, value: dict[str, OwnedProperty]) -> dict[str, OwnedProperty]:
        return _check_owned(value, OWNED_FIELDS, "owned field(s)", optional=False)

    @field_validator("owned_company_properties")
    @classmethod
    def _owned_company_fields(cls, value: dict[str, OwnedProperty]) -> dict[str, OwnedProperty]:
        # Optional as a whole: a mapping without them writes no company.
        return _check_owned(value, COMPANY_OWNED_FIELDS, "owned company field(s)", optional=True)

    @field_validator("lifecycle_stages")
    @classmethod
    def _stages(cls, value: dict[str, str]) -> dict[str, str]:
        return check_canonical(value, CANONICAL_STAGES, "stage(s)")

    @field_validator("lead_statuses")
    @classmethod
    def _statuses(cls, value: dict[str, str]) -> dict[str, str]:
        return check_canonical(value, CANONICAL_STATUSES, "lead status(es)")

    @model_validator(mode="after")
    def _no_clash(self) -> "HubSpotMapping":
        # A property leadflow owns must not also be read as an input column: the model would
        # feed on its own output.
        owned = {p.name for p in self.owned_properties.values()}
        clash = sorted(owned & set(self.contact_properties.values()))
        if clash:
            raise ValueError(f"owned propert(ies) {clash} are also mapped in contact_properties")
        owned_company = {p.name for p in self.owned_company_properties.values()}
        clash = sorted(owned_company & set(self.company_properties.values()))
        if clash:
            raise ValueError(f"owned company propert(ies) {clash} are also mapped in company_properties")
        return self

    # --- derived views --------------------------------------------------------------------------
    @property
    def owned_property_names(self) -> dict[str, str]:
        """canonical owned field -> HubSpot property name."""
        return {f: p.name for f, p in self.owned_properties.items()}

    @property
    def stage_property(self) -> str:
        return self.contact_properties["lifecycle_stage"]

    @property
    def lead_status_property(self) -> str:
        return self.contact_properties["lead_status"]

    @property
    def cursor_property(self) -> str:
        return self.contact_properties["updated_at"]

    @property
    def writable_properties(self) -> frozenset[str]:
        """The only contact properties leadflow may ever send in a write."""
        return frozenset(self.owned_property_names.values()) | {self.stage_property, self.lead_status_property}

    @property
    def company_writable_properties(self) -> frozenset[str]:
        """The only company properties leadflow may ever send in a write: its own."""
        return frozenset(p.name for p in self.owned_company_properties.values())

    def stage_to_crm(self, canonical: str) -> str | None:
        """canonical stage -> HubSpot internal value (first match in file order), or None."""
        return to_crm(self.lifecycle_stages, canonical)

    def status_to_crm(self, canonical: str) -> str | None:
        return to_crm(self.lead_statuses, canonical)


def _check_owned(value: dict[str, OwnedProperty], fields: tuple[str, ...], what: str, *,
                 optional: bool) -> dict[str, OwnedProperty]:
    return check_owned(value, fields, what, [p.name for p in value.values()], "property", optional=optional)


def _check_columns(
    value: dict[str, str], columns: dict[str, str], what: str, required: tuple[str, ...]
) -> dict[str, str]:
    return check_column_map(value, columns, what, required, _PROPERTY_NAME, "a HubSpot internal property name")


def parse_mapping(data: Any, *, source: str = "mapping") -> HubSpotMapping:
    """Validate an already-loaded mapping document."""
    return parse_document(HubSpotMapping, data, source)


def load_mapping(path: str | Path | None = None) -> HubSpotMapping:
    """Load and validate the HubSpot mapping YAML (default: include/config/crm/hubspot.yaml)."""
    return load_document(HubSpotMapping, path, DEFAULT_MAPPING_PATH, "HubSpot mapping")
