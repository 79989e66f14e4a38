"""Batch and single writes: property validation, the lifecycle rule, 200/207 shapes, the write log."""

from __future__ import annotations

import pytest

from leadflow.sandbox.errors import HubSpotError
from leadflow.sandbox.faults import FaultInjector, FaultSpec
from leadflow.sandbox.hubspot_service import HubSpotService
from leadflow.sandbox.properties import LIFECYCLE_STAGES, PropertyDef, lifecycle_decision


# --- the lifecycle rule (pure) -------------------------------------------------------------------
@pytest.mark.parametrize("old, new, applies", [
    ("lead", "marketingqualifiedlead", True),
    ("lead", "lead", True),
    ("salesqualifiedlead", "lead", False),
    ("customer", "subscriber", False),
    (None, "opportunity", True),
    ("customer", None, True),  # clearing is always allowed
])
def test_lifecycle_moves_forward_only_by_option_order(old, new, applies):
    decision = lifecycle_decision(list(LIFECYCLE_STAGES), old, new, "ignore")
    assert decision.apply is applies and decision.problem is None


def test_lifecycle_backward_write_is_a_problem_in_reject_mode():
    decision = lifecycle_decision(list(LIFECYCLE_STAGES), "salesqualifiedlead", "lead", "reject")
    assert not decision.apply and decision.problem is not None and "backwards" in decision.problem.message


def test_lifecycle_order_follows_the_portals_options():
    custom = ["lead", "subscriber"]  # a portal that reordered its stages
    assert lifecycle_decision(custom, "lead", "subscriber", "ignore").apply


# --- batch update ----------------------------------------------------------------------------------
@pytest.fixture
def three(add_contacts, t0_ms):
    return add_contacts([
        {"email": "a@x.com", "lifecyclestage": "salesqualifiedlead", "_modified": t0_ms - 10_000},
        {"email": "b@x.com", "lifecyclestage": "lead", "_modified": t0_ms - 10_000},
        {"email": "c@x.com", "_modified": t0_ms - 10_000},
    ])


def test_all_ok_batch_answers_200_complete_and_moves_lastmodifieddate(service, store, three, clock, t0_ms):
    clock.advance(5)
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[1]), "properties": {"lifecyclestage": "marketingqualifiedlead", "hs_lead_status": "OPEN"}},
        {"id": str(three[2]), "properties": {"hs_analytics_num_page_views": "17"}},
    ]})
    assert answer.status_code == 200 and answer.applied
    body = answer.body
    assert body["status"] == "COMPLETE" and {"requestedAt", "startedAt", "completedAt"} <= set(body)
    assert "errors" not in body and "numErrors" not in body
    by_id = {r["id"]: r["properties"] for r in body["results"]}
    assert by_id[str(three[1])]["lifecyclestage"] == "marketingqualifiedlead"
    assert by_id[str(three[2])]["hs_analytics_num_page_views"] == "17"
    assert by_id[str(three[2])]["lastmodifieddate"] == "2023-11-14T22:13:25.000Z"
    assert store.get_rows("contacts", [three[2]])[three[2]].modified_ms == t0_ms + 5000


def test_partial_failure_answers_207_with_errors_grouped_by_category(service, store, three):
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[0]), "properties": {"hs_lead_status": "CONNECTED"}},
        {"id": "999999", "properties": {"hs_lead_status": "OPEN"}},
        {"id": "888888", "properties": {"hs_lead_status": "OPEN"}},
        {"id": str(three[1]), "properties": {"leadflow_score": "80"}},
        {"id": str(three[2]), "properties": {"hs_analytics_num_page_views": "lots"}},
    ]})
    assert answer.status_code == 207
    body = answer.body
    assert body["numErrors"] == 4 and [r["id"] for r in body["results"]] == [str(three[0])]
    errors = {e["category"] + ":" + ",".join(e["context"]["ids"]): e for e in body["errors"]}
    assert set(errors) == {"OBJECT_NOT_FOUND:999999,888888", f"VALIDATION_ERROR:{three[1]}",
                           f"VALIDATION_ERROR:{three[2]}"}
    missing_prop = errors[f"VALIDATION_ERROR:{three[1]}"]
    assert missing_prop["subCategory"] == "PROPERTY_DOESNT_EXIST"
    assert missing_prop["errors"][0]["code"] == "PROPERTY_DOESNT_EXIST"
    assert "leadflow_score" in missing_prop["message"]
    assert "lots was not a valid number" in errors[f"VALIDATION_ERROR:{three[2]}"]["message"]
    for e in body["errors"]:  # the SDK requires these keys
        assert e["status"] == "error" and e["links"] == {} and isinstance(e["errors"], list)
    # failed records are untouched
    assert store.get_rows("contacts", [three[1]])[three[1]].props.get("leadflow_score") is None


def test_unknown_enumeration_option_is_rejected(service, three):
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[0]), "properties": {"hs_lead_status": "HOT"}}]})
    assert answer.status_code == 207
    assert "HOT was not one of the allowed options" in answer.body["errors"][0]["message"]


def test_backward_lifecycle_write_is_ignored_by_default(service, store, three):
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[0]), "properties": {"lifecyclestage": "lead", "hs_lead_status": "OPEN"}}]})
    assert answer.status_code == 200
    row = store.get_rows("contacts", [three[0]])[three[0]]
    assert row.props["lifecyclestage"] == "salesqualifiedlead" and row.props["hs_lead_status"] == "OPEN"


def test_backward_lifecycle_write_is_refused_in_reject_mode(store, three):
    service = HubSpotService(store, lifecycle_backward="reject")
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[0]), "properties": {"lifecyclestage": "lead"}}]})
    assert answer.status_code == 207 and answer.body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert store.get_rows("contacts", [three[0]])[three[0]].props["lifecyclestage"] == "salesqualifiedlead"


def test_clearing_the_stage_then_setting_an_earlier_one_moves_it_back(service, store, three):
    service.update_one("contacts", str(three[0]), {"properties": {"lifecyclestage": ""}}, None)
    service.update_one("contacts", str(three[0]), {"properties": {"lifecyclestage": "lead"}}, None)
    assert store.get_rows("contacts", [three[0]])[three[0]].props["lifecyclestage"] == "lead"


def test_whole_batch_mode_rejects_everything_when_one_record_is_invalid(store, three):
    service = HubSpotService(store, batch_validation="whole-batch")
    with pytest.raises(HubSpotError) as err:
        service.batch_update("contacts", {"inputs": [
            {"id": str(three[0]), "properties": {"hs_lead_status": "OPEN"}},
            {"id": str(three[1]), "properties": {"nope": "1"}}]})
    assert err.value.status_code == 400 and err.value.errors[0]["context"] == {"ids": [str(three[1])]}
    assert store.get_rows("contacts", [three[0]])[three[0]].props.get("hs_lead_status") is None


@pytest.mark.parametrize("body, fragment", [
    ({"inputs": [{"id": str(i), "properties": {}} for i in range(101)]}, "at most 100"),
    ({"inputs": [{"id": "1", "properties": {}}, {"id": "1", "properties": {}}]}, "Duplicate IDs"),
    ({"inputs": []}, "must not be empty"),
    ({"nope": []}, "inputs"),
])
def test_malformed_batches_are_rejected_whole_with_400(service, body, fragment):
    with pytest.raises(HubSpotError) as err:
        service.batch_update("contacts", body)
    assert err.value.status_code == 400 and fragment in err.value.message


def test_read_only_properties_cannot_be_written(service, three):
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[0]), "properties": {"lastmodifieddate": "0"}}]})
    assert answer.status_code == 207 and "READ_ONLY_VALUE" in answer.body["errors"][0]["message"]


def test_every_applied_write_is_logged_with_old_and_new_values(service, store, three, clock):
    clock.advance(1)
    service.batch_update("contacts", {"inputs": [
        {"id": str(three[1]), "properties": {"lifecyclestage": "marketingqualifiedlead"}}]})
    log = store.writes(since_ms=int(clock() * 1000))
    assert [(w.object_id, w.property, w.old, w.new) for w in log] == [
        (str(three[1]), "lifecyclestage", "lead", "marketingqualifiedlead")]


def test_custom_property_can_be_written_once_created(service, store, three):
    store.add_group("contacts", "leadflow", "leadflow")
    store.add_property("contacts", PropertyDef(name="leadflow_score", label="score", type="number",
                                               field_type="number", group_name="leadflow", hubspot_defined=False))
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(three[0]), "properties": {"leadflow_score": 87.5}}]})
    assert answer.status_code == 200
    assert answer.body["results"][0]["properties"]["leadflow_score"] == "87.5"


def test_batch_read_reports_missing_ids_as_207_object_not_found(service, three):
    answer = service.batch_read("contacts", {"inputs": [{"id": str(three[0])}, {"id": "424242"}],
                                             "properties": ["email", "lifecyclestage"]})
    assert answer.status_code == 207 and not answer.applied
    assert answer.body["results"][0]["properties"]["email"] == "a@x.com"
    assert answer.body["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert answer.body["errors"][0]["context"] == {"ids": ["424242"]}


def test_batch_read_by_email_id_property(service, three):
    answer = service.batch_read("contacts", {"inputs": [{"id": "B@X.com"}], "idProperty": "email"})
    assert answer.status_code == 200 and answer.body["results"][0]["id"] == str(three[1])


def test_upsert_updates_existing_and_creates_new_records(service, store, three):
    answer = service.batch_upsert("contacts", {"inputs": [
        {"idProperty": "email", "id": "a@x.com", "properties": {"firstname": "Ann"}},
        {"idProperty": "email", "id": "new@x.com", "properties": {"firstname": "Neu"}}]})
    assert answer.status_code == 200
    new = {r["properties"].get("firstname"): r["new"] for r in answer.body["results"]}
    assert new == {"Ann": False, "Neu": True}
    assert store.get_rows_by_unique("contacts", ["new@x.com"])["new@x.com"].props["firstname"] == "Neu"


def test_creating_a_duplicate_email_is_a_conflict(service, three):
    with pytest.raises(HubSpotError) as err:
        service.create_one("contacts", {"properties": {"email": "A@x.com"}})
    assert err.value.status_code == 409 and f"Existing ID: {three[0]}" in err.value.message


def test_partial_fault_fails_some_records_transiently_without_applying_them(store, three):
    faults = FaultInjector(FaultSpec.parse("partial=1"), seed=5)
    service = HubSpotService(store, faults=faults)
    drawn = faults.draw(is_write=True, is_batch_write=True)
    answer = service.batch_update("contacts", {"inputs": [
        {"id": str(i), "properties": {"hs_lead_status": "OPEN"}} for i in three]}, drawn)
    assert answer.status_code == 207
    locked = answer.body["errors"][0]
    assert locked["category"] == "LOCKED" and locked["httpStatus"] == "423"
    rows = store.get_rows("contacts", three)
    for i in three:
        expected = None if str(i) in locked["context"]["ids"] else "OPEN"
        assert rows[i].props.get("hs_lead_status") == expected
