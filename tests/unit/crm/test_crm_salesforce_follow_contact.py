"""`converted_leads: follow_contact`: its config, the converted Lead replaced by its Contact, the
Contact's canonical row, writes planned for a Contact (pure, no HTTP)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from simple_salesforce import format_soql

from leadflow.crm.base import RecordUpdate
from leadflow.crm.mapping import MappingConfigError
from leadflow.crm.salesforce_mapping import DEFAULT_MAPPING_PATH, load_mapping, parse_mapping
from leadflow.crm.salesforce_push import plan_update
from leadflow.crm.salesforce_soql import soql_string
from leadflow.crm.salesforce_values import contact_to_row, lead_to_rows
from leadflow.warehouse.population import partition_leads

LEAD_ID = "00Q5g0000000001EAA"
CONTACT_ID = "0035g0000000001AAA"


def _raw(**changes) -> dict:
    data = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text())
    data.update(changes)
    return data


FOLLOW = parse_mapping(_raw(converted_leads="follow_contact"))


def _converted_lead(**fields) -> dict:
    return {"attributes": {"type": "Lead"}, "Id": LEAD_ID, "IsDeleted": False, "IsConverted": True,
            "ConvertedContactId": CONTACT_ID, "SystemModstamp": "2025-01-01T00:00:00.000+0000",
            "Email": "ann@example.com", "Lifecycle_Stage__c": "SQL", "Status": "Closed - Converted", **fields}


def _contact(**fields) -> dict:
    return {"attributes": {"type": "Contact"}, "Id": CONTACT_ID, "IsDeleted": False,
            "SystemModstamp": "2025-02-01T00:00:00.000+0000", "CreatedDate": "2025-01-01T00:00:00.000+0000",
            "Email": " ann@example.com ", "FirstName": "Ann", "Title": "CTO", "Company__c": "Acme",
            "NumberOfEmployees__c": 120, "Page_Views__c": 14, "HasOptedOutOfEmail": None,
            "Leadflow_Score__c": 71.0, "Leadflow_Grade__c": "B1", **fields}


def test_shipped_mapping_leaves_converted_leads_as_customers_by_default() -> None:
    mapping = load_mapping()
    assert mapping.converted_leads == "customer" and not mapping.follow_contacts
    assert "ConvertedContactId" not in mapping.select_fields()
    lead, _, _ = lead_to_rows(_converted_lead(), mapping)
    assert (lead["lifecycle_stage"], lead["is_deleted"], lead["merged_into"]) == ("customer", False, None)


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"converted_leads": "contact"}, "converted_leads", "customer"),
        ({"converted_leads": "follow_contact", "contact_fields": {}}, "contact_fields", "follow_contact"),
        ({"contact_fields": {"email": "Email"}}, "contact_fields", "updated_at"),
        ({"contact_fields": {"email": "Email", "updated_at": "SystemModstamp", "lead_status": "Status"}},
         "contact_fields", "lead_status"),
        ({"contact_fields": {"email": "Email", "updated_at": "SystemModstamp", "shoe_size": "Shoe__c"}},
         "contact_fields", "shoe_size"),
        ({"contact_fields": {"email": "Email", "updated_at": "SystemModstamp", "phone": "Mobile Phone"}},
         "contact_fields", "Mobile Phone"),
        ({"contact_fields": {"email": "Email", "updated_at": "SystemModstamp", "pain_point": "Leadflow_Reasons__c"}},
         "leadflow_reasons__c", "also mapped as inputs"),
    ],
)
def test_invalid_follow_contact_config_names_the_key(changes: dict, key: str, words: str) -> None:
    with pytest.raises(MappingConfigError) as info:
        parse_mapping(_raw(**changes), source="salesforce.yaml")
    assert key in str(info.value) and words in str(info.value)


def test_follow_contact_replaces_the_converted_lead_by_its_contact() -> None:
    assert "ConvertedContactId" in FOLLOW.select_fields()
    lead, _, issues = lead_to_rows(_converted_lead(), FOLLOW)
    assert issues == []
    assert (lead["is_deleted"], lead["merged_into"], lead["lifecycle_stage"]) == (True, CONTACT_ID, "customer")
    still_open, _, _ = lead_to_rows(_converted_lead(IsConverted=False, ConvertedContactId=None), FOLLOW)
    assert (still_open["is_deleted"], still_open["merged_into"]) == (False, None)


def test_followed_contact_becomes_a_customer_row_remembering_its_lead() -> None:
    row, issues = contact_to_row(_contact(), FOLLOW, LEAD_ID)
    assert issues == []
    assert (row["crm"], row["record_id"], row["converted_from"]) == ("salesforce", CONTACT_ID, LEAD_ID)
    assert (row["lifecycle_stage"], row["lead_status"], row["is_deleted"]) == ("customer", None, False)
    assert (row["email"], row["first_name"], row["company_name"]) == ("ann@example.com", "Ann", "Acme")
    assert (row["employees"], row["page_views"], row["updated_at"]) == (120.0, 14.0, 1_738_368_000_000)
    assert row["do_not_contact"] is False and row["company_id"] is None
    assert (row["crm_score"], row["crm_grade"], row["crm_sales_ready"]) == ("71", "B1", None)
    nameless, problems = contact_to_row(_contact(Email=None), FOLLOW, LEAD_ID)
    assert [(p.record_id, p.field) for p in problems] == [(CONTACT_ID, "email")]


def test_followed_contact_is_worked_on_in_its_sales_owned_stage_and_the_replaced_lead_is_not() -> None:
    lead, _, _ = lead_to_rows(_converted_lead(), FOLLOW)
    contact, _ = contact_to_row(_contact(), FOLLOW, LEAD_ID)
    won, _, _ = lead_to_rows(_converted_lead(Id="00Q5g0000000002EAA"), load_mapping())
    leads, owned = partition_leads(pd.DataFrame([lead, contact, won]))
    assert list(leads["record_id"]) == [CONTACT_ID] and owned == 1


def test_contact_write_takes_owned_fields_only() -> None:
    plan = plan_update(RecordUpdate(CONTACT_ID, {"score": 64, "grade": "B2"}), FOLLOW)
    assert plan.rejection is None and plan.fields == {"Leadflow_Score__c": 64, "Leadflow_Grade__c": "B2"}
    for shared in ({"lead_status": "open"}, {"lifecycle_stage": "customer"}, {"rating": "Hot"}):
        refused = plan_update(RecordUpdate(CONTACT_ID, {"score": 64, **shared}), FOLLOW)
        assert refused.rejection is not None and refused.rejection.category == "CONTACT_OWNED_FIELDS_ONLY"


@pytest.mark.parametrize("value", ["0035g0000000001AAA", "O'Brien", "back\\slash", "it\\'s", "new\nline"])
def test_soql_string_quotes_ids_as_simple_salesforce_does(value: str) -> None:
    assert soql_string(value) == format_soql("{}", value)
