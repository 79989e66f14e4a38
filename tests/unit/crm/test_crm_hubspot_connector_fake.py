"""HubSpotConnector against an in-memory fake of HubSpot's endpoints (no sockets, no sleeps)."""

from __future__ import annotations

import json
import random
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from crm_fakes import FakeClock, Reply, make_http

from leadflow.connections import Connection
from leadflow.crm.base import CrmConnector, CrmError, CrmUnavailableError, RecordUpdate
from leadflow.crm.hubspot import HubSpotConnector, split_search_properties
from leadflow.crm.hubspot_mapping import HubSpotMapping
from leadflow.crm.registry import available_crms, get_connector, register_connector
from leadflow.crm.write_core import ForbiddenPropertyError
from leadflow.pulled import Watermark

T0 = 1_700_000_000_000
STAGES = ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer", "evangelist", "other"]


class FakeHubSpot:
    """Just enough of HubSpot CRM v3 for the connector's calls."""

    def __init__(self, contacts: int = 5, owned_exists: bool = False) -> None:
        base = ["email", "firstname", "lastname", "lastmodifieddate", "createdate", "hs_object_id",
                "associatedcompanyid", "lifecyclestage", "hs_lead_status", "jobtitle", "hs_analytics_num_page_views"]
        self.props: dict[str, dict[str, Any]] = {n: {"name": n, "type": "string"} for n in base}
        self.props["lastmodifieddate"]["type"] = "datetime"
        self.groups = {"contactinformation"}
        self.contacts: dict[str, dict[str, Any]] = {}
        for i in range(1, contacts + 1):
            self.contacts[str(i)] = {
                "email": f"p{i}@example.com", "firstname": f"P{i}", "lastmodifieddate": str(T0 + i),
                "hs_object_id": str(i), "associatedcompanyid": str(100 + i % 2), "lifecyclestage": "lead",
                "hs_analytics_num_page_views": str(i),
            }
        self.companies = {"100": {"name": "Even Co", "domain": "even.example", "web_technologies": "A;B"},
                          "101": {"name": "Odd Co", "domain": "odd.example"}}
        self.update_errors: dict[str, tuple[str, str]] = {}  # id -> (category, message)
        self.bad_ids: set[str] = set()  # ids that make the whole batch a 400
        self.update_failure: "Reply | BaseException | None" = None
        self.calls: list[tuple[str, str, Any]] = []
        self.urls: list[str] = []
        self.archived: list[dict[str, Any]] = []  # {"id", "archivedAt"} of archived contacts
        # The list's pages after the first wait for a first contacts search (a full pull from both ends).
        self.list_waits_for_search = False
        self.searched = threading.Event()
        self.contact_searches = 0
        self.refuse_contact_searches_from: int | None = None  # this and later contact searches: a 400
        if owned_exists:
            self.add_property("leadflow_score", "number")

    def add_property(self, name: str, type_: str) -> None:
        self.props[name] = {"name": name, "type": type_}

    def __call__(self, request: requests.PreparedRequest) -> "Reply | BaseException":
        path = urlsplit(request.url).path
        body = json.loads(request.body) if request.body else None
        self.calls.append((request.method, path, body))
        self.urls.append(request.url)
        route = (request.method, path)
        if route == ("GET", "/crm/v3/properties/contacts"):
            return Reply(200, {"results": list(self.props.values())})
        if route == ("GET", "/crm/v3/properties/companies"):
            names = ["name", "domain", "web_technologies", "numberofemployees", "hs_lastmodifieddate"]
            return Reply(200, {"results": [{"name": n, "type": "string"} for n in names]})
        if route == ("GET", "/crm/v3/properties/contacts/groups"):
            return Reply(200, {"results": [{"name": g} for g in self.groups]})
        if route == ("POST", "/crm/v3/properties/contacts/groups"):
            self.groups.add(body["name"])
            return Reply(201, body)
        if route == ("POST", "/crm/v3/properties/contacts"):
            self.add_property(body["name"], body["type"])
            return Reply(201, body)
        if route == ("GET", "/crm/v3/properties/contacts/lifecyclestage"):
            return Reply(200, {"name": "lifecyclestage", "options": [
                {"value": v, "label": v, "displayOrder": i, "hidden": False} for i, v in enumerate(STAGES)]})
        if route == ("GET", "/crm/v3/properties/contacts/hs_lead_status"):
            return Reply(200, {"name": "hs_lead_status", "options": [{"value": "NEW", "displayOrder": 0}]})
        if route == ("POST", "/crm/v3/objects/contacts/search"):
            self.contact_searches += 1
            self.searched.set()
            if self.refuse_contact_searches_from is not None and self.contact_searches >= self.refuse_contact_searches_from:
                return Reply(400, {"status": "error", "category": "VALIDATION_ERROR",
                                   "message": "sorting by hs_object_id is not allowed here"})
            if len(request.body) > 3000:
                return Reply(400, {"status": "error", "category": "VALIDATION_ERROR", "message": "body too long"})
            return Reply(200, self._search(body))
        if route == ("POST", "/crm/v3/objects/companies/search"):
            [flt] = body["filterGroups"][0]["filters"]
            assert (flt["propertyName"], flt["operator"]) == ("hs_object_id", "IN") and len(flt["values"]) <= 100
            hits = [{"id": i, "properties": {k: self.companies[i].get(k) for k in body["properties"]}}
                    for i in flt["values"] if i in self.companies]
            return Reply(200, {"total": len(hits), "results": hits})
        if route == ("POST", "/crm/v3/objects/contacts/batch/read"):
            return Reply(200, self._read(self.contacts, body))
        if route == ("POST", "/crm/v3/objects/companies/batch/read"):
            return Reply(200, self._read(self.companies, body))
        if route == ("POST", "/crm/v3/objects/contacts/batch/update"):
            return self._update(body)
        if route == ("GET", "/crm/v3/objects/contacts"):
            query = parse_qs(urlsplit(request.url).query)
            start, limit = int(query.get("after", ["0"])[0]), int(query["limit"][0])
            if start and self.list_waits_for_search:  # both ends at once, whatever the threads' timing
                assert self.searched.wait(timeout=10)
            if query.get("archived") == ["true"]:
                rows = [{**r, "archived": True, "properties": {}} for r in self.archived]
            else:
                wanted = query["properties"][0].split(",")
                rows = [{"id": cid, "properties": {k: p.get(k) for k in wanted}}
                        for cid, p in sorted(self.contacts.items(), key=lambda kv: int(kv[0]))]
            more = start + limit < len(rows)
            return Reply(200, {"results": rows[start:start + limit],
                               **({"paging": {"next": {"after": str(start + limit)}}} if more else {})})
        return Reply(404, {"status": "error", "message": f"no route {route}"})

    def _search(self, body: dict[str, Any]) -> dict[str, Any]:
        def keep(props: dict[str, Any]) -> bool:
            for group in body["filterGroups"]:
                for f in group["filters"]:
                    value, target = int(props[f["propertyName"]]), int(f["value"])
                    if not {"GTE": value >= target, "GT": value > target, "EQ": value == target,
                            "LT": value < target}[f["operator"]]:
                        return False
            return True

        sort = body["sorts"][0]["propertyName"]
        matching = sorted((p for p in self.contacts.values() if keep(p)), key=lambda p: int(p[sort]),
                          reverse=body["sorts"][0]["direction"] == "DESCENDING")
        hits = matching[: body["limit"]]
        return {"total": len(matching), "results": [
            {"id": p["hs_object_id"], "properties": {k: p.get(k) for k in body["properties"]}} for p in hits]}

    @staticmethod
    def _read(store: dict[str, dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
        results, errors = [], []
        for item in body["inputs"]:
            props = store.get(item["id"])
            if props is None:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": [item["id"]]}})
            else:
                results.append({"id": item["id"], "properties": {k: props.get(k) for k in body["properties"]}})
        return {"status": "COMPLETE", "results": results, "errors": errors}

    def _update(self, body: dict[str, Any]) -> "Reply | BaseException":
        if self.update_failure is not None:
            return self.update_failure
        ids = [i["id"] for i in body["inputs"]]
        if self.bad_ids & set(ids):
            return Reply(400, {"status": "error", "category": "VALIDATION_ERROR", "message": "Property values were not valid"})
        results, errors = [], []
        for item in body["inputs"]:
            if item["id"] in self.update_errors:
                category, message = self.update_errors[item["id"]]
                errors.append({"status": "error", "category": category, "message": message, "context": {"ids": [item["id"]]}})
                continue
            record = self.contacts[item["id"]]
            for name, value in item["properties"].items():
                if name == "lifecyclestage" and value and record.get("lifecyclestage") and \
                        STAGES.index(value) < STAGES.index(record["lifecyclestage"]):
                    continue  # HubSpot ignores backward moves
                record[name] = value
            results.append({"id": item["id"]})
        return Reply(207 if errors else 200, {"status": "COMPLETE", "results": results, "errors": errors})

    def list_queries(self) -> list[dict[str, list[str]]]:
        """The query strings of the (unarchived) contact list calls, in order."""
        queries = [parse_qs(urlsplit(url).query) for url in self.urls if urlsplit(url).path == "/crm/v3/objects/contacts"]
        return [q for q in queries if q.get("archived") != ["true"]]

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p, _ in self.calls if method is None or m == method]


@pytest.fixture
def hubspot() -> FakeHubSpot:
    return FakeHubSpot()


def _connector(fake: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping, **extra: Any) -> HubSpotConnector:
    http, _ = make_http(fake)
    conn = Connection("leadflow_hubspot", host="127.0.0.1", port=8765, password="tok", extra={"index_lag_ms": 0, **extra})
    return HubSpotConnector.from_connection(
        conn, mapping=mapping, clock=clock, sleeper=clock.sleep, rng=random.Random(0), http=http,
        wall_clock=lambda: (T0 + 10_000) / 1000,
    )


def test_connector_satisfies_the_protocol(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping)
    assert isinstance(connector, CrmConnector)
    assert (connector.name, connector.max_batch_size) == ("hubspot", 100)


def test_full_pull_yields_leads_companies_and_a_watermark(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping, full_pull="list")
    pages = list(connector.pull(None))
    leads = [l for p in pages for l in p.leads]
    assert sorted(l["record_id"] for l in leads) == ["1", "2", "3", "4", "5"]
    assert leads[0]["page_views"] == 1.0 and leads[0]["lifecycle_stage"] == "lead"
    companies = {c["company_id"]: c for p in pages for c in p.companies}
    assert companies["100"]["technologies"] == "A;B" and companies["101"]["name"] == "Odd Co"
    # The list is in id order: the watermark is the pull's start (index lag 0 here), given last.
    assert pages[-1].watermark == Watermark(modified_ms=T0 + 10_000)
    assert all(p.watermark is None for p in pages[:-1])
    assert not [p for m, p, _ in hubspot.calls if p.endswith("contacts/search")]
    # Only properties that exist in the portal are asked for; custom ones that do not are left out.
    listed = hubspot.list_queries()[0]["properties"][0].split(",")
    assert "jobtitle" in listed and "budget_range" not in listed and "leadflow_score" not in listed
    assert connector.stats.records_pulled == 5 and connector.stats.companies_pulled == 2


def test_given_a_full_pull_from_both_ends_then_each_contact_comes_once_and_the_watermark_last(
        clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot = FakeHubSpot(contacts=450)
    hubspot.list_waits_for_search = True
    connector = _connector(hubspot, clock, mapping, list_page_size=50, page_size=100)
    pages = list(connector.pull(None))
    ids = [l["record_id"] for p in pages for l in p.leads]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 451)]
    assert pages[-1].watermark == Watermark(modified_ms=T0 + 10_000)
    assert all(p.watermark is None for p in pages[:-1])
    searches = [b for m, p, b in hubspot.calls if p.endswith("contacts/search")]
    assert searches and hubspot.list_queries()  # both ends were paged
    # keyset paging down by id: sorted descending, each page below the lowest id seen
    assert all(b["sorts"] == [{"propertyName": "hs_object_id", "direction": "DESCENDING"}] for b in searches)
    assert [f["operator"] for b in searches[1:] for f in b["filterGroups"][0]["filters"]] == ["LT"] * (len(searches) - 1)


@pytest.mark.parametrize("refused_from", [1, 2])
def test_given_the_portal_refuses_the_search_from_the_top_then_the_list_pulls_the_rest_each_contact_once(
        clock: FakeClock, mapping: HubSpotMapping, caplog, refused_from: int) -> None:
    hubspot = FakeHubSpot(contacts=450)
    hubspot.list_waits_for_search = True
    hubspot.refuse_contact_searches_from = refused_from
    connector = _connector(hubspot, clock, mapping, list_page_size=50, page_size=100)
    with caplog.at_level("WARNING", logger="leadflow.crm.hubspot"):
        pages = list(connector.pull(None))
    ids = [l["record_id"] for p in pages for l in p.leads]
    assert sorted(ids, key=int) == [str(i) for i in range(1, 451)] and len(ids) == len(set(ids))
    assert pages[-1].watermark == Watermark(modified_ms=T0 + 10_000)
    assert hubspot.contact_searches == refused_from  # no search after the refusal
    assert "the search from the top stopped" in caplog.text and "list pages on alone" in caplog.text


def test_given_full_pull_by_search_then_the_watermark_is_the_last_modified_seen(
        hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping, full_pull="search")
    pages = list(connector.pull(None))
    assert sorted(l["record_id"] for p in pages for l in p.leads) == ["1", "2", "3", "4", "5"]
    assert pages[-1].watermark == Watermark(modified_ms=T0 + 5)
    search_props = next(b for m, p, b in hubspot.calls if p.endswith("/search"))["properties"]
    assert "jobtitle" in search_props and "budget_range" not in search_props and "leadflow_score" not in search_props
    assert not hubspot.list_queries()


def test_given_a_list_pull_then_pages_of_100_are_asked_for_until_the_last(
        clock: FakeClock, mapping: HubSpotMapping) -> None:
    fake = FakeHubSpot(contacts=250)
    # The list alone: from both ends (the default) the search from the top may meet the list
    # before its last page, depending on how the two threads are scheduled.
    pages = list(_connector(fake, clock, mapping, full_pull="list").pull(None))
    assert sorted(int(l["record_id"]) for p in pages for l in p.leads) == list(range(1, 251))
    assert [(q["limit"], q.get("after")) for q in fake.list_queries()] == [
        (["100"], None), (["100"], ["100"]), (["100"], ["200"])]


def test_given_few_new_companies_per_page_then_companies_are_read_100_a_call(
        clock: FakeClock, mapping: HubSpotMapping) -> None:
    fake = FakeHubSpot(contacts=1000)
    for i, props in fake.contacts.items():  # 250 companies, four contacts each, spread over the pages
        props["associatedcompanyid"] = str(1000 + int(i) % 250)
    fake.companies = {str(1000 + c): {"name": f"Co {c}", "domain": f"c{c}.example"} for c in range(250)}
    pages = list(_connector(fake, clock, mapping, page_size=50, full_pull="search").pull(None))
    reads = [b for m, p, b in fake.calls if p == "/crm/v3/objects/companies/batch/read"]
    assert [len(b["inputs"]) for b in reads] == [100, 100, 50]
    by_page = [(len(p.leads), len(p.companies)) for p in pages]
    assert sum(n for n, _ in by_page) == 1000 and sum(c for _, c in by_page) == 250
    # Every company reaches the warehouse no later than the first lead that refers to it.
    landed: set[str] = set()
    for page in pages:
        landed |= {c["company_id"] for c in page.companies}
        assert {l["company_id"] for l in page.leads} <= landed


def test_companies_are_fetched_once_per_pull(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping, list_page_size=2, company_flush_leads=2, full_pull="list")
    pages = list(connector.pull(None))
    assert len(pages) >= 3
    company_searches = [b for m, p, b in hubspot.calls if p == "/crm/v3/objects/companies/search"]
    requested = [v for b in company_searches for v in b["filterGroups"][0]["filters"][0]["values"]]
    assert not [p for m, p, b in hubspot.calls if p == "/crm/v3/objects/companies/batch/read"]
    assert sorted(requested) == ["100", "101"]


def test_incremental_pull_filters_on_the_watermark(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping)
    leads = [l for p in connector.pull(Watermark(modified_ms=T0 + 4)) for l in p.leads]
    assert sorted(l["record_id"] for l in leads) == ["4", "5"]


def test_given_contacts_archived_since_the_watermark_then_the_incremental_pull_reports_them(
        hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.archived = [{"id": str(900 + i), "archivedAt": "2020-01-01T00:00:00Z"} for i in range(150)]
    hubspot.archived.append({"id": "77", "archivedAt": T0 + 10})  # after the watermark
    removed = [r for p in _connector(hubspot, clock, mapping).pull(Watermark(modified_ms=T0 + 4)) for r in p.removed]
    assert [(r.record_id, r.merged_into) for r in removed] == [("77", None)]
    lists = [p for m, p, b in hubspot.calls if m == "GET" and p == "/crm/v3/objects/contacts"]
    assert len(lists) == 2  # paged through every archived contact


def test_given_a_full_refresh_then_archived_contacts_are_not_listed(hubspot: FakeHubSpot, clock: FakeClock,
                                                                    mapping: HubSpotMapping) -> None:
    hubspot.archived = [{"id": "77", "archivedAt": T0 + 10}]
    pages = list(_connector(hubspot, clock, mapping).pull(None))
    assert not [r for p in pages for r in p.removed]
    assert not [q for q in map(parse_qs, (urlsplit(u).query for u in hubspot.urls)) if q.get("archived") == ["true"]]


def test_given_a_merge_survivor_then_its_merged_ids_are_reported_as_merged_into_it(
        hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.add_property("hs_merged_object_ids", "enumeration")
    hubspot.contacts["5"]["hs_merged_object_ids"] = "31;32"
    removed = [r for p in _connector(hubspot, clock, mapping).pull(Watermark(modified_ms=T0 + 4)) for r in p.removed]
    assert [(r.record_id, r.merged_into) for r in removed] == [("31", "5"), ("32", "5")]


def test_given_owned_property_in_portal_then_current_value_is_pulled(clock: FakeClock, mapping: HubSpotMapping) -> None:
    fake = FakeHubSpot(owned_exists=True)
    fake.contacts["1"]["leadflow_score"] = "55.0"
    leads = [l for p in _connector(fake, clock, mapping).pull(None) for l in p.leads]
    assert next(l for l in leads if l["record_id"] == "1")["crm_score"] == "55"


def test_given_search_body_over_the_limit_then_properties_are_fetched_by_batch_read(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    for name in mapping.contact_properties.values():
        hubspot.add_property(name, hubspot.props.get(name, {}).get("type", "string"))
    connector = _connector(hubspot, clock, mapping, search_body_limit=500)
    leads = [l for p in connector.pull(Watermark(modified_ms=T0)) for l in p.leads]
    assert len(leads) == 5 and all(l["first_name"] for l in leads)
    searches = [b for m, p, b in hubspot.calls if p.endswith("/search")]
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 500 for b in searches)
    assert "/crm/v3/objects/contacts/batch/read" in hubspot.paths()


def test_split_search_properties_keeps_everything_when_it_fits() -> None:
    assert split_search_properties(["a", "b"], ["id"], "ts", 200, 3000) == (["id", "a", "b"], [])
    first, later = split_search_properties([f"prop_{i:03d}_long_name" for i in range(200)], ["hs_object_id"], "ts", 200, 3000)
    assert first == ["hs_object_id"] and len(later) == 200


def test_ensure_schema_creates_group_and_missing_properties(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping)
    connector.ensure_schema()
    assert "leadflow" in hubspot.groups
    for spec in mapping.owned_properties.values():
        assert hubspot.props[spec.name]["type"] == spec.type
    assert connector.stage_options() == STAGES
    assert connector.lead_status_options() == ["NEW"]
    created = [b["name"] for m, p, b in hubspot.calls if (m, p) == ("POST", "/crm/v3/properties/contacts")]
    assert len(created) == len(mapping.owned_properties)
    # Idempotent: a second call creates nothing.
    hubspot.calls.clear()
    connector.ensure_schema()
    assert ("POST", "/crm/v3/properties/contacts") not in [(m, p) for m, p, _ in hubspot.calls]


def test_given_owned_property_with_wrong_type_then_error_names_it(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.add_property("leadflow_score", "string")
    with pytest.raises(CrmError, match=r"'leadflow_score' exists with type 'string', but leadflow needs type 'number'"):
        _connector(hubspot, clock, mapping).ensure_schema()


def test_push_maps_207_to_one_result_per_update_in_order(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.update_errors = {"2": ("VALIDATION_ERROR", "bad value"), "3": ("LOCKED", "locked")}
    results = _connector(hubspot, clock, mapping).push([RecordUpdate(str(i), {"score": i}) for i in (3, 1, 2)])
    assert [(r.record_id, r.status, r.category) for r in results] == [
        ("3", "retryable", "LOCKED"), ("1", "confirmed", None), ("2", "rejected", "VALIDATION_ERROR")]
    assert hubspot.contacts["1"]["leadflow_score"] == "1"


def test_push_backward_stage_with_allow_backward_clears_then_sets(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.contacts["1"]["lifecyclestage"] = "salesqualifiedlead"
    [result] = _connector(hubspot, clock, mapping).push(
        [RecordUpdate("1", {"lifecycle_stage": "lead"}, current_stage="sql", allow_backward=True)]
    )
    assert result.status == "confirmed"
    updates = [b["inputs"] for m, p, b in hubspot.calls if p.endswith("/batch/update")]
    assert updates == [[{"id": "1", "properties": {"lifecyclestage": ""}}],
                       [{"id": "1", "properties": {"lifecyclestage": "lead"}}]]
    assert hubspot.contacts["1"]["lifecyclestage"] == "lead"


def test_push_backward_stage_without_permission_is_never_sent(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    results = _connector(hubspot, clock, mapping).push(
        [RecordUpdate("1", {"lifecycle_stage": "lead"}, current_stage="sql"), RecordUpdate("2", {"score": 9})]
    )
    assert [r.status for r in results] == ["rejected", "confirmed"]
    sent = [i for m, p, b in hubspot.calls if p.endswith("/batch/update") for i in b["inputs"]]
    assert sent == [{"id": "2", "properties": {"leadflow_score": "9"}}]


def test_push_refuses_foreign_fields_and_sends_nothing(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    with pytest.raises(ForbiddenPropertyError):
        _connector(hubspot, clock, mapping).push([RecordUpdate("1", {"score": 1}), RecordUpdate("2", {"email": "x@y.z"})])
    assert hubspot.paths("POST") == []


def test_push_write_timeout_marks_every_record_unknown(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.update_failure = requests.ReadTimeout("timed out")
    connector = _connector(hubspot, clock, mapping)
    results = connector.push([RecordUpdate("1", {"score": 1}), RecordUpdate("2", {"score": 2})])
    assert [r.status for r in results] == ["unknown", "unknown"]
    assert len(hubspot.paths("POST")) == 1  # not retried


def test_push_whole_call_5xx_exhausted_raises_unavailable(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.update_failure = Reply(503, {"message": "down"})
    with pytest.raises(CrmUnavailableError):
        _connector(hubspot, clock, mapping, max_retries=2).push([RecordUpdate("1", {"score": 1})])
    assert len(hubspot.paths("POST")) == 3


def test_push_whole_batch_400_is_bisected_so_only_the_bad_record_is_rejected(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    hubspot.bad_ids = {"3"}
    connector = _connector(hubspot, clock, mapping)
    results = connector.push([RecordUpdate(str(i), {"score": i}) for i in range(1, 6)])
    assert [r.status for r in results] == ["confirmed", "confirmed", "rejected", "confirmed", "confirmed"]
    assert "Property values were not valid" in results[2].error
    assert connector.stats.push_bisections >= 1


def test_push_rejects_oversized_batches_and_duplicate_ids(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping)
    with pytest.raises(ValueError, match="at most 100"):
        connector.push([RecordUpdate(str(i), {"score": 1}) for i in range(101)])
    with pytest.raises(ValueError, match="twice"):
        connector.push([RecordUpdate("1", {"score": 1}), RecordUpdate("1", {"score": 2})])


def test_read_returns_canonical_pushed_values_for_existing_records(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    connector = _connector(hubspot, clock, mapping)
    connector.push([RecordUpdate("2", {"score": 42.5, "lifecycle_stage": "mql", "lead_status": "open"})])
    rows = connector.read(["2", "999"])
    assert len(rows) == 1
    row = rows[0]
    assert (row["record_id"], row["score"], row["lifecycle_stage"], row["lead_status"]) == ("2", "42.5", "mql", "open")
    assert row["score"] == connector.format_value("score", 42.5)


def test_registry_returns_hubspot_connector_and_names_unknown_crms(connection: Connection) -> None:
    assert isinstance(get_connector("HubSpot", connection), HubSpotConnector)
    assert "hubspot" in available_crms()
    with pytest.raises(ValueError, match="unknown CRM 'pipedrive'"):
        get_connector("pipedrive", connection)


def test_registry_reports_an_unimportable_connector_clearly(connection: Connection) -> None:
    register_connector("broken_crm_for_test", "leadflow.crm.does_not_exist:Factory")
    with pytest.raises(ValueError, match="broken_crm_for_test connector is not available"):
        get_connector("broken_crm_for_test", connection)


def test_given_missing_company_then_leads_referencing_it_get_an_issue(hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping) -> None:
    del hubspot.companies["101"]
    pages = list(_connector(hubspot, clock, mapping, list_page_size=2, company_flush_leads=2,
                            full_pull="list").pull(None))
    issues = [i for p in pages for i in p.issues if i.field == "company_id"]
    odd_leads = sorted(l["record_id"] for p in pages for l in p.leads if l["company_id"] == "101")
    assert sorted(i.record_id for i in issues) == odd_leads == ["1", "3", "5"]
    assert all(i.problem == "associated company not found" and i.value == "101" for i in issues)
    company_reads = [v for m, p, b in hubspot.calls if p.endswith("companies/search")
                     for v in b["filterGroups"][0]["filters"][0]["values"]]
    assert company_reads.count("101") == 1  # a missing company is not asked for again


def test_given_property_create_times_out_then_schema_setup_looks_before_creating_again(
    hubspot: FakeHubSpot, clock: FakeClock, mapping: HubSpotMapping
) -> None:
    real = hubspot.__call__
    timed_out = {"applied": 0, "lost": 0}

    def flaky(request: requests.PreparedRequest) -> "Reply | BaseException":
        path = urlsplit(request.url).path
        if (request.method, path) == ("POST", "/crm/v3/properties/contacts"):
            name = json.loads(request.body)["name"]
            if name == "leadflow_score" and not timed_out["applied"]:
                timed_out["applied"] += 1
                real(request)  # applied, but the answer never arrives
                return requests.ReadTimeout("read timed out")
            if name == "leadflow_grade" and not timed_out["lost"]:
                timed_out["lost"] += 1
                hubspot.calls.append((request.method, path, json.loads(request.body)))
                return requests.ReadTimeout("read timed out")  # never applied
        return real(request)

    connector = _connector(flaky, clock, mapping)
    connector.ensure_schema()
    for spec in mapping.owned_properties.values():
        assert hubspot.props[spec.name]["type"] == spec.type
    posts = [b["name"] for m, p, b in hubspot.calls if (m, p) == ("POST", "/crm/v3/properties/contacts")]
    assert posts.count("leadflow_score") == 1  # applied despite the timeout: not sent again
    assert posts.count("leadflow_grade") == 2  # lost: created on the second try


def test_given_a_company_search_body_over_the_limit_then_those_companies_are_batch_read(
        clock: FakeClock, mapping: HubSpotMapping) -> None:
    fake = FakeHubSpot(contacts=150)
    for i, props in fake.contacts.items():  # a company each: 100 ids make a body over 500 characters
        props["associatedcompanyid"] = str(500_000 + int(i))
    fake.companies = {str(500_000 + i): {"name": f"Co {i}"} for i in range(1, 151)}
    pages = list(_connector(fake, clock, mapping, search_body_limit=500).pull(None))
    assert sum(len(p.companies) for p in pages) == 150
    assert not [p for m, p, _ in fake.calls if p == "/crm/v3/objects/companies/search"]
    reads = [b for m, p, b in fake.calls if p == "/crm/v3/objects/companies/batch/read"]
    assert [len(b["inputs"]) for b in reads] == [100, 50]


def test_given_most_contacts_changed_since_the_watermark_then_the_incremental_pull_lists_them(
        clock: FakeClock, mapping: HubSpotMapping) -> None:
    fake = FakeHubSpot(contacts=1000)
    fake.archived = [{"id": "77", "archivedAt": T0 + 10}]
    # Professional: all 1,000 from both ends (up to 19 list calls of 100 and 5 searches of 200 a
    # second) against searching 999 changed ones (5 searches at 5/s).
    pages = list(_connector(fake, clock, mapping, rate_limit_per_10s=190).pull(Watermark(modified_ms=T0 + 2)))
    assert len({l["record_id"] for p in pages for l in p.leads}) == 1000  # every contact
    searches = [b for m, p, b in fake.calls if p == "/crm/v3/objects/contacts/search"]
    assert [b["limit"] for b in searches[:2]] == [1, 1]  # the two counts
    # the rest page down from the highest id, not by modification date
    assert all(b["sorts"] == [{"propertyName": "hs_object_id", "direction": "DESCENDING"}] for b in searches[2:])
    assert fake.list_queries()
    assert [r.record_id for p in pages for r in p.removed] == ["77"]  # deletions still looked for
    assert [p.watermark for p in pages if p.watermark][-1] == Watermark(modified_ms=T0 + 10_000)


def test_given_few_contacts_changed_since_the_watermark_then_the_incremental_pull_searches(
        clock: FakeClock, mapping: HubSpotMapping) -> None:
    fake = FakeHubSpot(contacts=1000)
    pages = list(_connector(fake, clock, mapping, rate_limit_per_10s=190).pull(Watermark(modified_ms=T0 + 901)))
    assert sorted(int(l["record_id"]) for p in pages for l in p.leads) == list(range(901, 1001))
    assert not fake.list_queries()
    assert pages[-1].watermark == Watermark(modified_ms=T0 + 1000)
