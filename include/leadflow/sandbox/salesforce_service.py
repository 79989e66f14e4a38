"""Salesforce behaviour of the sandbox, independent of HTTP: SOQL queries (Lead, LeadHistory, Contact) with
snapshot cursors and `nextRecordsUrl` batches, the daily API allocation, describe with the org's
own picklist values, and sObject writes with Salesforce's per-record errors and `allOrNone`
semantics. Every write is made by a user: it sets `LastModifiedById`, and each changed tracked
field gets a LeadHistory row in the same transaction. What people do in the Salesforce UI
(merge, convert, add a Status value in Setup) is offered as plain methods for the sandbox's
admin routes. A conversion creates the lead's Contact; Contacts are read and written like Leads
(one collection write may mix both), without field history."""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from leadflow.sandbox.faults import FaultInjector, RequestFaults
from leadflow.sandbox.salesforce_schema import (
    CONTACT,
    LEAD,
    HISTORY_EVENTS,
    LEAD_FIELDS,
    LEAD_HISTORY,
    OPPORTUNITY_PREFIX,
    SOBJECT,
    SOBJECTS,
    SOBJECTS_BY_PREFIX,
    DeserializeProblem,
    FieldDef,
    SObjectType,
    WriteProblem,
    format_date,
    format_datetime,
    from_wire,
    id_number,
    lookup_field,
    record_id,
    to_18,
    to_wire,
)
from leadflow.sandbox.salesforce_soql import Query, SoqlError, parse
from leadflow.sandbox.salesforce_store import SalesforceStore, contact_from_lead, converted_ids, is_contact
from leadflow.sandbox.salesforce_users import SalesforceUser, UserDirectory

log = logging.getLogger(__name__)

MAX_BATCH = 2000
MIN_BATCH = 200
MAX_COLLECTION = 200
MAX_CURSORS = 100
# Field history tracking of the org: Status, the stage, Rating and the fields leadflow writes.
DEFAULT_TRACKED_FIELDS: tuple[str, ...] = ("Status", "Lifecycle_Stage__c", "Rating") + tuple(
    f.name for f in LEAD_FIELDS if f.name.startswith("Leadflow_"))
DEFAULT_CONVERTED_STATUS = "Closed - Converted"
HISTORY_VALUE_LENGTH = 255  # Salesforce keeps the first 255 characters of a text value in history
_PICKLIST_META = "picklist:"
_CONVERTED_META = "converted_statuses"


def check_tracked_fields(names: Iterable[str]) -> tuple[str, ...]:
    """The tracked fields by their API names (ValueError naming an unknown or read-only one)."""
    out = []
    for name in names:
        fdef = lookup_field(name)
        if fdef is None or not fdef.updateable:
            writable = ", ".join(f.name for f in LEAD_FIELDS if f.updateable)
            raise ValueError(f"history field {name!r} is not a writable Lead field (one of: {writable})")
        out.append(fdef.name)
    return tuple(dict.fromkeys(out))


def history_value(fdef: FieldDef, value: Any) -> Any:
    """A value as LeadHistory shows it: long text areas record that they changed, not the text;
    other text is cut to 255 characters."""
    if fdef.type == "textarea" or value is None:
        return None
    wire = to_wire(fdef, value)
    if isinstance(wire, str):
        return wire[:HISTORY_VALUE_LENGTH]
    return wire


class SalesforceApiError(Exception):
    """An error answered as Salesforce does: `[{"message","errorCode","fields"?}]` with a status."""

    def __init__(self, status: int, code: str, message: str, fields: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields) if fields is not None else None

    def body(self) -> list[dict[str, Any]]:
        item: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            item["fields"] = self.fields
        return [item]


class ApiUsage:
    """The org's API request allocation: every /services/data call counts; over the limit -> 403."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def hit(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def header(self) -> str:
        with self._lock:
            return f"api-usage={self.used}/{self.limit}"

    def set(self, *, limit: int | None = None, used: int | None = None) -> None:
        with self._lock:
            if limit is not None:
                self.limit = limit
            if used is not None:
                self.used = used


@dataclass
class Cursor:
    ids: list[str]
    fields: list[FieldDef]
    position: int
    batch: int
    all_rows: bool
    sobject: SObjectType = LEAD
    children: dict[str, Query] = dataclasses.field(default_factory=dict)


class SalesforceService:
    def __init__(self, store: SalesforceStore, *, faults: FaultInjector, clock: Callable[[], float] = time.time,
                 version: str = "59.0", users: UserDirectory | None = None,
                 tracked_fields: Sequence[str] = DEFAULT_TRACKED_FIELDS) -> None:
        self.store = store
        self.faults = faults
        self.clock = clock
        self.version = version
        self.users = users if users is not None else UserDirectory("sandbox-org-session", reps=0, admins=0)
        self.tracked_fields = check_tracked_fields(tracked_fields)
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        # The org's picklist values, read from the store once (only this service changes them):
        # validating a 200-record write must not read the db once per picklist value written.
        self._picklists: dict[str, tuple[str, ...]] = {}

    # --- the org's picklists (Setup) ---------------------------------------------------------------
    def picklist_values(self, name: str) -> tuple[str, ...]:
        """The org's values of a picklist field: what an admin added, else the sandbox's defaults."""
        fdef = lookup_field(name)
        if fdef is None or fdef.type != "picklist":
            raise ValueError(f"{name!r} is not a picklist field of Lead")
        values = self._picklists.get(fdef.name)
        if values is None:
            stored = self.store.meta_json(_PICKLIST_META + fdef.name)
            values = self._picklists[fdef.name] = tuple(stored) if stored is not None else fdef.picklist
        return values

    def converted_statuses(self) -> tuple[str, ...]:
        stored = self.store.meta_json(_CONVERTED_META)
        return tuple(stored) if stored is not None else (DEFAULT_CONVERTED_STATUS,)

    def _org_field(self, fdef: FieldDef) -> FieldDef:
        if fdef.type != "picklist":
            return fdef
        values = self.picklist_values(fdef.name)
        return fdef if values == fdef.picklist else dataclasses.replace(fdef, picklist=values)

    def add_picklist_value(self, name: str, value: Any, *, converted: bool = False) -> dict[str, Any]:
        """Add `value` to the org's picklist `name` (what an admin does in Setup); `converted`
        marks a Status value as one a conversion may set. Adding a present value changes nothing."""
        fdef = lookup_field(name)
        if fdef is None or fdef.type != "picklist":
            picklists = ", ".join(f.name for f in LEAD_FIELDS if f.type == "picklist")
            raise ValueError(f"field {str(name)[:80]!r} is not a picklist of Lead (picklists: {picklists})")
        if not isinstance(value, str) or not value.strip() or len(value) > 255:
            raise ValueError("value must be a non-empty string of at most 255 characters")
        if converted and fdef.name != "Status":
            raise ValueError("only Status values can be converted statuses")
        with self._write_lock:
            values = self.picklist_values(fdef.name)
            added = value not in values
            if added:
                values = (*values, value)
                self.store.set_meta(_PICKLIST_META + fdef.name, json.dumps(list(values)))
                self._picklists[fdef.name] = values
            converted_values = self.converted_statuses()
            if converted and value not in converted_values:
                converted_values = (*converted_values, value)
                self.store.set_meta(_CONVERTED_META, json.dumps(list(converted_values)))
        if added:
            log.info("picklist %s.%s: added a value (%d values now)", SOBJECT, fdef.name, len(values))
        out: dict[str, Any] = {"field": fdef.name, "values": list(values), "added": added}
        if fdef.name == "Status":
            out["convertedStatuses"] = list(converted_values)
        return out

    # --- query -----------------------------------------------------------------------------------
    def query(self, soql: str, *, all_rows: bool, batch_size: int = MAX_BATCH, version: str) -> dict[str, Any]:
        try:
            q = parse(soql)
        except SoqlError as exc:
            raise SalesforceApiError(400, exc.code, exc.message) from None
        where = q.where_sql
        if not all_rows:
            where = f"is_deleted = 0 AND ({where})" if where else "is_deleted = 0"
        ids = self.store.select_ids(where, q.params, q.order_sql, q.limit, q.offset, table=q.sobject.table)
        cursor = Cursor(ids=ids, fields=q.fields, position=0, batch=max(MIN_BATCH, min(MAX_BATCH, batch_size)),
                        all_rows=all_rows, sobject=q.sobject, children=q.children)
        return self._next_batch(cursor, None, version)

    def more(self, locator: str, *, version: str) -> dict[str, Any]:
        cursor_id, _, _ = locator.partition("-")
        with self._lock:
            cursor = self._cursors.get(cursor_id)
        if cursor is None:
            raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return self._next_batch(cursor, cursor_id, version)

    def _next_batch(self, cursor: Cursor, cursor_id: str | None, version: str) -> dict[str, Any]:
        chunk = cursor.ids[cursor.position:cursor.position + cursor.batch]
        cursor.position += len(chunk)
        found = self._get(chunk, cursor.sobject)
        records = [self._render(found[i], cursor.fields, version, cursor.sobject) for i in chunk if i in found]
        for name, child in cursor.children.items():
            for record in records:
                record[name] = self._child_rows(record["Id"], child, cursor.all_rows, version)
        done = cursor.position >= len(cursor.ids)
        body: dict[str, Any] = {"totalSize": len(cursor.ids), "done": done, "records": records}
        with self._lock:
            if done:
                if cursor_id is not None:
                    self._cursors.pop(cursor_id, None)
            else:
                if cursor_id is None:
                    cursor_id = "01g" + secrets.token_hex(6).upper()[:12]
                    self._cursors[cursor_id] = cursor
                    while len(self._cursors) > MAX_CURSORS:
                        self._cursors.popitem(last=False)
                kind = "queryAll" if cursor.all_rows else "query"
                body["nextRecordsUrl"] = f"/services/data/v{version}/{kind}/{cursor_id}-{cursor.position}"
        return body

    def _get(self, ids: Sequence[str], sobject: SObjectType) -> dict[str, dict[str, Any]]:
        if sobject is LEAD:
            return self.store.get(ids)
        if sobject is CONTACT:
            return self.store.get_contacts(ids)
        return self.store.get_history(ids)

    def _child_rows(self, parent_id: str, child: Query, all_rows: bool, version: str) -> dict[str, Any] | None:
        """One parent's sub-query answer in Salesforce's shape: null when it has no rows. Always
        whole (`done`): Salesforce may page a large one with its own `nextRecordsUrl`, which
        leadflow follows, but the sandbox's histories stay small."""
        where = f"{child.parent_sql} = ? AND ({child.where_sql})" if child.where_sql else f"{child.parent_sql} = ?"
        if not all_rows:
            where = f"is_deleted = 0 AND {where}"
        ids = self.store.select_ids(where, [parent_id, *child.params], child.order_sql, child.limit,
                                    table=child.sobject.table)
        if not ids:
            return None
        found = self.store.get_history(ids)
        rows = [self._render(found[i], child.fields, version, child.sobject) for i in ids if i in found]
        return {"totalSize": len(rows), "done": True, "records": rows}

    def _render(self, rec: dict[str, Any], fields: Sequence[FieldDef], version: str,
                sobject: SObjectType = LEAD) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": sobject.name,
                                              "url": f"/services/data/v{version}/sobjects/{sobject.name}/{rec['Id']}"}}
        for fdef in fields:
            value = rec.get(fdef.name)
            # LeadHistory keeps OldValue/NewValue in wire form already
            out[fdef.name] = value if fdef.type == "anyType" else to_wire(fdef, value)
        return out

    # --- sObject rows ----------------------------------------------------------------------------
    def describe(self, sobject: str = SOBJECT) -> dict[str, Any]:
        """Describe of Lead or Contact (with the org's picklist values) or LeadHistory (read-only)."""
        if sobject.lower() in (SOBJECT.lower(), CONTACT.name.lower()):
            obj = SOBJECTS[sobject.lower()]
            fields, writable = [self._org_field(f).describe() for f in obj.fields], True
        elif sobject.lower() == LEAD_HISTORY.name.lower():
            picklist = (*HISTORY_EVENTS, *self.tracked_fields)
            fields = [(dataclasses.replace(f, picklist=picklist) if f.name == "Field" else f).describe()
                      for f in LEAD_HISTORY.fields]
            obj, writable = LEAD_HISTORY, False
        else:
            raise SalesforceApiError(404, "NOT_FOUND", f"The requested resource does not exist (the sandbox "
                                     f"serves Lead, LeadHistory and Contact, not {sobject[:40]})")
        return {
            "name": obj.name, "label": obj.label, "labelPlural": obj.label + ("s" if obj is not LEAD_HISTORY else ""),
            "keyPrefix": obj.key_prefix, "custom": False, "queryable": True, "updateable": writable,
            "createable": writable, "deletable": writable, "retrieveable": True, "fields": fields,
            "urls": {"describe": f"/services/data/v{self.version}/sobjects/{obj.name}/describe"},
        }

    def get_record(self, record_id: str, version: str, fields: Sequence[str] | None = None,
                   sobject: SObjectType = LEAD) -> dict[str, Any]:
        rid = self._id(record_id)
        rec = self._get([rid], sobject).get(rid)
        if rec is None or rec.get("IsDeleted"):
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        defs = [sobject.lookup(f) for f in fields] if fields else list(sobject.fields)
        if any(d is None for d in defs):
            raise SalesforceApiError(400, "INVALID_FIELD", f"No such column on sobject of type {sobject.name}")
        return self._render(rec, [d for d in defs if d is not None], version, sobject)

    def delete(self, record_id: str, user: SalesforceUser | None = None) -> None:
        """`DELETE sobjects/Lead/{id}`: to the recycle bin (IsDeleted, seen by queryAll) with its history."""
        user = user or self.users.integration
        rid = self._id(record_id)
        with self._write_lock:
            rec = self._live(rid)
            self._save_system([{**rec, "IsDeleted": True}], [(rid, "IsDeleted", False, True)], user, [],
                              drop_history_of=[rid])
        log.info("lead %s deleted by user %s", rid, user.id)

    def _live(self, rid: str, *, what: str = "lead") -> dict[str, Any]:
        """The current lead `rid`, neither missing nor deleted (SalesforceApiError otherwise)."""
        rec = self.store.get([rid]).get(rid)
        if rec is None:
            raise SalesforceApiError(404, "NOT_FOUND", f"The requested resource does not exist ({what} {rid})")
        if rec.get("IsDeleted"):
            raise SalesforceApiError(404, "ENTITY_IS_DELETED", f"entity is deleted ({what} {rid})")
        return rec

    def _save_system(self, records: list[dict[str, Any]], changes: list[tuple[str, str, Any, Any]],
                     user: SalesforceUser, history: list[tuple[str, str, Any, Any]],
                     drop_history_of: Sequence[str] = (), new_contacts: Sequence[dict[str, Any]] = ()) -> int:
        """Save `records` as changed by `user` (LastModifiedById, SystemModstamp now) with the
        field `changes` logged, a LeadHistory row per tracked field of a lead among them plus the
        event rows `history`, and the Contacts `new_contacts` created, all in one transaction.
        Returns the time of the change (epoch ms)."""
        at_ms = self._now_ms()
        for rec in records:
            rec["LastModifiedById"] = user.id
        history = history + self._tracked(changes)
        self.store.save(records, at_ms, changes, user_id=user.id, history=history, drop_history_of=drop_history_of,
                        new_contacts=new_contacts)
        return at_ms

    def _tracked(self, changes: Sequence[tuple[str, str, Any, Any]]) -> list[tuple[str, str, Any, Any]]:
        out = []
        for rid, name, old, new in changes:
            # The sandbox keeps LeadHistory only: a Contact's changes are in the write log alone.
            if name in self.tracked_fields and not is_contact(rid):
                fdef = lookup_field(name)
                assert fdef is not None  # tracked fields are checked at start
                out.append((rid, name, history_value(fdef, old), history_value(fdef, new)))
        return out

    # --- what people do in the UI (sandbox admin routes) -------------------------------------------
    def merge(self, master_id: str, merged_id: str, user: SalesforceUser | None = None) -> dict[str, Any]:
        """Merge lead `merged_id` into `master_id` as `user`, as Salesforce's merge does: the
        merged lead is deleted with `MasterRecordId` = the master (queryAll shows it), both get
        LastModifiedById/SystemModstamp moved, the master a `leadMerged` history row. The master
        keeps its own values."""
        user = user or self.users.integration
        master, merged = self._id(master_id), self._id(merged_id)
        if master == merged:
            raise SalesforceApiError(400, "INVALID_ID_FIELD", f"cannot merge lead {master} with itself")
        with self._write_lock:
            keep, gone = self._live(master, what="master lead"), self._live(merged, what="merged lead")
            for rec in (keep, gone):
                if rec.get("IsConverted"):
                    raise SalesforceApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD",
                                             f"cannot reference converted lead {rec['Id']}")
            at_ms = self._save_system(
                [dict(keep), {**gone, "IsDeleted": True, "MasterRecordId": master}],
                [(merged, "IsDeleted", False, True), (merged, "MasterRecordId", None, master)], user,
                [(master, "leadMerged", None, None)], drop_history_of=[merged])
        log.info("lead %s merged into %s by user %s", merged, master, user.id)
        return {"id": master, "mergedRecordIds": [merged], "success": True, "errors": [],
                "systemModstamp": format_datetime(at_ms)}

    def convert(self, lead: str, user: SalesforceUser | None = None, *, converted_status: str | None = None,
                account_id: str | None = None, create_opportunity: bool = False) -> dict[str, Any]:
        """Convert a lead as `user` (Salesforce's convertLead): IsConverted, a new Contact (and
        Account unless `account_id` names one, an Opportunity when asked), ConvertedDate today
        (UTC), Status the org's converted status. A converted lead can no longer be updated."""
        user = user or self.users.integration
        rid = self._id(lead)
        statuses = self.converted_statuses()
        status = converted_status or statuses[0]
        if status not in statuses:
            raise SalesforceApiError(400, "INVALID_STATUS", f"convertedStatus {status!r} is not a converted "
                                     f"status of the org (converted statuses: {', '.join(statuses)})")
        with self._write_lock:
            rec = self._live(rid)
            if rec.get("IsConverted"):
                raise SalesforceApiError(400, "CANNOT_UPDATE_CONVERTED_LEAD", f"cannot reference converted lead {rid}")
            number = id_number(rid)
            ids = converted_ids(number)
            if account_id:
                try:
                    ids["ConvertedAccountId"] = to_18(account_id)
                except ValueError:
                    raise SalesforceApiError(400, "MALFORMED_ID", f"accountId: invalid id {account_id[:40]}") from None
            if create_opportunity:
                ids["ConvertedOpportunityId"] = record_id(OPPORTUNITY_PREFIX, number)
            new = {**rec, **ids, "IsConverted": True, "Status": status, "ConvertedDate": format_date(self._now_ms()),
                   "LastModifiedById": user.id}
            changes = [(rid, name, rec.get(name), new[name]) for name in ("IsConverted", "Status", *ids, "ConvertedDate")
                       if rec.get(name) != new[name]]
            contact = contact_from_lead(new)
            self._save_system([new], changes, user, [(rid, "leadConverted", None, None)],
                              new_contacts=[contact] if contact is not None else [])
        log.info("lead %s converted by user %s", rid, user.id)
        return {"leadId": rid, "contactId": ids["ConvertedContactId"], "accountId": ids["ConvertedAccountId"],
                "opportunityId": ids.get("ConvertedOpportunityId"), "success": True, "errors": []}

    @staticmethod
    def _id(value: str) -> str:
        try:
            return to_18(value)
        except ValueError:
            raise SalesforceApiError(404, "NOT_FOUND", "Provided external ID field does not exist or is not "
                                     "accessible: " + value[:40]) from None

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- writes ----------------------------------------------------------------------------------
    def update_collection(self, body: Any, faults: RequestFaults, user: SalesforceUser | None = None, *,
                          unmodified_since_ms: int | None = None) -> tuple[list[dict[str, Any]], bool]:
        """`PATCH composite/sobjects` as `user` (default: the integration user): ordered
        per-record results; (results, anything applied). `unmodified_since_ms` (single-record
        PATCH with If-Unmodified-Since) fails a record modified after that second with
        PRECONDITION_FAILED."""
        user = user or self.users.integration
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize the request: expected "
                                     "{\"allOrNone\": bool, \"records\": [...]}")
        records = body["records"]
        all_or_none = bool(body.get("allOrNone", False))
        if len(records) > MAX_COLLECTION:
            raise SalesforceApiError(400, "EXCEEDED_ID_LIMIT", "record limit reached. cannot submit more than "
                                     f"{MAX_COLLECTION} records into this call")
        # Deserialization (unknown fields, wrong JSON types) fails the whole request first.
        parsed: list[tuple[str | None, dict[str, Any], WriteProblem | None]] = []
        for item in records:
            parsed.append(self._parse_item(item))
        picked: set[int] = set()
        fault_code = None
        if faults.partial or faults.invalid:
            sendable = [str(i) for i, (_, _, p) in enumerate(parsed) if p is None]
            picked = {int(i) for i in self.faults.pick_records(sendable)}
            fault_code = "partial" if faults.partial else "invalid"
        with self._write_lock:
            ids = [rid for rid, _, _ in parsed if rid]
            current = {**self.store.get([i for i in ids if not is_contact(i)]),
                       **self.store.get_contacts([i for i in ids if is_contact(i)])}
            seen: set[str] = set()
            results: list[dict[str, Any]] = []
            to_save: dict[str, dict[str, Any]] = {}
            for index, (rid, values, problem) in enumerate(parsed):
                error = problem
                if error is None and rid is not None:
                    rec = current.get(rid)
                    if rid in seen:
                        error = WriteProblem("DUPLICATE_VALUE", f"Duplicate id in list: {rid}", [])
                    elif rec is None:
                        error = WriteProblem("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])
                    elif unmodified_since_ms is not None and rec["LastModifiedDate"] // 1000 * 1000 > unmodified_since_ms:
                        # HTTP dates have whole seconds: compare LastModifiedDate truncated to its second
                        error = WriteProblem("PRECONDITION_FAILED", "The record was modified since "
                                             f"{format_datetime(unmodified_since_ms)} (LastModifiedDate "
                                             f"{format_datetime(rec['LastModifiedDate'])})", [])
                    elif rec.get("IsDeleted"):
                        error = WriteProblem("ENTITY_IS_DELETED", "entity is deleted", [])
                    elif rec.get("IsConverted"):
                        error = WriteProblem("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [])
                    elif index in picked and fault_code == "partial":
                        error = WriteProblem("UNABLE_TO_LOCK_ROW", "unable to obtain exclusive access to this "
                                             "record or 1 records", [])
                    elif index in picked:
                        error = WriteProblem("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Validation rule "
                                             "Lead_Quality_Check failed (injected fault)", [])
                    seen.add(rid)
                if error is not None:
                    results.append({"success": False, "errors": [
                        {"statusCode": error.code, "message": error.message, "fields": error.fields}]})
                else:
                    merged = dict(to_save.get(rid) or current[rid])  # type: ignore[index]
                    merged.update(values)
                    to_save[rid] = merged  # type: ignore[index]
                    results.append({"id": rid, "success": True, "errors": []})
            failed = any(not r["success"] for r in results)
            if all_or_none and failed:
                for r in results:
                    if r["success"]:
                        r.pop("id", None)
                        r["success"] = False
                        r["errors"] = [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                        "message": "Record rolled back because not all records were valid and "
                                                   "the request was using AllOrNone header", "fields": []}]
                return results, False
            if to_save:
                changes = [(rid, name, current[rid].get(name), rec.get(name))
                           for rid, rec in to_save.items() for name in rec
                           if name not in ("Id",) and rec.get(name) != current[rid].get(name)]
                self._save_system(list(to_save.values()), changes, user, [])
                log.debug("collection update by user %s: %d records, %d field changes", user.id, len(to_save),
                          len(changes))
        return results, bool(to_save)

    def update_one(self, record_id: str, body: Any, user: SalesforceUser | None = None, *,
                   unmodified_since_ms: int | None = None, sobject: SObjectType = LEAD) -> None:
        """`PATCH sobjects/Lead/{id}` (or Contact) as `user` (204, or an error list; 412 when the
        record was modified after `unmodified_since_ms`, from If-Unmodified-Since)."""
        rid = self._id(record_id)
        if not isinstance(body, dict):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize the request body")
        item = {"attributes": {"type": sobject.name}, "id": rid, **body}
        results, _ = self.update_collection({"allOrNone": True, "records": [item]}, RequestFaults(), user,
                                            unmodified_since_ms=unmodified_since_ms)
        if not results[0]["success"]:
            err = results[0]["errors"][0]
            status = {"ENTITY_IS_DELETED": 404, "INVALID_CROSS_REFERENCE_KEY": 404,
                      "PRECONDITION_FAILED": 412}.get(err["statusCode"], 400)
            raise SalesforceApiError(status, err["statusCode"], err["message"], err["fields"])

    def _parse_item(self, item: Any) -> tuple[str | None, dict[str, Any], WriteProblem | None]:
        if not isinstance(item, dict):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize a record: not an object")
        attributes = item.get("attributes")
        if not isinstance(attributes, dict) or not attributes.get("type"):
            return None, {}, WriteProblem("INVALID_TYPE", "Must send a concrete entity type.", [])
        sobject = SOBJECTS.get(str(attributes["type"]).lower())
        if sobject not in (LEAD, CONTACT):
            return None, {}, WriteProblem("INVALID_TYPE", f"sObject type '{attributes['type']}' is not supported.", [])
        raw_id = item.get("id", item.get("Id"))
        values: dict[str, Any] = {}
        readonly: list[str] = []
        for key, value in item.items():
            if key in ("attributes", "id", "Id"):
                continue
            fdef = sobject.lookup(key)
            if fdef is None:
                raise SalesforceApiError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type "
                                         f"{sobject.name}")
            fdef = self._org_field(fdef)
            if not fdef.updateable:
                readonly.append(fdef.name)
                continue
            try:
                values[fdef.name] = from_wire(fdef, value)
            except DeserializeProblem as exc:
                raise SalesforceApiError(400, "JSON_PARSER_ERROR", str(exc)) from None
            except WriteProblem as exc:
                return None, {}, exc
        if readonly:
            return None, {}, WriteProblem("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: "
                                          f"{', '.join(readonly)}. Please check the security settings of this field "
                                          "and verify that it is read/write for your profile or permission set.",
                                          readonly)
        if not raw_id:
            return None, {}, WriteProblem("MISSING_ARGUMENT", "Id not specified in an update call", [])
        try:
            rid = to_18(str(raw_id))
        except ValueError:
            rid = None
        if rid is None or SOBJECTS_BY_PREFIX.get(rid[:3]) is not sobject:
            return None, {}, WriteProblem("MALFORMED_ID", f"{sobject.name} ID: id value of incorrect type: "
                                          f"{str(raw_id)[:40]}", ["Id"])
        return rid, values, None


