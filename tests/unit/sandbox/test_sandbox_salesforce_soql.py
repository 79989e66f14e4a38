"""The sandbox's SOQL subset: what it compiles, and what it rejects the way Salesforce does."""

from __future__ import annotations


import pytest

from leadflow.sandbox.salesforce_schema import (
    DeserializeProblem,
    WriteProblem,
    FIELDS_BY_NAME,
    format_datetime,
    from_wire,
    lead_id,
    parse_datetime,
    to_18,
)
from leadflow.sandbox.salesforce_soql import SoqlError, parse
from leadflow.sandbox.salesforce_store import SalesforceStore


def test_lead_ids_are_18_chars_sort_in_number_order_and_accept_15_char_form() -> None:
    ids = [lead_id(n) for n in (1, 2, 61, 62, 3843, 1_000_000)]
    assert all(len(i) == 18 and i.startswith("00Q") for i in ids)
    assert ids == sorted(ids)
    assert to_18(ids[3][:15]) == ids[3]
    with pytest.raises(ValueError):
        to_18("00Q-not-an-id")


def test_datetimes_round_trip_through_the_wire_format() -> None:
    ms = 1_735_689_600_123
    assert format_datetime(ms) == "2025-01-01T00:00:00.123+0000"
    assert parse_datetime("2025-01-01T00:00:00.123+0000") == ms
    assert parse_datetime("2025-01-01T01:00:00.123+01:00") == ms
    assert parse_datetime("2025-01-01") == ms - 123


def test_keyset_query_compiles_to_parameterised_sql() -> None:
    rid = lead_id(7)
    q = parse(f"SELECT Id, Email FROM Lead WHERE SystemModstamp > 2025-01-01T00:00:00Z OR "
              f"(SystemModstamp = 2025-01-01T00:00:00Z AND Id > '{rid}') ORDER BY SystemModstamp, Id LIMIT 10")
    assert [f.name for f in q.fields] == ["Id", "Email"]
    assert q.params == [1_735_689_600_000, 1_735_689_600_000, rid]
    assert "modstamp_ms > ?" in q.where_sql and "id > ?" in q.where_sql
    assert q.limit == 10


@pytest.mark.parametrize(
    ("soql", "code"),
    [
        ("SELECT Id FROM Lead WHERE IsDeleted = false AND Email = 'a' OR Email = 'b'", "MALFORMED_QUERY"),
        ("SELECT Foo FROM Lead", "INVALID_FIELD"),
        ("SELECT Id FROM Account", "INVALID_TYPE"),
        ("SELECT Id FROM Lead WHERE SystemModstamp > '2025-01-01T00:00:00Z'", "INVALID_FIELD"),
        ("SELECT COUNT() FROM Lead", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead LIMIT -1", "MALFORMED_QUERY"),
        ("SELECT Id FROM Lead ORDER BY Description", "INVALID_FIELD"),
        ("", "MALFORMED_QUERY"),
    ],
)
def test_unsupported_or_wrong_soql_is_rejected_with_salesforce_error_code(soql: str, code: str) -> None:
    with pytest.raises(SoqlError) as info:
        parse(soql)
    assert info.value.code == code


def _store_with(tmp_path, rows):
    store = SalesforceStore(tmp_path / "sf.db")
    store.insert(rows)
    return store


def test_compiled_queries_select_the_right_rows_case_insensitively(tmp_path) -> None:
    rows = [
        (lead_id(1), 0, 1000, 0, 0, '{"Email":"Ann@Example.com","Status":"Open"}'),
        (lead_id(2), 0, 1000, 0, 0, '{"Email":"bob@example.com","Page_Views__c":5}'),
        (lead_id(3), 0, 2000, 1, 0, '{"Email":"cy@example.com"}'),
    ]
    store = _store_with(tmp_path, rows)
    try:
        def ids(soql: str) -> list[str]:
            q = parse(soql)
            return store.select_ids(q.where_sql, q.params, q.order_sql, q.limit, q.offset)

        assert ids("SELECT Id FROM Lead WHERE Email = 'ann@example.com'") == [lead_id(1)]
        assert ids("SELECT Id FROM Lead WHERE Page_Views__c >= 5") == [lead_id(2)]
        assert ids("SELECT Id FROM Lead WHERE Status = null ORDER BY Id DESC") == [lead_id(3), lead_id(2)]
        assert ids(f"SELECT Id FROM Lead WHERE Id IN ('{lead_id(3)[:15]}', '{lead_id(1)}') ORDER BY Id") == [
            lead_id(1), lead_id(3)]
        assert ids("SELECT Id FROM Lead WHERE IsDeleted = true") == [lead_id(3)]
        assert ids("SELECT Id FROM Lead WHERE NOT Email LIKE 'bob%' ORDER BY SystemModstamp DESC, Id LIMIT 1") == [
            lead_id(3)]
    finally:
        store.close()


def test_writes_validate_like_salesforce() -> None:
    assert from_wire(FIELDS_BY_NAME["Leadflow_Score__c"], 87) == 87.0
    assert from_wire(FIELDS_BY_NAME["Leadflow_Scored_At__c"], "2025-01-01T00:00:00.000Z") == 1_735_689_600_000
    with pytest.raises(WriteProblem) as bad_pick:
        from_wire(FIELDS_BY_NAME["Status"], "Maybe Later")
    assert bad_pick.value.code == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    with pytest.raises(WriteProblem) as too_long:
        from_wire(FIELDS_BY_NAME["Leadflow_Grade__c"], "X" * 11)
    assert too_long.value.code == "STRING_TOO_LONG"
    with pytest.raises(DeserializeProblem):
        from_wire(FIELDS_BY_NAME["Leadflow_Score__c"], "eighty")
