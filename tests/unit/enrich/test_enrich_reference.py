from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leadflow.sandbox.build_reference import main as build_main
from leadflow.sandbox.build_reference import reference_frame as sandbox_reference
from leadflow.enrich.reference import (
    BUNDLED_REFERENCE,
    ReferenceProvider,
    load_reference,
    normalise_company_name,
)

from enrich_fakes import as_list, reference_frame


def test_given_known_and_unknown_domains_then_only_known_are_answered(reference) -> None:
    found = reference.lookup(["globex.co.uk", "nobody.example", "acme.com"], now_ms=5)
    assert found["domain"].tolist() == ["globex.co.uk", "acme.com"]
    row = found.iloc[0]
    assert (row["status"], row["source"], row["country_code"], row["employee_band"]) == (
        "matched", "reference", "GB", "5001-10000")
    assert row["fetched_at"] == 1_000  # the file's time, not the lookup's


@pytest.mark.parametrize(
    ("name", "key"),
    [("ACME, Inc.", "acme"), ("Globex Corporation", "globex"), ("Initech GmbH & Co. KG", "initech"),
     ("Inc", "inc"), (None, ""), ("  ", "")],
)
def test_given_company_name_then_legal_forms_and_punctuation_dropped(name, key) -> None:
    assert normalise_company_name(name) == key


def test_given_names_then_exact_and_fuzzy_matches_over_threshold_only(reference) -> None:
    names = pd.Series(["Acme", "Globex Corp.", "Initech Systems", "Inittech", "Zorblax", None])
    domains, scores = reference.match_names(names, threshold=85)
    assert as_list(domains) == ["acme.com", "globex.co.uk", None, "initech.io", None, None]
    assert scores.iloc[0] == 100 and scores.iloc[1] == 100
    assert 85 <= scores.iloc[3] < 100


def test_given_higher_threshold_then_near_miss_rejected(reference) -> None:
    domains, _ = reference.match_names(pd.Series(["Inittech"]), threshold=95)
    assert as_list(domains) == [None]


def test_given_two_companies_with_one_name_then_the_larger_is_chosen(reference) -> None:
    domains, _ = reference.match_names(pd.Series(["Umbrella Pharma"]), threshold=90)
    assert as_list(domains) == ["umbrella.com"]


def test_given_user_csv_with_friendly_columns_then_normalised(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(
        "Website,Company,Employees,Annual_Revenue,Country\n"
        "https://www.Example.org/about,Example Org,12,,Germany\n"
        "not a domain,Broken,1,1,US\n"
        "example.org,Duplicate,99,,US\n"
    )
    provider = ReferenceProvider.from_path(path)
    assert len(provider) == 1
    row = provider.lookup(["example.org"], 0).iloc[0]
    assert (row["name"], row["employee_count"], row["country_code"]) == ("Example Org", 12.0, "DE")
    assert pd.isna(row["annual_revenue_usd"])


def test_given_parquet_file_then_same_records_as_csv(tmp_path: Path) -> None:
    frame = reference_frame()
    frame.to_parquet(tmp_path / "ref.parquet")
    frame.to_csv(tmp_path / "ref.csv", index=False)
    a = ReferenceProvider.from_path(tmp_path / "ref.parquet").lookup(["acme.com"], 0)
    b = ReferenceProvider.from_path(tmp_path / "ref.csv").lookup(["acme.com"], 0)
    cols = ["domain", "name", "employee_count", "technologies", "country_code"]
    assert a[cols].to_dict("records") == b[cols].to_dict("records")


def test_given_missing_file_then_error_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_reference(tmp_path / "nope.csv")


def test_given_file_without_domain_column_then_error() -> None:
    with pytest.raises(ValueError, match="domain"):
        ReferenceProvider(pd.DataFrame({"name": ["x"]}))


def test_given_replaced_file_then_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "ref.csv"
    reference_frame().iloc[:1].to_csv(path, index=False)
    first = load_reference(path)
    assert load_reference(path) is first
    reference_frame().to_csv(path, index=False)
    import os

    os.utime(path, ns=(1, 10**18))
    assert len(load_reference(path)) == len(reference_frame())


def test_given_a_file_being_parsed_then_a_second_caller_waits_for_it_instead_of_parsing_again(
        tmp_path: Path, monkeypatch) -> None:
    import threading

    from leadflow.enrich import reference

    path = tmp_path / "ref.csv"
    reference_frame().to_csv(path, index=False)
    parses, second = [], []
    real = ReferenceProvider.from_path

    def parse(file):
        parses.append(file)
        # Mid-parse, another thread asks for the same file: it cannot start a parse of its own.
        caller = threading.Thread(target=lambda: second.append(reference._LOADING.acquire(blocking=False)))
        caller.start()
        caller.join()
        return real(file)

    monkeypatch.setattr(reference.ReferenceProvider, "from_path", staticmethod(parse))
    first = load_reference(path)
    assert second == [False] and load_reference(path) is first and len(parses) == 1


def test_given_seed_then_reference_is_deterministic_and_written(tmp_path: Path) -> None:
    first = sandbox_reference(seed=7, companies=300)
    again = sandbox_reference(seed=7, companies=300)
    pd.testing.assert_frame_equal(first, again)
    out = tmp_path / "companies.csv"
    assert build_main(["--seed", "7", "--companies", "300", "--out", str(out)]) == 0
    provider = ReferenceProvider.from_path(out)
    assert len(provider) == 300
    assert provider.lookup([first["domain"].iloc[0]], 0)["name"].iloc[0] == first["name"].iloc[0]


def test_given_bundled_file_then_it_covers_the_default_sandbox_world() -> None:
    universe = sandbox_reference(seed=42, companies=2_000)
    provider = load_reference()
    found = provider.lookup(universe["domain"].tolist(), 0)
    assert len(found) == len(universe)
    assert BUNDLED_REFERENCE.exists()
