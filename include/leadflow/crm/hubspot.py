"""`HubSpotConnector`: the `CrmConnector` for HubSpot CRM v3 (contacts and companies).

HTTP behaviour (auth, buckets, retries, error mapping) comes from `HubSpotSession`; record
translation from `hubspot_values`; write rules from `write_core` with `hubspot_push`'s dialect;
incremental paging from `hubspot_window`. This module wires them to HubSpot's endpoints.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from leadflow.batching import chunks
from leadflow.crm.base import (
    CrmError,
    CrmRequestError,
    CrmUnavailableError,
    LeadPage,
    RecordResult,
    RecordUpdate,
)
from leadflow.crm.http import SessionConnector, WriteOutcomeUnknown
from leadflow.crm.hubspot_mapping import HubSpotMapping, OwnedProperty, load_mapping
from leadflow.crm.hubspot_meet import from_both_ends
from leadflow.crm.hubspot_push import ForbiddenPropertyError, assert_writable, plan_update, results_from_batch
from leadflow.crm.hubspot_session import GENERAL_BUCKET, SEARCH_BUCKET, HubSpotSession
from leadflow.crm.hubspot_settings import HubSpotSettings
from leadflow.crm.hubspot_values import (
    company_to_row,
    contact_to_lead,
    merged_ids,
    observed_shared,
    owned_company_values,
)
from leadflow.crm.hubspot_window import iter_pages
from leadflow.crm.values import format_owned_value, parse_epoch_ms
from leadflow.crm.write_core import (
    PlannedUpdate,
    answer_body,
    check_batch,
    ids_of,
    push_planned,
    pushed_row,
    unique_ids,
    write_bisecting,
)
from leadflow.ownership import Observed
from leadflow.pulled import RecordIssue, RemovedRecord, Watermark

log = logging.getLogger(__name__)

CONTACTS = "/crm/v3/objects/contacts"
COMPANIES = "/crm/v3/objects/companies"
PROPERTIES = "/crm/v3/properties/{object_type}"
ID_PROPERTY = "hs_object_id"
# On a merge's survivor: the ids of the contacts merged into it (";"-separated).
MERGED_IDS = "hs_merged_object_ids"
# An incremental pull lists every contact instead of searching when that takes at most this
# share of the search's time (each estimated from the calls and the portal's rates).
LIST_INSTEAD_MARGIN = 0.8
# Inputs per batch read, and per batch read asking for property histories (HubSpot's limits).
BATCH_READ = 100
HISTORY_BATCH = 50


def search_body(filters: list[dict[str, Any]], sort_property: str, limit: int, properties: Sequence[str],
                descending: bool = False) -> dict[str, Any]:
    """The body of `POST /crm/v3/objects/contacts/search`."""
    return {
        "filterGroups": [{"filters": filters}] if filters else [],
        "sorts": [{"propertyName": sort_property, "direction": "DESCENDING" if descending else "ASCENDING"}],
        "properties": list(properties),
        "limit": limit,
    }


def body_length(body: Mapping[str, Any]) -> int:
    return len(json.dumps(body, separators=(",", ":")))


def split_search_properties(
    properties: Sequence[str], essential: Sequence[str], cursor_property: str, limit: int, body_limit: int
) -> tuple[list[str], list[str]]:
    """(properties requested in the search, properties fetched afterwards by batch read).

    Everything goes in the search when the largest search body (a tie query: two filters)
    fits under `body_limit`; otherwise the search asks only for `essential` properties.
    """
    worst_filters = [
        {"propertyName": cursor_property, "operator": "EQ", "value": "9" * 13},
        {"propertyName": ID_PROPERTY, "operator": "GT", "value": "9" * 20},
    ]
    everything = list(dict.fromkeys([*essential, *properties]))
    if body_length(search_body(worst_filters, ID_PROPERTY, limit, everything)) <= body_limit:
        return everything, []
    first = list(dict.fromkeys(essential))
    if body_length(search_body(worst_filters, ID_PROPERTY, limit, first)) > body_limit:
        raise CrmError(f"the essential search properties alone exceed HubSpot's {body_limit}-character body limit")
    return first, [p for p in everything if p not in first]


class HubSpotConnector(SessionConnector):
    """HubSpot implementation of `leadflow.crm.base.CrmConnector`."""

    name = "hubspot"
    max_batch_size = 100

    settings_type = HubSpotSettings
    session_type = HubSpotSession
    mapping_loader = staticmethod(load_mapping)

    def __init__(self, session: HubSpotSession, mapping: HubSpotMapping, settings: HubSpotSettings | None = None,
                 *, wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(session, mapping, settings or HubSpotSettings(), wall_clock=wall_clock)
        self._portal_props: dict[str, dict[str, dict[str, Any]]] = {}
        self._options: dict[str, list[str]] = {}

    # --- properties API ----------------------------------------------------------------------------
    def portal_properties(self, object_type: str = "contacts", *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """name -> property definition of every property of `object_type` (read once, cached)."""
        if refresh or object_type not in self._portal_props:
            body = self.session.request_json("GET", PROPERTIES.format(object_type=object_type), params={"archived": "false"})
            results = (body or {}).get("results") or []
            self._portal_props[object_type] = {p["name"]: p for p in results if isinstance(p, dict) and "name" in p}
        return self._portal_props[object_type]

    def _existing(self, object_type: str, wanted: Sequence[str]) -> list[str]:
        existing = self.portal_properties(object_type)
        present = [p for p in dict.fromkeys(wanted) if p in existing]
        missing = [p for p in dict.fromkeys(wanted) if p not in existing]
        if missing:
            log.info("HubSpot %s: %d mapped properties absent from the portal, not requested: %s",
                     object_type, len(missing), ", ".join(missing))
        return present

    # --- pull ------------------------------------------------------------------------------------------
    def pull(self, since: Watermark | None) -> Iterator[LeadPage]:
        """Yield pages of contacts modified at/after `since` (everything when None).

        A full pull lists contacts from the lowest id up while it searches from the highest id
        down, until the two meet (`full_pull: both`, the default; `hubspot_meet`), or only lists
        (`list`) or only searches (`search`); an incremental one searches. Companies of the pulled
        contacts are read 100 a call (`_pages_with_companies`), so a page is yielded once its
        leads' companies are in it."""
        mapping, settings = self.mapping, self.settings
        cursor = mapping.cursor_property
        wanted = [*mapping.contact_properties.values(), *mapping.owned_property_names.values(), MERGED_IDS]
        properties = self._existing("contacts", wanted)
        essential = [ID_PROPERTY, cursor, mapping.contact_properties.get("company_id", "associatedcompanyid")]
        started_ms = int(self._wall_clock() * 1000)
        listing = settings.full_pull != "search" and (since is None or self._listing_is_faster(since))
        if listing and settings.full_pull == "both":
            # Both limits are spent on contacts: the companies are read on the general limit.
            windows = self._from_both_ends(properties, essential, started_ms - settings.index_lag_ms)
            yield from self._pages_with_companies(windows, self._read_companies)
        elif listing:
            # The list spends the general limit; the companies are searched for, on the search
            # limit the list leaves idle.
            windows = self._listed(list(dict.fromkeys([*essential, *properties])), started_ms - settings.index_lag_ms)
            yield from self._pages_with_companies(windows, self._search_companies)
        else:
            windows = self._searched(since, properties, essential, started_ms)
            yield from self._pages_with_companies(windows, self._read_companies)
        if since is not None:
            archived = self._archived_since(since.modified_ms)
            if archived:
                yield LeadPage(leads=[], companies=[], watermark=None, removed=archived)

    def _count(self, filters: list[dict[str, Any]]) -> int | None:
        """How many contacts match `filters` (a search's `total`, one result asked for)."""
        answer = self.session.request_json("POST", f"{CONTACTS}/search", bucket=SEARCH_BUCKET, idempotent=True,
                                           json=search_body(filters, ID_PROPERTY, 1, [ID_PROPERTY])) or {}
        total = answer.get("total")
        return total if isinstance(total, int) else None

    def _listing_is_faster(self, since: Watermark) -> bool:
        """Whether listing every contact takes less time than searching for those changed since
        `since`, at the portal's two rates. It does when most of the portal changed: the night
        after a first run (leadflow's own writes touched every lead it scored) or after a
        model change. Two searches of one result each decide."""
        settings = self.settings
        changed = self._count([{"propertyName": self.mapping.cursor_property, "operator": "GTE",
                                "value": str(since.modified_ms)}])
        if not changed:
            return False
        everyone = self._count([])
        if not everyone:
            return False
        searching_s = changed / settings.page_size / settings.search_rate_per_s
        listing_per_s = settings.list_page_size * settings.rate_limit_per_10s / 10.0
        if settings.full_pull == "both":  # the search pages down from the top at the same time
            listing_per_s += settings.page_size * settings.search_rate_per_s
        listing_s = everyone / listing_per_s
        faster = listing_s < searching_s * LIST_INSTEAD_MARGIN
        log.info("HubSpot incremental pull: %d of %d contacts changed; %s (about %.0f s listing against %.0f s "
                 "searching)", changed, everyone, "listing them all" if faster else "searching", listing_s, searching_s)
        return faster

    def _listed(self, properties: list[str], watermark_ms: int) -> Iterator[tuple[list[Mapping[str, Any]], Watermark | None]]:
        """(records, None) per page of `GET /crm/v3/objects/contacts`, then ([], watermark).

        The list is in id order, not modification order, so no page before the last covers a
        time: the watermark comes at the end. It is the pull's start less `index_lag_ms`, so a
        contact changed while the list was paged through is pulled again by the next run."""
        after: str | None = None
        while True:
            records, after = self._list_page(properties, after)
            yield records, None
            if not after:
                break
        yield [], Watermark(modified_ms=watermark_ms)

    def _list_page(self, properties: Sequence[str], after: str | None) -> tuple[list[Mapping[str, Any]], str | None]:
        """One page of `GET /crm/v3/objects/contacts` and the next page's cursor (None: the last)."""
        params: dict[str, Any] = {"limit": self.settings.list_page_size, "properties": ",".join(properties),
                                  "archived": "false"}
        if after:
            params["after"] = after
        answer = self.session.request_json("GET", CONTACTS, params=params, bucket=GENERAL_BUCKET) or {}
        return list(answer.get("results") or []), ((answer.get("paging") or {}).get("next") or {}).get("after")

    def _from_both_ends(self, properties: list[str], essential: list[str],
                        watermark_ms: int) -> Iterator[tuple[list[Mapping[str, Any]], Watermark | None]]:
        """(records, None) per page of the list (from the lowest id up) and of a search (from the
        highest id down, `hs_object_id` below the lowest seen), both at once until they meet
        (`hubspot_meet`); then ([], watermark), the pull's start less `index_lag_ms`, as `_listed`."""
        listed = list(dict.fromkeys([*essential, *properties]))
        search_props, later_props = self._search_properties(properties, essential)

        def search_below(below: int | None) -> list[Mapping[str, Any]]:
            filters = [] if below is None else [{"propertyName": ID_PROPERTY, "operator": "LT", "value": str(below)}]
            try:
                records = self._contact_search(filters, ID_PROPERTY, self.settings.page_size, search_props,
                                               descending=True)
            except (CrmRequestError, CrmUnavailableError) as exc:
                # A portal refusing this search (or its search failing on) must not fail the pull:
                # with no more from the top, the list pages on until it reaches what the search
                # yielded (`hubspot_meet`), every contact once all the same.
                log.warning("HubSpot full pull: the search from the top stopped below id %s (%s: %s); the list "
                            "pages on alone", below, type(exc).__name__, exc)
                return []
            return self._merge_properties(records, later_props) if later_props and records else records

        sides = {"list": 0, "search": 0}
        for side, records in from_both_ends(partial(self._list_page, listed), search_below):
            sides[side] += len(records)
            yield records, None
        log.info("HubSpot full pull from both ends: %d contacts listed, %d searched", sides["list"], sides["search"])
        yield [], Watermark(modified_ms=watermark_ms)

    def _searched(self, since: Watermark | None, properties: list[str], essential: list[str],
                  started_ms: int) -> Iterator[tuple[list[Mapping[str, Any]], Watermark | None]]:
        """(records, watermark) per search window (`hubspot_window.iter_pages`); properties that
        would make the search body too long are added by batch read."""
        settings = self.settings
        cursor = self.mapping.cursor_property
        search_props, later_props = self._search_properties(properties, essential)

        def search(filters: list[dict[str, Any]], sort_property: str, limit: int) -> list[Mapping[str, Any]]:
            return self._contact_search(filters, sort_property, limit, search_props)

        def cursor_of(record: Mapping[str, Any]) -> int | None:
            raw = (record.get("properties") or {}).get(cursor) or record.get("updatedAt")
            try:
                return parse_epoch_ms(raw)
            except ValueError:
                return None

        for window in iter_pages(
            search, since, cursor_of=cursor_of, cursor_property=cursor, id_property=ID_PROPERTY,
            limit=settings.page_size, max_watermark_ms=started_ms - settings.index_lag_ms,
        ):
            records = list(window.records)
            if later_props and records:
                records = self._merge_properties(records, later_props)
            yield records, window.watermark

    def _search_properties(self, properties: list[str], essential: list[str]) -> tuple[list[str], list[str]]:
        """(asked for in the search, added by batch read): those that would make the search body
        too long come by batch read (`split_search_properties`)."""
        settings = self.settings
        search_props, later_props = split_search_properties(
            properties, essential, self.mapping.cursor_property, settings.page_size, settings.search_body_limit)
        if later_props:
            log.info("search body would exceed %d chars: %d properties fetched by batch read",
                     settings.search_body_limit, len(later_props))
        return search_props, later_props

    def _contact_search(self, filters: list[dict[str, Any]], sort_property: str, limit: int,
                        properties: Sequence[str], descending: bool = False) -> list[Mapping[str, Any]]:
        """The records of one `POST /crm/v3/objects/contacts/search` (on the search limit)."""
        body = search_body(filters, sort_property, limit, properties, descending)
        answer = self.session.request_json("POST", f"{CONTACTS}/search", json=body, bucket=SEARCH_BUCKET,
                                           idempotent=True)
        return list((answer or {}).get("results") or [])

    def _pages_with_companies(
        self, windows: Iterable[tuple[list[Mapping[str, Any]], Watermark | None]],
        fetch: Callable[[Sequence[str], Sequence[str]], list[Mapping[str, Any]]],
    ) -> Iterator[LeadPage]:
        """LeadPages of the windows' contacts with their companies, fetched 100 a call by `fetch`
        (ids, properties) -> company records.

        Company ids new to this pull wait until a full batch read's worth (100) is known, or
        `company_flush_leads` leads wait, or the windows end. Then the full hundreds are read, and
        the waiting leads whose company is known are yielded with the companies read and an issue
        for each lead whose company was not found; the others wait for the next read. A page
        carries the latest watermark whose every lead is yielded by then, so a watermark is never
        stored before the companies of the leads it covers. Input issues and merged-away records
        go out with the next page."""
        mapping = self.mapping
        # leadflow's own company properties come along (no extra call): the company write then
        # compares with them instead of reading every company again (`accounts.write`).
        company_props = self._existing("companies", [*mapping.company_properties.values(),
                                                     *(p.name for p in mapping.owned_company_properties.values())])
        known: set[str] = set()  # read (found or not)
        missing_companies: set[str] = set()
        new_ids: dict[str, None] = {}
        waiting: list[tuple[int, dict[str, Any]]] = []  # (window number, lead)
        marks: list[tuple[int, Watermark]] = []  # watermarks not yet yielded, by window number
        issues: list[RecordIssue] = []
        removed: list[RemovedRecord] = []

        def flush(final: bool) -> LeadPage:
            nonlocal waiting, issues, removed
            ids = list(new_ids)
            now = ids if final else ids[: len(ids) - len(ids) % BATCH_READ]
            read_at = int(self._wall_clock() * 1000)
            companies, missing = self._company_rows(now, fetch(now, company_props) if now else [], issues, read_at)
            known.update(now)
            missing_companies.update(missing)
            for cid in now:
                del new_ids[cid]
            ready, still = [], []
            for item in waiting:
                company_id = item[1].get("company_id")
                (still if company_id and str(company_id) not in known else ready).append(item)
            waiting = still
            first_waiting = min((n for n, _ in waiting), default=None)
            covered = [m for m in marks if first_waiting is None or m[0] < first_waiting]
            del marks[: len(covered)]
            leads = [lead for _, lead in ready]
            for lead in leads:
                if lead.get("company_id") in missing_companies:
                    issues.append(RecordIssue(lead["record_id"], "company_id", "associated company not found",
                                              str(lead["company_id"])))
            page = LeadPage(leads=leads, companies=companies, watermark=covered[-1][1] if covered else None,
                            issues=issues, removed=removed)
            issues, removed = [], []
            self.stats.add("pages")
            self.stats.add("records_pulled", len(leads))
            self.stats.add("companies_pulled", len(companies))
            self.stats.add("issues", len(page.issues))
            log.info("HubSpot pull page: %d leads, %d companies, %d issues, watermark %s", len(leads),
                     len(companies), len(page.issues), page.watermark.modified_ms if page.watermark else None)
            return page

        number = 0
        for number, (records, watermark) in enumerate(windows, start=1):
            for record in records:
                lead, record_issues = contact_to_lead(record, mapping)
                issues.extend(record_issues)
                if lead["record_id"] is None:
                    continue
                waiting.append((number, lead))
                removed.extend(RemovedRecord(loser, merged_into=lead["record_id"])
                               for loser in merged_ids((record.get("properties") or {}).get(MERGED_IDS)))
                company_id = str(lead["company_id"]) if lead.get("company_id") else None
                if company_id and company_id not in known:
                    new_ids[company_id] = None
            if watermark is not None:
                marks.append((number, watermark))
            if len(new_ids) >= BATCH_READ or len(waiting) >= self.settings.company_flush_leads:
                yield flush(final=False)
        if waiting or issues or removed or marks:
            yield flush(final=True)

    def _archived_since(self, since_ms: int) -> list[RemovedRecord]:
        """Contacts archived (deleted) at or after `since_ms`. Search never returns archived
        records, and the archived list cannot be filtered: it is paged through, asking for no
        properties, and filtered on `archivedAt`."""
        out: list[RemovedRecord] = []
        after: str | None = None
        seen = 0
        while True:
            params: dict[str, Any] = {"archived": "true", "limit": 100, "properties": ID_PROPERTY}
            if after:
                params["after"] = after
            answer = self.session.request_json("GET", CONTACTS, params=params) or {}
            for record in answer.get("results") or []:
                seen += 1
                try:
                    at = parse_epoch_ms(record.get("archivedAt") or record.get("updatedAt"))
                except ValueError:
                    at = None
                if record.get("id") is not None and (at is None or at >= since_ms):
                    out.append(RemovedRecord(str(record["id"])))
            after = ((answer.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        log.info("HubSpot archived contacts: %d listed, %d archived since the watermark", seen, len(out))
        return out

    def _batch_read(self, path: str, ids: Sequence[str], properties: Sequence[str],
                    with_history: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(results, errors) of batch reads of `ids`: 100 per call, or HISTORY_BATCH when the
        history of `with_history` is asked for (HubSpot's limit for property histories)."""
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for chunk in chunks(list(ids), HISTORY_BATCH if with_history else BATCH_READ):
            body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": list(properties)}
            if with_history:
                body["propertiesWithHistory"] = list(with_history)
            answer = self.session.request_json("POST", f"{path}/batch/read", json=body, idempotent=True) or {}
            results.extend(answer.get("results") or [])
            errors.extend(answer.get("errors") or [])
        return results, errors

    def _merge_properties(self, records: list[Mapping[str, Any]], properties: Sequence[str]) -> list[dict[str, Any]]:
        found, _ = self._batch_read(CONTACTS, [str(r["id"]) for r in records], properties)
        extra = {str(r.get("id")): r.get("properties") or {} for r in found}
        merged = []
        for record in records:
            props = dict(record.get("properties") or {})
            props.update(extra.get(str(record["id"]), {}))
            merged.append({**record, "properties": props})
        return merged

    def _read_companies(self, ids: Sequence[str], properties: Sequence[str]) -> list[Mapping[str, Any]]:
        """Companies by batch read (general limit)."""
        return self._batch_read(COMPANIES, ids, properties)[0]

    def _search_companies(self, ids: Sequence[str], properties: Sequence[str]) -> list[Mapping[str, Any]]:
        """Companies by search on their ids, 100 a call (search limit); by batch read when such a
        search body would be longer than HubSpot takes."""
        found: list[Mapping[str, Any]] = []
        for chunk in chunks(list(ids), BATCH_READ):
            body = {"filterGroups": [{"filters": [{"propertyName": ID_PROPERTY, "operator": "IN", "values": chunk}]}],
                    "properties": list(properties), "limit": len(chunk)}
            if body_length(body) > self.settings.search_body_limit:
                found.extend(self._read_companies(chunk, properties))
                continue
            answer = self.session.request_json("POST", f"{COMPANIES}/search", json=body, bucket=SEARCH_BUCKET,
                                               idempotent=True)
            found.extend((answer or {}).get("results") or [])
        return found

    def _company_rows(self, ids: Sequence[str], found: Sequence[Mapping[str, Any]], issues: list[RecordIssue],
                      read_at_ms: int) -> tuple[list[dict[str, Any]], set[str]]:
        """(canonical companies found, ids not found) of the records `found` for `ids`, read with
        the owned company properties at `read_at_ms`."""
        rows = []
        for record in found:
            row, row_issues = company_to_row(record, self.mapping, read_at_ms)
            issues.extend(row_issues)
            if row["company_id"] is not None:
                rows.append(row)
        missing = set(ids) - {r["company_id"] for r in rows}
        if missing:
            log.info("HubSpot companies: %d of %d not found", len(missing), len(ids))
        return rows, missing

    # --- schema -----------------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create the `leadflow` group and owned properties if missing; check their types; load
        the lifecycle-stage and lead-status options."""
        self._ensure_owned("contacts", self.mapping.owned_properties.values())
        self._options.clear()
        self._check_options(self.stage_options(), self.mapping.lifecycle_stages, "lifecyclestage")
        self._check_options(self.lead_status_options(), self.mapping.lead_statuses, "hs_lead_status")

    def _ensure_owned(self, object_type: str, specs: Iterable[OwnedProperty]) -> None:
        """Create the `leadflow` group and the `specs` properties of `object_type` if missing;
        raise CrmError when one exists with another type."""
        group = self.mapping.property_group
        groups = self.session.request_json("GET", f"{PROPERTIES.format(object_type=object_type)}/groups") or {}
        if group.name not in {g.get("name") for g in groups.get("results") or []}:
            self._create("groups", {"name": group.name, "label": group.label}, object_type)
            log.info("created HubSpot property group %s on %s", group.name, object_type)
        existing = self.portal_properties(object_type, refresh=True)
        created = 0
        for spec in specs:
            current = existing.get(spec.name)
            if current is None:
                if not self._create("", spec.create_body(group.name), object_type):
                    current = self.portal_properties(object_type, refresh=True).get(spec.name)
                else:
                    created += 1
            if current is not None and current.get("type") != spec.type:
                raise CrmError(
                    f"HubSpot property {spec.name!r} exists with type {current.get('type')!r}, "
                    f"but leadflow needs type {spec.type!r}: rename it in the mapping or fix it in HubSpot"
                )
        if created:
            self.portal_properties(object_type, refresh=True)
            log.info("created %d HubSpot %s properties", created, object_type)

    def _create(self, kind: str, body: dict[str, Any], object_type: str = "contacts") -> bool:
        """POST a group/property; False when it already exists (409: another worker won)."""
        path = PROPERTIES.format(object_type=object_type) + (f"/{kind}" if kind else "")
        for attempt in range(2):
            try:
                self.session.request("POST", path, json=body, bucket=GENERAL_BUCKET)
            except CrmRequestError as exc:
                if getattr(exc, "status", None) == 409:
                    return False
                raise
            except WriteOutcomeUnknown:
                # The create may or may not have happened: look, and try once more if it did not.
                if attempt == 0 and not self._exists(kind, body["name"], object_type):
                    continue
                return False
            return True
        return False

    def _exists(self, kind: str, name: str, object_type: str = "contacts") -> bool:
        if kind == "groups":
            groups = self.session.request_json("GET", f"{PROPERTIES.format(object_type=object_type)}/groups") or {}
            return name in {g.get("name") for g in groups.get("results") or []}
        return name in self.portal_properties(object_type, refresh=True)

    def _check_options(self, options: list[str], table: Mapping[str, str], prop: str) -> None:
        unknown = sorted(set(table) - set(options))
        if options and unknown:
            log.warning("mapping lists %s values the portal does not offer: %s", prop, ", ".join(unknown))

    def _property_options(self, prop: str) -> list[str]:
        if prop not in self._options:
            body = self.session.request_json("GET", f"{PROPERTIES.format(object_type='contacts')}/{prop}") or {}
            options = sorted(
                (o for o in body.get("options") or [] if isinstance(o, dict) and not o.get("hidden")),
                key=lambda o: o.get("displayOrder", 0),
            )
            self._options[prop] = [str(o.get("value")) for o in options]
        return self._options[prop]

    def stage_options(self) -> list[str]:
        """The portal's lifecycle-stage internal values, in funnel (display) order."""
        return self._property_options(self.mapping.stage_property)

    def lead_status_options(self) -> list[str]:
        """The portal's lead-status internal values, in display order."""
        return self._property_options(self.mapping.lead_status_property)

    # --- push ---------------------------------------------------------------------------------------------
    def push(self, updates: Sequence[RecordUpdate]) -> list[RecordResult]:
        """Write one batch; one result per update, in order (`write_core.push_planned`)."""
        return push_planned(updates, self.max_batch_size, lambda u: plan_update(u, self.mapping),
                            self._write_plans, self.stats)

    def _write_plans(self, plans: list[PlannedUpdate]) -> dict[str, RecordResult]:
        """Send the plans; a backward stage move is cleared first, in a call of its own (HubSpot
        only moves a lifecycle stage forward), and a record whose clear failed is not sent."""
        results: dict[str, RecordResult] = {}
        backward = [p for p in plans if p.backward]
        if backward:
            stage = self.mapping.stage_property
            cleared = self._write([{"id": p.record_id, "properties": {stage: ""}} for p in backward])
            results.update({rid: r for rid, r in cleared.items() if r.status != "confirmed"})
        inputs = [{"id": p.record_id, "properties": p.fields} for p in plans if p.record_id not in results]
        if inputs:
            results.update(self._write(inputs))
        return results

    def _write(self, inputs: list[dict[str, Any]], path: str = CONTACTS,
               allowed: frozenset[str] | None = None) -> dict[str, RecordResult]:
        """One batch/update of `path`'s objects (`write_core.write_bisecting`). `allowed`: the
        properties that may be sent (default: the contacts')."""
        assert_writable(inputs, self.mapping.writable_properties if allowed is None else allowed)

        def send(items: list[dict[str, Any]]) -> dict[str, RecordResult]:
            response = self.session.request("POST", f"{path}/batch/update", json={"inputs": items})
            return results_from_batch(ids_of(items), response.status_code, answer_body(response, {}))

        return write_bisecting(inputs, send, ids_of, self.stats, "VALIDATION_ERROR")

    # --- read -----------------------------------------------------------------------------------------------
    def read(self, record_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Current values of the pushed fields for the records that exist, in request order.

        Owned fields come rendered as `format_owned_value` writes them (the same strings as the
        `crm_<field>` columns of a pull); stage and lead status as canonical values.
        """
        mapping = self.mapping
        props = [*mapping.owned_property_names.values(), mapping.stage_property, mapping.lead_status_property]
        found, _ = self._batch_read(CONTACTS, unique_ids(record_ids), props)
        by_id = {str(r.get("id")): r for r in found}
        return [pushed_row(str(rid), contact_to_lead(by_id[str(rid)], mapping)[0])
                for rid in record_ids if str(rid) in by_id]

    def observe(self, record_ids: Sequence[str]) -> dict[str, dict[str, Observed]]:
        """The shared fields (lifecycle stage, lead status) of the records that exist, with who
        last wrote each (property history): what the ownership rule needs right before a write."""
        mapping = self.mapping
        names = [mapping.stage_property, mapping.lead_status_property]
        found, _ = self._batch_read(CONTACTS, unique_ids(record_ids), names, names)
        app_id = self._own_app_id()
        return {str(r.get("id")): observed_shared(r, mapping, app_id) for r in found}

    def _own_app_id(self) -> str | None:
        """leadflow's app id as HubSpot attributes its writes (INTEGRATION, sourceId): None when
        the token is not a private app's."""
        return self._own_writer_id(lambda: self.session.token_info().get("appId"), "token introspection")

    def format_value(self, field: str, value: Any) -> str:
        """How `value` of owned `field` is written to HubSpot; compare with pulled `crm_<field>`."""
        return format_owned_value(self.mapping.owned_properties[field].type, value)

    # --- companies: the account view ---------------------------------------------------------------
    @property
    def company_fields(self) -> tuple[str, ...]:
        """The owned company fields the mapping gives properties to (empty: no company writes)."""
        return tuple(self.mapping.owned_company_properties)

    def ensure_company_schema(self) -> None:
        """Create the `leadflow` group and owned company properties on companies if missing;
        check their types. Raises CrmError when the mapping lists no owned company property."""
        specs = self.mapping.owned_company_properties
        if not specs:
            raise CrmError("the HubSpot mapping has no owned_company_properties: the account view is not written")
        self._ensure_owned("companies", specs.values())

    def read_companies(self, company_ids: Sequence[str]) -> dict[str, dict[str, str | None]]:
        """company_id -> owned company field -> its current value as HubSpot renders it (None:
        empty), for the companies that exist."""
        names = [p.name for p in self.mapping.owned_company_properties.values()]
        found, _ = self._batch_read(COMPANIES, unique_ids(company_ids), names)
        return {str(record.get("id")): owned_company_values(record.get("properties") or {}, self.mapping)
                for record in found}

    def push_companies(self, updates: Sequence[RecordUpdate]) -> list[RecordResult]:
        """Write one batch of owned company values (canonical `schema.COMPANY_OWNED_FIELDS` keys);
        one result per update, in order. Any other key raises `ForbiddenPropertyError`."""
        check_batch(updates, self.max_batch_size, "push_companies")
        specs = self.mapping.owned_company_properties
        inputs = []
        for update in updates:
            unknown = sorted(set(update.values) - set(specs))
            if unknown:
                raise ForbiddenPropertyError(f"refusing to write company fields {unknown}: leadflow owns {list(specs)}")
            inputs.append({"id": update.record_id, "properties": {
                specs[f].name: format_owned_value(specs[f].type, v) for f, v in update.values.items()}})
        results = self._write(inputs, COMPANIES, self.mapping.company_writable_properties) if inputs else {}
        return [results[u.record_id] for u in updates]

    def format_company_value(self, field: str, value: Any) -> str:
        """How `value` of owned company `field` is written to HubSpot (and read back)."""
        return format_owned_value(self.mapping.owned_company_properties[field].type, value)
