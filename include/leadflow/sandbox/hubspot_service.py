"""What the HubSpot endpoints do, without HTTP: render objects (with `propertiesWithHistory`), page,
search, validate and apply writes (forward-only lifecycle stage, typed properties, write log with
who made each change), merge and archive, build 200/207 batch answers.

The routers in `hubspot_api.py` only parse requests and call this; tests can drive it directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Sequence

from leadflow.sandbox.errors import (
    HubSpotError,
    PropertyProblem,
    RecordError,
    batch_errors,
    not_found,
    property_problems_message,
    validation_error,
)
from leadflow.sandbox.faults import NO_FAULTS, FaultInjector, RequestFaults
from leadflow.sandbox.history import API, CALCULATED, ChangeSource, history_entry, seeded_origin
from leadflow.sandbox.properties import (
    ALWAYS_RETURNED,
    COLUMN_PROPERTIES,
    DEFAULT_PROPERTIES,
    OBJECT_LABEL,
    READ_ONLY,
    UNIQUE_PROPERTY,
    InvalidValue,
    coerce_value,
    lifecycle_decision,
    ms_to_iso,
    render_value,
    unknown_property,
)
from leadflow.sandbox.search import SearchRequest, compile_search, next_after
from leadflow.sandbox.store import Row, SandboxStore, WriteEntry, unique_key_for

log = logging.getLogger(__name__)

MAX_BATCH_INPUTS = 100
MAX_LIST_LIMIT = 100
DEFAULT_LIST_LIMIT = 10
# Share of a batch's records that a `partial` / `invalid` fault fails.
FAULTED_RECORD_SHARE = 0.3
MERGED_IDS = "hs_merged_object_ids"
# Set by HubSpot on every write: its history is its current value, from HubSpot itself.
_MODIFIED_PROPERTIES = frozenset({"lastmodifieddate", "hs_lastmodifieddate"})


# HubSpot's limit on a batch read that asks for property histories (100 without them).
MAX_HISTORY_BATCH = 50


@dataclass(frozen=True)
class BatchAnswer:
    status_code: int
    body: dict[str, Any]
    applied: bool  # something was written (the `timeout` fault only bites then)


@dataclass
class _Planned:
    """One batch input after validation: the row to save and the property changes."""

    key: str  # the id as the client sent it
    row: Row
    changes: list[tuple[int, str, Any, Any]]
    written: list[str]
    new: bool = False


class HubSpotService:
    def __init__(self, store: SandboxStore, *, lifecycle_backward: str = "ignore",
                 batch_validation: str = "per-record", faults: FaultInjector | None = None,
                 default_source: ChangeSource = API) -> None:
        """`default_source` is who writes when a caller names nobody (Python callers; the HTTP
        routes always pass the principal of the request's token)."""
        self.store = store
        self.lifecycle_backward = lifecycle_backward
        self.batch_validation = batch_validation
        self.faults = faults or FaultInjector()
        self.default_source = default_source
        self._world_seed: int | None = None

    def _source(self, source: ChangeSource | None) -> ChangeSource:
        return source or self.default_source

    def _origin(self, object_type: str, row: Row) -> ChangeSource:
        """Who created a record: stored for API-created ones, drawn from the world seed otherwise."""
        if row.created_by is not None:
            return row.created_by
        if self._world_seed is None:
            self._world_seed = int(json.loads(self.store.get_meta("world") or "{}").get("seed", 0))
        return seeded_origin(self._world_seed, object_type, row.id)

    # --- rendering ------------------------------------------------------------------------------
    def _wanted(self, object_type: str, requested: Sequence[str] | None) -> list[str]:
        defs = self.store.properties(object_type)
        if not requested:
            return list(DEFAULT_PROPERTIES[object_type])
        # Unknown names are ignored, like HubSpot; the always-returned ones are added.
        names = [n for n in dict.fromkeys(requested) if n in defs]
        return names + [n for n in ALWAYS_RETURNED[object_type] if n not in names]

    def render(self, object_type: str, row: Row, properties: Sequence[str]) -> dict[str, Any]:
        return self.render_many(object_type, [row], properties)[0]

    def render_many(self, object_type: str, rows: Sequence[Row], properties: Sequence[str],
                    with_history: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Objects as HubSpot sends them; `with_history` names the properties whose
        `propertiesWithHistory` to add (unknown names are ignored, like HubSpot)."""
        defs = self.store.properties(object_type)
        wanted = [(n, defs.get(n)) for n in properties]
        out = []
        for row in rows:
            obj: dict[str, Any] = {
                "id": str(row.id),
                "properties": {n: render_value(d, row.value(object_type, n)) for n, d in wanted},
                "createdAt": ms_to_iso(row.created_ms),
                "updatedAt": ms_to_iso(row.modified_ms),
                "archived": row.archived,
            }
            if row.archived and row.archived_ms is not None:
                obj["archivedAt"] = ms_to_iso(row.archived_ms)
            out.append(obj)
        names = [n for n in dict.fromkeys(with_history or ()) if n in defs]
        if names and rows:
            logged = self.store.history(object_type, [r.id for r in rows], names)
            for row, obj in zip(rows, out):
                obj["propertiesWithHistory"] = {
                    n: self._history(object_type, row, n, defs, logged.get((row.id, n), [])) for n in names}
        return out

    def _history(self, object_type: str, row: Row, name: str, defs: dict[str, Any],
                 logged: list[WriteEntry]) -> list[dict[str, Any]]:
        """One property's `ValueWithTimestamp` list, newest first: the logged changes, then the
        creation entry when no logged change holds it (a seeded record's values)."""
        if name in _MODIFIED_PROPERTIES:
            return [history_entry(ms_to_iso(row.modified_ms), row.modified_ms, CALCULATED)]
        entries = [history_entry(e.new, e.at_ms, e.source) for e in logged]
        # Before its first logged change a property held the value it was created with.
        created = logged[-1].old if logged else render_value(defs.get(name), row.value(object_type, name))
        if created is not None:
            entries.append(history_entry(created, row.created_ms, self._origin(object_type, row)))
        return entries

    def _with_associations(self, object_type: str, rows: list[Row], rendered: list[dict[str, Any]],
                           associations: Sequence[str]) -> None:
        wanted = {a.lower() for a in associations}
        if object_type == "contacts" and wanted & {"companies", "company"}:
            for row, obj in zip(rows, rendered):
                if row.company_id:
                    obj["associations"] = {"companies": {"results": [
                        {"id": str(row.company_id), "type": "contact_to_company"}]}}
        elif object_type == "companies" and wanted & {"contacts", "contact"}:
            linked = self.store.contacts_of_companies([r.id for r in rows])
            for row, obj in zip(rows, rendered):
                if linked.get(row.id):
                    obj["associations"] = {"contacts": {"results": [
                        {"id": str(c), "type": "company_to_contact"} for c in linked[row.id]]}}

    # --- reads ----------------------------------------------------------------------------------
    def list_page(self, object_type: str, *, limit: int, after: str | None, properties: Sequence[str] | None,
                  associations: Sequence[str], archived: bool, base_url: str,
                  properties_with_history: Sequence[str] | None = None) -> dict[str, Any]:
        if limit < 1 or limit > MAX_LIST_LIMIT:
            raise validation_error(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        after_id = 0
        if after:
            try:
                after_id = int(after)
            except ValueError:
                raise validation_error(f"after {after[:50]!r} is not a valid paging cursor") from None
        rows = self.store.list_page(object_type, after_id=after_id, limit=limit + 1, archived=archived)
        more = len(rows) > limit
        rows = rows[:limit]
        wanted = self._wanted(object_type, properties)
        rendered = self.render_many(object_type, rows, wanted, properties_with_history)
        self._with_associations(object_type, rows, rendered, associations)
        body: dict[str, Any] = {"results": rendered}
        if more:
            # HubSpot's list cursor is the id to continue from; clients treat it as opaque.
            cursor = str(rows[-1].id + 1)
            body["paging"] = {"next": {"after": cursor,
                                       "link": f"{base_url}/crm/v3/objects/{object_type}?after={cursor}"}}
        return body

    def _find(self, object_type: str, keys: Sequence[str], id_property: str | None, *,
              archived: bool = False, follow_merges: bool = False) -> dict[str, Row]:
        """Rows by the client's ids (hs_object_id, or the unique property named by idProperty):
        live rows, or only archived ones with `archived`. With `follow_merges` the id of a
        merged-away record finds the record it was merged into (as HubSpot's reads do)."""
        if id_property and id_property != "hs_object_id":
            if id_property != UNIQUE_PROPERTY[object_type]:
                defs = self.store.properties(object_type)
                if id_property not in defs:
                    raise validation_error(f"idProperty {id_property!r} does not exist",
                                           sub_category="PROPERTY_DOESNT_EXIST")
                raise validation_error(f"idProperty {id_property!r} is not a unique property")
            by_key = self.store.get_rows_by_unique(object_type, keys)
            return {k: by_key[k.lower()] for k in keys if k.lower() in by_key}
        numeric = {k: int(k) for k in keys if k.strip().isdigit()}
        if not archived and not follow_merges:
            rows = self.store.get_rows(object_type, numeric.values())
            return {k: rows[i] for k, i in numeric.items() if i in rows}
        every = self.store.get_rows(object_type, numeric.values(), include_archived=True)
        if follow_merges and not archived:
            survivors = self.store.get_rows(object_type, [r.merged_into for r in every.values() if r.merged_into])
            every.update({i: survivors[r.merged_into] for i, r in every.items()
                          if r.merged_into and r.merged_into in survivors})
        wanted = {i: r for i, r in every.items() if r.merged_into is None and r.archived == archived}
        return {k: wanted[i] for k, i in numeric.items() if i in wanted}

    def get(self, object_type: str, object_id: str, *, properties: Sequence[str] | None,
            associations: Sequence[str], id_property: str | None, archived: bool = False,
            properties_with_history: Sequence[str] | None = None) -> dict[str, Any]:
        """One record; the id of a merged-away record answers the record it was merged into."""
        row = self._find(object_type, [object_id], id_property, archived=archived,
                         follow_merges=True).get(object_id)
        if row is None:
            raise not_found(OBJECT_LABEL[object_type].lower(), object_id)
        rendered = self.render_many(object_type, [row], self._wanted(object_type, properties),
                                    properties_with_history)[0]
        self._with_associations(object_type, [row], [rendered], associations)
        return rendered

    def search(self, object_type: str, request: SearchRequest) -> dict[str, Any]:
        compiled = compile_search(object_type, request, self.store.properties(object_type))
        total, rows = self.store.search(object_type, compiled.where_sql, compiled.params, compiled.order_sql,
                                        request.limit, request.after)
        wanted = self._wanted(object_type, request.properties)
        body: dict[str, Any] = {"total": total, "results": self.render_many(object_type, rows, wanted)}
        after = next_after(request, total, len(rows))
        if after is not None:
            body["paging"] = {"next": {"after": after}}
        return body

    def batch_read(self, object_type: str, body: dict[str, Any]) -> BatchAnswer:
        inputs = _inputs(body)
        keys = [_input_id(i, n) for n, i in enumerate(inputs)]
        started = self.store.now_ms()
        found = self._find(object_type, keys, body.get("idProperty"), follow_merges=True)
        wanted = self._wanted(object_type, body.get("properties"))
        history = body.get("propertiesWithHistory") or []
        if not isinstance(history, list) or not all(isinstance(n, str) for n in history):
            raise validation_error("propertiesWithHistory must be a list of property names")
        if history and len(inputs) > MAX_HISTORY_BATCH:
            raise validation_error(f"The maximum number of inputs supported in a batch request for property "
                                   f"histories is {MAX_HISTORY_BATCH}. Please reduce the number of items and try again")
        # A merged-away id and its survivor's id answer one object, once.
        rows = list({found[k].id: found[k] for k in dict.fromkeys(keys) if k in found}.values())
        results = self.render_many(object_type, rows, wanted, history)
        missing = [k for k in dict.fromkeys(keys) if k not in found]
        errors = [_not_found_error(object_type, k) for k in missing]
        return _answer(results, errors, started, self.store.now_ms(), ok_status=200, applied=False)

    # --- writes ---------------------------------------------------------------------------------
    def _plan(self, object_type: str, row: Row, values: Any, *, creating: bool) -> tuple[list[tuple], list[str],
                                                                                            list[PropertyProblem]]:
        """Validate `values` against the schema and apply them to `row` in memory.

        Returns (changes for the write log, names written, problems). With problems the row must
        not be saved.
        """
        if not isinstance(values, dict):
            raise validation_error("properties must be an object of property name -> value")
        defs = self.store.properties(object_type)
        problems: list[PropertyProblem] = []
        coerced: dict[str, Any] = {}
        for name, raw in values.items():
            prop = defs.get(name)
            if prop is None:
                problems.append(unknown_property(name))
                continue
            if name in READ_ONLY:
                problems.append(PropertyProblem(name, "READ_ONLY_VALUE", f"{name} is a read only property; "
                                                "its value cannot be set."))
                continue
            try:
                coerced[name] = coerce_value(prop, raw)
            except InvalidValue as exc:
                problems.append(exc.problem)
        if "lifecyclestage" in coerced and not creating:
            decision = lifecycle_decision(defs["lifecyclestage"].option_values(),
                                          row.value(object_type, "lifecyclestage"), coerced["lifecyclestage"],
                                          self.lifecycle_backward)
            if decision.problem is not None:
                problems.append(decision.problem)
            if not decision.apply:
                del coerced["lifecyclestage"]  # silently kept, as HubSpot does by default
        if problems:
            return [], [], problems
        changes: list[tuple] = []
        for name, value in coerced.items():
            old = row.value(object_type, name)
            _set(object_type, row, name, value)
            changes.append((row.id, name, old, value))
        row.unique_key = unique_key_for(object_type, row.props)
        return changes, list(coerced), []

    def _conflicts(self, object_type: str, planned: list[_Planned]) -> dict[str, RecordError]:
        """Contacts' emails are unique: a write that would duplicate one is a CONFLICT."""
        if object_type != "contacts":
            return {}
        keys = [p.row.unique_key for p in planned if p.row.unique_key]
        existing = self.store.get_rows_by_unique(object_type, keys)
        first_in_batch: dict[str, _Planned] = {}
        out: dict[str, RecordError] = {}
        for p in planned:
            key = p.row.unique_key
            if not key:
                continue
            other = existing.get(key)
            if other is not None and other.id != p.row.id:
                out[p.key] = RecordError(p.key, "CONFLICT", f"Contact already exists. Existing ID: {other.id}")
            elif key in first_in_batch:
                out[p.key] = RecordError(p.key, "CONFLICT", f"Contact already exists in this batch (input "
                                                            f"{first_in_batch[key].key}).")
            else:
                first_in_batch[key] = p
        return out

    def _fault_errors(self, keys: list[str], faults: RequestFaults) -> dict[str, RecordError]:
        out: dict[str, RecordError] = {}
        if faults.partial:
            for k in self.faults.pick_records(keys, FAULTED_RECORD_SHARE, faults.key):
                out[k] = RecordError(k, "LOCKED", "The record is locked by another process; try again shortly.",
                                     http_status=423)
        if faults.invalid:
            for k in self.faults.pick_records([k for k in keys if k not in out], FAULTED_RECORD_SHARE,
                                              faults.key + ":invalid" if faults.key else None):
                out[k] = RecordError(k, "VALIDATION_ERROR", property_problems_message([PropertyProblem(
                    "email", "INVALID_EMAIL", "Email address is invalid (injected fault)")]),
                                     details=[{"message": "Email address is invalid", "code": "INVALID_EMAIL"}])
        return out

    def _commit(self, object_type: str, planned: list[_Planned], record_errors: list[RecordError],
                started: int, ok_status: int, upsert: bool, source: ChangeSource) -> BatchAnswer:
        ok = [p for p in planned if p.key not in {e.record_id for e in record_errors}]
        now = self.store.now_ms()
        updates = [p for p in ok if not p.new]
        creates = [p for p in ok if p.new]
        for p in ok:
            p.row.modified_ms = now
        if updates:
            self.store.save(object_type, [p.row for p in updates], [c for p in updates for c in p.changes], now,
                            source)
        if creates:
            self.store.create(object_type, [p.row for p in creates], now, source)
        results = []
        for p in ok:
            names = list(dict.fromkeys(p.written + list(ALWAYS_RETURNED[object_type])))
            obj = self.render(object_type, p.row, names)
            if upsert:
                obj["new"] = p.new
            results.append(obj)
        if ok:
            log.info("batch write %s by %s: %d applied, %d failed", object_type, source.source_type, len(ok),
                     len(record_errors))
        return _answer(results, record_errors, started, self.store.now_ms(), ok_status=ok_status, applied=bool(ok))

    def batch_update(self, object_type: str, body: dict[str, Any], faults: RequestFaults = NO_FAULTS,
                     source: ChangeSource | None = None) -> BatchAnswer:
        inputs = _inputs(body)
        keys = [_input_id(i, n) for n, i in enumerate(inputs)]
        _no_duplicates(keys)
        started = self.store.now_ms()
        id_property = body.get("idProperty") or next((i.get("idProperty") for i in inputs if i.get("idProperty")), None)
        found = self._find(object_type, keys, id_property)
        record_errors = [_not_found_error(object_type, k) for k in keys if k not in found]
        planned, invalid = self._plan_many(object_type, [(k, found[k], i.get("properties"), False)
                                                         for k, i in zip(keys, inputs) if k in found])
        return self._finish(object_type, planned, invalid, record_errors, keys, faults, started, 200, upsert=False,
                            source=self._source(source))

    def batch_create(self, object_type: str, body: dict[str, Any], faults: RequestFaults = NO_FAULTS,
                     source: ChangeSource | None = None) -> BatchAnswer:
        inputs = _inputs(body)
        started = self.store.now_ms()
        keys = [str(n) for n in range(len(inputs))]  # creates have no id yet: errors name the input index
        planned, invalid = self._plan_many(object_type, [(k, _new_row(started), i.get("properties"), True)
                                                         for k, i in zip(keys, inputs)])
        return self._finish(object_type, planned, invalid, [], keys, faults, started, 201, upsert=False,
                            source=self._source(source))

    def batch_upsert(self, object_type: str, body: dict[str, Any], faults: RequestFaults = NO_FAULTS,
                     source: ChangeSource | None = None) -> BatchAnswer:
        inputs = _inputs(body)
        keys = [_input_id(i, n) for n, i in enumerate(inputs)]
        _no_duplicates(keys)
        started = self.store.now_ms()
        id_property = next((i.get("idProperty") for i in inputs if i.get("idProperty")), None)
        if id_property != UNIQUE_PROPERTY[object_type]:
            raise validation_error(f"upsert needs idProperty {UNIQUE_PROPERTY[object_type]!r} (a unique property), "
                                   f"got {id_property!r}")
        found = self._find(object_type, keys, id_property)
        items = []
        for k, i in zip(keys, inputs):
            values = dict(i.get("properties") or {})
            if k in found:
                items.append((k, found[k], values, False))
            else:
                values.setdefault(id_property, k)
                items.append((k, _new_row(started), values, True))
        planned, invalid = self._plan_many(object_type, items)
        return self._finish(object_type, planned, invalid, [], keys, faults, started, 200, upsert=True,
                            source=self._source(source))

    def _plan_many(self, object_type: str, items: list[tuple[str, Row, Any, bool]]
                   ) -> tuple[list[_Planned], list[RecordError]]:
        planned: list[_Planned] = []
        invalid: list[RecordError] = []
        for key, row, values, creating in items:
            changes, written, problems = self._plan(object_type, row, values, creating=creating)
            if problems:
                invalid.append(_validation_record_error(key, problems))
            else:
                planned.append(_Planned(key, row, changes, written, new=creating))
        return planned, invalid

    def _finish(self, object_type: str, planned: list[_Planned], invalid: list[RecordError],
                record_errors: list[RecordError], keys: list[str], faults: RequestFaults, started: int,
                ok_status: int, *, upsert: bool, source: ChangeSource) -> BatchAnswer:
        if invalid and self.batch_validation == "whole-batch":
            # Some portals reject the whole batch when one record is invalid: nothing is applied.
            raise validation_error(
                f"{len(invalid)} of {len(keys)} inputs are invalid; nothing was applied.",
                errors=[{"message": e.message, "code": e.sub_category or "INVALID_PROPERTY_VALUE",
                         "context": {"ids": [e.record_id]}} for e in invalid])
        record_errors = record_errors + invalid
        record_errors += self._conflicts(object_type, planned).values()
        failed = {e.record_id for e in record_errors}
        faulted = self._fault_errors([p.key for p in planned if p.key not in failed], faults)
        record_errors += faulted.values()
        return self._commit(object_type, planned, record_errors, started, ok_status, upsert, source)

    def update_one(self, object_type: str, object_id: str, body: Any, id_property: str | None,
                   source: ChangeSource | None = None) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            raise validation_error("Invalid input JSON: expected {\"properties\": {...}}")
        row = self._find(object_type, [object_id], id_property).get(object_id)
        if row is None:
            raise not_found(OBJECT_LABEL[object_type].lower(), object_id)
        changes, written, problems = self._plan(object_type, row, body["properties"], creating=False)
        if problems:
            raise _validation_exception(problems)
        conflict = self._conflicts(object_type, [_Planned(object_id, row, changes, written)])
        if conflict:
            raise HubSpotError(409, "CONFLICT", conflict[object_id].message)
        row.modified_ms = self.store.now_ms()
        self.store.save(object_type, [row], changes, row.modified_ms, self._source(source))
        return self.render(object_type, row, list(dict.fromkeys(written + list(ALWAYS_RETURNED[object_type]))))

    def create_one(self, object_type: str, body: Any, source: ChangeSource | None = None) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("properties"), dict):
            raise validation_error("Invalid input JSON: expected {\"properties\": {...}}")
        now = self.store.now_ms()
        row = _new_row(now)
        changes, written, problems = self._plan(object_type, row, body["properties"], creating=True)
        if problems:
            raise _validation_exception(problems)
        conflict = self._conflicts(object_type, [_Planned("new", row, changes, written, new=True)])
        if conflict:
            raise HubSpotError(409, "CONFLICT", conflict["new"].message)
        self.store.create(object_type, [row], now, self._source(source))
        return self.render(object_type, row, list(dict.fromkeys(written + list(ALWAYS_RETURNED[object_type]))))

    def archive(self, object_type: str, object_id: str, source: ChangeSource | None = None) -> None:
        self._archive(object_type, [object_id], source)

    def batch_archive(self, object_type: str, body: Any, source: ChangeSource | None = None) -> None:
        """`{"inputs": [{"id"}...]}`: HubSpot answers 204 whatever the ids (unknown ones included)."""
        inputs = _inputs(body)
        self._archive(object_type, [_input_id(i, n) for n, i in enumerate(inputs)], source)

    def _archive(self, object_type: str, keys: list[str], source: ChangeSource | None) -> None:
        rows = list({r.id: r for r in self._find(object_type, keys, None).values()}.values())
        if not rows:
            return  # HubSpot answers 204 for an unknown id too
        now = self.store.now_ms()
        for row in rows:
            row.archived, row.archived_ms, row.modified_ms = True, now, now
        # The write log names who archived each record (an `archived` pseudo-property change).
        source = self._source(source)
        self.store.save(object_type, rows, [(r.id, "archived", "false", "true") for r in rows], now, source)
        log.info("archived %d %s by %s: ids %s", len(rows), object_type, source.source_type,
                 ",".join(str(r.id) for r in rows[:20]))

    def merge(self, object_type: str, body: Any, source: ChangeSource | None = None) -> dict[str, Any]:
        """Merge `objectIdToMerge` into `primaryObjectId` and answer the survivor.

        The primary keeps its values; a property it lacks takes the merged record's value. The
        survivor's hs_merged_object_ids lists every id merged into it (";"-separated, with those
        merged into the merged record before). The merged-away record leaves lists and search;
        reading its id answers the survivor. A merge cannot be undone."""
        if not isinstance(body, dict) or not body.get("primaryObjectId") or not body.get("objectIdToMerge"):
            raise validation_error("Invalid input JSON: expected {\"primaryObjectId\": ..., \"objectIdToMerge\": ...}")
        primary_key, other_key = str(body["primaryObjectId"]), str(body["objectIdToMerge"])
        if primary_key == other_key:
            raise validation_error(f"Cannot merge {OBJECT_LABEL[object_type].lower()} {primary_key} into itself")
        found = self._find(object_type, [primary_key, other_key], None)
        for key in (primary_key, other_key):
            if key not in found:
                raise not_found(OBJECT_LABEL[object_type].lower(), key)
        primary, other = found[primary_key], found[other_key]
        changes: list[tuple[int, str, Any, Any]] = []
        for name, value in other.props.items():
            if name != MERGED_IDS and value is not None and primary.props.get(name) is None:
                changes.append((primary.id, name, None, value))
                primary.props[name] = value
        if primary.company_id is None and other.company_id is not None:
            changes.append((primary.id, "associatedcompanyid", None, other.company_id))
            primary.company_id = other.company_id
        old_ids = primary.props.get(MERGED_IDS)
        merged = [i for i in f"{old_ids or ''};{other.id};{other.props.get(MERGED_IDS) or ''}".split(";") if i]
        primary.props[MERGED_IDS] = ";".join(dict.fromkeys(merged))
        changes.append((primary.id, MERGED_IDS, old_ids, primary.props[MERGED_IDS]))
        now = self.store.now_ms()
        primary.modified_ms = other.modified_ms = now
        other.merged_into = primary.id
        source = self._source(source)
        self.store.save(object_type, [primary, other], changes, now, source, merged=(other.id, primary.id))
        log.info("merged %s %d into %d by %s (%d values taken over)", object_type, other.id, primary.id,
                 source.source_type, len(changes) - 1)
        return self.render(object_type, primary, [*self._wanted(object_type, None), MERGED_IDS])


# --- helpers ----------------------------------------------------------------------------------------
def _set(object_type: str, row: Row, name: str, value: Any) -> None:
    column = COLUMN_PROPERTIES[object_type].get(name)
    if column == "company_id":
        row.company_id = int(value) if value is not None else None
    elif column == "created_ms":
        if value is not None:
            row.created_ms = int(value)
    elif value is None:
        row.props.pop(name, None)
    else:
        row.props[name] = value


def _new_row(now_ms: int) -> Row:
    return Row(id=0, created_ms=now_ms, modified_ms=now_ms, archived=False, unique_key=None, company_id=None)


def _inputs(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
        raise validation_error("Invalid input JSON: expected {\"inputs\": [...]}")
    inputs = body["inputs"]
    if not inputs:
        raise validation_error("inputs must not be empty")
    if len(inputs) > MAX_BATCH_INPUTS:
        raise validation_error(f"Too many inputs: {len(inputs)}; a batch takes at most {MAX_BATCH_INPUTS}.")
    if not all(isinstance(i, dict) for i in inputs):
        raise validation_error("every input must be an object")
    return inputs


def _input_id(item: dict[str, Any], n: int) -> str:
    value = item.get("id")
    if value is None or str(value).strip() == "":
        raise validation_error(f"inputs[{n}].id is required")
    return str(value)


def _no_duplicates(keys: list[str]) -> None:
    seen: set[str] = set()
    dupes = [k for k in keys if k in seen or seen.add(k)]  # type: ignore[func-returns-value]
    if dupes:
        raise validation_error(f"Duplicate IDs found in batch input: {sorted(set(dupes))}. IDs must be unique",
                               context={"ids": sorted(set(dupes))})


def _not_found_error(object_type: str, key: str) -> RecordError:
    return RecordError(key, "OBJECT_NOT_FOUND", f"Could not get some {OBJECT_LABEL[object_type]} objects, they may "
                                                "be deleted or not exist. Check that ids are valid.")


def _validation_record_error(key: str, problems: list[PropertyProblem]) -> RecordError:
    sub = "PROPERTY_DOESNT_EXIST" if any(p.code == "PROPERTY_DOESNT_EXIST" for p in problems) else None
    return RecordError(key, "VALIDATION_ERROR", property_problems_message(problems), sub_category=sub,
                       details=[{"message": p.message, "code": p.code, "context": {"propertyName": [p.name]}}
                                for p in problems])


def _validation_exception(problems: list[PropertyProblem]) -> HubSpotError:
    err = _validation_record_error("", problems)
    return validation_error(err.message, errors=err.details, sub_category=err.sub_category)


def _answer(results: list[dict[str, Any]], errors: list[RecordError], started: int, completed: int, *,
            ok_status: int, applied: bool) -> BatchAnswer:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "requestedAt": ms_to_iso(started),
                            "startedAt": ms_to_iso(started), "completedAt": ms_to_iso(completed)}
    if not errors:
        return BatchAnswer(ok_status, body, applied)
    body["numErrors"] = len(errors)
    body["errors"] = batch_errors(errors)
    return BatchAnswer(207, body, applied)

