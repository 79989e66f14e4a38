from __future__ import annotations

import math

import pandas as pd
import pytest

from leadflow.enrich.payloads import PayloadError, parse_company, parse_range
from leadflow.enrich.providers import (
    EMPLOYEE_BANDS,
    REVENUE_BANDS,
    RECORD_COLUMNS,
    CompanyRecord,
    bands_of,
    canonical_technology,
    employee_band,
    empty_records,
    join_technologies,
    normalise_countries,
    normalise_country,
    records_to_frame,
    revenue_band,
)
from leadflow.enrich.settings import SettingsError, load_settings

from enrich_fakes import as_list, company_body


@pytest.mark.parametrize(
    ("count", "band"),
    [(None, None), (0, None), (1, "1-10"), (10, "1-10"), (11, "11-50"), (200, "51-200"),
     (201, "201-500"), (10_000, "5001-10000"), (10_001, "10001+"), (float("nan"), None)],
)
def test_given_headcount_then_employee_band(count, band) -> None:
    assert employee_band(count) == band


@pytest.mark.parametrize(
    ("usd", "band"),
    [(None, None), (-1, None), (0, "<1M"), (999_999, "<1M"), (1e6, "1M-10M"), (5e7, "50M-100M"),
     (2e9, "1B-10B"), (1e10, "10B+")],
)
def test_given_revenue_then_revenue_band(usd, band) -> None:
    assert revenue_band(usd) == band


def test_given_series_then_vectorised_bands_equal_scalar_bands() -> None:
    values = pd.Series([None, 0, 1, 11, 500, 501, 10_001, 3.5])
    assert as_list(bands_of(values, EMPLOYEE_BANDS)) == [employee_band(v) for v in values]
    money = pd.Series([None, 0, 1e6, 2.4e8, 2.5e8, 1e11])
    assert as_list(bands_of(money, REVENUE_BANDS)) == [revenue_band(v) for v in money]


@pytest.mark.parametrize(
    ("text", "code"),
    [("DE", "DE"), ("de", "DE"), ("DEU", "DE"), ("Germany", "DE"), ("Deutschland", "DE"),
     ("United States", "US"), ("USA", "US"), ("U.S.A.", "US"), ("UK", "GB"), ("England", "GB"),
     ("the Netherlands", "NL"), ("  france ", "FR"), ("Atlantis", None), ("", None), (None, None)],
)
def test_given_country_spelling_then_iso_alpha2(text, code) -> None:
    assert normalise_country(text) == code


def test_given_country_column_then_each_distinct_spelling_normalised() -> None:
    result = normalise_countries(pd.Series(["Germany", None, "UK", "Germany", "nowhere"]))
    assert as_list(result) == ["DE", None, "GB", "DE", None]


def test_given_vendor_slugs_then_display_names() -> None:
    assert canonical_technology("google_analytics") == "Google Analytics"
    assert canonical_technology("aws") == "AWS"
    assert canonical_technology("hubspot") == "HubSpot"
    assert canonical_technology("new_relic") == "New Relic"
    assert canonical_technology("NetSuite") == "NetSuite"
    assert canonical_technology("  ") is None
    assert join_technologies(["b", "a", "b", " "]) == "a;b"
    assert join_technologies([]) is None


def test_given_records_then_frame_has_exact_schema_and_derived_bands() -> None:
    frame = records_to_frame(
        [CompanyRecord("a.com", employee_count=60, annual_revenue_usd=2e7, technologies=("y", "x"))]
    )
    assert list(frame.columns) == list(RECORD_COLUMNS)
    row = frame.iloc[0]
    assert (row["employee_band"], row["revenue_band"], row["technologies"]) == ("51-200", "10M-50M", "x;y")
    assert list(empty_records().columns) == list(RECORD_COLUMNS)
    assert empty_records()["employee_count"].dtype == "float64"


@pytest.mark.parametrize(
    ("text", "value"),
    [("51-250", 150.5), ("1K-5K", 3000.0), ("10K+", 10_000.0), ("$1M-$10M", 5_500_000.0),
     ("$10B+", 1e10), ("about ten", None), (None, None), ("", None)],
)
def test_given_vendor_range_then_midpoint_or_lower_bound(text, value) -> None:
    assert parse_range(text) == value


def test_given_clearbit_company_then_normalised_record() -> None:
    record = parse_company(company_body("acme.com", name="Acme"), "acme.com", source="api", fetched_at=7)
    assert record.status == "matched"
    assert (record.name, record.industry, record.country_code) == ("Acme", "Software", "DE")
    assert (record.employee_count, record.annual_revenue_usd, record.founded_year) == (250, 3.0e7, 2010)
    assert record.technologies == ("Google Analytics", "AWS")
    assert (record.source, record.fetched_at, record.confidence) == ("api", 7, 1.0)


def test_given_missing_exact_metrics_then_ranges_are_used() -> None:
    body = company_body("acme.com", metrics={"employees": None, "employeesRange": "11-50",
                                             "annualRevenue": None, "estimatedAnnualRevenue": "$1M-$10M"})
    body["geo"] = {"country": "France", "countryCode": None}
    record = parse_company(body, "acme.com", source="api", fetched_at=0)
    assert (record.employee_count, record.annual_revenue_usd, record.country_code) == (30.5, 5.5e6, "FR")


def test_given_other_canonical_domain_then_filed_under_asked_domain_with_lower_confidence() -> None:
    record = parse_company(company_body("acme-group.com"), "acme.com", source="api", fetched_at=0)
    assert record.domain == "acme.com"
    assert record.confidence == pytest.approx(0.8)


def test_given_non_object_payload_then_payload_error() -> None:
    with pytest.raises(PayloadError):
        parse_company(["not", "a", "company"], "acme.com", source="api", fetched_at=0)


def test_given_implausible_values_then_dropped() -> None:
    body = company_body("acme.com", foundedYear=42)
    body["metrics"] = {"employees": -5, "annualRevenue": float("inf")}
    record = parse_company(body, "acme.com", source="api", fetched_at=0)
    assert record.founded_year is None and record.employee_count is None
    assert record.annual_revenue_usd is None


def test_given_bad_settings_then_error_names_each_key() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings({"http": {"concurrency": 0}, "fuzzy_threshold": 120, "cache_ttl": 3})
    message = str(err.value)
    assert "enrichment.http.concurrency" in message
    assert "enrichment.fuzzy_threshold" in message
    assert "enrichment.cache_ttl" in message


def test_given_unknown_precedence_field_then_error_names_it() -> None:
    with pytest.raises(SettingsError, match="enrichment.precedence.*phone"):
        load_settings({"precedence": {"phone": "crm"}})


def test_given_valid_settings_then_precedence_and_ttls() -> None:
    settings = load_settings({"precedence": {"industry": "enrichment"}, "cache_ttl_days": 1,
                              "negative_ttl_days": 0.5})
    assert settings.precedence_for("industry") == "enrichment"
    assert settings.precedence_for("employees") == "crm"
    assert (settings.cache_ttl_ms, settings.negative_ttl_ms) == (86_400_000, 43_200_000)
    assert not math.isnan(settings.fuzzy_threshold)
