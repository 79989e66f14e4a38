"""Property history (who changed what), merges and archives in the HubSpot sandbox's service."""

from __future__ import annotations

import pytest

from leadflow.sandbox.errors import HubSpotError
from leadflow.sandbox.history import CALCULATED, LEADFLOW_APP, ChangeSource, seeded_origin
from leadflow.sandbox.hubspot_service import HubSpotService
from leadflow.sandbox.properties import ms_to_iso
from leadflow.sandbox.search import parse_search_request
from leadflow.sandbox.store import Row, SandboxStore
from leadflow.sandbox.world import WorldConfig, seed_store

USER = ChangeSource("CRM_UI", "userId:501", None, 501)
WORKFLOW = ChangeSource("WORKFLOW", "9001", "Re-open stale leads")


@pytest.fixture
def seeded(tmp_path, clock) -> SandboxStore:
    store = SandboxStore(tmp_path / "world.db", clock=clock)
    seed_store(store, WorldConfig(seed=7, contacts=40, anchor_ms=1_690_000_000_000))
    yield store
    store.close()


def _get(service: HubSpotService, object_id: str, *names: str, **kwargs) -> dict:
    return service.get("contacts", object_id, properties=list(names), associations=[], id_property=None,
                       properties_with_history=list(names), **kwargs)


def test_given_a_seeded_contact_then_its_history_is_one_creation_entry_from_its_seeded_origin(seeded):
    service = HubSpotService(seeded)
    row = seeded.get_rows("contacts", [3])[3]
    obj = _get(service, "3", "email", "lifecyclestage")
    origin = seeded_origin(7, "contacts", 3).to_api()
    for name in ("email", "lifecyclestage"):
        assert obj["propertiesWithHistory"][name] == [
            {"value": obj["properties"][name], "timestamp": ms_to_iso(row.created_ms), **origin}]
    assert origin["sourceType"] in {"FORM", "IMPORT", "API"}
    # Seeding writes no history rows: a 1M world must not cost one per property.
    assert seeded.writes() == []


def test_given_the_same_world_seed_then_seeded_origins_repeat_and_cover_form_import_and_api():
    first = [seeded_origin(7, "contacts", i) for i in range(1, 301)]
    assert first == [seeded_origin(7, "contacts", i) for i in range(1, 301)]
    assert {o.source_type for o in first} == {"FORM", "IMPORT", "API"}
    assert first != [seeded_origin(8, "contacts", i) for i in range(1, 301)]


def test_given_writes_by_several_principals_then_history_is_newest_first_with_their_sources(seeded, clock):
    service = HubSpotService(seeded)
    seeded_stage = _get(service, "5", "lifecyclestage")["properties"]["lifecyclestage"]
    created_ms = seeded.get_rows("contacts", [5])[5].created_ms
    service.batch_update("contacts", {"inputs": [{"id": "5", "properties": {"lifecyclestage": "evangelist"}}]},
                         source=LEADFLOW_APP)
    leadflow_ms = seeded.now_ms()
    clock.advance(60)
    service.update_one("contacts", "5", {"properties": {"hs_lead_status": "CONNECTED"}}, None, source=USER)
    clock.advance(60)
    service.update_one("contacts", "5", {"properties": {"hs_lead_status": ""}}, None, source=WORKFLOW)

    history = _get(service, "5", "lifecyclestage", "hs_lead_status")["propertiesWithHistory"]
    assert history["lifecyclestage"][0] == {"value": "evangelist", "timestamp": ms_to_iso(leadflow_ms),
                                            "sourceType": "INTEGRATION", "sourceId": "3141592"}
    assert history["lifecyclestage"][1]["value"] == seeded_stage
    assert history["lifecyclestage"][1]["timestamp"] == ms_to_iso(created_ms)
    status = history["hs_lead_status"]
    assert status[0] == {"value": "", "timestamp": ms_to_iso(leadflow_ms + 120_000), "sourceType": "WORKFLOW",
                         "sourceId": "9001", "sourceLabel": "Re-open stale leads"}
    assert status[1] == {"value": "CONNECTED", "timestamp": ms_to_iso(leadflow_ms + 60_000), "sourceType": "CRM_UI",
                         "sourceId": "userId:501", "updatedByUserId": 501}


def test_given_a_value_set_before_the_first_logged_change_then_the_creation_entry_keeps_the_seeded_value(seeded):
    service = HubSpotService(seeded)
    before = _get(service, "6", "firstname")["properties"]["firstname"]
    service.update_one("contacts", "6", {"properties": {"firstname": "Renamed"}}, None, source=USER)
    entries = _get(service, "6", "firstname")["propertiesWithHistory"]["firstname"]
    assert [e["value"] for e in entries] == ["Renamed", before]
    assert entries[1]["sourceType"] == seeded_origin(7, "contacts", 6).source_type


def test_given_an_api_created_contact_then_history_names_its_creator_and_unset_properties_have_none(store):
    service = HubSpotService(store)
    created = service.create_one("contacts", {"properties": {"email": "new@example.com"}}, source=USER)
    history = _get(service, created["id"], "email", "createdate", "jobtitle", "lastmodifieddate")
    pwh = history["propertiesWithHistory"]
    assert [e["sourceType"] for e in pwh["email"]] == ["CRM_UI"]
    assert pwh["createdate"][0]["sourceId"] == "userId:501"  # column-backed: synthesized from its creator
    assert pwh["jobtitle"] == []
    assert pwh["lastmodifieddate"] == [{"value": history["updatedAt"], "timestamp": history["updatedAt"],
                                        **CALCULATED.to_api()}]


def test_given_history_asked_for_unknown_properties_then_they_are_ignored_and_search_never_returns_history(seeded):
    service = HubSpotService(seeded)
    obj = service.get("contacts", "1", properties=None, associations=[], id_property=None,
                      properties_with_history=["nope", "email"])
    assert list(obj["propertiesWithHistory"]) == ["email"]
    found = service.search("contacts", parse_search_request({"properties": ["email"], "limit": 5}))
    assert found["results"] and all("propertiesWithHistory" not in r for r in found["results"])


def test_given_batch_read_with_properties_with_history_then_every_result_carries_it(seeded):
    service = HubSpotService(seeded)
    service.batch_update("contacts", {"inputs": [{"id": "2", "properties": {"jobtitle": "CTO"}}]}, source=USER)
    answer = service.batch_read("contacts", {"inputs": [{"id": "1"}, {"id": "2"}], "properties": ["jobtitle"],
                                             "propertiesWithHistory": ["jobtitle"]})
    by_id = {r["id"]: r for r in answer.body["results"]}
    assert by_id["2"]["propertiesWithHistory"]["jobtitle"][0]["sourceType"] == "CRM_UI"
    assert "jobtitle" in by_id["1"]["propertiesWithHistory"]
    with pytest.raises(HubSpotError, match="propertiesWithHistory must be a list"):
        service.batch_read("contacts", {"inputs": [{"id": "1"}], "propertiesWithHistory": "jobtitle"})


def test_given_a_batch_update_then_its_history_rows_go_in_with_the_source_of_the_batch(seeded):
    service = HubSpotService(seeded)
    service.batch_update("contacts", {"inputs": [{"id": str(i), "properties": {"jobtitle": f"T{i}"}}
                                                 for i in range(1, 11)]}, source=LEADFLOW_APP)
    entries = seeded.writes()
    assert len(entries) == 10
    assert {e.source for e in entries} == {LEADFLOW_APP}
    assert entries[0].to_api()["sourceType"] == "INTEGRATION" and entries[0].to_api()["sourceId"] == "3141592"


def test_given_a_merge_then_the_survivor_lists_merged_ids_and_the_merged_id_reads_as_the_survivor(seeded):
    service = HubSpotService(seeded)
    total = seeded.count("contacts")
    seeded_email = _get(service, "1", "email")["properties"]["email"]
    survivor = service.merge("contacts", {"primaryObjectId": "1", "objectIdToMerge": "2"}, source=USER)
    assert survivor["id"] == "1" and survivor["properties"]["hs_merged_object_ids"] == "2"
    assert survivor["properties"]["email"] == seeded_email  # the primary's values win
    service.merge("contacts", {"primaryObjectId": "3", "objectIdToMerge": "1"}, source=USER)

    assert _get(service, "2", "hs_merged_object_ids")["id"] == "3"  # merged twice: still one step
    assert _get(service, "3", "hs_merged_object_ids")["properties"]["hs_merged_object_ids"] == "1;2"
    assert seeded.count("contacts") == total - 2
    listed = service.list_page("contacts", limit=100, after=None, properties=None, associations=[], archived=False,
                               base_url="")
    assert {"1", "2"}.isdisjoint(r["id"] for r in listed["results"])
    archived = service.list_page("contacts", limit=100, after=None, properties=None, associations=[], archived=True,
                                 base_url="")
    assert archived["results"] == []  # merged away is not archived
    merged_history = _get(service, "3", "hs_merged_object_ids")["propertiesWithHistory"]["hs_merged_object_ids"]
    assert [(e["value"], e["sourceType"]) for e in merged_history] == [("1;2", "CRM_UI")]


def test_given_a_merge_of_unknown_or_same_ids_then_it_answers_404_or_400(seeded):
    service = HubSpotService(seeded)
    with pytest.raises(HubSpotError) as missing:
        service.merge("contacts", {"primaryObjectId": "1", "objectIdToMerge": "999999"})
    assert missing.value.status_code == 404
    with pytest.raises(HubSpotError) as same:
        service.merge("contacts", {"primaryObjectId": "4", "objectIdToMerge": "4"})
    assert same.value.status_code == 400


def test_given_a_merged_record_lacking_a_value_then_the_survivor_takes_it_from_the_merged_one(store):
    service = HubSpotService(store)
    a = service.create_one("contacts", {"properties": {"email": "a@example.com"}})["id"]
    b = service.create_one("contacts", {"properties": {"email": "b@example.com", "jobtitle": "CFO"}})["id"]
    survivor = service.merge("contacts", {"primaryObjectId": a, "objectIdToMerge": b}, source=WORKFLOW)
    obj = _get(service, survivor["id"], "jobtitle", "email")
    assert obj["properties"] == {**obj["properties"], "jobtitle": "CFO", "email": "a@example.com"}
    assert obj["propertiesWithHistory"]["jobtitle"][0]["sourceType"] == "WORKFLOW"


def test_given_archives_then_archived_at_is_recorded_and_archived_lists_show_them(seeded, clock):
    service = HubSpotService(seeded)
    service.archive("contacts", "4", source=USER)
    archived_ms = seeded.now_ms()
    clock.advance(5)
    service.batch_archive("contacts", {"inputs": [{"id": "5"}, {"id": "6"}, {"id": "424242"}]})
    page = service.list_page("contacts", limit=10, after=None, properties=None, associations=[], archived=True,
                             base_url="")
    assert [(r["id"], r["archived"]) for r in page["results"]] == [("4", True), ("5", True), ("6", True)]
    assert page["results"][0]["archivedAt"] == ms_to_iso(archived_ms)
    assert page["results"][1]["archivedAt"] == ms_to_iso(archived_ms + 5000)
    with pytest.raises(HubSpotError):
        _get(service, "4", "email")
    assert _get(service, "4", "email", archived=True)["archivedAt"] == ms_to_iso(archived_ms)
    logged = [(e.object_id, e.property, e.new, e.source.source_type) for e in seeded.writes()]
    assert logged == [("4", "archived", "true", "CRM_UI"), ("5", "archived", "true", "API"),
                      ("6", "archived", "true", "API")]


def test_given_a_db_file_from_before_history_then_opening_it_adds_the_columns(tmp_path, clock):
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE writes (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, object_type TEXT NOT NULL, "
                 "object_id TEXT NOT NULL, property TEXT NOT NULL, old_value TEXT, new_value TEXT)")
    conn.execute("INSERT INTO writes VALUES (1, 5, 'contacts', '1', 'jobtitle', NULL, 'CEO')")
    conn.execute("CREATE TABLE obj_contacts (id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, modified_ms INTEGER "
                 "NOT NULL, archived INTEGER NOT NULL DEFAULT 0, unique_key TEXT, company_id INTEGER, props TEXT NOT "
                 "NULL DEFAULT '{}')")
    conn.execute("INSERT INTO obj_contacts VALUES (1, 1, 2, 0, NULL, NULL, '{}')")
    conn.commit()
    conn.close()
    store = SandboxStore(path, clock=clock)
    try:
        assert store.writes()[0].source.source_type == "API"
        assert store.get_rows("contacts", [1])[1] == Row(1, 1, 2, False, None, None, {})
    finally:
        store.close()


def test_given_a_db_file_seeded_before_merges_then_reopening_adds_hs_merged_object_ids(tmp_path, clock):
    store = SandboxStore(tmp_path / "old.db", clock=clock)
    store._conn.execute("DELETE FROM properties WHERE name = 'hs_merged_object_ids'")
    store.update_property("contacts", store.properties("contacts")["budget_range"])  # a portal's own change
    store.close()
    reopened = SandboxStore(tmp_path / "old.db", clock=clock)
    try:
        props = reopened.properties("contacts")
        assert props["hs_merged_object_ids"].type == "enumeration"
        assert props["budget_range"].updated_ms == int(clock() * 1000)
    finally:
        reopened.close()
