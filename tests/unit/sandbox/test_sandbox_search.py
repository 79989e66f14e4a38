from __future__ import annotations

import json

import pytest

from leadflow.sandbox.errors import HubSpotError
from leadflow.sandbox.properties import parse_time_ms
from leadflow.sandbox.search import (
    MAX_BODY_CHARS,
    check_body_size,
    compile_search,
    next_after,
    parse_search_request,
)


def _f(prop, op, value=None, **kw):
    flt = {"propertyName": prop, "operator": op}
    if value is not None:
        flt["value"] = value
    flt.update(kw)
    return flt


def _search(store, body):
    req = parse_search_request(body)
    compiled = compile_search("contacts", req, store.properties("contacts"))
    total, rows = store.search("contacts", compiled.where_sql, compiled.params, compiled.order_sql, req.limit,
                               req.after)
    return total, [r.id for r in rows]


@pytest.fixture
def people(add_contacts, t0_ms):
    base = t0_ms
    ids = add_contacts([
        {"email": "Ada@Example.com", "firstname": "Ada", "jobtitle": "VP Sales", "lifecyclestage": "lead",
         "hs_analytics_num_page_views": 12, "demo_requested_at": base - 1000, "_modified": base},
        {"email": "bob@gmail.com", "firstname": "Bob", "jobtitle": "Student", "lifecyclestage": "subscriber",
         "hs_analytics_num_page_views": 2, "_modified": base},
        {"email": "cy@example.com", "firstname": "Cy", "lifecyclestage": "marketingqualifiedlead",
         "hs_analytics_num_page_views": 100, "hs_lead_status": "OPEN", "_modified": base + 5000},
        {"email": "di@other.io", "firstname": "Di", "jobtitle": "Head of Marketing",
         "hs_analytics_num_page_views": 9, "_modified": base - 5000},
    ])
    return dict(zip(["ada", "bob", "cy", "di"], ids))


def test_eq_on_strings_is_case_insensitive(store, people):
    assert _search(store, {"filterGroups": [{"filters": [_f("email", "EQ", "ADA@example.COM")]}]})[1] == [people["ada"]]
    assert _search(store, {"filterGroups": [{"filters": [_f("firstname", "EQ", "cy")]}]})[1] == [people["cy"]]


def test_numbers_compare_numerically_not_as_text(store, people):
    # as text "100" < "12" < "2" < "9"; numerically 9 < 12 < 100
    _, ids = _search(store, {"filterGroups": [{"filters": [_f("hs_analytics_num_page_views", "GT", "9")]}],
                             "sorts": [{"propertyName": "hs_analytics_num_page_views", "direction": "ASCENDING"}]})
    assert ids == [people["ada"], people["cy"]]


def test_datetime_filters_take_epoch_ms_or_iso(store, people, t0_ms):
    base = t0_ms
    by_ms = _search(store, {"filterGroups": [{"filters": [_f("lastmodifieddate", "GTE", str(base))]}]})[1]
    iso = "2023-11-14T22:13:20.000Z"
    assert parse_time_ms(iso) == base
    by_iso = _search(store, {"filterGroups": [{"filters": [_f("lastmodifieddate", "GTE", iso)]}]})[1]
    assert by_ms == by_iso == [people["ada"], people["bob"], people["cy"]]
    between = _search(store, {"filterGroups": [{"filters": [
        _f("lastmodifieddate", "BETWEEN", str(base - 5000), highValue=str(base))]}]})[1]
    assert between == [people["ada"], people["bob"], people["di"]]


def test_groups_are_ored_and_filters_in_a_group_anded(store, people):
    body = {"filterGroups": [
        {"filters": [_f("lifecyclestage", "EQ", "lead"), _f("hs_analytics_num_page_views", "GT", "10")]},
        {"filters": [_f("firstname", "EQ", "di")]},
    ]}
    assert _search(store, body)[1] == [people["ada"], people["di"]]


def test_in_on_string_property_needs_lower_case_values(store, people):
    # HubSpot documents that IN values must be lower case for string properties.
    assert _search(store, {"filterGroups": [{"filters": [_f("firstname", "IN", values=["ada", "bob"])]}]})[1] == [
        people["ada"], people["bob"]]
    assert _search(store, {"filterGroups": [{"filters": [_f("firstname", "IN", values=["Ada"])]}]})[1] == []
    # enumerations compare case-insensitively
    assert _search(store, {"filterGroups": [{"filters": [_f("hs_lead_status", "IN", values=["open"])]}]})[1] == [
        people["cy"]]


def test_neq_and_not_in_include_records_without_the_property(store, people):
    assert _search(store, {"filterGroups": [{"filters": [_f("jobtitle", "NEQ", "student")]}]})[1] == [
        people["ada"], people["cy"], people["di"]]
    assert _search(store, {"filterGroups": [{"filters": [_f("lifecyclestage", "NOT_IN", values=["lead"])]}]})[1] == [
        people["bob"], people["cy"], people["di"]]


def test_has_property_and_not_has_property(store, people):
    assert _search(store, {"filterGroups": [{"filters": [_f("demo_requested_at", "HAS_PROPERTY")]}]})[1] == [
        people["ada"]]
    assert _search(store, {"filterGroups": [{"filters": [_f("jobtitle", "NOT_HAS_PROPERTY")]}]})[1] == [people["cy"]]


def test_contains_token_matches_whole_tokens_and_wildcards(store, people):
    assert _search(store, {"filterGroups": [{"filters": [_f("jobtitle", "CONTAINS_TOKEN", "marketing")]}]})[1] == [
        people["di"]]
    assert _search(store, {"filterGroups": [{"filters": [_f("jobtitle", "CONTAINS_TOKEN", "market")]}]})[1] == []
    assert _search(store, {"filterGroups": [{"filters": [_f("jobtitle", "CONTAINS_TOKEN", "mark*")]}]})[1] == [
        people["di"]]
    assert _search(store, {"filterGroups": [{"filters": [_f("email", "CONTAINS_TOKEN", "example.com")]}]})[1] == [
        people["ada"], people["cy"]]


def test_sort_ties_are_broken_by_object_id_ascending_in_both_directions(store, people):
    asc = _search(store, {"sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}], "limit": 10})[1]
    desc = _search(store, {"sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}], "limit": 10})[1]
    assert asc == [people["di"], people["ada"], people["bob"], people["cy"]]
    assert desc == [people["cy"], people["ada"], people["bob"], people["di"]]


def test_sdk_style_string_sorts_are_understood(store, people):
    assert _search(store, {"sorts": ["-hs_analytics_num_page_views"], "limit": 1})[1] == [people["cy"]]


def test_empty_values_sort_last(store, people):
    ids = _search(store, {"sorts": [{"propertyName": "jobtitle", "direction": "DESCENDING"}]})[1]
    assert ids[-1] == people["cy"]


def test_paging_with_after_walks_every_result_once(store, add_contacts):
    add_contacts([{"email": f"p{i}@x.com", "_modified": 1000 + i // 3} for i in range(25)])
    seen, after = [], "0"
    while after is not None:
        body = {"sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}], "limit": 7, "after": after}
        req = parse_search_request(body)
        total, ids = _search(store, body)
        seen += ids
        after = next_after(req, total, len(ids))
    assert seen == sorted(seen) and len(seen) == 25 == len(set(seen))


@pytest.mark.parametrize("body, fragment", [
    ({"filterGroups": [{"filters": []}] * 6}, "Too many filter groups"),
    ({"filterGroups": [{"filters": [_f("email", "HAS_PROPERTY")] * 7}]}, "Too many filters in filterGroups"),
    ({"filterGroups": [{"filters": [_f("email", "HAS_PROPERTY")] * 5}] * 4}, "Too many filters: 20"),
    ({"limit": 201}, "limit must be between 1 and 200"),
    ({"after": "9900", "limit": 101}, "Paging past 10000"),
    ({"after": "10000", "limit": 1}, "Paging past 10000"),
    ({"sorts": ["a", "b"]}, "Only one sort"),
    ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]}, "LIKE"),
    ({"filterGroups": [{"filters": [_f("email", "IN")]}]}, "values"),
    ({"filterGroups": [{"filters": [_f("email", "BETWEEN", "a")]}]}, "highValue"),
    ({"after": "abc"}, "after must be an integer"),
])
def test_invalid_requests_are_rejected_with_400_validation_error(body, fragment):
    with pytest.raises(HubSpotError) as err:
        parse_search_request(body)
    assert err.value.status_code == 400 and err.value.category == "VALIDATION_ERROR"
    assert fragment in err.value.message


def test_last_page_inside_the_cap_is_allowed():
    req = parse_search_request({"after": "9800", "limit": 200})
    assert (req.after, req.limit) == (9800, 200)


def test_unknown_property_or_bad_value_is_rejected_at_compile_time(store):
    for flt in (_f("nope", "EQ", "x"), _f("hs_analytics_num_page_views", "EQ", "many"),
                _f("lastmodifieddate", "GT", "yesterday")):
        with pytest.raises(HubSpotError) as err:
            compile_search("contacts", parse_search_request({"filterGroups": [{"filters": [flt]}]}),
                           store.properties("contacts"))
        assert err.value.status_code == 400


def test_body_longer_than_3000_characters_is_rejected():
    check_body_size(b"x" * MAX_BODY_CHARS)
    with pytest.raises(HubSpotError, match="3000 characters"):
        check_body_size(json.dumps({"query": "y" * MAX_BODY_CHARS}).encode())


def test_search_below_an_id_counts_its_total_on_the_id_index_and_pages_by_id(store):
    req = parse_search_request({"filterGroups": [{"filters": [_f("hs_object_id", "LT", "5000")]}],
                                "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}],
                                "limit": 200})
    compiled = compile_search("contacts", req, store.properties("contacts"))
    counted = " ".join(store.explain("contacts", compiled.where_sql, compiled.params, compiled.order_sql, count=True))
    paged = " ".join(store.explain("contacts", compiled.where_sql, compiled.params, compiled.order_sql))
    assert "ix_contacts_live" in counted and "id<" in counted.replace(" ", "")
    assert "TEMP B-TREE" not in paged


def test_cursor_search_uses_the_modified_index(store):
    req = parse_search_request({"filterGroups": [{"filters": [_f("lastmodifieddate", "GTE", "0")]}],
                                "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
                                "limit": 200})
    compiled = compile_search("contacts", req, store.properties("contacts"))
    plan = " ".join(store.explain("contacts", compiled.where_sql, compiled.params, compiled.order_sql))
    assert "ix_contacts_modified" in plan and "TEMP B-TREE" not in plan
