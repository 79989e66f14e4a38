"""The Salesforce part of the sandbox over real TLS, driven by the official simple-salesforce client
(unchanged apart from instance URL, session and certificate) and by plain requests."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from leadflow.crm.salesforce_session import make_http_session
from leadflow.sandbox.salesforce_server import running_salesforce_sandbox

CONTACTS = 2300  # more than one 2,000-record batch


@pytest.fixture(scope="module")
def sf() -> Iterator[Any]:
    with running_salesforce_sandbox(contacts=CONTACTS, seed=11) as handle:
        yield handle


def _client(sf: Any) -> Salesforce:
    return Salesforce(instance_url=sf.base_url, session_id=sf.token, session=make_http_session(str(sf.cert_path)),
                      version="59.0")


def _admin(sf: Any, path: str, body: dict) -> requests.Response:
    http = make_http_session(str(sf.cert_path))
    return http.post(f"{sf.base_url}/_sandbox/{path}", json=body, headers={"Authorization": f"Bearer {sf.token}"},
                     timeout=10)


def test_simple_salesforce_pages_all_leads_through_next_records_url(sf: Any) -> None:
    client = _client(sf)
    first = client.query("SELECT Id FROM Lead ORDER BY Id")
    assert first["totalSize"] == CONTACTS and not first["done"] and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/")
    ids = [r["Id"] for r in client.query_all_iter("SELECT Id, Email, SystemModstamp FROM Lead")]
    assert len(ids) == len(set(ids)) == CONTACTS
    assert client.api_usage["api-usage"].total == 100_000
    assert client.api_usage["api-usage"].used >= 3


def test_simple_salesforce_collection_update_gives_ordered_per_record_results(sf: Any) -> None:
    client = _client(sf)
    ids = [r["Id"] for r in client.query("SELECT Id FROM Lead WHERE IsConverted = false ORDER BY Id LIMIT 3")["records"]]
    records = [
        {"attributes": {"type": "Lead"}, "id": ids[0], "Leadflow_Score__c": 42, "Leadflow_Grade__c": "B1"},
        {"attributes": {"type": "Lead"}, "id": ids[1], "Status": "Not a status"},
        {"attributes": {"type": "Lead"}, "id": ids[2], "IsConverted": True},
    ]
    results = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in results] == [True, False, False]
    assert results[1]["errors"][0]["statusCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert results[2]["errors"][0]["statusCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"
    assert client.Lead.get(ids[0])["Leadflow_Score__c"] == 42.0


def test_all_or_none_rolls_back_the_valid_records_too(sf: Any) -> None:
    client = _client(sf)
    ids = [r["Id"] for r in client.query("SELECT Id FROM Lead WHERE IsConverted = false ORDER BY Id DESC LIMIT 2")["records"]]
    results = client.restful("composite/sobjects", method="PATCH", json={"allOrNone": True, "records": [
        {"attributes": {"type": "Lead"}, "id": ids[0], "Leadflow_Grade__c": "A1"},
        {"attributes": {"type": "Lead"}, "id": ids[1], "Leadflow_Grade__c": "X" * 50},
    ]})
    assert results[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert results[1]["errors"][0]["statusCode"] == "STRING_TOO_LONG"
    assert client.Lead.get(ids[0])["Leadflow_Grade__c"] != "A1"


def test_more_than_200_records_or_unknown_fields_fail_the_whole_request(sf: Any) -> None:
    client = _client(sf)
    rid = client.query("SELECT Id FROM Lead LIMIT 1")["records"][0]["Id"]
    too_many = [{"attributes": {"type": "Lead"}, "id": rid, "Leadflow_Grade__c": "A"}] * 201
    with pytest.raises(SalesforceMalformedRequest) as info:
        client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": too_many})
    assert "EXCEEDED_ID_LIMIT" in str(info.value)
    with pytest.raises(SalesforceMalformedRequest) as unknown:
        client.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
            {"attributes": {"type": "Lead"}, "id": rid, "Shoe_Size__c": 44}]})
    assert "INVALID_FIELD" in str(unknown.value)


def test_bad_soql_is_400_malformed_query(sf: Any) -> None:
    with pytest.raises(SalesforceMalformedRequest) as info:
        _client(sf).query("SELECT Id FROM Lead WHERE Email = 'a' AND Email = 'b' OR Email = 'c'")
    assert "MALFORMED_QUERY" in str(info.value)


def test_describe_lists_custom_fields_and_picklist_values(sf: Any) -> None:
    fields = {f["name"]: f for f in _client(sf).Lead.describe()["fields"]}
    assert fields["Leadflow_Score__c"]["custom"] and fields["Leadflow_Score__c"]["type"] == "double"
    assert "Closed - Converted" in [p["value"] for p in fields["Status"]["picklistValues"]]
    assert [p["value"] for p in fields["Rating"]["picklistValues"]] == ["Hot", "Warm", "Cold"]
    assert not fields["SystemModstamp"]["updateable"]


def test_deleted_leads_show_only_in_query_all(sf: Any) -> None:
    client = _client(sf)
    rid = client.query("SELECT Id FROM Lead ORDER BY Id DESC LIMIT 1")["records"][0]["Id"]
    client.Lead.delete(rid)
    assert client.query(f"SELECT Id FROM Lead WHERE Id = '{rid}'")["totalSize"] == 0
    deleted = client.query_all(f"SELECT Id, IsDeleted FROM Lead WHERE Id = '{rid}'", include_deleted=True)
    assert deleted["records"][0]["IsDeleted"] is True


def test_spent_daily_allocation_answers_403_request_limit_exceeded(sf: Any) -> None:
    http = make_http_session(str(sf.cert_path))
    url = f"{sf.base_url}/services/data/v59.0/limits"
    headers = {"Authorization": f"Bearer {sf.token}"}
    try:
        _admin(sf, "limits", {"daily_limit": 10, "used": 9}).raise_for_status()
        ok = http.get(url, headers=headers, timeout=10)
        assert ok.status_code == 200 and ok.headers["Sforce-Limit-Info"] == "api-usage=10/10"
        spent = http.get(url, headers=headers, timeout=10)
        assert spent.status_code == 403
        assert spent.json() == [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    finally:
        _admin(sf, "limits", {"daily_limit": 100_000, "used": 0}).raise_for_status()


def test_oauth_grants_issue_a_session_and_errors_use_the_oauth_body(sf: Any) -> None:
    http = make_http_session(str(sf.cert_path))
    token_url = f"{sf.base_url}/services/oauth2/token"
    good = http.post(token_url, data={"grant_type": "client_credentials", "client_id": sf.client_id,
                                      "client_secret": sf.client_secret}, timeout=10)
    assert good.status_code == 200
    body = good.json()
    assert body["access_token"] == sf.token and body["instance_url"] == sf.base_url and body["token_type"] == "Bearer"
    password = http.post(token_url, data={"grant_type": "password", "client_id": sf.client_id,
                                          "client_secret": sf.client_secret, "username": sf.settings.username,
                                          "password": "wrong"}, timeout=10)
    assert password.status_code == 400
    assert password.json() == {"error": "invalid_grant", "error_description": "authentication failure"}
    wrong_session = http.get(f"{sf.base_url}/services/data/v59.0/limits", headers={"Authorization": "Bearer nope"},
                             timeout=10)
    assert wrong_session.status_code == 401 and wrong_session.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_the_certificate_is_required_for_tls(sf: Any) -> None:
    http = requests.Session()
    http.trust_env = False  # the system CA bundle only
    with pytest.raises(requests.exceptions.SSLError):
        http.get(f"{sf.base_url}/_sandbox/health", timeout=10)
