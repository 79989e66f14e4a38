"""The CRM-neutral write core: what every connector's `push` does, written once.

A connector only declares its dialect: its field names and how a value is rendered for it
(`WriteDialect`), and how a batch is sent and its answer read (the `send` of `write_bisecting`). Everything else is here:

- the batch checks (size, the same record twice);
- planning an update: only pushed fields, owned values rendered, lead status and stage mapped,
  and the stage rule (`leadflow.stage_rule`);
- the write of a batch: a call whose outcome is unknown (`WriteOutcomeUnknown`) makes every
  record "unknown" (the push writer reads them back); a whole-request 400 is bisected so one bad
  record fails alone;
- ordering and counting the results;
- the rows `read()` returns (`pushed_row`), from a record translated to a canonical lead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import requests

from leadflow.crm.base import CrmError, CrmRequestError, RecordResult, RecordUpdate
from leadflow.crm.http import Stats, WriteOutcomeUnknown
from leadflow.schema import CRM_VALUE_PREFIX, OWNED_FIELDS, PUSHED_FIELDS
from leadflow.stage_rule import StageVerdict, stage_verdict


class ForbiddenPropertyError(CrmError):
    """A write would touch a property leadflow does not own."""


def check_batch(updates: Sequence[RecordUpdate], max_size: int, what: str = "push") -> None:
    """A batch is at most `max_size` updates, each record once: a caller breaking this is a bug."""
    if len(updates) > max_size:
        raise ValueError(f"{what} takes at most {max_size} updates, got {len(updates)}")
    ids = [u.record_id for u in updates]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{what} got the same record id twice in one batch")


@dataclass
class PlannedUpdate:
    """One update as the CRM's fields: `fields` (CRM name -> value to send); `backward`: the stage
    moves backwards (allowed, a rollback); `rejection`: set when nothing may be sent at all."""

    record_id: str
    fields: dict[str, Any]
    backward: bool = False
    rejection: RecordResult | None = None


def reject(record_id: str, category: str, message: str) -> PlannedUpdate:
    return PlannedUpdate(record_id, {}, rejection=RecordResult(record_id, "rejected", message, category))


@dataclass(frozen=True)
class WriteDialect:
    """What a CRM declares for planning its writes."""

    label: str  # "HubSpot", "Salesforce": in rejection messages
    stage_field: str
    status_field: str
    cleared: Any  # the value that empties a field ("" for HubSpot, None for Salesforce)
    stage_to_crm: Callable[[str], Any]  # canonical stage -> the CRM's value, None when unmapped
    status_to_crm: Callable[[str], Any]  # canonical lead status -> the CRM's value, None when unmapped
    # (CRM field name, value to send) of an owned field; TypeError/ValueError when it cannot be.
    render_owned: Callable[[str, Any], tuple[str, Any]]
    owned_type: Callable[[str], str]  # the CRM type of an owned field (for a rejection's message)
    extra_keys: frozenset[str] = frozenset()  # keys besides the pushed fields an update may carry


def check_keys(update: RecordUpdate, extra_keys: frozenset[str] = frozenset()) -> None:
    """Raise `ForbiddenPropertyError` for a key that is neither a pushed field nor one of
    `extra_keys`: a caller asking to write something leadflow does not own is a bug, not data."""
    for key in update.values:
        if key not in PUSHED_FIELDS and key not in extra_keys:
            raise ForbiddenPropertyError(
                f"refusing to write {key!r} for record {update.record_id}: leadflow only writes {list(PUSHED_FIELDS)}")


def plan_update(update: RecordUpdate, dialect: WriteDialect,
                stage_written: Callable[[dict[str, Any], str | None], None] | None = None) -> PlannedUpdate:
    """Translate one canonical update into the CRM's fields; a rule violation becomes a
    "rejected" plan, not an exception, except a request to write a field leadflow does not own,
    which raises `ForbiddenPropertyError`. `stage_written(fields, stage)`: called when the stage
    is written (Salesforce sets its Rating with it)."""
    check_keys(update, dialect.extra_keys)
    values = update.values
    rid = update.record_id
    fields: dict[str, Any] = {}
    for name in OWNED_FIELDS:
        if name in values:
            try:
                crm_name, rendered = dialect.render_owned(name, values[name])
            except (TypeError, ValueError):
                return reject(rid, "INVALID_VALUE", f"{name}: value cannot be written as a {dialect.label} "
                              f"{dialect.owned_type(name)}")
            fields[crm_name] = rendered
    if "lead_status" in values:
        status = values["lead_status"]
        if status in (None, ""):
            fields[dialect.status_field] = dialect.cleared
        else:
            picked = dialect.status_to_crm(str(status))
            if picked is None:
                return reject(rid, "MAPPING", f"lead status {status!r} has no {dialect.label} value in the mapping")
            fields[dialect.status_field] = picked
    if "lifecycle_stage" not in values:
        return PlannedUpdate(rid, fields)
    desired, current = values["lifecycle_stage"] or None, update.current_stage or None
    verdict = stage_verdict(desired, current, update.allow_backward)
    if verdict is StageVerdict.UNCHANGED:
        return PlannedUpdate(rid, fields)
    if verdict is StageVerdict.LEAVES_SALES_OWNED:
        return reject(rid, "SALES_OWNED_STAGE", f"record is in sales-owned stage {current!r}; leadflow does not change it")
    if verdict is StageVerdict.ENTERS_SALES_OWNED:
        return reject(rid, "SALES_OWNED_STAGE", f"leadflow never sets the sales-owned stage {desired!r}")
    picked = dialect.cleared if desired is None else dialect.stage_to_crm(str(desired))
    if desired is not None and (picked is None or verdict is StageVerdict.UNKNOWN):
        return reject(rid, "MAPPING", f"stage {desired!r} has no {dialect.label} value in the mapping")
    if verdict is StageVerdict.REFUSED_BACKWARD:
        if desired is None:
            return reject(rid, "BACKWARD_STAGE", f"clearing stage {current!r} needs allow_backward")
        return reject(rid, "BACKWARD_STAGE", f"stage {current!r} -> {desired!r} moves backwards")
    fields[dialect.stage_field] = picked
    if stage_written is not None:
        stage_written(fields, desired)
    # Clearing is no move through the funnel: only a backward move to a stage counts.
    return PlannedUpdate(rid, fields, backward=verdict is StageVerdict.BACKWARD and desired is not None)


def push_planned(updates: Sequence[RecordUpdate], max_size: int, plan: Callable[[RecordUpdate], PlannedUpdate],
                 write: Callable[[list[PlannedUpdate]], Mapping[str, RecordResult]], stats: Stats
                 ) -> list[RecordResult]:
    """One connector `push`: check the batch, plan each update, send the plans that have
    something to write through `write` (the dialect's call), and answer one result per update,
    in order, counted in `stats`. A plan with nothing left to write is confirmed unsent."""
    check_batch(updates, max_size)
    plans = [plan(u) for u in updates]
    results: dict[str, RecordResult] = {p.record_id: p.rejection for p in plans if p.rejection}
    sendable = []
    for p in plans:
        if p.rejection is None:
            if p.fields:
                sendable.append(p)
            else:
                results[p.record_id] = RecordResult(p.record_id, "confirmed")
    if sendable:
        results.update(write(sendable))
    ordered = [results[u.record_id] for u in updates]
    stats.count_results(ordered)
    return ordered


def write_bisecting(items: list[Any], send: Callable[[list[Any]], dict[str, RecordResult]],
                    ids: Callable[[list[Any]], list[str]], stats: Stats,
                    reject_category: str = "VALIDATION_ERROR") -> dict[str, RecordResult]:
    """Write `items` with the dialect's batch call `send` (the request and the reading of its
    answer, one result per id; `ids(items)` names them). A whole-request 400 is bisected so one
    bad record fails alone (`reject_category`: a lone record's category when the CRM gave none);
    a call whose outcome is unknown makes each of its records "unknown", to be read back."""
    names = ids(items)
    try:
        results = send(items)
    except WriteOutcomeUnknown as exc:
        return {rid: RecordResult(rid, "unknown", str(exc), "TIMEOUT") for rid in names}
    except CrmRequestError as exc:
        if getattr(exc, "status", None) != 400:
            raise
        if len(items) == 1:
            category = getattr(exc, "category", None) or reject_category
            return {names[0]: RecordResult(names[0], "rejected", str(exc)[:500], category)}
        stats.add("push_bisections")
        half = len(items) // 2
        return {**write_bisecting(items[:half], send, ids, stats, reject_category),
                **write_bisecting(items[half:], send, ids, stats, reject_category)}
    stats.add("records_pushed", len(items))
    return results


def answer_body(response: requests.Response, empty: Any) -> Any:
    """A write's JSON answer; `empty` when it has no body or one that does not decode (each
    record then reads as "unknown", to be read back)."""
    try:
        return response.json() if response.content else empty
    except ValueError:
        return empty


def pushed_row(record_id: str, lead: Mapping[str, Any]) -> dict[str, Any]:
    """A `read()` row from a canonical lead: the owned fields as rendered (`crm_<field>`), the
    stage and lead status as canonical values."""
    row: dict[str, Any] = {"record_id": str(record_id)}
    for name in OWNED_FIELDS:
        row[name] = lead[f"{CRM_VALUE_PREFIX}{name}"]
    row["lifecycle_stage"] = lead["lifecycle_stage"]
    row["lead_status"] = lead["lead_status"]
    return row


def ids_of(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """The record ids of a batch's items (both CRMs name them "id")."""
    return [str(item["id"]) for item in items]


def unique_ids(record_ids: Iterable[Any]) -> list[str]:
    """Record ids as text, each once, in their first order."""
    return list(dict.fromkeys(str(r) for r in record_ids))
