"""The Salesforce sandbox with people in it, over real TLS with the official simple-salesforce
client: reps' sessions, LastModifiedById and LeadHistory, the org's Status values, merges seen
by queryAll, converted leads refusing updates and the Contacts they became, and
If-Unmodified-Since on a single PATCH."""

from __future__ import annotations

from email.utils import format_datetime as http_date
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceGeneralError, SalesforceMalformedRequest

from leadflow.crm.salesforce_session import make_http_session
from leadflow.sandbox.salesforce_schema import parse_datetime
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox
from leadflow.sandbox.salesforce_users import IMPORT_USER_ID, INTEGRATION_USER_ID

HISTORY = ("SELECT LeadId, Field, OldValue, NewValue, CreatedById, CreatedDate FROM LeadHistory "
           "WHERE LeadId IN ('{ids}') AND Field IN ('Status', 'Rating') ORDER BY CreatedDate DESC")


@pytest.fixture(scope="module")
def sf() -> Iterator[Any]:
    with running_salesforce_sandbox(contacts=300, seed=11, users=2, admins=1) as handle:
        yield handle


def _client(sf: Any, token: str | None = None) -> Salesforce:
    return Salesforce(instance_url=sf.base_url, session_id=token or sf.token,
                      session=make_http_session(str(sf.cert_path)), version="59.0")


def _admin(sf: Any, path: str, body: dict | None = None) -> requests.Response:
    http = make_http_session(str(sf.cert_path))
    headers = {"Authorization": f"Bearer {sf.token}"}
    if body is None:
        return http.get(f"{sf.base_url}/_sandbox/{path}", headers=headers, timeout=10)
    return http.post(f"{sf.base_url}/_sandbox/{path}", json=body, headers=headers, timeout=10)


def _users(sf: Any) -> dict[str, dict[str, Any]]:
    answer = _admin(sf, "users")
    answer.raise_for_status()
    return {u["username"]: u for u in answer.json()["users"]}


def _open_leads(client: Salesforce, n: int, offset: int) -> list[str]:
    return [r["Id"] for r in client.query(f"SELECT Id FROM Lead WHERE IsConverted = false ORDER BY Id "
                                          f"LIMIT {n} OFFSET {offset}")["records"]]


def test_users_list_the_integration_user_import_user_reps_and_admins(sf: Any) -> None:
    users = _users(sf)
    assert users["leadflow@sandbox.example"]["id"] == INTEGRATION_USER_ID
    assert users["leadflow@sandbox.example"]["token"] == sf.token
    assert users["import@sandbox.example"]["id"] == IMPORT_USER_ID and "token" not in users["import@sandbox.example"]
    assert {u["profile"] for u in users.values()} == {"Integration User", "Data Import", "Sales Rep",
                                                      "System Administrator"}
    assert len([u for u in users.values() if u["profile"] == "Sales Rep"]) == 2
    assert sf.users.reps[0].token == users["rep1@sandbox.example"]["token"]  # the Python API


def test_given_a_reps_session_updates_status_then_lead_and_history_name_the_rep(sf: Any) -> None:
    rep = _users(sf)["rep1@sandbox.example"]
    rid = _open_leads(_client(sf), 1, 0)[0]
    before = _client(sf).Lead.get(rid)
    assert before["CreatedById"] == IMPORT_USER_ID and before["LastModifiedById"] == IMPORT_USER_ID
    assert _client(sf, rep["token"]).Lead.update(rid, {"Status": "Working - Contacted", "Rating": "Hot"}) == 204
    after = _client(sf).Lead.get(rid)
    assert after["LastModifiedById"] == rep["id"] and after["CreatedById"] == IMPORT_USER_ID
    assert parse_datetime(after["SystemModstamp"]) > parse_datetime(before["SystemModstamp"])
    rows = _client(sf).query(HISTORY.format(ids=rid))["records"]
    changes = {r["Field"]: (r["OldValue"], r["NewValue"], r["CreatedById"]) for r in rows}
    assert changes == {"Status": (before["Status"], "Working - Contacted", rep["id"]),
                       "Rating": (before["Rating"], "Hot", rep["id"])}
    assert {r["CreatedDate"] for r in rows} == {after["LastModifiedDate"]}


def test_leadflow_collection_write_is_attributed_to_the_integration_user(sf: Any) -> None:
    rid = _open_leads(_client(sf), 1, 1)[0]
    results = _client(sf).restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Lead"}, "id": rid, "Leadflow_Score__c": 64, "Leadflow_Grade__c": "B2"}]})
    assert results[0]["success"]
    rows = _client(sf).query(f"SELECT Field, NewValue, CreatedById FROM LeadHistory WHERE LeadId = '{rid}' "
                             "ORDER BY CreatedDate DESC")["records"]
    assert sorted((r["Field"], r["NewValue"], r["CreatedById"]) for r in rows) == [
        ("Leadflow_Grade__c", "B2", INTEGRATION_USER_ID), ("Leadflow_Score__c", 64.0, INTEGRATION_USER_ID)]


def test_password_flow_logs_a_rep_in_with_the_reps_own_session(sf: Any) -> None:
    http = make_http_session(str(sf.cert_path))
    answer = http.post(f"{sf.base_url}/services/oauth2/token", data={
        "grant_type": "password", "client_id": sf.client_id, "client_secret": sf.client_secret,
        "username": "rep2@sandbox.example", "password": sf.settings.password}, timeout=10).json()
    rep = _users(sf)["rep2@sandbox.example"]
    assert answer["access_token"] == rep["token"] and answer["id"].endswith("/" + rep["id"])


def test_lead_history_describe_works_with_simple_salesforce(sf: Any) -> None:
    fields = {f["name"]: f for f in _client(sf).LeadHistory.describe()["fields"]}
    assert {"LeadId", "Field", "OldValue", "NewValue", "CreatedById", "CreatedDate", "IsDeleted"} <= set(fields)
    assert fields["OldValue"]["type"] == "anyType"


def test_merge_hides_the_merged_lead_from_query_and_query_all_shows_master_record_id(sf: Any) -> None:
    client = _client(sf)
    master, merged = _open_leads(client, 2, 10)
    admin = _users(sf)["admin1@sandbox.example"]
    answer = _admin(sf, "merge", {"masterId": master, "mergedId": merged, "asUser": admin["username"]})
    assert answer.status_code == 200, answer.text
    assert client.query(f"SELECT Id FROM Lead WHERE Id = '{merged}'")["totalSize"] == 0
    gone = client.query_all(f"SELECT Id, IsDeleted, MasterRecordId, LastModifiedById FROM Lead WHERE Id = '{merged}'",
                            include_deleted=True)["records"][0]
    assert (gone["IsDeleted"], gone["MasterRecordId"], gone["LastModifiedById"]) == (True, master, admin["id"])
    assert client.Lead.get(master)["LastModifiedById"] == admin["id"]


def test_delete_is_visible_through_query_all_with_the_deleting_rep(sf: Any) -> None:
    rep = _users(sf)["rep2@sandbox.example"]
    rid = _open_leads(_client(sf), 1, 20)[0]
    assert _client(sf, rep["token"]).Lead.delete(rid) == 204
    row = _client(sf).query_all(f"SELECT IsDeleted, LastModifiedById FROM Lead WHERE Id = '{rid}'",
                                include_deleted=True)["records"][0]
    assert (row["IsDeleted"], row["LastModifiedById"]) == (True, rep["id"])


def test_converted_lead_refuses_updates_per_record_and_on_single_patch(sf: Any) -> None:
    client = _client(sf)
    rid = _open_leads(client, 1, 30)[0]
    answer = _admin(sf, "convert", {"leadId": rid, "asUser": "rep1@sandbox.example"})
    assert answer.status_code == 200, answer.text
    lead = client.Lead.get(rid)
    assert lead["IsConverted"] and lead["ConvertedContactId"] == answer.json()["contactId"]
    assert lead["ConvertedContactId"].startswith("003") and lead["Status"] == "Closed - Converted"
    results = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Lead"}, "id": rid, "Leadflow_Score__c": 12}]})
    assert results[0]["errors"][0]["statusCode"] == "CANNOT_UPDATE_CONVERTED_LEAD"
    with pytest.raises(SalesforceMalformedRequest) as single:
        client.Lead.update(rid, {"Leadflow_Score__c": 12})
    assert "CANNOT_UPDATE_CONVERTED_LEAD" in str(single.value)


def test_conversion_creates_a_contact_in_salesforce_shape_queryable_describable_and_writable(sf: Any) -> None:
    rep = _users(sf)["rep1@sandbox.example"]
    client = _client(sf)
    rid = _open_leads(client, 1, 35)[0]
    lead = client.Lead.get(rid)
    contact_id = _admin(sf, "convert", {"leadId": rid, "asUser": rep["username"]}).json()["contactId"]
    contact = client.Contact.get(contact_id)
    assert contact["attributes"]["type"] == "Contact" and contact["Id"] == contact_id
    assert {k: contact[k] for k in ("FirstName", "LastName", "Email", "Title")} == \
        {k: lead[k] for k in ("FirstName", "LastName", "Email", "Title")}
    assert (contact["Company__c"], contact["MailingCountry"]) == (lead["Company"], lead["Country"])
    assert contact["CreatedById"] == contact["LastModifiedById"] == rep["id"]
    assert contact["SystemModstamp"] == contact["LastModifiedDate"] == client.Lead.get(rid)["SystemModstamp"]
    described = {f["name"]: f for f in client.Contact.describe()["fields"]}
    assert client.Contact.describe()["keyPrefix"] == "003" and "Status" not in described
    assert described["Leadflow_Score__c"]["type"] == "double" and described["Leadflow_Score__c"]["updateable"]
    found = client.query(f"SELECT Id, Email, Leadflow_Score__c FROM Contact WHERE Id IN ('{contact_id}')")
    assert [r["Email"] for r in found["records"]] == [lead["Email"]]
    other = _open_leads(client, 1, 36)[0]
    # One collection write may mix Leads and Contacts; the declared type must match the id.
    results = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Contact"}, "id": contact_id, "Leadflow_Score__c": 81},
        {"attributes": {"type": "Lead"}, "id": other, "Leadflow_Score__c": 18},
        {"attributes": {"type": "Lead"}, "id": contact_id, "Leadflow_Score__c": 1}]})
    assert [r["success"] for r in results] == [True, True, False]
    assert results[2]["errors"][0]["statusCode"] == "MALFORMED_ID"
    after = client.Contact.get(contact_id)
    assert after["Leadflow_Score__c"] == 81 and after["LastModifiedById"] == INTEGRATION_USER_ID
    assert parse_datetime(after["SystemModstamp"]) > parse_datetime(contact["SystemModstamp"])
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        client.Contact.update(contact_id, {"Status": "Open"})
    assert "INVALID_FIELD" in str(unknown.value)


def test_status_outside_the_org_list_is_refused_until_added_through_the_sandbox_setup_call(sf: Any) -> None:
    client = _client(sf)
    rid = _open_leads(client, 1, 40)[0]
    record = {"attributes": {"type": "Lead"}, "id": rid, "Status": "Recycled"}
    refused = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [record]})
    assert refused[0]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    added = _admin(sf, "picklist-values", {"field": "Status", "value": "Recycled"})
    assert added.status_code == 200 and added.json()["added"]
    status = next(f for f in client.Lead.describe()["fields"] if f["name"] == "Status")
    assert "Recycled" in [p["value"] for p in status["picklistValues"]]
    accepted = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [record]})
    assert accepted[0]["success"]


def test_single_patch_with_if_unmodified_since_is_412_when_a_person_changed_the_lead(sf: Any) -> None:
    rep = _users(sf)["rep1@sandbox.example"]
    client = _client(sf)
    rid = _open_leads(client, 1, 50)[0]
    read = parse_datetime(client.Lead.get(rid)["LastModifiedDate"])
    since = http_date(datetime.fromtimestamp(read / 1000, tz=timezone.utc), usegmt=True)
    _client(sf, rep["token"]).Lead.update(rid, {"Rating": "Cold"})  # the seeded lead was modified long ago
    with pytest.raises(SalesforceGeneralError) as stale:
        client.Lead.update(rid, {"Leadflow_Score__c": 99}, headers={"If-Unmodified-Since": since})
    assert stale.value.status == 412 and "PRECONDITION_FAILED" in str(stale.value)
    assert client.Lead.get(rid)["Leadflow_Score__c"] is None
    now = http_date(datetime.now(timezone.utc), usegmt=True)
    assert client.Lead.update(rid, {"Leadflow_Score__c": 99}, headers={"If-Unmodified-Since": now}) == 204
    with pytest.raises(SalesforceMalformedRequest):
        client.Lead.update(rid, {"Leadflow_Score__c": 98}, headers={"If-Unmodified-Since": "yesterday"})


def test_admin_calls_name_what_is_wrong(sf: Any) -> None:
    rid = _open_leads(_client(sf), 1, 60)[0]
    unknown_user = _admin(sf, "merge", {"masterId": rid, "mergedId": rid, "asUser": "ghost@example.com"})
    assert unknown_user.status_code == 400 and "ghost@example.com" in unknown_user.text
    typo = _admin(sf, "convert", {"lead": rid})
    assert typo.status_code == 400 and "missing keys: ['leadId']" in typo.text and "unknown keys: ['lead']" in typo.text
    not_picklist = _admin(sf, "picklist-values", {"field": "Email", "value": "x"})
    assert not_picklist.status_code == 400 and "not a picklist" in not_picklist.text
    assert _client(sf).Lead.get(rid)["IsDeleted"] is False


def test_cli_names_a_bad_history_field_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from leadflow.cli import main

    code = main(["sandbox", "serve", "--db", str(tmp_path / "crm.db"), "--contacts", "5",
                 "--salesforce-history-fields", "Status,Shoe_Size__c"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--salesforce-history-fields" in err and "Shoe_Size__c" in err


def test_histories_sub_query_returns_each_leads_history_nested_and_null_without_any(sf: Any) -> None:
    rep = _users(sf)["rep2@sandbox.example"]
    candidates = _open_leads(_client(sf), 30, 60)
    quoted = ", ".join(f"'{rid}'" for rid in candidates)
    with_history = {r["LeadId"] for r in _client(sf).query_all(
        f"SELECT LeadId FROM LeadHistory WHERE LeadId IN ({quoted})")["records"]}
    changed, untouched = [rid for rid in candidates if rid not in with_history][:2]
    assert _client(sf, rep["token"]).Lead.update(changed, {"Status": "Working - Contacted"}) == 204
    answer = _client(sf).query(
        "SELECT Id, Status, (SELECT Field, NewValue, CreatedById FROM Histories WHERE Field IN ('Status', 'Rating') "
        f"ORDER BY CreatedDate DESC) FROM Lead WHERE Id IN ('{changed}', '{untouched}') ORDER BY Id")
    by_id = {r["Id"]: r for r in answer["records"]}
    nested = by_id[changed]["Histories"]
    assert nested["done"] and nested["totalSize"] == 1
    assert [(r["Field"], r["NewValue"], r["CreatedById"]) for r in nested["records"]] == [
        ("Status", "Working - Contacted", rep["id"])]
    assert nested["records"][0]["attributes"]["type"] == "LeadHistory"
    assert by_id[untouched]["Histories"] is None  # Salesforce answers null, not an empty result


def test_sub_query_on_an_unknown_relationship_is_refused_like_salesforce(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as refused:
        _client(sf).query("SELECT Id, (SELECT Id FROM Contacts) FROM Lead LIMIT 1")
    assert refused.value.content[0]["errorCode"] == "INVALID_TYPE"
