"""The official hubspot-api-client SDK against the sandbox over real HTTP, changing only `host`."""

from __future__ import annotations

import json

import pytest
from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchReadInputSimplePublicObjectId,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectId,
)

from leadflow.sandbox.server import running_sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(contacts=1_200, seed=9, db_path=tmp_path_factory.mktemp("sdk") / "crm.db",
                         rate_limit="off", search_rate_limit="off") as sb:
        yield sb


@pytest.fixture
def client(sandbox):
    return HubSpot(access_token=sandbox.token, host=sandbox.base_url)


def test_search_pages_through_every_match_in_cursor_order(client):
    request = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[Filter(property_name="lastmodifieddate", operator="GTE", value="0")])],
        sorts=[{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        properties=["email", "lifecyclestage"], limit=200, after="0")
    seen, stamps, pages = [], [], 0
    while True:
        page = client.crm.contacts.search_api.do_search(public_object_search_request=request)
        pages += 1
        assert page.total == 1_200
        seen += [r.id for r in page.results]
        stamps += [r.updated_at for r in page.results]
        assert all("lifecyclestage" in r.properties for r in page.results)
        if page.paging is None:
            break
        request.after = page.paging.next.after
    assert pages == 6 and len(set(seen)) == 1_200
    assert stamps == sorted(stamps)


def test_basic_api_get_page_follows_after_to_the_end(client):
    ids, after = [], None
    while True:
        page = client.crm.contacts.basic_api.get_page(limit=100, after=after, properties=["email", "jobtitle"],
                                                      associations=["companies"])
        ids += [int(r.id) for r in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert ids == list(range(1, 1_201))


def test_batch_read_returns_requested_properties(client):
    batch = BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id="1"), SimplePublicObjectId(id="2")],
                                               properties=["email", "hs_lead_status"], properties_with_history=[])
    answer = client.crm.contacts.batch_api.read(batch_read_input_simple_public_object_id=batch)
    assert answer.status == "COMPLETE" and sorted(r.id for r in answer.results) == ["1", "2"]
    assert all("email" in r.properties for r in answer.results)


def test_batch_update_changes_values_and_moves_lastmodifieddate(client, sandbox):
    before = client.crm.contacts.basic_api.get_by_id("7", properties=["hs_lead_status", "lastmodifieddate"])
    update = BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id="7", properties={"hs_lead_status": "CONNECTED", "jobtitle": "CTO"})])
    answer = client.crm.contacts.batch_api.update(batch_input_simple_public_object_batch_input=update)
    assert answer.status == "COMPLETE" and answer.results[0].properties["hs_lead_status"] == "CONNECTED"
    after = client.crm.contacts.basic_api.get_by_id("7", properties=["hs_lead_status", "jobtitle", "lastmodifieddate"])
    assert after.properties["hs_lead_status"] == "CONNECTED" and after.properties["jobtitle"] == "CTO"
    assert after.updated_at > before.updated_at
    assert after.properties["lastmodifieddate"] > before.properties["lastmodifieddate"]
    logged = {(w.object_id, w.property, w.new) for w in sandbox.store.writes(object_type="contacts")}
    assert ("7", "hs_lead_status", "CONNECTED") in logged


def test_partial_batch_failure_comes_back_as_an_object_with_errors(client):
    update = BatchInputSimplePublicObjectBatchInput(inputs=[
        SimplePublicObjectBatchInput(id="8", properties={"hs_lead_status": "OPEN"}),
        SimplePublicObjectBatchInput(id="99999999", properties={"hs_lead_status": "OPEN"})])
    answer = client.crm.contacts.batch_api.update(batch_input_simple_public_object_batch_input=update)
    assert answer.num_errors == 1 and answer.errors[0].category == "OBJECT_NOT_FOUND"
    assert answer.errors[0].context == {"ids": ["99999999"]}
    assert [r.id for r in answer.results] == ["8"]


def test_wrong_token_raises_api_exception_401(sandbox):
    bad = HubSpot(access_token="not-the-token", host=sandbox.base_url)
    with pytest.raises(ApiException) as err:
        bad.crm.contacts.basic_api.get_page(limit=1)
    assert err.value.status == 401
    assert json.loads(err.value.body)["category"] == "INVALID_AUTHENTICATION"


def test_properties_api_through_the_sdk(client):
    stage = client.crm.properties.core_api.get_by_name(object_type="contacts", property_name="lifecyclestage")
    assert [o.value for o in stage.options][:2] == ["subscriber", "lead"]
    everything = client.crm.properties.core_api.get_all(object_type="companies")
    assert "web_technologies" in {p.name for p in everything.results}


def test_companies_are_served_too(client):
    page = client.crm.companies.basic_api.get_page(limit=5, properties=["domain", "numberofemployees"])
    assert len(page.results) == 5 and all(r.properties["domain"] for r in page.results)
