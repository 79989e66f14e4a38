"""The ASGI app in-process (no sockets): auth, rate limits, faults, admin, properties, enrichment.

Clock and sleep are injected, so rate windows and slow/timeout faults need no real waiting.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadflow.sandbox.app import create_app, endpoint_label
from leadflow.sandbox.settings import SandboxSettings
from leadflow.sandbox.store import SandboxStore
from leadflow.sandbox.world import WorldConfig, seed_store

TOKEN = "pat-test-token"
KEY = "ek-test-key"


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("world") / "crm.db"
    store = SandboxStore(path)
    seed_store(store, WorldConfig(seed=4, contacts=400, anchor_ms=1_700_000_000_000))
    store.close()
    return path


class Sleeps(list):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def make_client(seeded_db, tmp_path, clock):
    made = []

    def make(**overrides):
        db = tmp_path / f"crm{len(made)}.db"
        shutil.copy(seeded_db, db)
        settings = SandboxSettings(db_path=db, token=TOKEN, enrichment_key=KEY, **overrides)
        sleeps = Sleeps()
        app = create_app(settings, clock=clock, sleep=sleeps)
        client = TestClient(app)
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        made.append(app)
        return client, sleeps

    yield make
    for app in made:
        app.state.sandbox.store.close()


def _search(client, **body):
    return client.post("/crm/v3/objects/contacts/search", json=body)


def test_missing_or_wrong_token_gets_hubspots_401_body(make_client):
    client, _ = make_client()
    for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": ""}):
        r = client.get("/crm/v3/objects/contacts", headers=headers)
        assert r.status_code == 401
        body = r.json()
        assert body["status"] == "error" and body["category"] == "INVALID_AUTHENTICATION"
        assert body["message"].startswith("Authentication credentials not found") and body["correlationId"]


def test_rate_limit_headers_and_429_body_when_over_the_ten_second_limit(make_client, clock):
    client, _ = make_client(rate_limit="3/10")
    seen = [client.get("/crm/v3/objects/contacts?limit=1") for _ in range(3)]
    assert [r.headers["X-HubSpot-RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
    assert seen[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert seen[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert int(seen[0].headers["X-HubSpot-RateLimit-Daily-Remaining"]) > 0
    refused = client.get("/crm/v3/objects/contacts?limit=1")
    assert refused.status_code == 429
    body = refused.json()
    assert body["errorType"] == "RATE_LIMIT" and body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert body["message"] == "You have reached your ten_secondly_rolling limit." and body["correlationId"]
    clock.advance(10.01)
    assert client.get("/crm/v3/objects/contacts?limit=1").status_code == 200


def test_search_has_its_own_per_second_limit_and_no_rate_headers(make_client, clock):
    client, _ = make_client(rate_limit="100/10", search_rate_limit="2/1")
    answers = [_search(client, limit=1) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["policyName"] == "SECONDLY"
    assert "X-HubSpot-RateLimit-Max" not in answers[0].headers
    # the burst limit is untouched by searches
    assert client.get("/crm/v3/objects/contacts?limit=1").headers["X-HubSpot-RateLimit-Remaining"] == "99"
    clock.advance(1.01)
    assert _search(client, limit=1).status_code == 200


def test_daily_limit_answers_429_daily(make_client):
    client, _ = make_client(daily_limit=2)
    assert [client.get("/crm/v3/objects/contacts").status_code for _ in range(3)] == [200, 200, 429]


def test_list_limit_above_100_is_a_validation_error(make_client):
    client, _ = make_client()
    r = client.get("/crm/v3/objects/contacts?limit=101")
    assert r.status_code == 400 and r.json()["category"] == "VALIDATION_ERROR"


def test_list_pages_with_after_and_returns_default_or_requested_properties(make_client):
    client, _ = make_client(rate_limit="off")
    first = client.get("/crm/v3/objects/contacts?limit=100").json()
    assert set(first["results"][0]["properties"]) == {"createdate", "email", "firstname", "hs_object_id",
                                                     "lastmodifieddate", "lastname"}
    ids, after = [], None
    while True:
        page = client.get("/crm/v3/objects/contacts", params={"limit": 100, "after": after,
                                                              "properties": "lifecyclestage,budget_range"}
                          if after else {"limit": 100, "properties": ["lifecyclestage", "budget_range"]}).json()
        ids += [int(r["id"]) for r in page["results"]]
        assert {"lifecyclestage", "budget_range", "hs_object_id"} <= set(page["results"][0]["properties"])
        if "paging" not in page:
            break
        after = page["paging"]["next"]["after"]
        assert page["paging"]["next"]["link"].endswith(f"after={after}")
    assert ids == list(range(1, 401))


def test_property_values_are_strings_or_null(make_client):
    client, _ = make_client()
    body = client.get("/crm/v3/objects/contacts/1", params={"properties": "hs_analytics_num_page_views,"
                                                            "hs_email_optout,demo_requested_at,pain_point"}).json()
    for value in body["properties"].values():
        assert value is None or isinstance(value, str)
    assert body["properties"]["hs_email_optout"] in ("true", "false")
    assert body["createdAt"].endswith("Z") and len(body["createdAt"]) == 24


def test_get_unknown_id_is_404_in_hubspot_form_and_email_id_property_works(make_client):
    client, _ = make_client()
    r = client.get("/crm/v3/objects/contacts/987654")
    assert r.status_code == 404 and r.json()["category"] == "OBJECT_NOT_FOUND"
    email = client.get("/crm/v3/objects/contacts/5").json()["properties"]["email"]
    by_email = client.get(f"/crm/v3/objects/contacts/{email.upper()}", params={"idProperty": "email"})
    assert by_email.json()["id"] == "5"


def test_contacts_carry_their_company_inline_and_as_property(make_client):
    client, _ = make_client(rate_limit="off")
    page = client.get("/crm/v3/objects/contacts", params={"limit": 50, "associations": "companies",
                                                          "properties": "associatedcompanyid"}).json()
    linked = [r for r in page["results"] if "associations" in r]
    assert linked
    for r in linked:
        assoc = r["associations"]["companies"]["results"][0]
        assert assoc["id"] == r["properties"]["associatedcompanyid"] and assoc["type"] == "contact_to_company"
    v4 = client.post("/crm/v4/associations/contacts/companies/batch/read",
                     json={"inputs": [{"id": linked[0]["id"]}]}).json()
    assert str(v4["results"][0]["to"][0]["toObjectId"]) == linked[0]["properties"]["associatedcompanyid"]


def test_unknown_object_type_is_rejected(make_client):
    client, _ = make_client()
    assert client.get("/crm/v3/objects/deals").status_code == 400


def test_search_request_over_3000_characters_is_rejected(make_client):
    client, _ = make_client()
    r = _search(client, query="x" * 3100)
    assert r.status_code == 400 and "3000 characters" in r.json()["message"]


def test_properties_api_creates_custom_properties_like_hubspot(make_client):
    client, _ = make_client(rate_limit="off")
    stage = client.get("/crm/v3/properties/contacts/lifecyclestage").json()
    assert [o["value"] for o in stage["options"]][:4] == ["subscriber", "lead", "marketingqualifiedlead",
                                                          "salesqualifiedlead"]
    assert client.get("/crm/v3/properties/contacts/leadflow_score").status_code == 404
    spec = {"name": "leadflow_score", "label": "score", "type": "number", "fieldType": "number",
            "groupName": "leadflow"}
    r = client.post("/crm/v3/properties/contacts", json=spec)
    assert r.status_code == 400 and "group" in r.json()["message"]
    assert client.post("/crm/v3/properties/contacts/groups", json={"name": "leadflow", "label": "leadflow"}
                       ).status_code == 201
    assert client.post("/crm/v3/properties/contacts", json=spec).status_code == 201
    assert client.post("/crm/v3/properties/contacts", json=spec).status_code == 409
    names = {p["name"] for p in client.get("/crm/v3/properties/contacts").json()["results"]}
    assert {"leadflow_score", "budget_range", "demo_requested_at"} <= names
    assert client.get("/crm/v3/properties/companies/web_technologies").json()["type"] == "enumeration"
    bad = client.post("/crm/v3/properties/contacts", json={**spec, "name": "x_enum", "type": "enumeration",
                                                           "fieldType": "select"})
    assert bad.status_code == 400 and "options" in bad.json()["message"]
    bad_type = client.post("/crm/v3/properties/contacts", json={**spec, "name": "x_t", "type": "float"})
    assert bad_type.status_code == 400
    missing = client.post("/crm/v3/properties/contacts", json={"name": "x"})
    assert "label" in missing.json()["message"]
    ok = client.patch("/crm/v3/objects/contacts/1", json={"properties": {"leadflow_score": "42"}})
    assert ok.status_code == 200 and ok.json()["properties"]["leadflow_score"] == "42"


def test_faults_can_be_switched_at_run_time_and_are_counted_in_stats(make_client):
    client, _ = make_client(rate_limit="off")
    assert client.post("/_sandbox/faults", json={"spec": "5xx=1"}).json() == {"spec": "5xx=1"}
    statuses = {client.get("/crm/v3/objects/contacts/1").status_code for _ in range(10)}
    assert statuses <= {502, 503} and statuses
    client.post("/_sandbox/faults", content="off")
    assert client.get("/crm/v3/objects/contacts/1").status_code == 200
    stats = client.get("/_sandbox/stats").json()
    assert stats["byEndpoint"]["GET /crm/v3/objects/contacts/{id}"] == 11
    assert stats["byEndpointStatus"]["GET /crm/v3/objects/contacts/{id}"]["200"] == 1
    client.post("/_sandbox/reset-stats")
    assert client.get("/_sandbox/stats").json()["total"] == 0
    bad = client.post("/_sandbox/faults", json={"spec": "gremlins=1"})
    assert bad.status_code == 400 and "gremlins" in bad.json()["message"]


def test_injected_429_comes_before_anything_is_applied(make_client):
    client, _ = make_client(rate_limit="off", faults="429=1")
    r = client.patch("/crm/v3/objects/contacts/1", json={"properties": {"hs_lead_status": "OPEN"}})
    assert r.status_code == 429 and r.json()["policyName"] == "TEN_SECONDLY_ROLLING"
    client.post("/_sandbox/faults", json={"spec": "off"})
    assert client.get("/_sandbox/writes").json()["results"] == []


def test_given_searches_that_differ_only_in_timestamps_then_the_same_faults_are_drawn(make_client):
    """A world is seeded relative to the day it is made: its faults must not move with the calendar."""
    def statuses(day_ms: int) -> list[int]:
        client, _ = make_client(search_rate_limit="off", faults="429=0.5")
        return [_search(client, limit=10, filterGroups=[{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(day_ms - 86_400_000 * i)},
            {"propertyName": "lastmodifieddate", "operator": "LT", "value": str(day_ms)}]}]).status_code
            for i in range(12)]

    today, a_year_on = statuses(1_764_806_400_000), statuses(1_796_342_400_000)
    assert today == a_year_on
    assert set(today) == {200, 429}


def test_timeout_fault_applies_the_write_then_holds_the_answer(make_client):
    client, sleeps = make_client(rate_limit="off", faults="timeout=1", timeout_seconds=45)
    r = client.post("/crm/v3/objects/contacts/batch/update",
                    json={"inputs": [{"id": "3", "properties": {"hs_lead_status": "CONNECTED"}}]})
    assert r.status_code == 200 and sleeps == [45]
    writes = client.get("/_sandbox/writes").json()["results"]
    assert [(w["objectId"], w["property"], w["new"]) for w in writes] == [("3", "hs_lead_status", "CONNECTED")]


def test_slow_fault_adds_latency_to_reads(make_client):
    client, sleeps = make_client(faults="slow=1", slow_seconds=2.5)
    assert client.get("/crm/v3/objects/contacts/1").status_code == 200 and sleeps == [2.5]


def test_given_a_latency_then_every_crm_answer_waits_for_it_and_admin_calls_do_not(make_client):
    client, sleeps = make_client(latency_seconds=0.2)
    assert client.get("/crm/v3/objects/contacts/1").status_code == 200
    assert client.post("/crm/v3/objects/contacts/search", json={"limit": 1}).status_code == 200
    assert client.get("/_sandbox/stats").status_code == 200
    assert sleeps == [0.2, 0.2]


def test_invalid_fault_rejects_some_records_permanently(make_client):
    client, _ = make_client(rate_limit="off", faults="invalid=1", fault_seed=3)
    r = client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": [
        {"id": str(i), "properties": {"hs_lead_status": "OPEN"}} for i in range(1, 21)]})
    assert r.status_code == 207
    body = r.json()
    assert body["errors"][0]["category"] == "VALIDATION_ERROR"
    assert 0 < body["numErrors"] < 20 and len(body["results"]) == 20 - body["numErrors"]


def test_admin_api_needs_the_token(make_client):
    client, _ = make_client()
    assert client.get("/_sandbox/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/_sandbox/health", headers={"Authorization": ""}).status_code == 200


def test_touch_makes_records_share_a_timestamp(make_client):
    client, _ = make_client(rate_limit="off", search_rate_limit="off")
    assert client.post("/_sandbox/touch", json={"objectType": "contacts", "ids": list(range(1, 301)),
                                                "modifiedMs": 1_800_000_000_000}).status_code == 204
    r = _search(client, filterGroups=[{"filters": [{"propertyName": "lastmodifieddate", "operator": "EQ",
                                                    "value": "1800000000000"}]}], limit=1)
    assert r.json()["total"] == 300


def test_enrichment_api_queues_then_answers_and_404s_unknown_domains(make_client, seeded_db):
    client, _ = make_client(enrichment_queued_share=1.0)
    store = SandboxStore(seeded_db)
    try:
        known = store._conn.execute("SELECT domain FROM enrichment LIMIT 1").fetchone()[0]
    finally:
        store.close()
    auth = {"Authorization": f"Bearer {KEY}"}
    first = client.get("/v2/companies/find", params={"domain": known}, headers=auth)
    assert first.status_code == 202 and first.json() == {"status": "queued"}
    second = client.get("/v2/companies/find", params={"domain": f"https://www.{known}/about"}, headers=auth)
    assert second.status_code == 200 and second.json()["domain"] == known
    assert all(h in second.headers for h in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"))
    assert client.get("/v2/companies/find", params={"domain": "gmail.com"}, headers=auth).status_code == 404
    assert client.get("/v2/companies/find", params={"domain": known}).status_code == 401  # HubSpot token
    assert client.get("/v2/companies/find", params={"domain": "nodot"}, headers=auth).status_code == 422


def test_enrichment_rate_limit_answers_429(make_client):
    client, _ = make_client(enrichment_rate_limit="2/60")
    auth = {"Authorization": f"Bearer {KEY}"}
    codes = [client.get("/v2/companies/find", params={"domain": "gmail.com"}, headers=auth).status_code
             for _ in range(3)]
    assert codes == [404, 404, 429]


def test_endpoint_labels_hide_ids():
    assert endpoint_label("PATCH", "/crm/v3/objects/contacts/123") == "PATCH /crm/v3/objects/contacts/{id}"
    assert endpoint_label("POST", "/crm/v3/objects/contacts/search") == "POST /crm/v3/objects/contacts/search"


def test_settings_reject_bad_values_naming_the_key(tmp_path):
    with pytest.raises(ValueError, match="rate_limit"):
        SandboxSettings(db_path=tmp_path / "x.db", rate_limit="fast")
    with pytest.raises(ValueError, match="faults"):
        SandboxSettings(db_path=tmp_path / "x.db", faults="429=2")


# --- principals, history, merge, archive, property options over HTTP ----------------------------
USER_TOKEN, WORKFLOW_TOKEN, APP_TOKEN = "pat-user-token-1", "pat-workflow-token", "pat-other-app-token"
PRINCIPALS = ({"token": USER_TOKEN, "kind": "user", "id": 501, "label": "Ada"},
              {"token": WORKFLOW_TOKEN, "kind": "workflow", "id": 9001, "label": "Nurture"},
              {"token": APP_TOKEN, "kind": "app", "id": 777, "label": "Zapier"})


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _stage_history(client, object_id: str) -> list[dict]:
    r = client.get(f"/crm/v3/objects/contacts/{object_id}?properties=lifecyclestage"
                   "&propertiesWithHistory=lifecyclestage,hs_lead_status")
    assert r.status_code == 200, r.text
    return r.json()["propertiesWithHistory"]["lifecyclestage"]


def test_given_principals_then_each_token_writes_under_its_own_source_type(make_client):
    client, _ = make_client(rate_limit="off", principals=PRINCIPALS)
    for token, stage in ((TOKEN, "marketingqualifiedlead"), (USER_TOKEN, "salesqualifiedlead"),
                         (WORKFLOW_TOKEN, "opportunity"), (APP_TOKEN, "customer")):
        r = client.patch("/crm/v3/objects/contacts/7", json={"properties": {"lifecyclestage": stage}}, headers=_as(token))
        assert r.status_code == 200, r.text
    history = _stage_history(client, "7")
    assert [{k: e.get(k) for k in ("value", "sourceType", "sourceId", "sourceLabel", "updatedByUserId")}
            for e in history[:4]] == [
        {"value": "customer", "sourceType": "INTEGRATION", "sourceId": "777", "sourceLabel": "Zapier",
         "updatedByUserId": None},
        {"value": "opportunity", "sourceType": "WORKFLOW", "sourceId": "9001", "sourceLabel": "Nurture",
         "updatedByUserId": None},
        {"value": "salesqualifiedlead", "sourceType": "CRM_UI", "sourceId": "userId:501", "sourceLabel": None,
         "updatedByUserId": 501},
        {"value": "marketingqualifiedlead", "sourceType": "INTEGRATION", "sourceId": "3141592", "sourceLabel": None,
         "updatedByUserId": None}]
    assert all(e["timestamp"].endswith("Z") and len(e["timestamp"]) == 24 for e in history)
    writes = client.get("/_sandbox/writes").json()["results"]
    assert [(w["new"], w["sourceType"], w.get("updatedByUserId")) for w in writes[-4:]] == [
        ("marketingqualifiedlead", "INTEGRATION", None), ("salesqualifiedlead", "CRM_UI", 501),
        ("opportunity", "WORKFLOW", None), ("customer", "INTEGRATION", None)]


def test_given_an_unknown_token_or_a_principal_on_the_admin_api_then_401(make_client):
    client, _ = make_client(principals=PRINCIPALS)
    assert client.get("/crm/v3/objects/contacts/1", headers=_as("pat-nobody-at-all")).status_code == 401
    assert client.get("/crm/v3/objects/contacts/1", headers=_as(USER_TOKEN)).status_code == 200
    assert client.get("/_sandbox/writes", headers=_as(USER_TOKEN)).status_code == 401


def test_given_other_principals_use_up_their_burst_then_leadflow_keeps_its_budget(make_client):
    client, _ = make_client(rate_limit="3/10", principals=PRINCIPALS)
    statuses = [client.get("/crm/v3/objects/contacts/1", headers=_as(USER_TOKEN)).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    ours = client.get("/crm/v3/objects/contacts/1")
    assert ours.status_code == 200 and ours.headers["X-HubSpot-RateLimit-Remaining"] == "2"


def test_token_info_answers_app_principals_and_refuses_user_tokens(make_client):
    client, _ = make_client(principals=PRINCIPALS)
    url = "/oauth/v2/private-apps/get/access-token-info"
    assert client.post(url, json={"tokenKey": APP_TOKEN}).json()["appId"] == 777
    assert client.post(url, json={"tokenKey": TOKEN}).json()["appId"] == 3_141_592
    assert client.post(url, json={"tokenKey": USER_TOKEN}).status_code == 401


@pytest.mark.parametrize(("principals", "message"), [
    ([{"token": TOKEN, "kind": "user", "id": 1, "label": "x"}], "principals[0].token is already used by token"),
    ([{"token": "pat-a-token", "kind": "robot", "id": 1, "label": "x"}], "principals.0.kind"),
    ([{"token": "pat-a-token", "kind": "user", "id": 1, "label": "x"},
      {"token": "pat-b-token", "kind": "user", "id": 1, "label": "y"}], "principals[1].id 1 is used by another user"),
    ([{"token": "short", "kind": "user", "id": 1, "label": "x"}], "principals.0.token"),
])
def test_given_bad_principals_then_settings_fail_naming_the_key(tmp_path, principals, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        SandboxSettings(db_path=tmp_path / "x.db", token=TOKEN, principals=principals)
    assert message in str(err.value).replace("\n", " ")


def test_given_generated_principals_then_tokens_repeat_for_the_same_seed_and_differ_per_seed():
    from leadflow.sandbox.settings import generated_principals

    first = generated_principals(2, 1, "pat-seed")
    assert first == generated_principals(2, 1, "pat-seed")
    assert [(p.kind, p.id) for p in first] == [("user", 77_002), ("user", 77_003), ("workflow", 9_001)]
    assert {p.token for p in first}.isdisjoint(p.token for p in generated_principals(2, 1, "pat-other"))


def test_list_and_batch_read_return_history_only_when_asked(make_client):
    client, _ = make_client(rate_limit="off", principals=PRINCIPALS)
    client.patch("/crm/v3/objects/contacts/2", json={"properties": {"jobtitle": "CTO"}}, headers=_as(USER_TOKEN))
    page = client.get("/crm/v3/objects/contacts?limit=2&propertiesWithHistory=jobtitle").json()["results"]
    assert page[1]["propertiesWithHistory"]["jobtitle"][0]["sourceId"] == "userId:501"
    assert "propertiesWithHistory" not in client.get("/crm/v3/objects/contacts?limit=2").json()["results"][0]
    read = client.post("/crm/v3/objects/contacts/batch/read", json={
        "inputs": [{"id": "2"}], "properties": ["jobtitle"], "propertiesWithHistory": ["jobtitle"]}).json()
    assert read["results"][0]["propertiesWithHistory"]["jobtitle"][0]["value"] == "CTO"


def test_patch_property_options_then_old_values_are_refused_with_invalid_option(make_client):
    client, _ = make_client(rate_limit="off")
    options = [{"label": "New", "value": "NEW", "hidden": False}, {"label": "Nurturing", "value": "NURTURING",
                                                                    "hidden": False}]
    r = client.patch("/crm/v3/properties/contacts/hs_lead_status", json={"options": options})
    assert r.status_code == 200 and [o["value"] for o in r.json()["options"]] == ["NEW", "NURTURING"]
    assert client.get("/crm/v3/properties/contacts/hs_lead_status").json()["options"][1]["label"] == "Nurturing"
    ok = client.patch("/crm/v3/objects/contacts/3", json={"properties": {"hs_lead_status": "NURTURING"}})
    assert ok.status_code == 200
    refused = client.patch("/crm/v3/objects/contacts/3", json={"properties": {"hs_lead_status": "OPEN"}})
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["code"] == "INVALID_OPTION"
    assert "OPEN was not one of the allowed options: [NEW, NURTURING]" in refused.json()["message"]


@pytest.mark.parametrize(("name", "body", "status", "says"), [
    ("hs_lead_status", {"label": "Status"}, 400, "HubSpot-defined property: only its options can change"),
    ("email", {"options": [{"label": "a", "value": "a"}]}, 400, "only enumeration properties have options"),
    ("hs_lead_status", {"options": [{"label": "a", "value": "a"}, {"value": "a"}]}, 400, "more than once"),
    ("hs_lead_status", {"type": "string"}, 400, "cannot change type"),
    ("budget_range", {"groupName": "nope"}, 400, "'nope' does not exist"),
    ("no_such_property", {"options": []}, 404, "Unable to find property no_such_property"),
])
def test_patch_property_refuses_what_it_cannot_change_and_says_why(make_client, name, body, status, says):
    client, _ = make_client(rate_limit="off")
    r = client.patch(f"/crm/v3/properties/contacts/{name}", json=body)
    assert r.status_code == status and says in r.json()["message"]


def test_patch_custom_property_label_and_order(make_client, clock):
    client, _ = make_client(rate_limit="off")
    clock.advance(30)
    r = client.patch("/crm/v3/properties/contacts/budget_range", json={"label": "Budget", "displayOrder": 3})
    assert r.status_code == 200 and r.json()["label"] == "Budget" and r.json()["displayOrder"] == 3
    assert r.json()["updatedAt"] == "2023-11-14T22:13:50.000Z"  # the injected clock's now


def test_merge_over_http_attributes_it_and_the_merged_id_reads_as_the_survivor(make_client):
    client, _ = make_client(rate_limit="off", principals=PRINCIPALS)
    r = client.post("/crm/v3/objects/contacts/merge", json={"primaryObjectId": "10", "objectIdToMerge": "11"},
                    headers=_as(USER_TOKEN))
    assert r.status_code == 200 and r.json()["id"] == "10"
    assert r.json()["properties"]["hs_merged_object_ids"] == "11"
    assert client.get("/crm/v3/objects/contacts/11").json()["id"] == "10"
    history = client.get("/crm/v3/objects/contacts/10?propertiesWithHistory=hs_merged_object_ids").json()
    assert history["propertiesWithHistory"]["hs_merged_object_ids"][0]["sourceId"] == "userId:501"
    search = _search(client, filterGroups=[{"filters": [{"propertyName": "hs_object_id", "operator": "EQ",
                                                          "value": "11"}]}]).json()
    assert search["total"] == 0


def test_batch_archive_then_archived_list_shows_archived_at(make_client, clock):
    client, _ = make_client(rate_limit="off")
    r = client.post("/crm/v3/objects/contacts/batch/archive", json={"inputs": [{"id": "20"}, {"id": "21"}]})
    assert r.status_code == 204
    archived = client.get("/crm/v3/objects/contacts?archived=true").json()["results"]
    assert [(o["id"], o["archived"]) for o in archived] == [("20", True), ("21", True)]
    assert archived[0]["archivedAt"] == "2023-11-14T22:13:20.000Z"  # the injected clock's now
    assert client.get("/crm/v3/objects/contacts/20").status_code == 404
    assert client.get("/crm/v3/objects/contacts/20?archived=true").json()["archivedAt"] == archived[0]["archivedAt"]


def test_batch_create_upsert_and_update_routes_each_reach_their_own_write(make_client):
    client, _ = make_client(rate_limit="off")
    base = "/crm/v3/objects/contacts/batch"
    created = client.post(f"{base}/create", json={"inputs": [{"properties": {"email": "route@x.com",
                                                                              "firstname": "Ro"}}]})
    assert created.status_code == 201
    record_id = created.json()["results"][0]["id"]
    upserted = client.post(f"{base}/upsert", json={"inputs": [
        {"idProperty": "email", "id": "route@x.com", "properties": {"firstname": "Ute"}},
        {"idProperty": "email", "id": "fresh@x.com", "properties": {"firstname": "Neu"}}]})
    assert upserted.status_code == 200
    assert {r["properties"]["firstname"]: r["new"] for r in upserted.json()["results"]} == {"Ute": False, "Neu": True}
    updated = client.post(f"{base}/update", json={"inputs": [{"id": record_id, "properties": {"firstname": "Upd"}}]})
    assert updated.status_code == 200
    assert client.get(f"/crm/v3/objects/contacts/{record_id}").json()["properties"]["firstname"] == "Upd"
    assert client.post("/crm/v3/objects/nothings/batch/create", json={"inputs": []}).status_code == 400
