from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from leadflow.enrich.chain import ProviderChain
from leadflow.enrich.leads import enrich_leads
from leadflow.enrich.resolve import is_empty, resolve_field
from leadflow.enrich.settings import EnrichmentSettings
from leadflow.enrich.store import load_enrichment, store_and_read_back, store_enrichment
from leadflow.enrich.tables import LEAD_ENRICHMENT_COLUMNS

from enrich_fakes import as_list, make_companies, make_leads

NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)


# --- precedence (pure) ---------------------------------------------------------------------------
def test_given_crm_value_then_it_wins_unless_empty() -> None:
    crm = pd.Series(["Banking", None, "  ", "Retail"], dtype="str")
    enriched = pd.Series(["Software", "Software", "Media", None], dtype="str")
    sources = pd.Series(["reference", "api", "cache", None], dtype="str")
    value, source = resolve_field(crm, enriched, sources, "crm")
    assert as_list(value) == ["Banking", "Software", "Media", "Retail"]
    assert source.tolist() == ["crm", "api", "cache", "crm"]


def test_given_enrichment_precedence_then_found_values_replace_crm() -> None:
    crm = pd.Series([120.0, 50.0, np.nan])
    enriched = pd.Series([300.0, np.nan, np.nan])
    sources = pd.Series(["api", "api", None], dtype="str")
    value, source = resolve_field(crm, enriched, sources, "enrichment")
    assert as_list(value) == [300.0, 50.0, None]
    assert source.tolist() == ["api", "crm", "none"]


def test_given_values_then_blank_text_and_nan_count_as_empty() -> None:
    assert is_empty(pd.Series(["", " ", "x", None], dtype="str")).tolist() == [True, True, False, True]
    assert is_empty(pd.Series([0.0, np.nan])).tolist() == [False, True]


# --- enrich_leads ---------------------------------------------------------------------------------
@pytest.fixture
def chain(reference) -> ProviderChain:
    return ProviderChain([reference])


def _by_id(result) -> dict[str, dict]:
    return {row["record_id"]: row for row in result.frame.to_dict("records")}


def test_given_work_email_then_matched_by_domain_with_sources(chain) -> None:
    leads = make_leads([{"record_id": "1", "email": "ann@mail.acme.com", "industry": "Banking"}])
    result = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    row = _by_id(result)["1"]
    assert (row["email_domain"], row["company_domain"], row["domain_origin"]) == ("acme.com", "acme.com", "email")
    assert (row["company_matched"], row["match_method"], row["company_name"]) == (True, "domain", "Acme Inc")
    assert (row["industry"], row["industry_source"]) == ("Banking", "crm")
    assert (row["employees"], row["employees_source"], row["employee_band"]) == (120.0, "reference", "51-200")
    assert (row["country"], row["technologies"], row["founded_year"]) == ("US", "Salesforce;AWS", 2001.0)
    assert row["revenue_band"] == "10M-50M"


def test_given_free_mail_then_not_matched_by_domain() -> None:
    from leadflow.enrich.reference import ReferenceProvider

    # Even if the reference lists gmail.com, a free-mail address is no company evidence.
    reference = ReferenceProvider(pd.DataFrame({"domain": ["gmail.com"], "name": ["Google Mail"]}))
    leads = make_leads([{"record_id": "1", "email": "ann@gmail.com"},
                        {"record_id": "2", "email": "bob@mailinator.com"}])
    result = enrich_leads(leads, make_companies([]), ProviderChain([reference]), EnrichmentSettings(), NOW)
    rows = _by_id(result)
    assert rows["1"]["is_free_email"] and not rows["1"]["company_matched"]
    assert rows["2"]["is_disposable_email"] and not rows["2"]["is_free_email"]
    assert pd.isna(rows["1"]["company_domain"]) and rows["1"]["match_method"] == "none"


def test_given_free_mail_with_company_name_then_fuzzy_match_over_threshold(chain) -> None:
    leads = make_leads([
        {"record_id": "1", "email": "ann@gmail.com", "company_name": "Globex Corp"},
        {"record_id": "2", "email": "bob@gmail.com", "company_name": "Inittech"},
        {"record_id": "3", "email": "cy@gmail.com", "company_name": "Something Else Entirely"},
    ])
    strict = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(fuzzy_threshold=95), NOW)
    rows = _by_id(strict)
    assert (rows["1"]["match_method"], rows["1"]["company_domain"]) == ("name_fuzzy", "globex.co.uk")
    assert rows["1"]["match_confidence"] == pytest.approx(1.0)
    assert rows["2"]["match_method"] == "none" and rows["3"]["match_method"] == "none"
    loose = _by_id(enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(fuzzy_threshold=85), NOW))
    assert loose["2"]["company_domain"] == "initech.io"
    assert 0.85 <= loose["2"]["match_confidence"] < 1.0
    off = _by_id(enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(fuzzy_enabled=False), NOW))
    assert off["1"]["match_method"] == "none"


def test_given_crm_company_then_its_domain_and_values_come_first(chain) -> None:
    leads = make_leads([{"record_id": "1", "email": "ann@initech.io", "company_id": "c9", "website": "acme.com"}])
    companies = make_companies([{"company_id": "c9", "domain": "https://www.globex.co.uk", "employees": 7000,
                                 "country": "Deutschland", "technologies": "Oracle"}])
    row = _by_id(enrich_leads(leads, companies, chain, EnrichmentSettings(), NOW))["1"]
    assert (row["company_domain"], row["domain_origin"]) == ("globex.co.uk", "crm_company")
    assert (row["employees"], row["employees_source"]) == (7000.0, "crm")
    assert (row["country"], row["country_source"]) == ("DE", "crm")
    assert (row["technologies"], row["technologies_source"]) == ("Oracle", "crm")
    assert (row["industry"], row["industry_source"]) == ("Manufacturing", "reference")


def test_given_company_of_another_crm_then_not_joined(chain) -> None:
    leads = make_leads([{"record_id": "1", "company_id": "c1", "crm": "salesforce"}])
    companies = make_companies([{"company_id": "c1", "domain": "acme.com", "crm": "hubspot"}])
    row = _by_id(enrich_leads(leads, companies, chain, EnrichmentSettings(), NOW))["1"]
    assert not row["company_matched"]


def test_given_website_only_then_matched_by_website(chain) -> None:
    leads = make_leads([{"record_id": "1", "email": "a@yahoo.com", "website": "HTTPS://Initech.io/contact"}])
    row = _by_id(enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW))["1"]
    assert (row["company_domain"], row["domain_origin"], row["match_method"]) == ("initech.io", "website", "domain")


def test_given_enrichment_precedence_setting_then_enriched_industry_wins(chain) -> None:
    leads = make_leads([{"record_id": "1", "email": "a@acme.com", "industry": "Banking", "employees": 5}])
    settings = EnrichmentSettings(precedence={"industry": "enrichment"})
    row = _by_id(enrich_leads(leads, make_companies([]), chain, settings, NOW))["1"]
    assert (row["industry"], row["industry_source"]) == ("Software", "reference")
    assert (row["employees"], row["employees_source"]) == (5.0, "crm")


def test_given_same_domain_many_leads_then_one_lookup() -> None:
    class Recorder:
        name, remote = "api", True

        def __init__(self) -> None:
            self.asked: list[str] = []

        def lookup(self, domains, now_ms):
            from leadflow.enrich.providers import records_to_frame

            self.asked.extend(domains)
            return records_to_frame([])

    recorder = Recorder()
    leads = make_leads([{"record_id": str(i), "email": f"p{i}@Sub.Example.com"} for i in range(50)])
    enrich_leads(leads, make_companies([]), ProviderChain([recorder]), EnrichmentSettings(), NOW)
    assert recorder.asked == ["example.com"]


def test_given_mixed_leads_then_coverage_figures(chain) -> None:
    leads = make_leads([
        {"record_id": "1", "email": "a@acme.com", "industry": "Banking"},
        {"record_id": "2", "email": "b@gmail.com", "company_name": "Globex"},
        {"record_id": "3", "email": "c@unknown-company.com"},
        {"record_id": "4", "email": "d@mailinator.com"},
    ])
    result = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    cov = result.coverage
    assert (cov["leads"], cov["company_matched"], cov["match_rate"]) == (4, 2, 0.5)
    assert cov["match_method"] == {"domain": 1, "name_fuzzy": 1, "none": 2}
    assert cov["company_source"] == {"reference": 2}
    assert (cov["free_email"], cov["disposable_email"], cov["enriched"]) == (1, 1, 2)
    assert cov["fields"]["industry"] == {"filled": 0.5, "sources": {"crm": 1, "none": 2, "reference": 1}}
    assert cov["fields"]["technologies"]["filled"] == 0.5
    assert cov["lookups"]["domains"] == 3
    assert result.summary()["enriched"] == 2
    json.dumps(result.summary())  # JSON-ready


def test_given_empty_leads_then_empty_frame_with_all_columns(chain) -> None:
    result = enrich_leads(make_leads([]), make_companies([]), chain, EnrichmentSettings(), NOW)
    assert list(result.frame.columns) == ["crm", "record_id", *LEAD_ENRICHMENT_COLUMNS]
    assert result.coverage["leads"] == 0 and result.coverage["match_rate"] == 0.0


# --- store / load -----------------------------------------------------------------------------------
def test_given_result_then_stored_and_loaded_back_typed(warehouse, chain) -> None:
    leads = make_leads([{"record_id": str(i), "email": e} for i, e in
                        enumerate(["a@acme.com", "b@gmail.com", "c@initech.io"])])
    result = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    assert store_enrichment(warehouse, "hubspot", "run-1", result.frame, now_ms=5) == 3
    loaded = load_enrichment(warehouse, "hubspot").sort_values("record_id").reset_index(drop=True)
    assert loaded["is_free_email"].dtype == bool and loaded["employees"].dtype == "float64"
    expected = result.frame.sort_values("record_id").reset_index(drop=True)
    for column in LEAD_ENRICHMENT_COLUMNS:
        assert as_list(loaded[column]) == as_list(expected[column]), column
    assert set(loaded["run_id"]) == {"run-1"} and set(loaded["enriched_at"]) == {5}


def test_the_rows_kept_when_stored_are_the_rows_read_back(warehouse, chain) -> None:
    # Matched, free-mail, unmatched and empty leads: text, numbers and flags with gaps in each.
    leads = make_leads([{"record_id": str(i), "email": e, "website": w} for i, (e, w) in enumerate(
        [("a@acme.com", None), ("b@gmail.com", "https://initech.io"), ("c@nowhere.example", None), (None, None)])])
    result = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    store_enrichment(warehouse, "hubspot", "run-0", result.frame.iloc[:1], now_ms=1)  # an earlier row, upserted
    kept = store_and_read_back(warehouse, "hubspot", "run-1", result.frame, now_ms=5)
    loaded = load_enrichment(warehouse, "hubspot")
    assert len(kept) == 4 and kept["run_id"].eq("run-1").all()
    pd.testing.assert_frame_equal(kept.sort_values("record_id").reset_index(drop=True),
                                  loaded.sort_values("record_id").reset_index(drop=True))
    nothing = store_and_read_back(warehouse, "salesforce", "run-1", result.frame, now_ms=5)
    pd.testing.assert_frame_equal(nothing, load_enrichment(warehouse, "salesforce"), check_index_type=False)


def test_given_rerun_then_upsert_replaces_rows(warehouse, chain) -> None:
    leads = make_leads([{"record_id": "1", "email": "a@acme.com"}])
    first = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    store_enrichment(warehouse, "hubspot", "run-1", first.frame)
    leads.loc[0, "email"] = "a@initech.io"
    second = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    store_enrichment(warehouse, "hubspot", "run-2", second.frame)
    loaded = load_enrichment(warehouse, "hubspot")
    assert len(loaded) == 1
    assert (loaded.loc[0, "company_domain"], loaded.loc[0, "run_id"]) == ("initech.io", "run-2")
    assert load_enrichment(warehouse, "salesforce").empty


def test_given_more_rows_than_one_statement_allows_then_all_written(sqlite_warehouse, chain) -> None:
    # 2,000 rows x 30 columns = 60,000 parameters: above SQLite's 32,766 per statement.
    leads = make_leads([{"record_id": str(i), "email": f"u{i}@acme.com"} for i in range(2_000)])
    result = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    assert store_enrichment(sqlite_warehouse, "hubspot", "run-1", result.frame) == 2_000
    assert len(load_enrichment(sqlite_warehouse, "hubspot")) == 2_000


def test_given_chain_reused_then_lookup_counts_are_per_run(chain) -> None:
    leads = make_leads([{"record_id": "1", "email": "a@acme.com"}, {"record_id": "2", "email": "b@x-unknown.com"}])
    first = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    second = enrich_leads(leads, make_companies([]), chain, EnrichmentSettings(), NOW)
    assert first.coverage["lookups"] == second.coverage["lookups"] == {
        "domains": 2, "reference_asked": 2, "reference_matched": 1}
