"""Row expectations: each one catches its bad value, and good rows pass (one GX validation)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from quality_helpers import NOW, NOW_MS, DAY_MS, good_frame, good_lead, leads_frame

from leadflow.quality.row_checks import FAILURE_COLUMNS, RowCheckOptions, validate_rows
from leadflow.quality.settings import QualitySettings, RowSettings

# case id -> (overrides, expected (expectation, column) or None when the lead must pass)
CASES: dict[str, tuple[dict[str, Any], tuple[str, str] | None]] = {
    "good": ({}, None),
    "email_missing": ({"email": None}, ("required", "email")),
    "email_blank": ({"email": "   "}, ("required", "email")),
    "email_bad_syntax": ({"email": "not-an-email"}, ("email_syntax", "email")),
    "email_special_use_domain": ({"email": "ann@printer.local"}, ("email_syntax", "email")),
    "email_unicode_valid": ({"email": "josé@bücher.de"}, None),
    "record_id_missing": ({"record_id": None}, ("required", "record_id")),
    "record_id_too_long": ({"record_id": "r" * 65}, ("max_length", "record_id")),
    "crm_other": ({"crm": "salesforce"}, ("allowed_value", "crm")),
    "stage_unknown": ({"lifecycle_stage": "bogus"}, ("allowed_value", "lifecycle_stage")),
    "stage_empty": ({"lifecycle_stage": None}, None),
    "status_unknown": ({"lead_status": "maybe"}, ("allowed_value", "lead_status")),
    "updated_in_future": ({"updated_at": NOW_MS + DAY_MS}, ("valid_timestamp", "updated_at")),
    "updated_within_skew": ({"updated_at": NOW_MS + 5 * 60_000}, None),
    "created_year_9999": ({"created_at": 253402214400000.0}, ("valid_timestamp", "created_at")),
    "created_at_epoch_zero": ({"created_at": 0.0}, ("valid_timestamp", "created_at")),
    "updated_unparseable": ({"updated_at": "next tuesday"}, ("value_type", "updated_at")),
    "updated_iso_text": ({"updated_at": "2026-11-20T08:00:00Z"}, None),
    "employees_negative": ({"employees": -1.0}, ("number_range", "employees")),
    "revenue_negative": ({"annual_revenue": -5.0}, ("number_range", "annual_revenue")),
    "page_views_negative": ({"page_views": -3.0}, ("number_range", "page_views")),
    "visits_infinite": ({"visits": float("inf")}, ("number_range", "visits")),
    "employees_nan": ({"employees": float("nan")}, None),
    "employees_word": ({"employees": "abc"}, ("value_type", "employees")),
    "employees_numeric_text": ({"employees": " 42 "}, None),
    "first_name_list": ({"first_name": ["Ann"]}, ("value_type", "first_name")),
    "first_name_number": ({"first_name": 7}, None),
    "job_title_too_long": ({"job_title": "x" * 300}, ("max_length", "job_title")),
    "comments_too_long": ({"form_comments": "y" * 5000}, ("max_length", "form_comments")),
    "do_not_contact_word": ({"do_not_contact": "perhaps"}, ("value_type", "do_not_contact")),
}


@pytest.fixture(scope="module")
def validated():
    rows = []
    ids = {}
    for i, (case, (overrides, _)) in enumerate(CASES.items()):
        lead = good_lead(i, **overrides)
        rows.append(lead)
        ids[case] = lead["record_id"]
    # Two rows sharing a record id: both are quarantined as duplicates.
    rows += [good_lead(900, record_id="dup-1"), good_lead(901, record_id="dup-1")]
    # A row with a wrong crm shares the key space it is quarantined under: both rows fail.
    rows += [good_lead(902, record_id="dup-2"), good_lead(903, record_id="dup-2", crm="salesforce")]
    frame = leads_frame(rows)
    result = validate_rows(frame, RowCheckOptions(crm="hubspot"), NOW)
    return result, ids, frame


@pytest.mark.parametrize("case", [c for c, (_, want) in CASES.items() if want is not None])
def test_each_row_expectation_catches_its_bad_value(validated, case):
    result, ids, _ = validated
    expectation, column = CASES[case][1]
    key = ids[case]
    if case == "record_id_too_long":
        # Ids longer than the warehouse key are quarantined under a stable surrogate.
        mine = result.failures[result.failures["record_id"].str.startswith("~long-id:")]
    elif case == "record_id_missing":
        mine = result.failures[result.failures["record_id"].str.startswith("~no-id:")]
    else:
        mine = result.failures[result.failures["record_id"] == key]
    assert (expectation, column) in set(zip(mine["expectation"], mine["column"]))
    assert key not in result.passed_ids


@pytest.mark.parametrize("case", [c for c, (_, want) in CASES.items() if want is None])
def test_good_values_pass_every_expectation(validated, case):
    result, ids, _ = validated
    assert ids[case] in result.passed_ids
    assert result.failures[result.failures["record_id"] == ids[case]].empty


def test_duplicate_record_ids_are_all_quarantined(validated):
    result, _, _ = validated
    dup = result.failures[result.failures["record_id"] == "dup-1"]
    assert list(dup["expectation"]) == ["unique_per_crm", "unique_per_crm"]
    assert "dup-1" not in result.passed_ids


def test_a_duplicate_id_with_a_wrong_crm_does_not_let_its_twin_pass(validated):
    result, _, _ = validated
    assert "dup-2" not in result.passed_ids
    reasons = set(result.failures.loc[result.failures["record_id"] == "dup-2", "expectation"])
    assert reasons == {"unique_per_crm", "allowed_value"}


def test_every_row_either_passes_or_has_a_failure(validated):
    result, _, frame = validated
    failed_keys = set(result.failures["record_id"])
    assert len(result.passed_ids) + len(failed_keys) == len(frame) - 2  # dup-1/dup-2 count once
    assert not failed_keys & set(result.passed_ids)
    assert list(result.failures.columns) == list(FAILURE_COLUMNS)
    assert (result.failures["crm"] == "hubspot").all()


def test_offending_values_are_kept_truncated(validated, settings):
    result, ids, _ = validated
    row = result.failures[result.failures["record_id"] == ids["comments_too_long"]].iloc[0]
    assert row["value"] == "y" * settings.value_max_chars
    row = result.failures[result.failures["record_id"] == ids["email_bad_syntax"]].iloc[0]
    assert row["value"] == "not-an-email"


def test_summary_reports_each_expectation_with_its_unexpected_count(validated):
    result, _, frame = validated
    summary = result.summary.set_index("expectation")
    assert summary.loc["email_syntax:email", "unexpected_count"] == 2
    assert not summary.loc["email_syntax:email", "success"]
    assert summary.loc["required:crm", "success"]
    assert summary.loc["unique_per_crm:record_id", "unexpected_count"] == 4
    assert summary.loc["required:crm", "observed"] == f"0 of {len(frame)} rows"
    assert result.failed_row_count == len(frame) - len(result.passed_ids)


def test_missing_columns_count_as_empty(options):
    frame = good_frame(3).drop(columns=["email", "employees", "updated_at", "job_title"])
    result = validate_rows(frame, options, NOW)
    assert result.passed_ids == []
    assert set(result.failures["expectation"]) == {"required"}
    assert set(result.failures["column"]) == {"email"}


def test_email_can_be_optional_by_configuration():
    settings = QualitySettings(rows=RowSettings(required_fields=()))
    options = RowCheckOptions.from_settings(settings, "hubspot")
    frame = leads_frame([good_lead(0, email=None), good_lead(1, email="nope")])
    result = validate_rows(frame, options, NOW)
    assert result.passed_ids == ["1000"]
    assert list(result.failures["expectation"]) == ["email_syntax"]


def test_datetime64_timestamps_are_accepted():
    frame = good_frame(2)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], unit="ms", utc=True)
    frame.loc[1, "updated_at"] = pd.Timestamp(NOW) + pd.Timedelta(days=3)
    result = validate_rows(frame, RowCheckOptions(crm="hubspot"), NOW)
    assert result.passed_ids == ["1000"]
    assert result.failures.iloc[0][["expectation", "column"]].tolist() == ["valid_timestamp", "updated_at"]
    assert result.frame["updated_at"].iloc[0] == pytest.approx(NOW_MS - DAY_MS)


def test_caller_can_restrict_stages_to_the_crm_options():
    options = RowCheckOptions(crm="hubspot", lifecycle_stages=("lead", "mql"))
    frame = leads_frame([good_lead(0, lifecycle_stage="lead"), good_lead(1, lifecycle_stage="customer")])
    result = validate_rows(frame, options, NOW)
    assert result.passed_ids == ["1000"]


def test_a_row_without_id_gets_the_same_surrogate_key_every_run(options):
    frame = leads_frame([good_lead(0, record_id=None), good_lead(1)])
    first = validate_rows(frame, options, NOW).failures
    second = validate_rows(frame.copy(), options, NOW).failures
    assert first["record_id"].iloc[0].startswith("~no-id:")
    assert first["record_id"].tolist() == second["record_id"].tolist()
    assert all(len(k) <= 64 for k in first["record_id"])


def test_validation_opens_no_network_connection(options, monkeypatch):
    import socket

    real_connect = socket.socket.connect

    def loopback_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and host not in ("127.0.0.1", "::1", "localhost") \
                and not host.startswith("/"):
            raise AssertionError(f"network connection attempted to {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)
    assert validate_rows(good_frame(3), options, NOW).passed_ids == ["1000", "1001", "1002"]


def test_an_empty_batch_passes_without_failures(options):
    result = validate_rows(good_frame(0), options, NOW)
    assert result.row_count == 0 and result.passed_ids == [] and result.failures.empty
    assert all(r.success for r in result.results)


def test_index_of_the_input_does_not_matter(options):
    frame = good_frame(3)
    frame.index = [10, 5, 7]
    frame.loc[5, "employees"] = -2.0
    result = validate_rows(frame, options, NOW)
    assert result.passed_ids == ["1000", "1002"]
    assert np.array_equal(result.passed_mask, [True, False, True])
