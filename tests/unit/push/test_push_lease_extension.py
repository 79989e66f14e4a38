"""The push lease under a frozen clock (no sleeps), on SQLite and PostgreSQL: a push running past
the TTL keeps its lease, a run that lost it stops writing, and only a run whose lease is gone has
its pending log entries superseded."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.crm.base import RecordResult
from leadflow.push.lease import LeaseBusy, LeaseLost, current_holder, holder_run, try_acquire
from leadflow.push.tables import leases
from leadflow.push.writer import PushSettings, push_changes
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log

TTL_S = 300.0
SETTINGS = PushSettings(lease_ttl_s=TTL_S)
START_MS = 1_800_000_000_000


class FrozenClock:
    """Epoch milliseconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = START_MS

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1000)


class SlowConnector:
    """Confirms every write; `during(call_no)` runs inside each call (time passing, other runs)."""

    name = "hubspot"
    max_batch_size = 2

    def __init__(self, during=lambda call_no: None) -> None:
        self.during = during
        self.calls: list[list[str]] = []

    def push(self, updates):
        self.calls.append([u.record_id for u in updates])
        self.during(len(self.calls))
        return [RecordResult(u.record_id, "confirmed") for u in updates]

    def read(self, ids):
        return [{"record_id": i} for i in ids]


def _land(engine, ids) -> None:
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", [{"record_id": i} for i in ids], [], [])


def _changes(ids) -> pd.DataFrame:
    return pd.DataFrame({"record_id": list(ids), "field": "score", "before": None, "after": "70"})


def _statuses(engine, run_id: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(select(push_log.c.record_id, push_log.c.status).where(push_log.c.run_id == run_id))
        return dict(rows.all())


def _expires_at(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(leases.c.expires_at)).scalar_one()


def test_given_push_running_past_the_ttl_then_heartbeat_extends_the_lease_and_others_are_refused(warehouse):
    _land(warehouse, "abcdef")
    clock = FrozenClock()
    refused = []

    def during(call_no: int) -> None:
        clock.advance(200)  # three calls: 600 s, twice the TTL
        refused.append(not try_acquire(warehouse, "hubspot", "cli__manual", TTL_S, clock=clock))

    out = push_changes(warehouse, SlowConnector(during), "hubspot", "dag__nightly", _changes("abcdef"), "v1",
                       SETTINGS, clock=clock)

    assert out.pushed == 6
    assert refused == [True, True, True]
    assert _expires_at(warehouse) == START_MS + 400_000 + int(TTL_S * 1000)  # renewed before the 3rd call
    assert holder_run(current_holder(warehouse, "hubspot", clock=clock)) == "dag__nightly"


def test_given_lease_taken_over_after_it_expired_then_the_push_stops_writing_with_lease_lost(warehouse):
    _land(warehouse, "abcdef")
    clock = FrozenClock()

    def stall(call_no: int) -> None:
        if call_no == 1:
            clock.advance(TTL_S + 1)  # the process stalls past its TTL ...
            assert try_acquire(warehouse, "hubspot", "cli__manual", TTL_S, clock=clock)  # ... and is overtaken

    connector = SlowConnector(stall)
    with pytest.raises(LeaseLost, match="dag__nightly expired and was taken by cli__manual"):
        push_changes(warehouse, connector, "hubspot", "dag__nightly", _changes("abcdef"), "v1", SETTINGS, clock=clock)

    assert connector.calls == [["a", "b"]]  # nothing written after the lease was lost
    statuses = _statuses(warehouse, "dag__nightly")
    assert {r: statuses[r] for r in "ab"} == {"a": "confirmed", "b": "confirmed"}
    # Entries are logged up to a group of batches ahead of their calls: those logged but never
    # sent stay pending (the next run's diff decides them).
    assert set(statuses) - set("ab") and set(statuses.values()) - {"confirmed"} == {"pending"}


def test_given_live_holder_then_another_run_cannot_push_and_leaves_its_entries_pending(warehouse):
    _land(warehouse, "abcd")
    clock = FrozenClock()
    seen: dict[str, dict[str, str]] = {}

    def second_run(call_no: int) -> None:
        if call_no == 1:
            clock.advance(TTL_S / 2)
            with pytest.raises(LeaseBusy, match="dag__nightly"):
                push_changes(warehouse, SlowConnector(), "hubspot", "cli__manual", _changes("cd"), "v1",
                             SETTINGS, clock=clock)
            seen["during"] = _statuses(warehouse, "dag__nightly")

    push_changes(warehouse, SlowConnector(second_run), "hubspot", "dag__nightly", _changes("abcd"), "v1",
                 SETTINGS, clock=clock)

    assert set(seen["during"].values()) == {"pending"}  # the live holder's entries were not touched
    assert set(_statuses(warehouse, "dag__nightly").values()) == {"confirmed"}
    assert _statuses(warehouse, "cli__manual") == {}


def test_given_holder_expired_then_its_entries_are_superseded_and_its_late_answer_is_still_recorded(warehouse):
    _land(warehouse, "abcd")
    clock = FrozenClock()
    seen: dict[str, dict[str, str]] = {}

    def overtaken(call_no: int) -> None:
        if call_no == 1:
            clock.advance(TTL_S + 1)
            push_changes(warehouse, SlowConnector(), "hubspot", "cli__manual", _changes("cd"), "v1",
                         SETTINGS, clock=clock)
            seen["after_second_run"] = _statuses(warehouse, "dag__nightly")

    with pytest.raises(LeaseLost):
        push_changes(warehouse, SlowConnector(overtaken), "hubspot", "dag__nightly", _changes("abcd"), "v1",
                     SETTINGS, clock=clock)

    # What the expired run had logged when it was overtaken is superseded (its first batch, in
    # flight). Its next batch's entries are logged a group ahead, on the bookkeeping thread: at
    # the takeover or just after it, so superseded or left pending.
    during = seen["after_second_run"]
    assert {during["a"], during["b"]} == {"superseded"} and {during.get(r, "superseded") for r in "cd"} <= {
        "superseded", "pending"}
    # The call the expired run had already made was answered: that answer is not lost. Its other
    # records were never sent and are never confirmed.
    statuses = _statuses(warehouse, "dag__nightly")
    assert {r: statuses[r] for r in "ab"} == {"a": "confirmed", "b": "confirmed"}
    assert {statuses[r] for r in "cd"} <= {"superseded", "pending"}
    # Whatever it left pending, the next push supersedes.
    clock.advance(TTL_S + 1)  # cli__manual's lease (push_changes leaves releasing it to its caller)
    push_changes(warehouse, SlowConnector(), "hubspot", "cli__later", _changes("ab"), "v1", SETTINGS, clock=clock)
    assert {r: _statuses(warehouse, "dag__nightly")[r] for r in "cd"} == {"c": "superseded", "d": "superseded"}
    assert _statuses(warehouse, "cli__manual") == {"c": "confirmed", "d": "confirmed"}
