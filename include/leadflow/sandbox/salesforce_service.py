"""Salesforce behaviour of the sandbox, independent of HTTP: SOQL queries with snapshot cursors and
`nextRecordsUrl` batches, the daily API allocation, describe, and sObject writes with Salesforce's
per-record errors and `allOrNone` semantics."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from leadflow.sandbox.faults import FaultInjector, RequestFaults
from leadflow.sandbox.salesforce_schema import (
    LEAD_FIELDS,
    SOBJECT,
    DeserializeProblem,
    FieldDef,
    WriteProblem,
    from_wire,
    lookup_field,
    to_18,
    to_wire,
)
from leadflow.sandbox.salesforce_soql import SoqlError, parse
from leadflow.sandbox.salesforce_store import SalesforceStore

MAX_BATCH = 2000
MIN_BATCH = 200
MAX_COLLECTION = 200
MAX_CURSORS = 100


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


class SalesforceService:
    def __init__(self, store: SalesforceStore, *, faults: FaultInjector, clock: Callable[[], float] = time.time,
                 version: str = "59.0") -> None:
        self.store = store
        self.faults = faults
        self.clock = clock
        self.version = version
        self._cursors: OrderedDict[str, Cursor] = OrderedDict()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    # --- query -----------------------------------------------------------------------------------
    def query(self, soql: str, *, all_rows: bool, batch_size: int = MAX_BATCH, version: str) -> dict[str, Any]:
        try:
            q = parse(soql)
        except SoqlError as exc:
            raise SalesforceApiError(400, exc.code, exc.message) from None
        where = q.where_sql
        if not all_rows:
            where = f"is_deleted = 0 AND ({where})" if where else "is_deleted = 0"
        ids = self.store.select_ids(where, q.params, q.order_sql, q.limit, q.offset)
        cursor = Cursor(ids=ids, fields=q.fields, position=0, batch=max(MIN_BATCH, min(MAX_BATCH, batch_size)),
                        all_rows=all_rows)
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
        found = self.store.get(chunk)
        records = [self._render(found[i], cursor.fields, version) for i in chunk if i in found]
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

    def _render(self, rec: dict[str, Any], fields: Sequence[FieldDef], version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"attributes": {"type": SOBJECT,
                                              "url": f"/services/data/v{version}/sobjects/{SOBJECT}/{rec['Id']}"}}
        for fdef in fields:
            out[fdef.name] = to_wire(fdef, rec.get(fdef.name))
        return out

    # --- sObject rows ----------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "name": SOBJECT, "label": "Lead", "labelPlural": "Leads", "keyPrefix": "00Q", "custom": False,
            "queryable": True, "updateable": True, "createable": True, "deletable": True,
            "fields": [f.describe() for f in LEAD_FIELDS],
            "urls": {"describe": f"/services/data/v{self.version}/sobjects/Lead/describe"},
        }

    def get_record(self, record_id: str, version: str, fields: Sequence[str] | None = None) -> dict[str, Any]:
        rid = self._id(record_id)
        rec = self.store.get([rid]).get(rid)
        if rec is None or rec.get("IsDeleted"):
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        defs = [lookup_field(f) for f in fields] if fields else list(LEAD_FIELDS)
        if any(d is None for d in defs):
            raise SalesforceApiError(400, "INVALID_FIELD", "No such column on sobject of type Lead")
        return self._render(rec, [d for d in defs if d is not None], version)

    def delete(self, record_id: str) -> None:
        rid = self._id(record_id)
        rec = self.store.get([rid]).get(rid)
        if rec is None:
            raise SalesforceApiError(404, "NOT_FOUND", "The requested resource does not exist")
        if rec.get("IsDeleted"):
            raise SalesforceApiError(404, "ENTITY_IS_DELETED", "entity is deleted")
        self.store.mark_deleted([rid], self._now_ms())

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
    def update_collection(self, body: Any, faults: RequestFaults) -> tuple[list[dict[str, Any]], bool]:
        """`PATCH composite/sobjects`: ordered per-record results; (results, anything applied)."""
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
            current = self.store.get(ids)
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
                self.store.save(list(to_save.values()), self._now_ms(), changes)
        return results, bool(to_save)

    def update_one(self, record_id: str, body: Any) -> None:
        """`PATCH sobjects/Lead/{id}` (204, or an error list)."""
        rid = self._id(record_id)
        if not isinstance(body, dict):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize the request body")
        item = {"attributes": {"type": SOBJECT}, "id": rid, **body}
        results, _ = self.update_collection({"allOrNone": True, "records": [item]}, RequestFaults())
        if not results[0]["success"]:
            err = results[0]["errors"][0]
            status = 404 if err["statusCode"] in ("ENTITY_IS_DELETED", "INVALID_CROSS_REFERENCE_KEY") else 400
            raise SalesforceApiError(status, err["statusCode"], err["message"], err["fields"])

    def _parse_item(self, item: Any) -> tuple[str | None, dict[str, Any], WriteProblem | None]:
        if not isinstance(item, dict):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Cannot deserialize a record: not an object")
        attributes = item.get("attributes")
        if not isinstance(attributes, dict) or not attributes.get("type"):
            return None, {}, WriteProblem("INVALID_TYPE", "Must send a concrete entity type.", [])
        if str(attributes["type"]).lower() != SOBJECT.lower():
            return None, {}, WriteProblem("INVALID_TYPE", f"sObject type '{attributes['type']}' is not supported.", [])
        raw_id = item.get("id", item.get("Id"))
        values: dict[str, Any] = {}
        readonly: list[str] = []
        for key, value in item.items():
            if key in ("attributes", "id", "Id"):
                continue
            fdef = lookup_field(key)
            if fdef is None:
                raise SalesforceApiError(400, "INVALID_FIELD", f"No such column '{key}' on sobject of type {SOBJECT}")
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
            return None, {}, WriteProblem("MALFORMED_ID", f"Lead ID: id value of incorrect type: {str(raw_id)[:40]}",
                                          ["Id"])
        return rid, values, None


