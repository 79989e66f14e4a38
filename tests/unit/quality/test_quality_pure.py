"""Pure helpers of the quality gate: settings, coercion, email syntax, PSI (no GX)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import given, settings as hsettings
from hypothesis import strategies as st

from leadflow.quality import coerce
from leadflow.quality.emails import email_syntax_valid, fast_accept
from leadflow.quality.psi import fixed_edges, population_stability_index, psi_from_shares, shares
from leadflow.quality.settings import (
    DEFAULT_CONFIG_PATH,
    QualitySettings,
    SettingsError,
    load_settings,
    load_settings_file,
)


# --- settings -------------------------------------------------------------------------------


def test_bundled_yaml_matches_the_code_defaults():
    assert load_settings_file(DEFAULT_CONFIG_PATH) == QualitySettings()


def test_bad_keys_are_named_by_their_dotted_path():
    with pytest.raises(SettingsError) as err:
        load_settings({"rows": {"max_text_length": {"nickname": 5},
                                "number_ranges": {"employees": {"min": 5, "max": 1}}},
                       "batch": {"max_quarantine_share": 2}, "typo": 1})
    text = str(err.value)
    assert "quality.rows.max_text_length: " in text and "nickname" in text
    assert "quality.rows.number_ranges.employees: " in text
    assert "quality.batch.max_quarantine_share: " in text
    assert "quality.typo: " in text


def test_partial_overrides_keep_the_other_defaults():
    s = load_settings({"rows": {"max_text_length": {"email": 100}}})
    assert s.rows.max_text_length["email"] == 100
    assert s.rows.max_text_length["form_comments"] == 4000


def test_a_settings_file_without_the_quality_key_is_rejected(tmp_path: Path):
    path = tmp_path / "q.yaml"
    path.write_text("rows: {}\n")
    with pytest.raises(SettingsError, match="unknown top-level key"):
        load_settings_file(path)


# --- coercion -------------------------------------------------------------------------------


def test_text_accepts_numbers_and_flags_containers():
    result = coerce.text(pd.Series(["a", "  ", None, 5, True, ["x"], {"k": 1}, b"z"], dtype=object))
    assert [None if pd.isna(v) else v for v in result.values.tolist()[:5]] == [
        "a", None, None, "5", "true"]
    assert result.type_error.tolist() == [False] * 5 + [True] * 3


def test_numbers_parse_numeric_text_and_flag_words():
    result = coerce.number(pd.Series(["12", " 3.5 ", "abc", None, True, -4], dtype=object))
    values = result.values.tolist()
    assert values[:2] == [12.0, 3.5] and math.isnan(values[2]) and values[5] == -4.0
    assert result.type_error.tolist() == [False, False, True, False, True, False]


def test_timestamps_accept_ms_datetime64_and_iso_text():
    ms = coerce.timestamp_ms(pd.Series([1.7e12, np.nan]))
    assert ms.values.tolist()[0] == 1.7e12 and not ms.type_error.any()
    dt = coerce.timestamp_ms(pd.Series(pd.to_datetime(["2024-01-01T00:00:00Z", None], utc=True)))
    assert dt.values.tolist()[0] == 1704067200000.0 and math.isnan(dt.values.tolist()[1])
    text = coerce.timestamp_ms(pd.Series(["2024-01-01T01:00:00+01:00", "9999-12-31", "soon", None]))
    assert text.values.tolist()[0] == 1704067200000.0
    assert text.values.tolist()[1] > 2.5e14  # year 9999 parses; the range check rejects it
    assert text.type_error.tolist() == [False, False, True, False]


def test_boolean_flags_reject_words():
    result = coerce.boolean(pd.Series([True, None, "yes", 2, "maybe", [1]], dtype=object))
    assert result.type_error.tolist() == [False, False, False, True, True, True]


# --- email syntax ---------------------------------------------------------------------------


def _library_accepts(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


@pytest.mark.parametrize("value,valid", [
    ("ann@acme.com", True), ("A.B+tag@sub.acme.co.uk", True), ("josé@bücher.de", True),
    ("plain", False), ("a@b", False), ("a..b@acme.com", False), ("a@-acme.com", False),
    ("a@printer.local", False), ("a@acme.c1", False), (" a@acme.com", False),
    ("x" * 300 + "@acme.com", False),
])
def test_email_syntax_agrees_with_email_validator(value, valid):
    assert email_syntax_valid(pd.Series([value], dtype="str")).tolist() == [valid]
    assert _library_accepts(value) == valid


@hsettings(max_examples=300, deadline=None)
@given(st.one_of(
    st.from_regex(r"[A-Za-z0-9_.+\-]{1,70}@[A-Za-z0-9.\-]{1,70}\.[A-Za-z]{1,5}", fullmatch=True),
    st.text(max_size=40),
))
def test_fast_path_only_accepts_what_email_validator_accepts(value):
    if fast_accept(pd.Series([value], dtype="str"))[0]:
        assert _library_accepts(value), value


# --- PSI ------------------------------------------------------------------------------------


def test_psi_of_identical_distributions_is_zero():
    values = np.linspace(0, 100, 1001)
    assert population_stability_index(values, values, edges=fixed_edges(0, 100, 10)) == pytest.approx(0)


def test_psi_of_a_known_two_bin_shift():
    # 50/50 -> 25/75: (0.25-0.5)ln(0.5) + (0.75-0.5)ln(1.5)
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)
    assert psi_from_shares([0.5, 0.5], [0.25, 0.75]) == pytest.approx(expected)
    before = np.array([10.0] * 50 + [90.0] * 50)
    after = np.array([10.0] * 25 + [90.0] * 75)
    edges = np.array([-np.inf, 50.0, np.inf])
    assert population_stability_index(before, after, edges=edges) == pytest.approx(expected)


def test_psi_flags_a_large_shift_and_not_noise():
    rng = np.random.default_rng(7)
    base = rng.normal(50, 10, 20_000).clip(0, 100)
    same = rng.normal(50, 10, 20_000).clip(0, 100)
    moved = rng.normal(70, 10, 20_000).clip(0, 100)
    edges = fixed_edges(0, 100, 10)
    assert population_stability_index(base, same, edges=edges) < 0.01
    assert population_stability_index(base, moved, edges=edges) > 0.25


def test_shares_put_out_of_range_values_in_the_outer_bins_and_ignore_nan():
    # Bins are right-closed: (-inf, 50] holds -5, 0 and 50; (50, inf) holds 100 and 150.
    got = shares([-5, 0, 50, 100, 150, np.nan], fixed_edges(0, 100, 2))
    assert got.tolist() == pytest.approx([0.6, 0.4])


def test_quantile_bins_are_used_without_edges():
    values = np.arange(1000, dtype=float)
    assert population_stability_index(values, values, bins=10) == pytest.approx(0)
