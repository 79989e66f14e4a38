"""Batched write-back with an audit log.

Every intended change is logged as `pending` before any call, then resolved to `confirmed`,
`rejected` (the CRM refused it; retried on later runs), `failed` (refused too often) or left
for the next run when the outcome stayed unknown. Right before each batch that writes a shared
field (lifecycle stage, lead status), the connector reads those fields fresh with their history
and `push.overrides.settle` applies the ownership rule: a value someone set since the pull is
`overridden` (left alone and recorded), one the CRM already holds is `skipped`. Confirmed values are copied onto the lead rows
so that re-running the push without a new pull sends nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Select, func, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from leadflow.batching import chunks
from leadflow.crm.base import CrmConnector, CrmError, RecordResult, RecordUpdate
from leadflow.crm.http import WriteOutcomeUnknown
from leadflow.http_policy import TRANSIENT_TRANSPORT_ERRORS
from leadflow.ownership import SHARED_FIELDS, ReclaimPolicy
from leadflow.push.inflight import send_in_order
from leadflow.push.lease import (
    LeaseBusy,
    current_holder,
    lease_lost_error,
    renew,
    try_acquire,
)
from leadflow.push.overrides import Finding, Settled, last_written, record_overrides, settle
from leadflow.schema import CRM_VALUE_PREFIX, OWNED_FIELDS, PUSHED_FIELDS
from leadflow.warehouse.db import insert_many, update_by_key
from leadflow.warehouse.repo import now_ms
from leadflow.warehouse.tables import leads, push_log

log = logging.getLogger(__name__)

PREVIEW_SAMPLES = 20
PASSENGER_FIELDS = ("scored_at", "model_version")  # never a change on their own
REPORT_IDS = 100  # record ids kept per outcome list
LOG_IDS_PER_STATEMENT = 500  # push log ids per UPDATE ... WHERE id IN (...)


@dataclass(frozen=True)
class PushSettings:
    max_attempts: int = 3  # runs in which a rejected value is tried before it is `failed`
    transient_retries: int = 3  # in-run retries of records answered with a transient error
    transient_backoff_s: float = 2.0
    calls_in_flight: int = 1  # write calls outstanding at once (push.calls_in_flight in the config)
    lease_ttl_s: float = 300.0  # each renewal extends the push lease this far (push.lease_ttl_s)
    reclaim: ReclaimPolicy | None = None  # when leadflow may take a shared field back (never)


@dataclass
class PushOutcome:
    changed_records: int = 0
    changed_values: int = 0
    pushed: int = 0  # records confirmed
    rejected: int = 0
    failed: int = 0
    unknown: int = 0
    overridden: int = 0  # shared values someone else set, found right before the write
    skipped: int = 0  # values the CRM already held, or records gone from it
    write_calls: int = 0
    prewrite_checks: int = 0  # batches checked against the CRM right before the write (a read each, or two)
    # Record ids for the run report (the first REPORT_IDS of each).
    rejected_ids: list[str] = field(default_factory=list)
    failed_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items()}

    def add(self, other: "PushOutcome") -> None:
        """Add up the outcome of another part of the same push (its ids too, up to REPORT_IDS)."""
        for name, value in other.__dict__.items():
            if isinstance(value, list):
                getattr(self, name).extend(value[: max(0, REPORT_IDS - len(getattr(self, name)))])
            else:
                setattr(self, name, getattr(self, name) + value)


def preview(changes: pd.DataFrame) -> dict[str, Any]:
    """What a push would do: counts per field and per stage transition, sample records."""
    per_field = changes.groupby("field").size().to_dict() if len(changes) else {}
    stage = changes[changes["field"] == "lifecycle_stage"]
    transitions = Counter(
        f"{_text_or(b, '(empty)')} -> {_text_or(a, '(empty)')}" for b, a in zip(stage["before"], stage["after"])
    )
    samples = []
    # Only the sampled records are grouped: splitting every changed record into its own frame
    # cost seconds on a first run of 100k records.
    sampled_ids = np.sort(changes["record_id"].unique())[:PREVIEW_SAMPLES] if len(changes) else []
    sampled = changes[changes["record_id"].isin(sampled_ids)]
    for record_id, group in sampled.groupby("record_id", sort=True):
        samples.append(
            {
                "record_id": record_id,
                "changes": {
                    f: {"before": _text_or(b, None), "after": _text_or(a, None)}
                    for f, b, a in zip(group["field"], group["before"], group["after"])
                    if f != "reasons"
                },
            }
        )
    return {
        "records": int(changes["record_id"].nunique()) if len(changes) else 0,
        "per_field": {k: int(v) for k, v in per_field.items()},
        "stage_transitions": dict(transitions),
        "samples": samples,
    }


def _text_or(value: Any, default: Any) -> Any:
    return value if isinstance(value, str) and value != "" else default


def _previous_attempts(engine: Engine, crm: str) -> dict[tuple[str, str, str | None], int]:
    """Attempts already spent on each (record, field, value) the CRM refused in earlier runs."""
    query = (
        select(push_log.c.record_id, push_log.c.field, push_log.c.after, func.max(push_log.c.attempts))
        .where(push_log.c.crm == crm, push_log.c.status.in_(("rejected", "failed")))
        .group_by(push_log.c.record_id, push_log.c.field, push_log.c.after)
    )
    with engine.connect() as conn:
        return {(r[0], r[1], r[2]): int(r[3] or 0) for r in conn.execute(query)}


def push_changes(*args: Any, on_batch: Callable[[int], None] | None = None, **kwargs: Any) -> PushOutcome:
    """Write `changes` (record_id, field, before, after) to the CRM in batches: `prepare_push`'s
    arguments; `on_batch(n)` is called with each answered batch's record count (progress display).

    Nothing is written without the CRM's push lease for `run_id`: it is taken (or confirmed, when
    the caller already holds it) first, `LeaseBusy` when another run holds it; it is renewed
    (extended by `settings.lease_ttl_s`) before each write, and `LeaseLost` stops the push when
    another run has taken it since. `clock` (epoch ms) stamps the log and times the lease.
    """
    return prepare_push(*args, **kwargs)(on_batch)


Send = Callable[[Callable[[int], None] | None], PushOutcome]


def prepare_push(
    engine: Engine,
    connector: CrmConnector,
    crm: str,
    run_id: str,
    changes: pd.DataFrame,
    model_version: str | None,
    settings: PushSettings = PushSettings(),
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], int] = now_ms,
) -> Send:
    """`push_changes` up to its first call to the CRM (the lease, the earlier attempts, the
    batches), and `send(on_batch)`, which makes the calls and returns the outcome. A caller
    writing parts one after another prepares the next on another thread while it sends one: a
    first push of 100,000 records takes seconds to prepare, and only one part's calls are out at
    a time."""
    outcome = PushOutcome()
    if changes.empty:
        return lambda on_batch=None: outcome
    if not try_acquire(engine, crm, run_id, settings.lease_ttl_s, clock=clock):
        raise LeaseBusy(f"another push to {crm} is running ({current_holder(engine, crm, clock=clock)}); "
                        f"run {run_id} stops before writing and can be retried")
    stamp = clock()
    previous = _previous_attempts(engine, crm)
    # Plain lists: iterating pandas' Arrow-backed strings row by row is slow (seconds at 100,000).
    frame = list(zip(*(changes[c].tolist() for c in ("record_id", "field", "before", "after"))))
    # A record is refused as a whole: its attempts are those of its real changes. `scored_at`
    # (and `model_version`) travel along with a new value each run and must not reset the count.
    record_attempts: dict[str, int] = {}
    for rec, field, _before, after in frame:
        if field not in PASSENGER_FIELDS:
            record_attempts[rec] = max(record_attempts.get(rec, 0), previous.get((rec, field, after), 0))
    # Entries as compact tuples (record, field, before, after, attempts); a log row is built
    # only when it is written: a dict per value is most of a large push's memory.
    entry = partial(_log_row, run_id, crm, model_version, stamp)
    pending: list[tuple[str, str, Any, Any, int]] = []
    rows: list[dict[str, Any]] = []  # entries given up on (`failed`), written at once
    for rec, field, before, after in frame:
        attempts = record_attempts.get(rec, previous.get((rec, field, after), 0))
        if attempts >= settings.max_attempts:
            rows.append(entry((rec, field, before, after, attempts), "failed", "gave up after repeated rejections"))
        else:
            pending.append((rec, field, before, after, attempts))
    del frame
    with engine.begin() as conn:
        # Records an earlier try of this run left pending (it died between the CRM applying a
        # batch and recording the answer): this try's diff is the same plan, made before that
        # write, so they are read back below before anything is written again.
        records = {p[0] for p in pending} | {r["record_id"] for r in rows}
        # This run's pending entries of these records, by primary key (see the supersede below).
        left_entries = [(log_id, rec) for log_id, rec in conn.execute(
            select(push_log.c.id, push_log.c.record_id).where(push_log.c.crm == crm, push_log.c.status == "pending",
                                                              push_log.c.run_id == run_id)) if rec in records]
        left_pending = {rec for _, rec in left_entries}
        # Entries a killed or retried attempt left pending are closed, not deleted: an earlier
        # run's are decided by this run's diff (it pulled the CRM since), this run's by the
        # read-back below. Only earlier runs' entries and this run's entries for *these*
        # records: a sibling shard of this run may be pushing other records right now, its
        # pending entries are live. This run holds the lease (taken above), so the other runs
        # are provably not live holders: released, expired or dead. A live holder is never
        # superseded.
        superseded = conn.execute(
            update(push_log)
            .where(push_log.c.crm == crm, push_log.c.status == "pending", push_log.c.run_id != run_id)
            .values(status="superseded", updated_at=stamp)
        )
        if superseded.rowcount:
            log.info("push %s run %s: %d pending entries of earlier runs superseded", crm, run_id,
                     superseded.rowcount)
        # By primary key, not one statement per record matched by (record, status, run): PostgreSQL's
        # generic plan for that statement took the status index and scanned every pending entry
        # of the run for each record: minutes for a shard of 7,000 records while its sibling
        # shards had 90,000 entries pending (bench/bench_celery.py).
        for chunk in chunks([log_id for log_id, _ in left_entries], LOG_IDS_PER_STATEMENT):
            conn.execute(update(push_log).where(_entries_still(chunk, ("pending",)))
                         .values(status="superseded", updated_at=stamp))
        if rows:
            insert_many(conn, push_log, rows)
    # The pending entries are written as their records' batches come up (`_Ledger`), not all
    # before the first call: logging a first push of 100,000 records up front kept the CRM
    # waiting for tens of seconds.
    ledger = _Ledger(engine, pending, entry)
    ledger.log(left_pending)
    failed_ids = sorted({r["record_id"] for r in rows})
    outcome.failed = len(failed_ids)
    outcome.failed_ids = failed_ids[:REPORT_IDS]
    todo: dict[str, dict[str, Any]] = {}
    # The connector needs the current stage to refuse accidental backward moves.
    stages: dict[str, str | None] = {}
    verify = _verify_set(changes)
    for rec, field, before, after, _attempts in pending:
        todo.setdefault(rec, {})[field] = after
        if field == "lifecycle_stage":
            stages[rec] = before
    del pending
    outcome.changed_records = len(todo)
    outcome.changed_values = sum(len(v) for v in todo.values())
    updates = _shared_writes_first([RecordUpdate(rec, vals, current_stage=stages.get(rec))
                                    for rec, vals in todo.items()])
    check = _PreWriteCheck(engine, connector, crm, todo, verify, settings.reclaim, clock)

    def send(on_batch: Callable[[int], None] | None = None) -> PushOutcome:
        nonlocal updates
        if left_pending:
            doubtful = [(u, RecordResult(u.record_id, "unknown")) for u in updates if u.record_id in left_pending]
            confirmed_now, _, undecided = _resolve_unknown(connector, doubtful)
            _record(engine, crm, run_id, confirmed_now, "confirmed", outcome, ledger.by_record)
            _record(engine, crm, run_id, undecided, "unknown", outcome, ledger.by_record)
            settled_ids = {u.record_id for u, _ in confirmed_now + undecided}
            updates = [u for u in updates if u.record_id not in settled_ids]
            log.info("push %s run %s: %d records an earlier try left pending already hold their values", crm,
                     run_id, len(confirmed_now))
        _push_rounds(engine, connector, crm, run_id, updates, settings, sleep, outcome, ledger, clock, on_batch,
                     check)
        log.info(
            "push %s run %s: %d records changed, %d confirmed, %d rejected, %d failed, %d unknown, "
            "%d overridden, %d skipped, %d write calls, %d pre-write checks",
            crm, run_id, outcome.changed_records, outcome.pushed, outcome.rejected, outcome.failed,
            outcome.unknown, outcome.overridden, outcome.skipped, outcome.write_calls, outcome.prewrite_checks,
        )
        return outcome

    return send


def _push_rounds(
    engine: Engine,
    connector: CrmConnector,
    crm: str,
    run_id: str,
    updates: Sequence[RecordUpdate],
    settings: PushSettings,
    sleep: Callable[[float], None],
    outcome: PushOutcome,
    ledger: "_Ledger",
    clock: Callable[[], int] = now_ms,
    on_batch: Callable[[int], None] | None = None,
    check: "_PreWriteCheck | None" = None,
) -> None:
    """Send `updates` in full batches, in rounds. Records answered with a transient error
    (locked, rate limited) wait for the next round instead of holding up the rest: one backoff
    per round, not one per batch, and the retries travel in full batches too. Records of calls
    that timed out are read back once per round, after its last batch (by then the CRM has
    finished those calls); the ones that do not hold their values join the next round.

    Up to `settings.calls_in_flight` calls are outstanding at once (see `inflight`). The
    warehouse's part (logging entries ahead of their calls, recording answers after them) runs in
    send order on a thread of its own (`_Bookkeeper`), so neither holds the calls up unless the
    warehouse falls behind the CRM; each round's records are written before the next round
    starts. Each call first renews the lease (`_Heartbeat`): a run that lost it raises
    `LeaseLost` before writing anything more."""
    size = connector.max_batch_size
    todo = list(updates)
    log_ids = ledger.by_record
    # Batches whose entries are logged together: enough to keep the calls in flight fed while the
    # next group is logged.
    group = max(2, 2 * settings.calls_in_flight)
    beat = _Heartbeat(engine, crm, run_id, settings.lease_ttl_s, clock=clock)
    keeper = _Bookkeeper()
    try:
        for round_no in range(settings.transient_retries + 1):
            retry: list[RecordUpdate] = []
            unknown: list[tuple[RecordUpdate, RecordResult]] = []
            send = partial(_send_batch, connector, beat, check)
            batches = ledger.logged_batches(todo, size, group, keeper.submit)
            for asked, sent in send_in_order(send, batches, settings.calls_in_flight):
                if sent.settled is not None:
                    outcome.prewrite_checks += 1
                    keeper.submit(_record_settled, engine, crm, run_id, sent.settled, ledger, outcome, clock)
                batch, results = sent.updates, sent.results
                if not batch:
                    if on_batch is not None:
                        on_batch(len(asked))
                    continue
                outcome.write_calls += 1
                by_status: dict[str, list[tuple[RecordUpdate, RecordResult]]] = {}
                for upd, res in zip(batch, results):
                    by_status.setdefault(res.status, []).append((upd, res))
                for status in ("confirmed", "rejected"):
                    if by_status.get(status):
                        keeper.submit(_record, engine, crm, run_id, by_status[status], status, outcome, log_ids)
                retry.extend(upd for upd, _ in by_status.get("retryable", []))
                unknown.extend(by_status.get("unknown", []))
                if on_batch is not None:
                    on_batch(len(asked))
            if unknown:
                # The calls timed out: the CRM may or may not hold the values. Read back, decide.
                confirmed_now, still, undecided = _resolve_unknown(connector, unknown)
                keeper.submit(_record, engine, crm, run_id, confirmed_now, "confirmed", outcome, log_ids)
                keeper.submit(_record, engine, crm, run_id, undecided, "unknown", outcome, log_ids)
                retry.extend(upd for upd, _ in still)
            keeper.drain()
            todo = retry
            if not todo:
                break
            if round_no < settings.transient_retries:
                log.info("push %s run %s: %d records to retry (round %d)", crm, run_id, len(todo), round_no + 1)
                sleep(settings.transient_backoff_s * (2**round_no))
        else:
            # Still transient after the retries: leave them for the next run, which re-diffs.
            left = [(u, RecordResult(u.record_id, "unknown")) for u in todo]
            keeper.submit(_record, engine, crm, run_id, left, "unknown", outcome, log_ids)
    except BaseException:
        keeper.close(raise_errors=False)  # what was answered is still recorded; the first error wins
        raise
    keeper.close()


class _Bookkeeper:
    """The push's warehouse writes, one after the other in the order given, on a thread of their
    own. An error of one is raised to the caller at its next `submit`, `drain` or `close`."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="leadflow-push-log")
        self._queued: deque[Future[Any]] = deque()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        while self._queued and self._queued[0].done():
            self._queued.popleft().result()
        future = self._pool.submit(fn, *args)
        self._queued.append(future)
        return future

    def drain(self) -> None:
        """Wait for everything submitted; raise the first error."""
        while self._queued:
            self._queued.popleft().result()

    def close(self, raise_errors: bool = True) -> None:
        try:
            if raise_errors:
                self.drain()
            else:
                for future in self._queued:
                    if future.exception() is not None:
                        log.error("push bookkeeping failed after an earlier error: %s",
                                  type(future.exception()).__name__)
                self._queued.clear()
        finally:
            self._pool.shutdown(wait=True)


@dataclass
class _Sent:
    updates: list[RecordUpdate]  # what was sent, after the pre-write check
    results: list[RecordResult]
    settled: Settled | None = None  # the pre-write check's findings, None when none ran


def _send_batch(connector: CrmConnector, beat: "_Heartbeat", check: "_PreWriteCheck | None",
                batch: Sequence[RecordUpdate]) -> _Sent:
    """`connector.push(batch)` once the lease is known to be ours and the pre-write check has
    taken out what no longer holds; a call whose outcome is unknown (a timeout or a cut-off
    answer after the request was sent, which a connector may raise rather than report per
    record) becomes "unknown" results, read back like any other. Runs on a worker thread with
    calls in flight: it only talks to the CRM; the caller records."""
    beat()
    settled = check(batch) if check is not None else None
    sending = list(batch) if settled is None else settled.updates
    if not sending:
        return _Sent([], [], settled)
    try:
        return _Sent(sending, connector.push(sending), settled)
    except (WriteOutcomeUnknown, *TRANSIENT_TRANSPORT_ERRORS) as exc:
        log.warning("push: write of %d records ended without an answer (%s): reading them back",
                    len(sending), type(exc).__name__)
        return _Sent(sending, [RecordResult(u.record_id, "unknown", type(exc).__name__, "TIMEOUT")
                               for u in sending], settled)


def _writes_shared(values: Mapping[str, Any]) -> bool:
    return any(f in values for f in SHARED_FIELDS)


def _shared_writes_first(updates: Sequence[RecordUpdate]) -> list[RecordUpdate]:
    """Records that write a stage or status ahead of the rest, each group in its own order: the
    pre-write read is made per batch for the records that write one, so gathering them in as few
    batches as possible spares a read for every batch that only carries scores."""
    return [u for u in updates if _writes_shared(u.values)] + [u for u in updates if not _writes_shared(u.values)]


def _verify_set(changes: pd.DataFrame) -> set[tuple[str, str]]:
    """(record, field) pairs the diff could not settle without the CRM's history."""
    if "verify" not in changes.columns:
        return set()
    flagged = changes[changes["verify"].fillna(False).astype(bool)]
    return set(zip(flagged["record_id"].tolist(), flagged["field"].tolist()))


def _refresh_statistics(conn: Connection) -> None:
    """Let PostgreSQL's planner see the push log as it is now that this push's entries are in it
    (autovacuum analyses it about once a minute, while a push logs tens of thousands of entries a
    minute). On default estimates it took a sequential scan or the status index for the
    bookkeeping's lookups by id and by record: ten times slower at 20,000 records, and the push
    went at the warehouse's pace instead of the CRM's. SQLite's planner takes the keys anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ANALYZE push_log"))


def _entries_still(ids: Sequence[int], statuses: tuple[str, ...]) -> ColumnElement[bool]:
    """The push-log entries `ids` that are still in one of `statuses`. The status test is an
    expression, so that it only filters the rows the primary key finds: with statistics behind
    the entries a push logs, PostgreSQL took the status index (111 rows expected, 79,200 read)."""
    return push_log.c.id.in_(ids) & func.coalesce(push_log.c.status, "").in_(statuses)


def _logged_ids(crm: str, run_id: str, records: Sequence[str], highest: int) -> Select[Any]:
    """(id, record, field) of run `run_id`'s pending entries for `records` above id `highest` (the
    highest before its first insert): an earlier attempt's entries for these records are
    superseded by now, and a sibling shard of this run pushes other records. Found by record (its
    index); the other tests are expressions, because with statistics behind the entries a push
    logs, PostgreSQL took the run's index and read every entry the run had logged so far."""
    return select(push_log.c.id, push_log.c.record_id, push_log.c.field).where(
        push_log.c.crm == crm, push_log.c.record_id.in_(records), push_log.c.id + 0 > highest,
        func.coalesce(push_log.c.run_id, "") == run_id, func.coalesce(push_log.c.status, "") == "pending")


def _log_row(run_id: str, crm: str, model_version: str | None, stamp: int,
             item: tuple[str, str, Any, Any, int], status: str, error: str | None = None) -> dict[str, Any]:
    """The push-log row of one entry (record, field, before, after, attempts)."""
    rec, field, before, after, attempts = item
    return {"run_id": run_id, "crm": crm, "record_id": rec, "field": field, "before": before, "after": after,
            "model_version": model_version, "status": status, "attempts": attempts, "error": error,
            "created_at": stamp, "updated_at": stamp}


class _Ledger:
    """This attempt's pending push-log entries. Each is written right before the first batch
    that sends its record (`logged_batches`; `log` for records that need it sooner), a group of
    batches in one transaction, and its id kept by record and by (record, field): a value is
    never sent before it is logged, and a push that stops early leaves no entry for a record it
    never sent."""

    def __init__(self, engine: Engine, pending: Sequence[tuple[str, str, Any, Any, int]],
                 entry: Callable[..., dict[str, Any]]) -> None:
        self.engine = engine
        self._entry = entry  # (record, field, before, after, attempts), status -> log row
        self._unlogged: dict[str, list[tuple[str, str, Any, Any, int]]] = {}
        for item in pending:
            self._unlogged.setdefault(item[0], []).append(item)
        # Tuples of ints: the garbage collector stops walking them (a push of 100,000 records
        # holds 100,000 of these for its whole length, and every full pass walked lists).
        self.by_record: dict[str, tuple[int, ...]] = {}
        self.by_field: dict[tuple[str, str], int] = {}
        self._highest: int | None = None
        self._analysed = False

    def log(self, records: Iterable[str]) -> None:
        """Write the pending entries of `records` not written yet, in one transaction."""
        rows = [self._entry(item, "pending") for rec in records for item in self._unlogged.pop(rec, ())]
        if not rows:
            return
        # The ids are read back (`_logged_ids`): INSERT ... RETURNING took six times as long on
        # PostgreSQL.
        crm, run_id = rows[0]["crm"], rows[0]["run_id"]
        with self.engine.begin() as conn:
            if self._highest is None:
                self._highest = conn.execute(select(func.max(push_log.c.id))).scalar() or 0
            highest = self._highest
            insert_many(conn, push_log, rows)
            records = list(dict.fromkeys(row["record_id"] for row in rows))
            ids: dict[str, list[int]] = {}
            for chunk in chunks(records, LOG_IDS_PER_STATEMENT):
                for log_id, rec, name in conn.execute(_logged_ids(crm, run_id, chunk, highest)):
                    ids.setdefault(rec, []).append(log_id)
                    self.by_field[(rec, name)] = log_id
        # A record's entries are all logged at once (`_unlogged` gives them up together).
        self.by_record.update((rec, tuple(found)) for rec, found in ids.items())

    def analyse(self) -> None:
        """Refresh the push log's statistics (`_refresh_statistics`) once this push has logged
        entries; once per part of a push (a ledger)."""
        if self._analysed or self._highest is None:
            return
        with self.engine.begin() as conn:
            _refresh_statistics(conn)
        self._analysed = True

    def logged_batches(self, updates: Sequence[RecordUpdate], size: int, group: int,
                       submit: Callable[..., Future[Any]]) -> Iterator[list[RecordUpdate]]:
        """`updates` in batches of `size`. The entries of each group of batches are logged (through
        `submit`, on the bookkeeping thread) while the group before is handed out, and waited
        for before the first of them is. The groups grow 1, 2, 4, ... up to `group` batches: the
        first call waits for one batch's entries, not a whole group's (a group took 0.3-0.9 s
        on PostgreSQL, for every part of a push). The statistics are refreshed (`analyse`) behind
        the second group's entries: after the first call is out, before any answer is recorded."""
        batches = list(chunks(list(updates), size))
        groups, start, step = [], 0, 1
        while start < len(batches):
            groups.append(batches[start:start + step])
            start, step = start + step, min(group, 2 * step)

        def records(k: int) -> list[str]:
            return [u.record_id for batch in groups[k] for u in batch]

        logged = submit(self.log, records(0)) if groups else None
        for k, part in enumerate(groups):
            assert logged is not None
            logged.result()
            logged = submit(self.log, records(k + 1)) if k + 1 < len(groups) else None
            if k == 0:
                submit(self.analyse)
            yield from part


class _PreWriteCheck:
    """Reads a batch's shared fields from the CRM with their history (one read per batch, only
    when the batch writes one) and settles them with the ownership rule. A connector that
    cannot read history (`observe` missing) keeps the diff's sure writes and drops its
    candidates: without the history nobody can tell a default from a decision."""

    def __init__(self, engine: Engine, connector: CrmConnector, crm: str, todo: Mapping[str, Mapping[str, Any]],
                 verify: set[tuple[str, str]], reclaim: ReclaimPolicy | None, clock: Callable[[], int]) -> None:
        shared_ids = [rec for rec, values in todo.items() if _writes_shared(values)]
        self.connector, self.verify, self.reclaim, self.clock = connector, verify, reclaim, clock
        self.written = last_written(engine, crm, shared_ids) if shared_ids else {}
        self.observe = getattr(connector, "observe", None)

    def __call__(self, batch: Sequence[RecordUpdate]) -> Settled | None:
        ids = [u.record_id for u in batch if _writes_shared(u.values)]
        if not ids:
            return None
        if self.observe is None:
            return _without_history(batch, self.verify)
        observed = self.observe(ids)
        return settle(batch, observed, self.written, now_ms=self.clock(), reclaim=self.reclaim)


def _without_history(batch: Sequence[RecordUpdate], verify: set[tuple[str, str]]) -> Settled:
    out = Settled(updates=[])
    for upd in batch:
        doubtful = [f for f in SHARED_FIELDS if f in upd.values and (upd.record_id, f) in verify]
        if not doubtful:
            out.updates.append(upd)
            continue
        values = {k: v for k, v in upd.values.items() if k not in doubtful}
        out.findings.extend(Finding(upd.record_id, f, "overridden", "no history to tell a default from a decision",
                                    {"record_id": upd.record_id, "field": f, "current": None,
                                     "wanted": upd.values[f], "last_written": None})
                            for f in doubtful)
        if any(k not in PASSENGER_FIELDS for k in values):
            out.updates.append(replace(upd, values=values))
        else:
            out.dropped.append(upd.record_id)
    return out


def _record_settled(engine: Engine, crm: str, run_id: str, settled: Settled, ledger: _Ledger,
                    outcome: PushOutcome, clock: Callable[[], int]) -> None:
    """Close the log entries the pre-write check took out (overridden / skipped), and those of
    records left with nothing to write, and store the overrides: one transaction."""
    if not settled.findings and not settled.dropped:
        return
    stamp = clock()
    by_status: dict[tuple[str, str], list[int]] = {}
    for finding in settled.findings:
        log_id = ledger.by_field.get((finding.record_id, finding.field))
        if log_id is not None:
            by_status.setdefault((finding.status, finding.reason), []).append(log_id)
    taken = {i for ids in by_status.values() for i in ids}
    for rec in settled.dropped:
        rest = [i for i in ledger.by_record.get(rec, ()) if i not in taken]
        by_status.setdefault(("skipped", "nothing left to write"), []).extend(rest)
    with engine.begin() as conn:
        for (status, reason), ids in by_status.items():
            for chunk in chunks(ids, LOG_IDS_PER_STATEMENT):
                conn.execute(update(push_log).where(_entries_still(chunk, ("pending",)))
                             .values(status=status, error=reason, updated_at=stamp))
        overrides = [f.override for f in settled.findings if f.override is not None]
        record_overrides(conn, crm, run_id, overrides, stamp)
    outcome.overridden += sum(f.status == "overridden" for f in settled.findings)
    outcome.skipped += sum(f.status == "skipped" for f in settled.findings)
    if overrides:
        log.info("push %s run %s: %d shared values left to their owners (overrides), %d records with nothing "
                 "left to write", crm, run_id, len(overrides), len(settled.dropped))


class _Heartbeat:
    """Renews the push lease before a write, extending it by `ttl_s`, at most once per
    `every_s` (a renewal is a warehouse commit; the lease lasts minutes, and a dead holder is
    found by its process). Raises `LeaseLost` when the lease is no longer this run's, or when
    renewals have failed for so long that it may have expired. Thread-safe: with calls in
    flight, writes start on worker threads."""

    def __init__(self, engine: Engine, crm: str, run_id: str, ttl_s: float, every_s: float = 1.0,
                 clock: Callable[[], int] = now_ms) -> None:
        self.engine, self.crm, self.run_id, self.ttl_s, self.every_s = engine, crm, run_id, ttl_s, every_s
        self.clock = clock
        self._lock = threading.Lock()
        self._last_try: int | None = None
        self._last_ok = clock()  # the caller took (or renewed) the lease just before the push

    def __call__(self) -> None:
        with self._lock:
            now = self.clock()
            if self._last_try is not None and now - self._last_try < self.every_s * 1000:
                return
            self._last_try = now
            try:
                held = renew(self.engine, self.crm, self.run_id, self.ttl_s, clock=self.clock)
            except Exception as exc:  # a busy database: the lease lasts, try at the next write
                if now - self._last_ok < self.ttl_s * 1000:
                    log.warning("push %s run %s: lease renewal failed (%s)", self.crm, self.run_id,
                                type(exc).__name__)
                    return
                raise lease_lost_error(self.engine, self.crm, self.run_id, clock=self.clock) from exc
            if not held:
                log.error("push %s run %s: the push lease was taken by another run; stopping", self.crm, self.run_id)
                raise lease_lost_error(self.engine, self.crm, self.run_id, clock=self.clock)
            self._last_ok = now


def _resolve_unknown(
    connector: CrmConnector, items: list[tuple[RecordUpdate, RecordResult]]
) -> tuple[list[tuple[RecordUpdate, RecordResult]], list[tuple[RecordUpdate, RecordResult]],
           list[tuple[RecordUpdate, RecordResult]]]:
    """(confirmed, retryable, still unknown): read the records back to decide. A record that
    holds the values was written; one that does not was not (the call never reached it). When
    the read itself fails the outcome stays unknown: the write is NOT repeated (it may have
    been applied), the next run pulls the CRM's state and re-diffs. A connector that does not
    wrap its transport's failures in CrmError (a cut-off answer, a dropped connection) is
    treated the same."""
    try:
        current = {row["record_id"]: row for row in connector.read([u.record_id for u, _ in items])}
    except (CrmError, *TRANSIENT_TRANSPORT_ERRORS) as exc:
        log.warning("read-back of %d records with an unknown write outcome failed (%s): left for the next run",
                    len(items), type(exc).__name__)
        return [], [], items
    done, retry = [], []
    for upd, res in items:
        now = current.get(upd.record_id, {})
        holds = all(
            same_value(now.get(field), value)
            for field, value in upd.values.items()
            if field in PUSHED_FIELDS and field != "scored_at"
        )
        # A confirmed write keeps what the connector wrote along with it (a Salesforce Rating).
        (done if holds else retry).append((upd, RecordResult(upd.record_id, "confirmed" if holds else "retryable",
                                                             side_writes=res.side_writes if holds else ())))
    return done, retry, []


def same_value(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return (a in (None, "")) and (b in (None, ""))
    try:
        return abs(float(a) - float(b)) < 1e-9
    except (TypeError, ValueError):
        return str(a).strip() == str(b).strip()


def _record(
    engine: Engine,
    crm: str,
    run_id: str,
    items: list[tuple[RecordUpdate, RecordResult]],
    status: str,
    outcome: PushOutcome,
    log_ids: Mapping[str, Sequence[int]],
) -> None:
    """Resolve the pending log entries (`log_ids`: ids by record) of `items` to `status`: one
    statement per error message and chunk of ids, one executemany for the lead rows (a
    100,000-record push must not spend minutes here)."""
    if not items:
        return
    stamp = now_ms()
    increment = 1 if status in ("confirmed", "rejected") else 0
    ids_by_error: dict[str | None, list[int]] = {}
    for upd, res in items:
        ids_by_error.setdefault(res.error, []).extend(log_ids.get(upd.record_id, ()))
    # What the connector wrote along with the values (a Salesforce Rating): logged as confirmed
    # writes of this run, so that checks and rollback see them like the others.
    side_rows = [
        {"run_id": run_id, "crm": crm, "record_id": upd.record_id, "field": field,
         "before": None if before is None else str(before), "after": None if after is None else str(after),
         "model_version": None, "status": "confirmed", "attempts": 1, "error": None,
         "created_at": stamp, "updated_at": stamp}
        for upd, res in items if status == "confirmed"
        for field, before, after in res.side_writes
    ]
    lead_rows = [{"crm": crm, "record_id": upd.record_id, **values} for upd, _ in items
                 if status == "confirmed" and (values := _lead_values(upd.values))]
    with engine.begin() as conn:
        for error, ids in ids_by_error.items():
            for chunk in chunks(ids, LOG_IDS_PER_STATEMENT):
                # A superseded entry of this attempt was closed by a run that found this one's
                # lease expired; the CRM's answer to a call already made is still the truth.
                conn.execute(
                    update(push_log)
                    .where(_entries_still(chunk, ("pending", "superseded")))
                    .values(status=status, attempts=push_log.c.attempts + increment, error=error, updated_at=stamp)
                )
        if side_rows:
            insert_many(conn, push_log, side_rows)
        update_by_key(conn, leads, ("crm", "record_id"), lead_rows)
    if status == "confirmed":
        outcome.pushed += len(items)
    elif status == "rejected":
        outcome.rejected += len(items)
        room = REPORT_IDS - len(outcome.rejected_ids)
        outcome.rejected_ids.extend(upd.record_id for upd, _ in items[: max(room, 0)])
        for upd, res in items:
            log.warning("push %s record %s rejected: %s", crm, upd.record_id, res.category or "error")
    else:
        outcome.unknown += len(items)


def _lead_values(values: dict[str, Any]) -> dict[str, Any]:
    """Confirmed values as the lead row stores the CRM's current state."""
    out: dict[str, Any] = {}
    for field, value in values.items():
        if field in OWNED_FIELDS:
            out[f"{CRM_VALUE_PREFIX}{field}"] = value
        elif field in ("lifecycle_stage", "lead_status"):
            out[field] = value
    return out
