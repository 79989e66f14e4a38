"""Who set a shared field, as each CRM's history tells it (HubSpot propertiesWithHistory,
Salesforce LeadHistory): the input of the ownership rule."""

from __future__ import annotations

import pytest

from leadflow.crm.hubspot_mapping import load_mapping
from leadflow.crm.hubspot_values import history_writer, observed_shared
from leadflow.crm.salesforce_mapping import load_mapping as load_salesforce_mapping
from leadflow.crm.salesforce_values import observed_shared as salesforce_observed
from leadflow.ownership import Writer

CREATED = "2026-01-05T10:00:00.000Z"
CREATED_MS = 1_767_607_200_000
APP = "4242"


def _entry(source, when="2026-02-01T09:00:00.000Z", source_id=None, user=None, value="x"):
    return {"value": value, "timestamp": when, "sourceType": source, "sourceId": source_id, "updatedByUserId": user}


@pytest.mark.parametrize("entries, app, expected", [
    ([_entry("CRM_UI", user=7, source_id="userId:7")], APP, Writer.PERSON),
    ([_entry("CRM_UI", when=CREATED, user=7)], APP, Writer.PERSON),  # a person created it with the value
    ([_entry("WORKFLOW", source_id="wf-1")], APP, Writer.WORKFLOW),
    ([_entry("AUTOMATION_PLATFORM")], APP, Writer.WORKFLOW),
    ([_entry("INTEGRATION", source_id=APP)], APP, Writer.LEADFLOW),
    ([_entry("INTEGRATION", source_id="999")], APP, Writer.INTEGRATION),
    ([_entry("INTEGRATION", source_id=APP)], None, Writer.UNKNOWN),  # own app not known: push log decides
    ([_entry("FORM", when=CREATED)], APP, Writer.DEFAULT),
    ([_entry("IMPORT", when="2026-01-05T10:00:03.000Z")], APP, Writer.DEFAULT),
    ([_entry("IMPORT")], APP, Writer.INTEGRATION),  # a later import decided it
    ([_entry("API", when=CREATED)], APP, Writer.DEFAULT),
    ([], APP, Writer.UNKNOWN),
    (None, APP, Writer.UNKNOWN),
    ([_entry("CRM_UI", user=7), _entry("INTEGRATION", when=CREATED, source_id=APP)], APP, Writer.PERSON),
])
def test_hubspot_history_names_the_writer_of_the_current_value(entries, app, expected):
    writer, _at, _by = history_writer(entries, created_ms=CREATED_MS, own_app_id=app)
    assert writer is expected


def test_hubspot_person_entry_carries_when_and_who():
    _, at, by = history_writer([_entry("CRM_UI", user=7)], created_ms=CREATED_MS, own_app_id=APP)
    assert (at, by) == (1_769_936_400_000, "user:7")


def test_hubspot_unmapped_status_is_observed_as_someone_elses_raw_value():
    mapping = load_mapping()
    record = {"id": "1", "createdAt": CREATED,
              "properties": {mapping.lead_status_property: "PARTNER_REFERRAL", mapping.stage_property: "lead"},
              "propertiesWithHistory": {mapping.stage_property: [_entry("FORM", when=CREATED, value="lead")]}}
    seen = observed_shared(record, mapping, APP)
    assert (seen["lead_status"].value, seen["lead_status"].known) == ("PARTNER_REFERRAL", False)
    assert (seen["lifecycle_stage"].value, seen["lifecycle_stage"].writer) == ("lead", Writer.DEFAULT)


def _history(field, by, when="2026-02-01T09:00:00.000+0000"):
    return {"LeadId": "00Q1", "Field": field, "CreatedById": by, "CreatedDate": when}


def test_salesforce_status_set_by_another_user_is_a_persons_decision():
    mapping = load_salesforce_mapping()
    record = {"Id": "00Q1", mapping.status_field: "Working - Contacted", mapping.stage_field: None}
    seen = salesforce_observed(record, [_history(mapping.status_field, "005REP")], mapping, "005LEADFLOW")
    assert seen["lead_status"].writer is Writer.PERSON and seen["lead_status"].changed_by == "005REP"
    assert seen["lifecycle_stage"].value is None


def test_salesforce_status_leadflow_set_last_is_leadflows():
    mapping = load_salesforce_mapping()
    record = {"Id": "00Q1", mapping.status_field: "Open - Not Contacted"}
    rows = [_history(mapping.status_field, "005LEADFLOW"), _history(mapping.status_field, "005REP", "2026-01-01")]
    assert salesforce_observed(record, rows, mapping, "005LEADFLOW")["lead_status"].writer is Writer.LEADFLOW


def test_salesforce_value_without_history_is_the_creation_default_only_when_history_is_tracked():
    mapping = load_salesforce_mapping()
    record = {"Id": "00Q1", mapping.status_field: "Open - Not Contacted"}
    assert salesforce_observed(record, [], mapping, "005L")["lead_status"].writer is Writer.DEFAULT
    untracked = salesforce_observed(record, [], mapping, "005L", history_tracked=False)
    assert untracked["lead_status"].writer is Writer.UNKNOWN
