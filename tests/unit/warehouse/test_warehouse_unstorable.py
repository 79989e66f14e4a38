"""Landing values the databases refuse, on SQLite and on a real PostgreSQL: the page lands, the
offending field is cleared, the lead is quarantined without its value, and the entry is released
only when a later pull brings a storable value."""

from __future__ import annotations

from datetime import datetime, timezone

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.pulled import RecordIssue, Watermark
from leadflow.quality.quarantine import quarantine_entries, update_quarantine
from leadflow.warehouse import repo
from leadflow.warehouse.tables import lead_issues
from leadflow.warehouse.values import (
    INVALID_UNICODE,
    NUL_IN_TEXT,
    TIMESTAMP_OUT_OF_RANGE,
    TS_MAX_MS,
    TS_MIN_MS,
    value_problem,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)


def _lead(record_id: str, **values) -> dict:
    base = {"record_id": record_id, "email": f"{record_id}@example.com", "updated_at": 1_700_000_000_000}
    base.update(values)
    return base


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("str", "a\x00b", NUL_IN_TEXT),
        ("str", "half \ud83d", INVALID_UNICODE),
        ("str", "whole \U0001F600 and ünïcödé", None),
        ("ts", 12345678901234567890, TIMESTAMP_OUT_OF_RANGE),
        ("ts", TS_MAX_MS + 1, TIMESTAMP_OUT_OF_RANGE),
        ("ts", TS_MIN_MS - 1, TIMESTAMP_OUT_OF_RANGE),
        ("ts", TS_MAX_MS, None),
        ("ts", -1, None),
        ("float", 1e300, None),
        ("bool", True, None),
    ],
)
def test_given_value_then_problem_code_says_whether_the_warehouse_can_store_it(kind, value, expected):
    assert value_problem(kind, value) == expected


def test_given_unstorable_values_then_page_lands_and_only_their_leads_are_quarantined(warehouse):
    page = [
        _lead("1", job_title="CEO \ud83d"),
        _lead("2", form_comments="x\x00y", crm_reasons="z\x00"),
        _lead("3", demo_requested_at=12345678901234567890),
        _lead("4", job_title="CTO"),
    ]
    bad_date = RecordIssue("5", "created_at", "unparseable date", "soon\x00")
    with warehouse.begin() as conn:
        landed = repo.land_page(conn, "hubspot", "run-1", page, [], [bad_date])
        repo.set_watermark(conn, "hubspot", Watermark(1_700_000_000_000))

    assert landed == repo.LandedPage(leads=4, held_ids=("1", "2", "3"))
    assert repo.get_watermark(warehouse, "hubspot") == Watermark(1_700_000_000_000)
    frame = repo.load_leads(warehouse, "hubspot").set_index("record_id")
    assert list(frame.index.sort_values()) == ["1", "2", "3", "4"]
    assert pd.isna(frame.loc["1", "job_title"]) and pd.isna(frame.loc["2", "form_comments"])
    assert pd.isna(frame.loc["2", "crm_reasons"]) and pd.isna(frame.loc["3", "demo_requested_at"])
    assert frame.loc["4", "job_title"] == "CTO"
    entries = quarantine_entries(warehouse, "hubspot")
    assert set(zip(entries["record_id"], entries["expectation"], entries["column"])) == {
        ("1", INVALID_UNICODE, "job_title"),
        ("2", NUL_IN_TEXT, "form_comments"),
        ("2", NUL_IN_TEXT, "crm_reasons"),
        ("3", TIMESTAMP_OUT_OF_RANGE, "demo_requested_at"),
    }
    assert entries["value"].isna().all()
    with warehouse.connect() as conn:
        issues = conn.execute(select(lead_issues.c.record_id, lead_issues.c.field, lead_issues.c.value)).all()
    assert ("5", "created_at", None) in issues  # the connector's copy of the bad value is dropped
    assert all(value is None for _, _, value in issues)
    assert {(r, f) for r, f, _ in issues} >= {("1", "job_title"), ("3", "demo_requested_at")}


def test_given_company_with_unstorable_value_then_field_is_cleared_and_reported(warehouse):
    company = {"company_id": "c1", "name": "Acme\x00", "domain": "acme.example"}
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead("1", company_id="c1")], [company], [])
    companies = repo.load_companies(warehouse, "hubspot").set_index("company_id")
    assert pd.isna(companies.loc["c1", "name"]) and companies.loc["c1", "domain"] == "acme.example"
    with warehouse.connect() as conn:
        issues = conn.execute(select(lead_issues.c.record_id, lead_issues.c.field)).all()
    assert ("c1", "name") in issues


def test_given_held_lead_when_row_checks_pass_then_validate_does_not_release_it(warehouse):
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead("1", job_title="a\x00")], [], [])
    # The row checks see the cleared field and pass the lead: the hold must stay.
    empty = pd.DataFrame(columns=["record_id", "expectation", "column", "value"])
    counts = update_quarantine(warehouse, "hubspot", "run-1", empty, ["1"], NOW)
    assert counts["released"] == 0 and counts["active"] == 1


def test_given_held_lead_pulled_again_with_storable_value_then_it_is_released(warehouse):
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead("1", job_title="a\x00"), _lead("2", phone="\x00")], [], [])
    with warehouse.begin() as conn:
        landed = repo.land_page(conn, "hubspot", "run-2", [_lead("1", job_title="CFO")], [], [])
    assert landed.held_ids == ()
    active = quarantine_entries(warehouse, "hubspot")
    assert list(active["record_id"]) == ["2"]  # not pulled again: still held
    released = quarantine_entries(warehouse, "hubspot", include_released=True).set_index("record_id")
    assert released.loc["1", "released_run_id"] == "run-2"


def test_given_held_lead_pulled_again_with_another_bad_field_then_only_the_fixed_field_is_released(warehouse):
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-1", [_lead("1", job_title="a\x00")], [], [])
    with warehouse.begin() as conn:
        repo.land_page(conn, "hubspot", "run-2", [_lead("1", job_title="CFO", phone="\x00")], [], [])
    active = quarantine_entries(warehouse, "hubspot")
    assert list(zip(active["record_id"], active["column"])) == [("1", "phone")]
