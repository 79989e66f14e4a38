"""Salesforce mapping config, record translation and write planning (pure, no HTTP)."""

from __future__ import annotations


import pytest
import yaml

from leadflow.connections import Connection
from leadflow.crm.base import RecordResult, RecordUpdate
from leadflow.crm.base import CrmError
from leadflow.crm.mapping import MappingConfigError
from leadflow.crm.salesforce_mapping import DEFAULT_MAPPING_PATH, load_mapping, parse_mapping
from leadflow.crm.salesforce_push import plan_update, results_from_collection
from leadflow.crm.salesforce_settings import SalesforceSettings
from leadflow.crm.salesforce_soql import soql_datetime, watermark_condition
from leadflow.crm.salesforce_values import format_write_value, lead_to_rows
from leadflow.crm.write_core import ForbiddenPropertyError
from leadflow.pulled import Watermark

MAPPING = load_mapping()
RID = "00Q5g0000000001EAA"


def _raw() -> dict:
    return yaml.safe_load(DEFAULT_MAPPING_PATH.read_text())


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["owned_fields"]["score"].update(name="Leadflow_Score"), "owned_fields.score.name"),
        (lambda d: d["owned_fields"]["score"].update(type="number"), "owned_fields.score.type"),
        (lambda d: d["lead_fields"].pop("email"), "lead_fields"),
        (lambda d: d["lead_fields"].update(shoe_size="Shoe__c"), "lead_fields"),
        (lambda d: d["lifecycle_stages"].update(Hot="hot"), "lifecycle_stages"),
        (lambda d: d["lead_statuses"].update(Weird="weird"), "lead_statuses"),
        (lambda d: d.update(colour="blue"), "colour"),
    ],
)
def test_invalid_mapping_names_the_bad_key(change, key: str) -> None:
    data = _raw()
    change(data)
    with pytest.raises(MappingConfigError) as info:
        parse_mapping(data, source="salesforce.yaml")
    assert key in str(info.value)


def test_owned_field_also_read_as_input_is_refused() -> None:
    data = _raw()
    data["lead_fields"]["pain_point"] = "Leadflow_Reasons__c"
    with pytest.raises(MappingConfigError, match="also mapped as inputs"):
        parse_mapping(data)


def test_connection_extra_typo_is_an_error_naming_the_key() -> None:
    conn = Connection("leadflow_salesforce", host="127.0.0.1", password="x", extra={"daily_reserv": 5, "verify": "x"})
    with pytest.raises(CrmError, match="extra.daily_reserv"):
        SalesforceSettings.from_connection(conn)


def _record(**fields):
    base = {"attributes": {"type": "Lead"}, "Id": RID, "IsDeleted": False, "IsConverted": False,
            "SystemModstamp": "2025-01-01T00:00:00.000+0000", "CreatedDate": "2024-06-01T10:00:00.000+0000",
            "Email": " ann@example.com ", "Company": "Acme", "Company_Domain__c": "ACME.com",
            "Technologies__c": "Salesforce; Snowflake;;Salesforce", "NumberOfEmployees": 120,
            "Lifecycle_Stage__c": "MQL", "Status": "Working - Contacted", "Leadflow_Score__c": 87.0,
            "Leadflow_Scored_At__c": "2025-01-01T00:00:00.000+0000", "HasOptedOutOfEmail": False}
    base.update(fields)
    return base


def test_lead_record_becomes_canonical_lead_and_company() -> None:
    lead, company, issues = lead_to_rows(_record(), MAPPING)
    assert issues == []
    assert lead["crm"] == "salesforce" and lead["record_id"] == RID
    assert lead["email"] == "ann@example.com"
    assert lead["lifecycle_stage"] == "mql" and lead["lead_status"] == "connected"
    assert lead["updated_at"] == 1_735_689_600_000 and lead["employees"] == 120.0
    assert lead["crm_score"] == "87" and lead["crm_scored_at"] == "2025-01-01T00:00:00.000Z"
    assert lead["company_id"] == RID
    assert company is not None and company["domain"] == "acme.com"
    assert company["technologies"] == "Salesforce;Snowflake"


def test_converted_lead_is_won_and_deleted_lead_is_marked_deleted() -> None:
    lead, _, _ = lead_to_rows(_record(IsConverted=True, Status="Closed - Converted"), MAPPING)
    assert lead["lifecycle_stage"] == "customer" and lead["lead_status"] is None
    gone, _, _ = lead_to_rows(_record(IsDeleted=True), MAPPING)
    assert gone["is_deleted"] is True and gone["merged_into"] is None


def test_merged_away_lead_names_the_lead_it_was_merged_into() -> None:
    loser, _, _ = lead_to_rows(_record(IsDeleted=True, MasterRecordId="00Q000000000WIN"), MAPPING)
    assert (loser["is_deleted"], loser["merged_into"]) == (True, "00Q000000000WIN")


def test_bad_values_are_cleared_and_reported_not_raised() -> None:
    lead, _, issues = lead_to_rows(_record(Status="Gone Fishing", Demo_Requested_At__c="next tuesday",
                                           Page_Views__c="many", Email=None), MAPPING)
    problems = {(i.field, i.problem) for i in issues}
    assert ("lead_status", "unknown value (not in the mapping)") in problems
    assert ("demo_requested_at", "unparseable date") in problems
    assert ("page_views", "not a number") in problems
    assert ("email", "missing email") in problems
    assert lead["demo_requested_at"] is None and lead["page_views"] is None


def test_write_values_are_json_typed_for_salesforce() -> None:
    assert format_write_value("double", 87.0) == 87
    assert format_write_value("double", "12.5") == 12.5
    assert format_write_value("datetime", 1_735_689_600_000) == "2025-01-01T00:00:00.000Z"
    assert format_write_value("string", "x" * 300, 255) == "x" * 255
    assert format_write_value("string", float("nan")) is None


def test_stage_move_sets_stage_and_rating_and_never_goes_backwards() -> None:
    plan = plan_update(RecordUpdate(RID, {"lifecycle_stage": "sql", "score": 91}, current_stage="mql"), MAPPING)
    assert plan.rejection is None
    assert plan.fields == {"Leadflow_Score__c": 91, "Lifecycle_Stage__c": "SQL", "Rating": "Hot"}
    back = plan_update(RecordUpdate(RID, {"lifecycle_stage": "lead"}, current_stage="mql"), MAPPING)
    assert back.rejection is not None and back.rejection.category == "BACKWARD_STAGE"
    rollback = plan_update(RecordUpdate(RID, {"lifecycle_stage": "lead"}, current_stage="mql", allow_backward=True),
                           MAPPING)
    assert rollback.fields["Lifecycle_Stage__c"] == "Lead"


def test_sales_owned_stage_is_never_touched() -> None:
    plan = plan_update(RecordUpdate(RID, {"lifecycle_stage": "sql"}, current_stage="customer"), MAPPING)
    assert plan.rejection is not None and plan.rejection.category == "SALES_OWNED_STAGE"


def test_writing_a_field_leadflow_does_not_own_raises() -> None:
    with pytest.raises(ForbiddenPropertyError):
        plan_update(RecordUpdate(RID, {"email": "x@example.com"}), MAPPING)


def test_collection_answer_maps_by_position_and_classifies_errors() -> None:
    ids = ["00Q5g0000000001EAA", "00Q5g0000000002EAA", "00Q5g0000000003EAA", "00Q5g0000000004EAA"]
    body = [
        {"id": ids[0], "success": True, "errors": []},
        {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}]},
        {"success": False, "errors": [{"statusCode": "STRING_TOO_LONG", "message": "too long", "fields": ["X"]}]},
    ]
    out = results_from_collection(ids, body)
    assert out[ids[0]] == RecordResult(ids[0], "confirmed")
    assert out[ids[1]].status == "retryable" and out[ids[1]].category == "UNABLE_TO_LOCK_ROW"
    assert out[ids[2]].status == "rejected" and out[ids[2]].error == "too long"
    assert out[ids[3]].status == "unknown"


def test_watermark_condition_is_a_keyset_after_the_last_record() -> None:
    assert watermark_condition(None, "SystemModstamp") == ""
    at = soql_datetime(1_735_689_600_123)
    assert at == "2025-01-01T00:00:00.123Z"
    assert soql_datetime(1_735_689_600_000) == "2025-01-01T00:00:00Z"
    assert watermark_condition(Watermark(1_735_689_600_123), "SystemModstamp") == f"SystemModstamp >= {at}"
    cond = watermark_condition(Watermark(1_735_689_600_123, "00Q5g0000000001EAA"), "SystemModstamp")
    assert cond == (f"(SystemModstamp > {at} OR (SystemModstamp = {at} AND Id > '00Q5g0000000001EAA'))")


def test_sales_ready_checkbox_reads_and_writes_as_true_or_false() -> None:
    ready, _, _ = lead_to_rows(_record(Leadflow_Sales_Ready__c=True,
                                       Leadflow_Sales_Ready_Since__c="2025-06-01T00:00:00.000+0000"), MAPPING)
    assert (ready["crm_sales_ready"], ready["crm_sales_ready_since"]) == ("true", "2025-06-01T00:00:00.000Z")
    not_ready, _, _ = lead_to_rows(_record(Leadflow_Sales_Ready__c=False), MAPPING)
    assert not_ready["crm_sales_ready"] == "false"
    assert format_write_value("boolean", "true") is True
    # A checkbox cannot be empty: clearing it (a rollback to "never set") writes false.
    assert format_write_value("boolean", None) is False and format_write_value("boolean", "false") is False
