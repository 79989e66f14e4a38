"""The Salesforce sandbox with people in it: who wrote what (LastModifiedById, LeadHistory), the
org's own Status values, merges, deletes, conversions and conditional updates, through the
service and store (no HTTP). Time is a FakeClock from conftest (starting 2023-11-14T22:13:20Z)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from leadflow.sandbox.faults import FaultInjector, FaultSpec, RequestFaults
from leadflow.sandbox.salesforce_schema import format_datetime, lead_id
from leadflow.sandbox.salesforce_service import SalesforceApiError, SalesforceService
from leadflow.sandbox.salesforce_soql import SoqlError, parse
from leadflow.sandbox.salesforce_store import SalesforceStore
from leadflow.sandbox.salesforce_users import IMPORT_USER_ID, INTEGRATION_USER_ID, UserDirectory

FakeClock = Any  # conftest's `clock` fixture: seconds that move only when a test says so
T0_MS = 1_700_000_000_000  # conftest's T0, 2023-11-14T22:13:20Z
HISTORY_SOQL = ("SELECT LeadId, Field, OldValue, NewValue, CreatedById, CreatedDate FROM LeadHistory "
                "WHERE LeadId IN ('{ids}') ORDER BY CreatedDate DESC")


def _lead(number: int, **fields: Any) -> tuple[str, int, int, int, int, str]:
    base = {"LastName": f"Person {number}", "Company": "Acme", "Status": "Open - Not Contacted",
            "CreatedById": IMPORT_USER_ID, "LastModifiedById": IMPORT_USER_ID, **fields}
    return (lead_id(number), T0_MS - 86_400_000, T0_MS - 3_600_000, 0, 0, json.dumps(base))


@pytest.fixture
def users() -> UserDirectory:
    return UserDirectory("00D5g000000LfLw!org-session", reps=2, admins=1)


@pytest.fixture
def sf_store(tmp_path: Path, clock: FakeClock) -> Iterator[SalesforceStore]:
    store = SalesforceStore(tmp_path / "sf.db", clock=clock)
    store.insert([_lead(n) for n in range(1, 6)])
    yield store
    store.close()


@pytest.fixture
def service(sf_store: SalesforceStore, clock: FakeClock, users: UserDirectory) -> SalesforceService:
    return SalesforceService(sf_store, faults=FaultInjector(FaultSpec.parse("off"), 0), clock=clock, users=users)


def _patch(service: SalesforceService, user: Any, *records: dict[str, Any], all_or_none: bool = False
           ) -> list[dict[str, Any]]:
    body = {"allOrNone": all_or_none, "records": [{"attributes": {"type": "Lead"}, **r} for r in records]}
    results, _ = service.update_collection(body, RequestFaults(), user)
    return results


def _query(service: SalesforceService, soql: str, *, all_rows: bool = False) -> list[dict[str, Any]]:
    return service.query(soql, all_rows=all_rows, version="59.0")["records"]


def test_users_have_reproducible_ids_and_sessions_derived_from_the_org_session(users: UserDirectory) -> None:
    again = UserDirectory("00D5g000000LfLw!org-session", reps=2, admins=1)
    other_org = UserDirectory("00D5g000000LfLw!another-session", reps=2, admins=1)
    assert [u.id for u in users.all] == [u.id for u in again.all]
    assert [u.token for u in users.all] == [u.token for u in again.all]
    assert users.integration.id == INTEGRATION_USER_ID and users.integration.token == "00D5g000000LfLw!org-session"
    assert all(len(u.id) == 18 and u.id.startswith("005") for u in users.all)
    assert len({u.id for u in users.all}) == len(users.all) == 5
    assert users.importer.token is None
    assert [u.token for u in users.people] != [u.token for u in other_org.people]
    rep = users.reps[0]
    assert users.by_token(rep.token) is rep and users.find(rep.username.upper()) is rep
    assert users.find(rep.id[:15]) is rep and users.by_token("guess") is None


def test_acting_user_defaults_to_integration_and_refuses_unknown_or_import_user(users: UserDirectory) -> None:
    assert users.acting(None) is users.integration
    assert users.acting(users.admins[0].username) is users.admins[0]
    with pytest.raises(ValueError, match="no user of the sandbox org"):
        users.acting("nobody@example.com")
    with pytest.raises(ValueError, match="cannot act"):
        users.acting(IMPORT_USER_ID)


def test_given_rep_updates_status_then_last_modified_by_is_rep_and_history_has_old_and_new(
        service: SalesforceService, users: UserDirectory, clock: FakeClock) -> None:
    rep, rid = users.reps[0], lead_id(1)
    clock.advance(60)
    results = _patch(service, rep, {"id": rid, "Status": "Working - Contacted", "FirstName": "Ann"})
    assert results == [{"id": rid, "success": True, "errors": []}]
    lead = _query(service, f"SELECT CreatedById, LastModifiedById, LastModifiedDate, SystemModstamp FROM Lead "
                           f"WHERE Id = '{rid}'")[0]
    moved = format_datetime(int(clock() * 1000))
    assert lead["CreatedById"] == IMPORT_USER_ID and lead["LastModifiedById"] == rep.id
    assert lead["LastModifiedDate"] == lead["SystemModstamp"] == moved
    history = _query(service, HISTORY_SOQL.format(ids=rid))
    # FirstName is not tracked: one row, for Status
    assert [(h["Field"], h["OldValue"], h["NewValue"], h["CreatedById"], h["CreatedDate"]) for h in history] == [
        ("Status", "Open - Not Contacted", "Working - Contacted", rep.id, moved)]
    assert history[0]["attributes"]["type"] == "LeadHistory"
    assert [w["user_id"] for w in service.store.writes()] == [rep.id, rep.id]


def test_history_rows_per_changed_tracked_field_newest_first_and_filtered_by_field(
        service: SalesforceService, users: UserDirectory, clock: FakeClock) -> None:
    rid = lead_id(2)
    clock.advance(10)
    _patch(service, users.integration, {"id": rid, "Leadflow_Score__c": 71, "Rating": "Warm",
                                        "Leadflow_Reasons__c": "fit: big company"})
    clock.advance(10)
    _patch(service, users.reps[1], {"id": rid, "Rating": "Hot", "Leadflow_Score__c": 71})  # score unchanged
    rows = _query(service, f"SELECT Field, OldValue, NewValue, CreatedById FROM LeadHistory WHERE LeadId IN "
                           f"('{rid}') AND Field IN ('Rating', 'Leadflow_Score__c') ORDER BY CreatedDate DESC")
    assert [(r["Field"], r["OldValue"], r["NewValue"], r["CreatedById"]) for r in rows][0] == (
        "Rating", "Warm", "Hot", users.reps[1].id)
    assert sorted((r["Field"], r["OldValue"], r["NewValue"]) for r in rows[1:]) == [
        ("Leadflow_Score__c", None, 71.0), ("Rating", None, "Warm")]
    # a long text area records that it changed, not its text (as Salesforce)
    reasons = _query(service, f"SELECT OldValue, NewValue FROM LeadHistory WHERE LeadId = '{rid}' AND "
                              "Field = 'Leadflow_Reasons__c'")
    assert reasons == [{"attributes": reasons[0]["attributes"], "OldValue": None, "NewValue": None}]


def test_untracked_fields_and_failed_records_leave_no_history(service: SalesforceService, users: UserDirectory,
                                                              tmp_path: Path, clock: FakeClock) -> None:
    only_status = SalesforceService(service.store, faults=service.faults, clock=clock, users=users,
                                    tracked_fields=("Status",))
    results = _patch(only_status, users.reps[0], {"id": lead_id(3), "Rating": "Cold"},
                     {"id": lead_id(4), "Status": "No such status"}, {"id": lead_id(5), "Status": "Open"},
                     all_or_none=True)
    assert [r["success"] for r in results] == [False, False, False]
    assert _query(service, "SELECT Id FROM LeadHistory") == []
    _patch(only_status, users.reps[0], {"id": lead_id(3), "Rating": "Cold"})
    assert _query(service, "SELECT Id FROM LeadHistory") == []


def test_tracked_fields_must_be_writable_lead_fields(service: SalesforceService) -> None:
    with pytest.raises(ValueError, match="'Shoe_Size__c' is not a writable Lead field"):
        SalesforceService(service.store, faults=service.faults, tracked_fields=("Status", "Shoe_Size__c"))
    with pytest.raises(ValueError, match="'SystemModstamp' is not a writable"):
        SalesforceService(service.store, faults=service.faults, tracked_fields=("SystemModstamp",))


def test_audit_fields_are_read_only_for_writes(service: SalesforceService, users: UserDirectory) -> None:
    results = _patch(service, users.reps[0], {"id": lead_id(1), "LastModifiedById": users.reps[0].id,
                                              "CreatedById": users.reps[0].id})
    assert results[0]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert results[0]["errors"][0]["fields"] == ["LastModifiedById", "CreatedById"]


def test_status_outside_the_org_list_fails_until_an_admin_adds_it(service: SalesforceService,
                                                                   users: UserDirectory) -> None:
    refused = _patch(service, users.reps[0], {"id": lead_id(1), "Status": "Recycled"})
    assert refused[0]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    added = service.add_picklist_value("status", "Recycled")
    assert added["added"] and added["values"][-1] == "Recycled"
    assert service.add_picklist_value("Status", "Recycled")["added"] is False
    status = next(f for f in service.describe()["fields"] if f["name"] == "Status")
    assert [p["value"] for p in status["picklistValues"]][-1] == "Recycled"
    assert _patch(service, users.reps[0], {"id": lead_id(1), "Status": "Recycled"})[0]["success"]
    # the org's list is kept in the db: a restarted sandbox still has it
    again = SalesforceService(service.store, faults=service.faults)
    assert "Recycled" in again.picklist_values("Status")
    with pytest.raises(ValueError, match="not a picklist of Lead"):
        service.add_picklist_value("Email", "x")
    with pytest.raises(ValueError, match="only Status values"):
        service.add_picklist_value("Rating", "Lukewarm", converted=True)


def test_merge_deletes_the_merged_lead_with_master_record_id_seen_only_by_query_all(
        service: SalesforceService, users: UserDirectory, clock: FakeClock) -> None:
    master, merged, admin = lead_id(1), lead_id(2), users.admins[0]
    _patch(service, users.reps[0], {"id": merged, "Status": "Open"})
    clock.advance(120)
    answer = service.merge(master, merged, admin)
    now = format_datetime(int(clock() * 1000))
    assert answer["id"] == master and answer["mergedRecordIds"] == [merged]
    soql = f"SELECT Id, IsDeleted, MasterRecordId, LastModifiedById, SystemModstamp FROM Lead WHERE Id IN " \
           f"('{master}', '{merged}') ORDER BY Id"
    assert [r["Id"] for r in _query(service, soql)] == [master]
    rows = _query(service, soql, all_rows=True)
    assert [(r["Id"], r["IsDeleted"], r["MasterRecordId"], r["LastModifiedById"], r["SystemModstamp"])
            for r in rows] == [(master, False, None, admin.id, now), (merged, True, master, admin.id, now)]
    assert [h["Field"] for h in _query(service, HISTORY_SOQL.format(ids=master))] == ["leadMerged"]
    # the merged lead's history went to the recycle bin with it
    assert _query(service, HISTORY_SOQL.format(ids=merged)) == []
    assert [h["Field"] for h in _query(service, HISTORY_SOQL.format(ids=merged), all_rows=True)] == ["Status"]
    refused = _patch(service, users.integration, {"id": merged, "Leadflow_Score__c": 5})
    assert refused[0]["errors"][0]["statusCode"] == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceApiError) as again:
        service.merge(master, merged, admin)
    assert again.value.code == "ENTITY_IS_DELETED"
    with pytest.raises(SalesforceApiError) as itself:
        service.merge(master, master, admin)
    assert itself.value.status == 400


def test_delete_is_seen_by_query_all_with_the_deleting_user(service: SalesforceService, users: UserDirectory,
                                                           clock: FakeClock) -> None:
    clock.advance(5)
    service.delete(lead_id(3), users.reps[1])
    row = _query(service, f"SELECT IsDeleted, LastModifiedById, SystemModstamp FROM Lead WHERE Id = '{lead_id(3)}'",
                 all_rows=True)[0]
    assert (row["IsDeleted"], row["LastModifiedById"], row["SystemModstamp"]) == (
        True, users.reps[1].id, format_datetime(int(clock() * 1000)))
    with pytest.raises(SalesforceApiError) as gone:
        service.delete(lead_id(3))
    assert gone.value.code == "ENTITY_IS_DELETED"


def test_converted_lead_gets_contact_account_date_and_status_then_refuses_updates(
        service: SalesforceService, users: UserDirectory, clock: FakeClock) -> None:
    rid, rep = lead_id(4), users.reps[0]
    answer = service.convert(rid, rep, create_opportunity=True)
    lead = _query(service, f"SELECT IsConverted, Status, ConvertedContactId, ConvertedAccountId, "
                           f"ConvertedOpportunityId, ConvertedDate, LastModifiedById FROM Lead WHERE Id = '{rid}'")[0]
    assert lead["IsConverted"] is True and lead["Status"] == "Closed - Converted"
    assert lead["ConvertedContactId"] == answer["contactId"] and answer["contactId"].startswith("003")
    assert lead["ConvertedAccountId"].startswith("001") and lead["ConvertedOpportunityId"].startswith("006")
    assert lead["ConvertedDate"] == "2023-11-14" and lead["LastModifiedById"] == rep.id
    fields = {h["Field"]: h for h in _query(service, HISTORY_SOQL.format(ids=rid))}
    assert set(fields) == {"leadConverted", "Status"}
    assert (fields["Status"]["OldValue"], fields["Status"]["NewValue"]) == ("Open - Not Contacted", "Closed - Converted")
    refused = _patch(service, users.integration, {"id": rid, "Leadflow_Score__c": 90})
    assert refused[0]["errors"][0]["statusCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    with pytest.raises(SalesforceApiError) as single:
        service.update_one(rid, {"Leadflow_Score__c": 90}, users.integration)
    assert (single.value.status, single.value.code) == (400, "CANNOT_UPDATE_CONVERTED_LEAD")
    with pytest.raises(SalesforceApiError) as twice:
        service.convert(rid, rep)
    assert twice.value.code == "CANNOT_UPDATE_CONVERTED_LEAD"


def test_conversion_takes_only_a_converted_status_of_the_org(service: SalesforceService,
                                                            users: UserDirectory) -> None:
    with pytest.raises(SalesforceApiError) as bad:
        service.convert(lead_id(5), users.reps[0], converted_status="Open")
    assert bad.value.code == "INVALID_STATUS" and "Closed - Converted" in bad.value.message
    service.add_picklist_value("Status", "Won", converted=True)
    service.convert(lead_id(5), users.reps[0], converted_status="Won")
    assert _query(service, f"SELECT Status FROM Lead WHERE Id = '{lead_id(5)}'")[0]["Status"] == "Won"


def test_single_update_with_if_unmodified_since_fails_when_modified_after_that_second(
        service: SalesforceService, users: UserDirectory, clock: FakeClock) -> None:
    rid = lead_id(1)
    read_at_ms = T0_MS - 3_600_000  # the lead's LastModifiedDate when leadflow read it
    clock.advance(30)
    service.update_one(rid, {"Status": "Open"}, users.reps[0])  # a person changes it after the read
    with pytest.raises(SalesforceApiError) as stale:
        service.update_one(rid, {"Leadflow_Score__c": 55}, users.integration, unmodified_since_ms=read_at_ms)
    assert (stale.value.status, stale.value.code) == (412, "PRECONDITION_FAILED")
    current = _query(service, f"SELECT LastModifiedDate, Leadflow_Score__c FROM Lead WHERE Id = '{rid}'")[0]
    assert current["Leadflow_Score__c"] is None
    # the same second as LastModifiedDate (HTTP dates carry no milliseconds) is not "since"
    service.update_one(rid, {"Leadflow_Score__c": 55}, users.integration,
                       unmodified_since_ms=int(clock() * 1000) // 1000 * 1000)


def test_lead_history_soql_rejects_filtering_on_values_and_unknown_fields() -> None:
    with pytest.raises(SoqlError) as values:
        parse("SELECT Id FROM LeadHistory WHERE OldValue = 'Open'")
    assert values.value.code == "INVALID_FIELD"
    with pytest.raises(SoqlError) as sort:
        parse("SELECT Id FROM LeadHistory ORDER BY NewValue")
    assert sort.value.code == "INVALID_FIELD"
    with pytest.raises(SoqlError) as unknown:
        parse("SELECT Email FROM LeadHistory")
    assert unknown.value.code == "INVALID_FIELD" and "LeadHistory" in unknown.value.message
    q = parse(f"SELECT Id FROM LeadHistory WHERE IsDeleted = false AND LeadId IN ('{lead_id(1)[:15]}')")
    assert q.sobject.table == "sf_lead_history" and q.params == [0, lead_id(1)]


def test_describe_of_lead_history_lists_its_fields_read_only(service: SalesforceService) -> None:
    body = service.describe("LeadHistory")
    fields = {f["name"]: f for f in body["fields"]}
    assert body["keyPrefix"] == "017" and not body["updateable"]
    assert set(fields) == {"Id", "IsDeleted", "LeadId", "CreatedById", "CreatedDate", "Field", "OldValue", "NewValue"}
    assert fields["LeadId"]["referenceTo"] == ["Lead"] and not fields["OldValue"]["filterable"]
    assert "Status" in [p["value"] for p in fields["Field"]["picklistValues"]]
    lead = {f["name"]: f for f in service.describe()["fields"]}
    assert lead["LastModifiedById"]["referenceTo"] == ["User"] and not lead["LastModifiedById"]["updateable"]
    assert lead["LastModifiedById"]["relationshipName"] == "LastModifiedBy"


def test_seeded_leads_are_created_by_the_import_user_and_have_no_history(tmp_path: Path) -> None:
    store = SalesforceStore(tmp_path / "seed.db")
    try:
        count = store.seed_from_world({"seed": 3, "contacts": 200, "anchor_ms": 1_735_689_600_000})
        service = SalesforceService(store, faults=FaultInjector(FaultSpec.parse("off"), 0))
        rows = _query(service, "SELECT Id, CreatedById, LastModifiedById, IsConverted, ConvertedContactId, "
                               "ConvertedAccountId, ConvertedDate FROM Lead")
        assert len(rows) == count == 200
        assert {(r["CreatedById"], r["LastModifiedById"]) for r in rows} == {(IMPORT_USER_ID, IMPORT_USER_ID)}
        converted = [r for r in rows if r["IsConverted"]]
        assert converted, "seed 3 has no customer: pick another seed"
        assert all(r["ConvertedContactId"].startswith("003") and r["ConvertedAccountId"].startswith("001")
                   and len(r["ConvertedDate"]) == 10 for r in converted)
        assert not any(r["ConvertedContactId"] for r in rows if not r["IsConverted"])
        assert _query(service, "SELECT Id FROM LeadHistory", all_rows=True) == []
    finally:
        store.close()


def test_a_db_file_from_before_users_gets_the_import_user_and_a_user_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE sf_lead (id TEXT PRIMARY KEY, created_ms INTEGER NOT NULL, modstamp_ms INTEGER NOT "
                 "NULL, is_deleted INTEGER NOT NULL DEFAULT 0, is_converted INTEGER NOT NULL DEFAULT 0, fields TEXT "
                 "NOT NULL DEFAULT '{}')")
    conn.execute("CREATE TABLE sf_writes (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, record_id TEXT NOT NULL, "
                 "field TEXT NOT NULL, old_value TEXT, new_value TEXT)")
    conn.execute("INSERT INTO sf_lead VALUES (?, 0, 0, 0, 0, '{\"LastName\":\"Old\"}')", (lead_id(9),))
    conn.execute("INSERT INTO sf_writes (at_ms, record_id, field) VALUES (0, ?, 'Status')", (lead_id(9),))
    conn.commit()
    conn.close()
    store = SalesforceStore(path)
    try:
        rec = store.get([lead_id(9)])[lead_id(9)]
        assert (rec["CreatedById"], rec["LastModifiedById"], rec["LastName"]) == (IMPORT_USER_ID, IMPORT_USER_ID, "Old")
        assert store.writes()[0]["user_id"] is None
    finally:
        store.close()
