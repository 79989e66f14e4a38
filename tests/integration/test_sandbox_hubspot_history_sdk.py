"""Who changed what, through the official hubspot-api-client SDK over real HTTP: people,
workflows and leadflow writing with their own tokens, `propertiesWithHistory`, merges, archives
and changed enumeration options."""

from __future__ import annotations

import json

import pytest
import requests
from hubspot import HubSpot
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectId,
    BatchReadInputSimplePublicObjectId,
    PublicMergeInput,
    PublicObjectSearchRequest,
    SimplePublicObjectId,
    SimplePublicObjectInput,
)
from hubspot.crm.properties import OptionInput, PropertyUpdate

from leadflow.sandbox.server import running_sandbox

USER = {"token": "pat-sandbox-user-ada-0001", "kind": "user", "id": 61_001, "label": "Ada Lovelace"}
WORKFLOW = {"token": "pat-sandbox-workflow-0001", "kind": "workflow", "id": 4_242, "label": "Recycle cold leads"}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    with running_sandbox(contacts=300, seed=11, db_path=tmp_path_factory.mktemp("history") / "crm.db",
                         rate_limit="off", search_rate_limit="off", principals=[USER, WORKFLOW]) as sb:
        yield sb


def _client(sandbox, token: str) -> HubSpot:
    return HubSpot(access_token=token, host=sandbox.base_url)


def _update(client: HubSpot, contact_id: str, **properties: str) -> None:
    client.crm.contacts.basic_api.update(contact_id, simple_public_object_input=SimplePublicObjectInput(
        properties=properties))


def test_given_a_user_then_leadflow_writes_then_get_by_id_history_names_both_newest_first(sandbox):
    leadflow, ada = _client(sandbox, sandbox.token), _client(sandbox, USER["token"])
    _update(ada, "12", jobtitle="Head of Data")
    _update(leadflow, "12", jobtitle="VP Data")

    contact = leadflow.crm.contacts.basic_api.get_by_id("12", properties=["jobtitle"],
                                                        properties_with_history=["jobtitle"])
    entries = contact.properties_with_history["jobtitle"]
    assert [(e.value, e.source_type, e.source_id, e.updated_by_user_id) for e in entries[:2]] == [
        ("VP Data", "INTEGRATION", "3141592", None), ("Head of Data", "CRM_UI", "userId:61001", 61_001)]
    assert entries[0].timestamp >= entries[1].timestamp and entries[0].timestamp.tzinfo is not None
    # leadflow recognises its own writes by the app id the token-info endpoint reports.
    info = requests.post(f"{sandbox.base_url}/oauth/v2/private-apps/get/access-token-info",
                         json={"tokenKey": sandbox.token}, timeout=10).json()
    assert str(info["appId"]) == entries[0].source_id


def test_batch_read_returns_workflow_writes_and_seeded_origins_in_history(sandbox):
    _update(_client(sandbox, WORKFLOW["token"]), "13", hs_lead_status="ATTEMPTED_TO_CONTACT")
    leadflow = _client(sandbox, sandbox.token)
    answer = leadflow.crm.contacts.batch_api.read(batch_read_input_simple_public_object_id=(
        BatchReadInputSimplePublicObjectId(inputs=[SimplePublicObjectId(id="13"), SimplePublicObjectId(id="14")],
                                           properties=["hs_lead_status", "email"],
                                           properties_with_history=["hs_lead_status", "email"])))
    by_id = {r.id: r for r in answer.results}
    latest = by_id["13"].properties_with_history["hs_lead_status"][0]
    assert (latest.value, latest.source_type, latest.source_id, latest.source_label) == (
        "ATTEMPTED_TO_CONTACT", "WORKFLOW", "4242", "Recycle cold leads")
    seeded_email = by_id["14"].properties_with_history["email"]
    assert len(seeded_email) == 1 and seeded_email[0].value == by_id["14"].properties["email"]
    assert seeded_email[0].source_type in {"FORM", "IMPORT", "API"}
    assert seeded_email[0].timestamp == by_id["14"].created_at


def test_search_never_returns_history(sandbox):
    page = _client(sandbox, sandbox.token).crm.contacts.search_api.do_search(
        public_object_search_request=PublicObjectSearchRequest(properties=["email"], limit=3))
    assert page.results and all(r.properties_with_history is None for r in page.results)


def test_merge_through_the_sdk_hides_the_merged_record_and_its_id_reads_as_the_survivor(sandbox):
    ada = _client(sandbox, USER["token"])
    survivor = ada.crm.contacts.basic_api.merge(public_merge_input=PublicMergeInput(
        primary_object_id="30", object_id_to_merge="31"))
    assert survivor.id == "30" and survivor.properties["hs_merged_object_ids"] == "31"
    leadflow = _client(sandbox, sandbox.token)
    assert leadflow.crm.contacts.basic_api.get_by_id("31").id == "30"
    listed = leadflow.crm.contacts.basic_api.get_page(limit=100, after="25")
    assert "31" not in {r.id for r in listed.results} and "30" in {r.id for r in listed.results}
    history = leadflow.crm.contacts.basic_api.get_by_id(
        "30", properties_with_history=["hs_merged_object_ids"]).properties_with_history["hs_merged_object_ids"]
    assert (history[0].source_type, history[0].updated_by_user_id) == ("CRM_UI", 61_001)


def test_archive_and_batch_archive_through_the_sdk_then_archived_page_lists_them_with_archived_at(sandbox):
    leadflow = _client(sandbox, sandbox.token)
    leadflow.crm.contacts.basic_api.archive("40")
    leadflow.crm.contacts.batch_api.archive(batch_input_simple_public_object_id=BatchInputSimplePublicObjectId(
        inputs=[SimplePublicObjectId(id="41"), SimplePublicObjectId(id="42")]))
    page = leadflow.crm.contacts.basic_api.get_page(archived=True, limit=100)
    archived = {r.id: r for r in page.results}
    assert {"40", "41", "42"} <= set(archived)
    assert all(archived[i].archived and archived[i].archived_at is not None for i in ("40", "41", "42"))
    with pytest.raises(ApiException) as gone:
        leadflow.crm.contacts.basic_api.get_by_id("40")
    assert gone.value.status == 404
    assert leadflow.crm.contacts.basic_api.get_by_id("40", archived=True).archived_at == archived["40"].archived_at


def test_patch_options_through_the_sdk_then_a_removed_option_is_invalid_option(sandbox):
    leadflow = _client(sandbox, sandbox.token)
    # budget_range: no other test of this module writes it, so their order does not matter.
    options = [OptionInput(label="Under 10k", value="<10k", hidden=False, display_order=0),
               OptionInput(label="10k or more", value=">=10k", hidden=False, display_order=1)]
    prop = leadflow.crm.properties.core_api.update("contacts", "budget_range",
                                                   property_update=PropertyUpdate(options=options))
    assert [o.value for o in prop.options] == ["<10k", ">=10k"]
    _update(_client(sandbox, USER["token"]), "50", budget_range=">=10k")
    with pytest.raises(ApiException) as refused:
        _update(leadflow, "51", budget_range="25k-100k")
    body = json.loads(refused.value.body)
    assert refused.value.status == 400 and body["errors"][0]["code"] == "INVALID_OPTION"
