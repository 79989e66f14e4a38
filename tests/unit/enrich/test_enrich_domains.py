from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.enrich.domains import (
    PublicSuffixes,
    _extractor,
    domain_flags,
    email_domain_flags,
    extract_domain,
    extract_domains,
    public_suffixes,
)

from enrich_fakes import as_list


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jane@example.com", "example.com"),
        ("jane@sub.example.co.uk", "example.co.uk"),
        ("JANE@Mail.EXAMPLE.COM", "example.com"),
        ("mailto:jane@example.com", "example.com"),
        ("MAILTO:jane@example.com?subject=hi", "example.com"),
        ("jane@example.com.", "example.com"),
        ("www.example.com..", "example.com"),
        ("https://www.example.com/about?x=1#top", "example.com"),
        ("http://example.com:8080/path", "example.com"),
        ("example.com:443", "example.com"),
        ("https://user:pw@shop.example.de/", "example.de"),
        ("  www.example.org  ", "example.org"),
        ("Jane Doe <jane@acme.io>", "acme.io"),
        ("medium.com/@acme", "medium.com"),
        ("info@bücher.de", "xn--bcher-kva.de"),
        ("https://BÜCHER.de/katalog", "xn--bcher-kva.de"),
        ("x@xn--bcher-kva.de", "xn--bcher-kva.de"),
        ("foo.city.kawasaki.jp", "city.kawasaki.jp"),
        ("a.b.foo.ck", "b.foo.ck"),
    ],
)
def test_given_email_or_website_then_registrable_domain(value: str, expected: str) -> None:
    assert extract_domain(value) == expected


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "garbage", "localhost", "127.0.0.1", "[::1]", "co.uk", "jane@", "a@@",
     "example..com", "-bad-.com", "jane@host.invalidtld", "http://", 42],
)
def test_given_no_usable_host_then_none(value) -> None:
    assert extract_domain(value) is None


def test_given_unicode_and_punycode_spellings_then_same_key() -> None:
    assert extract_domain("münchen.de") == extract_domain("xn--mnchen-3ya.de") == "xn--mnchen-3ya.de"


def test_given_series_then_vectorised_result_is_aligned_and_typed() -> None:
    values = pd.Series(
        ["a@Example.com", None, "https://www.acme.io/x", "garbage", float("nan"), "b@example.com"],
        index=[10, 11, 12, 13, 14, 15],
        dtype=object,
    )
    result = extract_domains(values)
    assert list(result.index) == [10, 11, 12, 13, 14, 15]
    assert result.dtype == "str"
    assert as_list(result) == ["example.com", None, "acme.io", None, None, "example.com"]


def test_given_empty_or_all_missing_input_then_empty_or_missing_output() -> None:
    assert extract_domains(pd.Series([], dtype="str")).tolist() == []
    assert as_list(extract_domains(pd.Series([None, None], dtype="str"))) == [None, None]


_hosty = st.text(alphabet="abcXYZ019.-@/:?#_ü<> ", min_size=0, max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), _hosty, st.sampled_from(["a@b.co.uk", "https://x.y.com/@z"])),
                max_size=20))
def test_given_any_text_then_vectorised_equals_scalar(values) -> None:
    vector = as_list(extract_domains(pd.Series(values, dtype=object)))
    assert vector == [extract_domain(v) for v in values]


def test_given_public_suffix_rules_then_matcher_agrees_with_tldextract() -> None:
    extractor = _extractor()
    suffixes = public_suffixes()
    rules = [r.lstrip("!*.") for r in extractor.tlds if r.isascii()]
    checked = 0
    for rule in rules[::7]:  # a spread sample keeps the test fast
        for host in (rule, f"shop.{rule}", f"a.b.{rule}", f"www.city.{rule}"):
            want = extractor(host).top_domain_under_public_suffix or None
            assert suffixes.registrable(host) == want, host
            checked += 1
    assert checked > 3000


def test_given_wildcard_and_exception_rules_then_psl_semantics() -> None:
    rules = PublicSuffixes(["com", "*.ck", "!www.ck", "uk", "co.uk"])
    assert rules.registrable("x.y.example.co.uk") == "example.co.uk"
    assert rules.registrable("a.b.foo.ck") == "b.foo.ck"  # foo.ck is a suffix (wildcard)
    assert rules.registrable("www.ck") == "www.ck"  # exception: registrable itself
    assert rules.registrable("co.uk") is None
    assert rules.registrable("example.unknown") is None


def test_given_free_and_disposable_domains_then_flags() -> None:
    domains = pd.Series(["gmail.com", "mailinator.com", "acme.com", None, "yahoo.co.uk"])
    is_free, is_disposable = domain_flags(domains)
    assert is_free.tolist() == [True, False, False, False, True]
    assert is_disposable.tolist() == [False, True, False, False, False]


def test_given_email_column_then_domain_and_flags_frame_keeps_index() -> None:
    emails = pd.Series(["Ann@GMail.com", "bob@acme.com", None], index=["x", "y", "z"])
    frame = email_domain_flags(emails)
    assert list(frame.index) == ["x", "y", "z"]
    assert as_list(frame["email_domain"]) == ["gmail.com", "acme.com", None]
    assert frame["is_free_email"].tolist() == [True, False, False]
    assert frame["is_disposable_email"].tolist() == [False, False, False]
