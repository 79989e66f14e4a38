"""Pure HubSpot <-> canonical translation: parsers, contacts, companies, outgoing formats."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from leadflow.crm.hubspot_mapping import HubSpotMapping
from leadflow.crm.hubspot_values import company_to_row, contact_to_lead
from leadflow.crm.values import format_owned_value, normalise_technologies, parse_bool, parse_epoch_ms, parse_number
from leadflow.schema import COMPANY_COLUMNS, CRM_OWNED_VALUE_COLUMNS, CRM_RAW_VALUE_COLUMNS, LEAD_COLUMNS, MAX_TEXT_LENGTH

JAN_1_2024_MS = 1_704_067_200_000


@pytest.mark.parametrize("raw, expected", [("12", 12.0), ("12.5", 12.5), (" 7 ", 7.0), (3, 3.0), ("", None), (None, None)])
def test_parse_number_accepts_plain_numbers(raw, expected) -> None:
    assert parse_number(raw) == expected


@pytest.mark.parametrize("raw", ["twelve", "nan", "inf", True, "1,5"])
def test_parse_number_rejects_non_numbers(raw) -> None:
    with pytest.raises(ValueError):
        parse_number(raw)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("2024-01-01T00:00:00.000Z", JAN_1_2024_MS),
        ("2024-01-01T01:00:00+01:00", JAN_1_2024_MS),
        ("2024-01-01T00:00:00", JAN_1_2024_MS),  # naive -> UTC
        ("2024-01-01", JAN_1_2024_MS),  # date property: midnight UTC
        (str(JAN_1_2024_MS), JAN_1_2024_MS),
        (JAN_1_2024_MS, JAN_1_2024_MS),
        ("", None),
    ],
)
def test_parse_epoch_ms_accepts_iso_dates_and_epoch_ms(raw, expected) -> None:
    assert parse_epoch_ms(raw) == expected


@pytest.mark.parametrize("raw", ["yesterday", "2024-13-01", "2024-02-30T00:00:00Z"])
def test_parse_epoch_ms_rejects_garbage(raw) -> None:
    with pytest.raises(ValueError):
        parse_epoch_ms(raw)


@pytest.mark.parametrize("raw, expected", [("true", True), ("false", False), ("TRUE", True), ("", None), (True, True)])
def test_parse_bool(raw, expected) -> None:
    assert parse_bool(raw) is expected


def _contact(**props) -> dict:
    base = {"email": "ada@example.com", "lastmodifieddate": "2024-01-01T00:00:00.000Z"}
    base.update(props)
    return {"id": "101", "properties": base, "archived": False}


def test_contact_maps_every_lead_column_and_owned_value(mapping: HubSpotMapping) -> None:
    lead, issues = contact_to_lead(
        _contact(
            firstname="Ada", hs_analytics_num_page_views="42", annualrevenue="1500000.5",
            lifecyclestage="marketingqualifiedlead", hs_lead_status="BAD_TIMING", hs_email_optout="true",
            demo_requested_at="2024-01-01", associatedcompanyid="555",
            leadflow_score="87.0", leadflow_scored_at=str(JAN_1_2024_MS),
        ),
        mapping,
    )
    assert issues == []
    assert set(lead) == set(LEAD_COLUMNS) | set(CRM_OWNED_VALUE_COLUMNS) | set(CRM_RAW_VALUE_COLUMNS)
    assert lead["crm_raw_lifecycle_stage"] == "marketingqualifiedlead"
    assert lead["crm"] == "hubspot" and lead["record_id"] == "101"
    assert lead["page_views"] == 42.0 and lead["annual_revenue"] == 1500000.5
    assert lead["lifecycle_stage"] == "mql" and lead["lead_status"] == "nurture"
    assert lead["do_not_contact"] is True
    assert lead["demo_requested_at"] == JAN_1_2024_MS and lead["updated_at"] == JAN_1_2024_MS
    assert lead["company_id"] == "555"
    assert lead["is_deleted"] is False
    assert lead["crm_score"] == "87"  # rendered as a push would write it
    assert lead["crm_scored_at"] == "2024-01-01T00:00:00.000Z"
    assert lead["crm_grade"] is None


def test_given_bad_values_then_they_are_cleared_and_reported_never_raised(mapping: HubSpotMapping) -> None:
    lead, issues = contact_to_lead(
        _contact(createdate="not a date", hs_analytics_num_visits="many", lifecyclestage="zombie",
                 hs_email_optout="maybe"),
        mapping,
    )
    assert lead["created_at"] is None and lead["visits"] is None
    assert lead["lifecycle_stage"] is None and lead["do_not_contact"] is None
    problems = {(i.field, i.problem, i.value) for i in issues}
    assert ("created_at", "unparseable date", "not a date") in problems
    assert ("visits", "not a number", "many") in problems
    assert ("lifecycle_stage", "unknown value (not in the mapping)", "zombie") in problems
    assert ("do_not_contact", "not a boolean", "maybe") in problems
    assert all(i.record_id == "101" for i in issues)


def test_given_huge_text_then_truncated_and_reported_with_short_value(mapping: HubSpotMapping) -> None:
    lead, issues = contact_to_lead(_contact(message="x" * (MAX_TEXT_LENGTH + 10)), mapping)
    assert len(lead["form_comments"]) == MAX_TEXT_LENGTH
    [issue] = issues
    assert issue.field == "form_comments" and "truncated" in issue.problem
    assert len(issue.value) == 200


def test_given_missing_email_then_record_is_kept_with_an_issue(mapping: HubSpotMapping) -> None:
    lead, issues = contact_to_lead({"id": "7", "properties": {"firstname": "No mail"}}, mapping)
    assert lead["record_id"] == "7" and lead["email"] is None
    assert [(i.field, i.problem) for i in issues] == [("email", "missing email")]


def test_given_no_cursor_property_then_envelope_timestamps_are_used(mapping: HubSpotMapping) -> None:
    lead, _ = contact_to_lead(
        {"id": "8", "properties": {"email": "a@b.co"}, "createdAt": "2024-01-01T00:00:00Z",
         "updatedAt": "2024-01-01T00:00:01Z", "archived": True},
        mapping,
    )
    assert (lead["created_at"], lead["updated_at"]) == (JAN_1_2024_MS, JAN_1_2024_MS + 1000)
    assert lead["is_deleted"] is True


def test_given_record_without_id_then_record_id_none_and_issue(mapping: HubSpotMapping) -> None:
    lead, issues = contact_to_lead({"properties": {"email": "a@b.co"}}, mapping)
    assert lead["record_id"] is None
    assert issues[0].field == "record_id"


def test_stage_and_status_lookup_tolerates_case(mapping: HubSpotMapping) -> None:
    lead, issues = contact_to_lead(_contact(lifecyclestage="SalesQualifiedLead", hs_lead_status="open"), mapping)
    assert (lead["lifecycle_stage"], lead["lead_status"], issues) == ("sql", "open", [])


def test_company_maps_columns_and_normalises_technologies(mapping: HubSpotMapping) -> None:
    row, issues = company_to_row(
        {"id": "555", "properties": {"name": "Acme", "domain": "Acme.COM", "numberofemployees": "250",
                                     "annualrevenue": "1e6", "web_technologies": "Salesforce; HubSpot;;Salesforce",
                                     "hs_lastmodifieddate": "2024-01-01T00:00:00Z"}},
        mapping,
    )
    assert issues == []
    assert set(row) == set(COMPANY_COLUMNS)
    assert row == {**row, "crm": "hubspot", "company_id": "555", "name": "Acme", "domain": "acme.com",
                   "employees": 250.0, "annual_revenue": 1e6, "technologies": "Salesforce;HubSpot",
                   "updated_at": JAN_1_2024_MS}


def test_given_a_company_read_with_leadflows_own_properties_then_the_row_knows_their_values(
        mapping: HubSpotMapping) -> None:
    record = {"id": "555", "properties": {"name": "Acme", "leadflow_company_score": "87.0",
                                          "leadflow_buying_committee": ""}}
    row, _ = company_to_row(record, mapping, owned_read_at_ms=JAN_1_2024_MS)
    # Rendered as leadflow writes them, so an equal value is not sent again.
    assert row["crm_company_score"] == "87" and row["crm_buying_committee"] is None
    assert row["crm_owned_known_at"] == JAN_1_2024_MS
    unread, _ = company_to_row(record, mapping)
    assert "crm_owned_known_at" not in unread and "crm_company_score" not in unread


def test_normalise_technologies_drops_empties() -> None:
    assert normalise_technologies(" ; ;") is None


@pytest.mark.parametrize(
    "prop_type, value, expected",
    [
        ("number", 87, "87"),
        ("number", 87.0, "87"),
        ("number", 87.25, "87.25"),
        ("number", 1e-7, "0"),
        ("number", 12345678901.5, "12345678901.5"),
        ("number", float("nan"), ""),
        ("number", None, ""),
        ("datetime", JAN_1_2024_MS, "2024-01-01T00:00:00.000Z"),
        ("datetime", datetime(2024, 1, 1, tzinfo=timezone.utc), "2024-01-01T00:00:00.000Z"),
        ("date", JAN_1_2024_MS + 5000, "2024-01-01"),
        ("bool", True, "true"),
        ("string", "A1", "A1"),
    ],
)
def test_format_owned_value_renders_plainly(prop_type, value, expected) -> None:
    assert format_owned_value(prop_type, value) == expected
