"""`SalesforceConnector`: the `CrmConnector` for Salesforce Leads over the REST API.

HTTP behaviour (auth, the API budget, retries, error mapping) comes from `SalesforceSession`;
record translation from `salesforce_values`; write rules from `write_core` with
`salesforce_push`'s dialect; SOQL text from `salesforce_soql`. This module wires them to
Salesforce's endpoints.

Pull: one SOQL query ordered by (SystemModstamp, Id) with the watermark as a keyset condition,
walked through `nextRecordsUrl` (2,000 per batch); incremental pulls use `queryAll` so deleted
leads arrive with IsDeleted and are landed as deleted. With `converted_leads: follow_contact` a
converted Lead is landed as replaced by its Contact, and the Contacts of a page's converted Leads
are read (one SOQL per 200 ids) and landed with that page; an incremental pull first reads the
followed Contacts changed since the watermark (by the Contact's own cursor field). Push: sObject
Collections PATCH, up to 200 records (Leads and Contacts, told apart by their id's key prefix),
`allOrNone=false`, one result per record.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping, Sequence

from leadflow.batching import chunks
from leadflow.crm.base import (
    CrmBudgetExhausted,
    CrmError,
    LeadPage,
    RecordIssue,
    RecordResult,
    RecordUpdate,
    Watermark,
)
from leadflow.crm.http import SessionConnector
from leadflow.crm.salesforce_mapping import (
    COMPATIBLE_TYPES,
    CONTACT_SOBJECT,
    CONVERTED_CONTACT_FIELD,
    SalesforceMapping,
    is_contact_id,
    load_mapping,
)
from leadflow.crm.salesforce_push import RATING, assert_writable, plan_update, results_from_collection
from leadflow.crm.salesforce_session import SalesforceSession
from leadflow.crm.salesforce_settings import SalesforceSettings
from leadflow.crm.salesforce_soql import soql_string, watermark_condition
from leadflow.crm.salesforce_values import contact_to_row, lead_to_rows, observed_shared, owned_values
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
from leadflow.ownership import Decision, Observed, decide
from leadflow.schema import MODEL_STAGES

log = logging.getLogger(__name__)
# The child relationship of an object's field history (LeadHistory under Lead).
HISTORY_RELATIONSHIP = "Histories"


def _owned_field_problems(mapping: SalesforceMapping, fields: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What keeps leadflow from writing its owned fields to an object described by `fields`."""
    problems: list[str] = []
    for field, spec in mapping.owned_fields.items():
        found = fields.get(spec.name.lower())
        if found is None:
            problems.append(f"missing field {spec.name} (for {field}; create it as {spec.type} in Setup)")
        elif str(found.get("type")) not in COMPATIBLE_TYPES[spec.type]:
            problems.append(f"field {spec.name} is {found.get('type')}, leadflow needs {spec.type}")
        elif found.get("updateable") is False:
            problems.append(f"field {spec.name} is not updateable for this user")
    return problems


class SalesforceConnector(SessionConnector):
    """Salesforce implementation of `leadflow.crm.base.CrmConnector`."""

    name = "salesforce"
    max_batch_size = 200

    settings_type = SalesforceSettings
    session_type = SalesforceSession
    mapping_loader = staticmethod(load_mapping)

    def __init__(self, session: SalesforceSession, mapping: SalesforceMapping,
                 settings: SalesforceSettings | None = None, *, wall_clock: Callable[[], float] = time.time) -> None:
        super().__init__(session, mapping, settings or SalesforceSettings(), wall_clock=wall_clock)
        self._describe: dict[str, dict[str, dict[str, Any]]] = {}
        self._observed_ratings: dict[str, Observed] = {}
        self._schema_checked = False
        self.budget_exhausted = False
        self._lengths: dict[str, dict[str, int]] = {}
        self.session._session.headers["Sforce-Query-Options"] = f"batchSize={self.settings.query_batch_size}"

    @property
    def api_path(self) -> str:
        return f"/services/data/v{self.settings.api_version}"

    # --- describe ----------------------------------------------------------------------------------
    def describe(self, sobject: str | None = None, *, refresh: bool = False) -> dict[str, dict[str, Any]]:
        """lower-cased field name -> field description of the Lead object, or of `sobject`
        (read once, cached)."""
        name = sobject or self.mapping.sobject
        if refresh or name not in self._describe:
            body = self.session.request_json("GET", f"{self.api_path}/sobjects/{name}/describe") or {}
            self._describe[name] = {str(f["name"]).lower(): f for f in body.get("fields") or [] if isinstance(f, dict)}
        return self._describe[name]

    def _present(self, names: Sequence[str], sobject: str | None = None) -> list[str]:
        fields = self.describe(sobject)
        missing = [n for n in names if n.lower() not in fields]
        if missing:
            log.info("Salesforce %s: %d mapped fields absent from the org, not requested: %s",
                     sobject or self.mapping.sobject, len(missing), ", ".join(missing))
        return [n for n in names if n.lower() in fields]

    def _sobject_of(self, record_id: str) -> str:
        return CONTACT_SOBJECT if is_contact_id(record_id) else self.mapping.sobject

    # --- pull --------------------------------------------------------------------------------------
    def pull(self, since: Watermark | None) -> Iterator[LeadPage]:
        """Yield pages of leads modified at/after `since` (every live lead when None), in
        (SystemModstamp, Id) order; each page's watermark is its last record."""
        mapping = self.mapping
        cursor = mapping.cursor_field
        fields = self._present(mapping.select_fields())
        for required in ("Id", cursor):
            if required.lower() not in {f.lower() for f in fields}:
                raise CrmError(f"the org's Lead object has no field {required!r}: cannot pull incrementally")
        where = watermark_condition(since, cursor)
        soql = f"SELECT {', '.join(fields)} FROM {mapping.sobject}"
        if where:
            soql += f" WHERE {where}"
        soql += f" ORDER BY {cursor} ASC, Id ASC"
        kind = "queryAll" if since is not None else "query"
        max_ms = int(self._wall_clock() * 1000) - self.settings.modstamp_lag_ms
        floor = since.modified_ms if since else None
        pulled_contacts: set[str] = set()
        if mapping.follow_contacts and since is not None:
            # Before the Leads: a pull the API budget stops later stores a watermark this
            # read covers, so no change to a followed Contact is skipped.
            yield from self._changed_contacts(since, pulled_contacts)
        log.info("Salesforce pull: %s from %s", kind, "the start" if since is None else since.modified_ms)
        for records in self._answers(soql, kind):
            page = self._page(records, cursor, max_ms, floor, since, pulled_contacts)
            if page is not None:
                yield page

    def _answers(self, soql: str, kind: str = "query") -> Iterator[list[dict[str, Any]]]:
        """The records of each answer of a SOQL query (`query` or `queryAll`), following
        `nextRecordsUrl`."""
        answer = self.session.request_json("GET", f"{self.api_path}/{kind}", params={"q": soql})
        while True:
            body = answer or {}
            yield [r for r in body.get("records") or [] if isinstance(r, dict)]
            if body.get("done", True) or not body.get("nextRecordsUrl"):
                return
            try:
                answer = self.session.request_json("GET", str(body["nextRecordsUrl"]))
            except CrmBudgetExhausted:
                self.budget_exhausted = True
                raise

    def _page(self, records: list[dict[str, Any]], cursor: str, max_ms: int, floor: int | None,
              since: Watermark | None, pulled_contacts: set[str]) -> LeadPage | None:
        if not records:
            return None
        leads: list[dict[str, Any]] = []
        companies: list[dict[str, Any]] = []
        issues: list[RecordIssue] = []
        for record in records:
            lead, company, record_issues = lead_to_rows(record, self.mapping)
            issues.extend(record_issues)
            if lead["record_id"] is None:
                continue
            leads.append(lead)
            if company is not None:
                companies.append(company)
        last = records[-1]
        last_ms = None
        for lead in reversed(leads):
            if lead.get("updated_at") is not None:
                last_ms = int(lead["updated_at"])
                last_id = lead["record_id"]
                break
        if last_ms is None:
            raise CrmError(f"Salesforce records carry no {cursor}: cannot page incrementally")
        watermark = Watermark(modified_ms=last_ms, last_id=str(last_id))
        if last_ms > max_ms:
            watermark = Watermark(modified_ms=max_ms)
        if floor is not None and watermark.modified_ms < floor:
            watermark = since
        deleted = sum(1 for l in leads if l["is_deleted"])
        self.stats.add("pages")
        self.stats.add("records_pulled", len(leads))
        self.stats.add("companies_pulled", len(companies))
        self.stats.add("deleted_pulled", deleted)
        self.stats.add("issues", len(issues))
        log.info("Salesforce pull page: %d leads (%d deleted), %d issues, watermark %s; last id %s",
                 len(leads), deleted, len(issues), watermark.modified_ms if watermark else None, last.get("Id"))
        if self.mapping.follow_contacts:
            # The Contacts land in the same transaction as the Leads they replace.
            converted = {lead["merged_into"]: lead["record_id"] for lead in leads
                         if lead["merged_into"] and is_contact_id(lead["merged_into"])}
            wanted = [c for c in converted if c not in pulled_contacts]
            fields = self._present(self.mapping.contact_select_fields(), CONTACT_SOBJECT)
            found = self._query_ids(fields, wanted, CONTACT_SOBJECT) if wanted else {}
            rows, row_issues = self._contact_rows([found[c] for c in wanted if c in found], converted)
            pulled_contacts.update(wanted)
            leads.extend(rows)
            issues.extend(row_issues)
        return LeadPage(leads=leads, companies=companies, watermark=watermark, issues=issues)

    # --- followed Contacts (converted_leads: follow_contact) -----------------------------------------------
    def _changed_contacts(self, since: Watermark, pulled: set[str]) -> Iterator[LeadPage]:
        """Pages (without a watermark) of the Contacts converted leads became that changed at or
        after the watermark's time, deleted ones included; their ids are added to `pulled`."""
        cursor = self.mapping.contact_cursor_field
        fields = self._present(self.mapping.contact_select_fields(), CONTACT_SOBJECT)
        if cursor.lower() not in {f.lower() for f in fields}:
            raise CrmError(f"the org's Contact object has no field {cursor!r}: cannot pull followed Contacts "
                           "incrementally")
        soql = (f"SELECT {', '.join(fields)} FROM {CONTACT_SOBJECT} WHERE "
                f"{watermark_condition(Watermark(since.modified_ms), cursor)} ORDER BY {cursor} ASC, Id ASC")
        for records in self._answers(soql, "queryAll"):
            # Only the Contacts a Lead was converted into are followed; other Contacts are no leads.
            origins: dict[str, str] = {}
            for lead in self._query_in(["Id", CONVERTED_CONTACT_FIELD], CONVERTED_CONTACT_FIELD,
                                       [str(r.get("Id")) for r in records], self.mapping.sobject):
                origins[str(lead[CONVERTED_CONTACT_FIELD])] = str(lead["Id"])
            rows, issues = self._contact_rows([r for r in records if str(r.get("Id")) in origins], origins)
            pulled.update(row["record_id"] for row in rows)
            log.info("Salesforce pull: %d changed Contacts, %d of them followed from converted leads",
                     len(records), len(rows))
            if rows:
                yield LeadPage(leads=rows, companies=[], watermark=None, issues=issues)

    def _contact_rows(self, records: Sequence[Mapping[str, Any]],
                      converted_from: Mapping[str, str]) -> tuple[list[dict[str, Any]], list[RecordIssue]]:
        rows: list[dict[str, Any]] = []
        issues: list[RecordIssue] = []
        for record in records:
            row, row_issues = contact_to_row(record, self.mapping, converted_from.get(str(record.get("Id"))))
            issues.extend(row_issues)
            if row["record_id"] is not None:
                rows.append(row)
        self.stats.add("contacts_pulled", len(rows))
        return rows, issues

    # --- schema ---------------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Check, against `describe`, that every owned field exists with a compatible type (on
        Contact too when converted leads are followed) and that the Status / stage / Rating values
        leadflow writes are offered by the org. Salesforce fields cannot be created through REST:
        a missing field is an error naming it."""
        mapping = self.mapping
        fields = self.describe(refresh=True)
        problems = _owned_field_problems(mapping, fields)
        written = [
            (mapping.stage_field, [mapping.stage_to_crm(s) for s in MODEL_STAGES]),
            (mapping.status_field, [mapping.status_to_crm(s) for s in ("new", "open", "nurture", "unqualified")]),
        ]
        if mapping.rating_field:
            written.append((mapping.rating_field, list(mapping.rating_by_stage.values())))
        for name, values in written:
            found = fields.get(name.lower())
            if found is None:
                problems.append(f"missing field {name}")
                continue
            offered = {str(p.get("value")) for p in found.get("picklistValues") or [] if p.get("active", True)}
            wanted = sorted({v for v in values if v})
            if found.get("type") == "picklist" and offered:
                absent = [v for v in wanted if v not in offered]
                if absent:
                    problems.append(f"picklist {name} does not offer {absent}")
        described = {mapping.sobject: fields}
        if mapping.follow_contacts:  # the owned fields of followed Contacts, under the same names
            described[CONTACT_SOBJECT] = self.describe(CONTACT_SOBJECT, refresh=True)
            problems.extend(f"Contact: {p}" for p in _owned_field_problems(mapping, described[CONTACT_SOBJECT]))
        if problems:
            raise CrmError("the Salesforce org is not ready for leadflow: " + "; ".join(problems))
        self._lengths = {sobject: {n: int(f.get("length") or 0) for n, f in found.items() if f.get("length")}
                         for sobject, found in described.items()}
        self._schema_checked = True
        log.info("Salesforce schema checked: %d owned fields present on %s", len(mapping.owned_fields),
                 " and ".join(described))

    # --- push -------------------------------------------------------------------------------------------
    def push(self, updates: Sequence[RecordUpdate]) -> list[RecordResult]:
        """Write one batch (<= 200) via sObject Collections; one result per update, in order."""
        check_batch(updates, self.max_batch_size)
        if not self._schema_checked:
            self.ensure_schema()  # validated against describe before any write
        try:
            return push_planned(updates, self.max_batch_size, self._plan, self._write_plans, self.stats)
        finally:
            for update in updates:  # the pre-write read of these records is spent
                self._observed_ratings.pop(update.record_id, None)

    def _plan(self, update: RecordUpdate) -> PlannedUpdate:
        return plan_update(update, self.mapping, self._lengths.get(self._sobject_of(update.record_id)))

    def _write_plans(self, plans: list[PlannedUpdate]) -> dict[str, RecordResult]:
        """Send the plans; the Rating set with a stage goes to the push log too (`side_writes`)."""
        records = [{"attributes": {"type": self._sobject_of(p.record_id)}, "id": p.record_id, **p.fields}
                   for p in plans]
        self._leave_others_ratings(records)
        ratings_before = self._ratings_before(records)
        results = self._write(records)
        for record in records:
            rid = str(record["id"])
            # An unknown outcome carries it as well: the writer logs it if the read-back confirms.
            if rid not in ratings_before or results[rid].status not in ("confirmed", "unknown"):
                continue
            before, after = ratings_before[rid] or None, record[self.mapping.rating_field] or None
            if before != after:  # a Rating already in place is not a change
                results[rid] = replace(results[rid], side_writes=((RATING, before, after),))
        return results

    def _leave_others_ratings(self, records: list[dict[str, Any]]) -> None:
        """Take the Rating out of records whose current Rating someone else set (the ownership
        rule, from the pre-write read just made); the stage still moves."""
        field = self.mapping.rating_field
        if not field or not self._observed_ratings:
            return
        now = int(self._wall_clock() * 1000)
        for record in records:
            seen = self._observed_ratings.get(str(record["id"]))
            if field in record and seen is not None and \
                    decide(seen, record[field], None, now_ms=now, verified=True) is Decision.OVERRIDE:
                del record[field]
                self.stats.add("ratings_left")

    def _ratings_before(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """The current Rating of the records about to get one (the stage moves): what a rollback
        restores. From the pre-write read when it saw them, else read now; an empty dict when
        the read fails: the write goes on, its Rating unlogged."""
        field = self.mapping.rating_field
        ids = [str(r["id"]) for r in records if field and field in r]
        if not ids:
            return {}
        if all(i in self._observed_ratings for i in ids):
            return {i: self._observed_ratings[i].value for i in ids}
        try:
            return {row["record_id"]: row.get(RATING) for row in self.read(ids)}
        except CrmError as exc:
            log.warning("Salesforce: Rating of %d records not read before the write (%s): their Rating "
                        "change is not in the push log", len(ids), type(exc).__name__)
            return {}

    def _write(self, records: list[dict[str, Any]]) -> dict[str, RecordResult]:
        assert_writable([r for r in records if not is_contact_id(str(r["id"]))], self.mapping.writable_fields)
        assert_writable([r for r in records if is_contact_id(str(r["id"]))],
                        frozenset(self.mapping.owned_field_names.values()))
        return write_bisecting(records, self._send, ids_of, self.stats, "INVALID_REQUEST")

    def _send(self, records: list[dict[str, Any]]) -> dict[str, RecordResult]:
        response = self.session.request("PATCH", f"{self.api_path}/composite/sobjects",
                                        json={"allOrNone": False, "records": records})
        return results_from_collection(ids_of(records), answer_body(response, []))

    # --- read ----------------------------------------------------------------------------------------------
    def observe(self, record_ids: Sequence[str]) -> dict[str, dict[str, Observed]]:
        """The shared fields (lifecycle stage, lead status) of the live records with who last set
        each: one SOQL per 200 records, the values with their field history as a `Histories`
        sub-query. `LastModifiedById` is no shortcut: leadflow writing a score last says nothing
        about who set the status before."""
        mapping = self.mapping
        # A followed Contact has no shared field leadflow writes: nothing to observe there.
        wanted = list(dict.fromkeys(str(r) for r in record_ids if not is_contact_id(str(r))))
        if not wanted:
            return {}
        shared = [mapping.stage_field, mapping.status_field, *([mapping.rating_field] if mapping.rating_field else [])]
        names = self._present(["Id", *shared])
        if mapping.field_history_tracked:
            fields = ", ".join(soql_string(f) for f in dict.fromkeys(shared))
            names = [*names, f"(SELECT Field, CreatedById, CreatedDate FROM {HISTORY_RELATIONSHIP} "
                             f"WHERE Field IN ({fields}) ORDER BY CreatedDate DESC)"]
        records = self._query_ids(names, wanted)
        own = self._own_user_id()
        observed = {rid: observed_shared(rec, self._child_records(rec, HISTORY_RELATIONSHIP), mapping, own,
                                         history_tracked=mapping.field_history_tracked)
                    for rid, rec in records.items()}
        # The Rating written with a stage follows the same rule: the push of these records consults
        # (and drops) what was just read. Merged, not replaced: with calls in flight another
        # batch's read may come between this one's read and its write.
        self._observed_ratings.update({rid: seen["rating"] for rid, seen in observed.items() if "rating" in seen})
        return observed

    def _query_ids(self, names: Sequence[str], ids: Sequence[str], sobject: str | None = None
                   ) -> dict[str, dict[str, Any]]:
        return {str(record.get("Id")): record for record in self._query_in(names, "Id", ids, sobject)}

    def _query_in(self, names: Sequence[str], field: str, values: Sequence[str], sobject: str | None = None
                  ) -> Iterator[dict[str, Any]]:
        """The records of the Lead object (or `sobject`) whose `field` is one of `values`: one
        SOQL per 200 values."""
        for chunk in chunks(list(values), 200):
            soql = (f"SELECT {', '.join(names)} FROM {sobject or self.mapping.sobject} WHERE {field} IN "
                    f"({', '.join(soql_string(v) for v in chunk)})")
            for records in self._answers(soql):
                yield from records

    def _child_records(self, record: Mapping[str, Any], relationship: str) -> list[dict[str, Any]]:
        """A sub-query's rows of one record (null when it has none), following the sub-query's
        own `nextRecordsUrl` when Salesforce paged it."""
        answer = record.get(relationship) or {}
        rows = list(answer.get("records") or [])
        while not answer.get("done", True) and answer.get("nextRecordsUrl"):
            answer = self.session.request_json("GET", str(answer["nextRecordsUrl"])) or {}
            rows.extend(answer.get("records") or [])
        return rows

    def _own_user_id(self) -> str | None:
        """The id of the user leadflow's session acts as (OpenID userinfo)."""
        return self._own_writer_id(
            lambda: (self.session.request_json("GET", "/services/oauth2/userinfo") or {}).get("user_id"), "userinfo")

    def read(self, record_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Current values of the pushed fields for the live records, in request order; a followed
        Contact's stage is converted_stage, its status empty. A converted Lead is left out like a
        deleted one: Salesforce refuses any write to it (CANNOT_UPDATE_CONVERTED_LEAD), and sales
        owns it now, so a rollback skips it as changed since."""
        mapping = self.mapping
        wanted = unique_ids(record_ids)
        if not wanted:
            return []
        contacts = [r for r in wanted if is_contact_id(r)]
        leads = [r for r in wanted if not is_contact_id(r)]
        by_id: dict[str, dict[str, Any]] = {}
        if leads:
            names = self._present(["Id", mapping.converted_field, mapping.stage_field, mapping.status_field,
                                   *mapping.owned_field_names.values(),
                                   *([mapping.rating_field] if mapping.rating_field else [])])
            by_id.update(self._query_ids(names, leads))
        if contacts:
            names = self._present(["Id", *mapping.owned_field_names.values()], CONTACT_SOBJECT)
            by_id.update(self._query_ids(names, contacts, CONTACT_SOBJECT))
        rows = []
        for rid in record_ids:
            record = by_id.get(str(rid))
            if record is None:
                continue
            if not is_contact_id(str(rid)) and record.get(mapping.converted_field) is True:
                continue
            if is_contact_id(str(rid)):  # owned fields only: its stage is converted_stage
                lead = {"lifecycle_stage": mapping.converted_stage, "lead_status": None,
                        **owned_values(record, mapping)}
            else:
                lead, _, _ = lead_to_rows(record, mapping)
            row = pushed_row(str(rid), lead)
            if mapping.rating_field:
                row[RATING] = record.get(mapping.rating_field)
            rows.append(row)
        return rows
