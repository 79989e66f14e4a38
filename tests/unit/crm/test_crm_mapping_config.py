"""The HubSpot mapping YAML loads, and every kind of mistake names the bad key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from leadflow.crm.hubspot_mapping import DEFAULT_MAPPING_PATH, HubSpotMapping, load_mapping, parse_mapping
from leadflow.crm.mapping import MappingConfigError
from leadflow.schema import OWNED_FIELDS


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DEFAULT_MAPPING_PATH.read_text())


def test_project_mapping_loads_and_exposes_writable_properties(mapping: HubSpotMapping) -> None:
    assert set(mapping.owned_properties) == set(OWNED_FIELDS)
    assert mapping.cursor_property == "lastmodifieddate"
    assert mapping.writable_properties == frozenset(
        [p.name for p in mapping.owned_properties.values()] + ["lifecyclestage", "hs_lead_status"]
    )
    assert mapping.stage_to_crm("mql") == "marketingqualifiedlead"
    assert mapping.status_to_crm("nurture") == "BAD_TIMING"
    assert mapping.stage_to_crm("nope") is None


def _error_for(raw: dict, mutate) -> str:
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(MappingConfigError) as info:
        parse_mapping(data, source="hubspot.yaml")
    return str(info.value)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["contact_properties"].update(emial="email"), "contact_properties: unknown lead column(s) ['emial']"),
        (lambda d: d["contact_properties"].pop("updated_at"), "missing required column(s) ['updated_at']"),
        (lambda d: d["contact_properties"].update(email="E-Mail"), "'E-Mail' is not a HubSpot internal property name"),
        (lambda d: d["owned_properties"]["score"].update(type="numbr"), "owned_properties.score.type"),
        (lambda d: d["owned_properties"].pop("grade"), "missing owned field(s) ['grade']"),
        (lambda d: d["owned_properties"]["grade"].update(name="leadflow_score"), "used by more than one owned field"),
        (lambda d: d["lifecycle_stages"].update(foo="bar"), "lifecycle_stages"),
        (lambda d: d["lead_statuses"].update(NEW="brand_new"), "lead_statuses"),
        (lambda d: d.update(extra_key=1), "extra_key: unknown key"),
        (lambda d: d.update(crm="salesforce"), "crm:"),
        (lambda d: d["contact_properties"].update(job_title="leadflow_grade"), "also mapped in contact_properties"),
    ],
)
def test_given_invalid_mapping_then_error_names_the_bad_key(raw: dict, mutate, needle: str) -> None:
    message = _error_for(raw, mutate)
    assert "hubspot.yaml" in message
    assert needle in message


def test_given_missing_file_then_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(MappingConfigError, match="nope.yaml"):
        load_mapping(tmp_path / "nope.yaml")


def test_given_invalid_yaml_then_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("crm: [unclosed\n")
    with pytest.raises(MappingConfigError, match="bad.yaml: not valid YAML"):
        load_mapping(bad)


def test_owned_property_create_body_matches_properties_api(mapping: HubSpotMapping) -> None:
    body = mapping.owned_properties["scored_at"].create_body("leadflow")
    assert body == {"name": "leadflow_scored_at", "label": "leadflow scored at", "type": "datetime",
                    "fieldType": "date", "groupName": "leadflow"}


def test_sales_ready_checkbox_is_created_with_its_two_options(mapping: HubSpotMapping) -> None:
    body = mapping.owned_properties["sales_ready"].create_body("leadflow")
    assert (body["name"], body["type"], body["fieldType"]) == ("leadflow_sales_ready", "bool", "booleancheckbox")
    assert [o["value"] for o in body["options"]] == ["true", "false"]
