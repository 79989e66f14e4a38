"""Push under faults, without HTTP: a read-back that fails, many records resolved at once, the ids
the run report lists, and a push lease left behind by a killed process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from dataclasses import replace

import pandas as pd
import pytest
import requests
from sqlalchemy import event, select

from leadflow.crm.base import CrmUnavailableError, RecordResult
from leadflow.push.lease import (
    DEAD_HOLDER_GRACE_S,
    LeaseBusy,
    current_holder,
    holder_is_dead,
    holder_run,
    push_lease,
    release,
    renew,
    try_acquire,
)
from leadflow.push.tables import leases
from leadflow.push.writer import PushSettings, push_changes
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log


class ScriptedConnector:
    """Applies what it is asked to, answers each call from a script of {record_id: status}."""

    name = "hubspot"

    def __init__(self, script=None, max_batch_size=100, read_fails=False):
        self.script = list(script or [])
        self.max_batch_size = max_batch_size
        self.read_fails = read_fails
        self.calls: list[list[str]] = []
        self.reads = 0
        self.crm: dict[str, dict] = {}

    def push(self, updates):
        self.calls.append([u.record_id for u in updates])
        plan = self.script.pop(0) if self.script else {}
        out = []
        for u in updates:
            status = plan.get(u.record_id, "confirmed")
            if status in ("confirmed", "unknown"):
                self.crm.setdefault(u.record_id, {}).update(u.values)
            out.append(RecordResult(u.record_id, status, error="Email address is invalid" if status == "rejected"
                                    else None, category="VALIDATION_ERROR" if status == "rejected" else None))
        return out

    def read(self, ids):
        self.reads += 1
        if self.read_fails:
            raise CrmUnavailableError("HubSpot POST batch/read: still failing with 502")
        return [{"record_id": i, **self.crm.get(i, {})} for i in ids]


def _land(engine, ids):
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", [{"record_id": i} for i in ids], [], [])


def _log(engine):
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(push_log)).mappings().all())


def _changes(ids, after="61"):
    rows = []
    for i in ids:
        rows.append({"record_id": i, "field": "score", "before": None, "after": after})
        rows.append({"record_id": i, "field": "grade", "before": None, "after": "B"})
        rows.append({"record_id": i, "field": "lifecycle_stage", "before": "lead", "after": "mql"})
    return pd.DataFrame(rows)


def test_given_timeout_and_failing_read_back_then_write_is_not_repeated_and_left_unknown(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b"])
    fake = ScriptedConnector([{"a": "unknown", "b": "unknown"}], read_fails=True)
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(["a", "b"]), "v1", sleep=lambda s: None)
    assert fake.calls == [["a", "b"]]  # never re-sent: the first write may have been applied
    assert out.unknown == 2 and out.pushed == 0
    assert set(_log(sqlite_warehouse)["status"]) == {"unknown"}


class CutOffConnector(ScriptedConnector):
    """Applies the first write, then its answer breaks off: the connector lets requests' error
    through instead of reporting per-record results. Its read-back can break off too."""

    def __init__(self, read_error=None, **kwargs):
        super().__init__(**kwargs)
        self.read_error = read_error

    def push(self, updates):
        super().push(updates)
        if len(self.calls) == 1:
            raise requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead")
        return [RecordResult(u.record_id, "confirmed") for u in updates]

    def read(self, ids):
        if self.read_error is not None:
            self.reads += 1
            raise self.read_error
        return super().read(ids)


def test_given_write_answer_cut_off_then_records_are_read_back_and_confirmed_not_resent(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b"])
    fake = CutOffConnector()
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(["a", "b"]), "v1", sleep=lambda s: None)
    assert fake.calls == [["a", "b"]] and fake.reads == 1
    assert out.pushed == 2 and out.unknown == 0
    assert set(_log(sqlite_warehouse)["status"]) == {"confirmed"}


@pytest.mark.parametrize("read_error", [requests.exceptions.ContentDecodingError("bad gzip"),
                                        requests.exceptions.ChunkedEncodingError("broken off")])
def test_given_write_and_read_back_answers_cut_off_then_outcome_stays_unknown(sqlite_warehouse, read_error):
    _land(sqlite_warehouse, ["a", "b"])
    fake = CutOffConnector(read_error=read_error)
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(["a", "b"]), "v1", sleep=lambda s: None)
    assert fake.calls == [["a", "b"]]  # never re-sent: the first write may have been applied
    assert out.unknown == 2 and out.pushed == 0
    assert set(_log(sqlite_warehouse)["status"]) == {"unknown"}


def test_given_timeout_where_only_some_records_hold_the_values_then_only_the_others_are_resent(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b"])

    class HalfApplied(ScriptedConnector):
        def push(self, updates):
            results = super().push(updates)
            if len(self.calls) == 1:
                self.crm.pop("b", None)  # the call timed out after applying only "a"
            return results

    fake = HalfApplied([{"a": "unknown", "b": "unknown"}])
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(["a", "b"]), "v1", sleep=lambda s: None)
    assert fake.calls == [["a", "b"], ["b"]]
    assert out.pushed == 2 and out.unknown == 0


def test_given_thousands_of_records_then_every_log_entry_and_lead_row_is_resolved_in_batches(sqlite_warehouse):
    ids = [f"{n:05d}" for n in range(2_500)]
    _land(sqlite_warehouse, ids)
    fake = ScriptedConnector([{ids[7]: "rejected"}])
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(sqlite_warehouse, "before_cursor_execute", count)
    try:
        out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(ids), "v1")
    finally:
        event.remove(sqlite_warehouse, "before_cursor_execute", count)
    assert out.write_calls == 25 and out.pushed == 2_499 and out.rejected == 1
    assert out.rejected_ids == [ids[7]]
    log = _log(sqlite_warehouse)
    assert len(log) == 3 * 2_500
    assert (log[log["record_id"] != ids[7]]["status"] == "confirmed").all()
    assert (log[log["record_id"] != ids[7]]["attempts"] == 1).all()
    rejected = log[log["record_id"] == ids[7]]
    assert set(rejected["status"]) == {"rejected"} and set(rejected["error"]) == {"Email address is invalid"}
    leads = repo.load_leads(sqlite_warehouse, "hubspot").set_index("record_id")
    assert (leads.drop(index=ids[7])["crm_score"] == "61").all()
    assert (leads.drop(index=ids[7])["lifecycle_stage"] == "mql").all()
    assert pd.isna(leads.loc[ids[7], "crm_score"])
    # A few warehouse statements per CRM batch, not one per record (what made 2,500 records slow).
    assert len(statements) <= 4 * out.write_calls, len(statements)


def test_given_value_rejected_in_every_run_then_failed_ids_are_reported(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b"])
    settings = PushSettings(max_attempts=2)
    for run in ("r1", "r2"):
        fake = ScriptedConnector([{"a": "rejected"}])
        out = push_changes(sqlite_warehouse, fake, "hubspot", run, _changes(["a"]), "v1", settings)
        assert out.rejected_ids == ["a"]
        release(sqlite_warehouse, "hubspot", run)  # what the run's report step does
    out = push_changes(sqlite_warehouse, ScriptedConnector(), "hubspot", "r3", _changes(["a"]), "v1", settings)
    assert out.failed == 1 and out.failed_ids == ["a"] and out.as_dict()["failed_ids"] == ["a"]


# --- lease -------------------------------------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _stored(engine):
    with engine.connect() as conn:
        return conn.execute(select(leases.c.holder)).scalar_one()


def test_given_lease_left_by_a_killed_run_on_this_host_then_next_run_takes_it_after_the_grace(sqlite_warehouse):
    now = 1_000_000_000
    clock = lambda: now  # noqa: E731
    killed = f"cli__killed host={socket.gethostname()} pid={_dead_pid()} beat={now}"
    with sqlite_warehouse.begin() as conn:
        conn.execute(leases.insert().values(crm="hubspot", name="push", holder=killed, expires_at=now + 3_600_000))
    # Within the grace a sibling shard of the killed run may still be pushing: refused.
    assert not try_acquire(sqlite_warehouse, "hubspot", "cli__next", 3600, clock=clock)
    later = now + int(DEAD_HOLDER_GRACE_S * 1000)
    assert holder_is_dead(killed, later)
    assert try_acquire(sqlite_warehouse, "hubspot", "cli__next", 3600, clock=lambda: later)
    assert holder_run(_stored(sqlite_warehouse)) == "cli__next"


def test_given_lease_of_a_live_process_or_another_host_then_other_runs_are_refused(sqlite_warehouse):
    far_future = 10**13
    for stored in (f"cli__alive host={socket.gethostname()} pid={os.getpid()} beat=1",
                   "cli__elsewhere host=some-other-worker pid=1 beat=1"):
        assert not holder_is_dead(stored, far_future)
    assert try_acquire(sqlite_warehouse, "hubspot", "cli__alive", 3600)
    assert not try_acquire(sqlite_warehouse, "hubspot", "cli__next", 3600)
    with pytest.raises(LeaseBusy, match="cli__alive"):
        with push_lease(sqlite_warehouse, "hubspot", "cli__next"):
            pass


def test_given_run_scoped_lease_then_every_process_of_the_run_shares_it_and_release_frees_it(sqlite_warehouse):
    assert try_acquire(sqlite_warehouse, "hubspot", "dag__run_1", 3600)
    # A shard of the same run in another process: the tag changes, the run keeps the lease.
    with sqlite_warehouse.begin() as conn:
        conn.execute(leases.update().values(holder=f"dag__run_1 host=other pid=1 beat=1"))
    assert try_acquire(sqlite_warehouse, "hubspot", "dag__run_1", 3600)
    assert not try_acquire(sqlite_warehouse, "hubspot", "dag__run%1", 3600)  # LIKE wildcards are escaped
    assert renew(sqlite_warehouse, "hubspot", "dag__run_1")
    release(sqlite_warehouse, "hubspot", "dag__run_1")
    assert current_holder(sqlite_warehouse, "hubspot") is None


def test_given_push_then_writer_renews_the_lease_tag_after_each_batch(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b", "c"])
    with sqlite_warehouse.begin() as conn:
        conn.execute(leases.insert().values(crm="hubspot", name="push", expires_at=10**13,
                                            holder="r1 host=other pid=1 beat=1"))
    push_changes(sqlite_warehouse, ScriptedConnector(max_batch_size=2), "hubspot", "r1",
                 _changes(["a", "b", "c"]), "v1")
    assert _stored(sqlite_warehouse).startswith(f"r1 host={socket.gethostname()} pid={os.getpid()} ")


def test_given_sibling_shard_pending_entries_then_a_shard_push_leaves_them_alone(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b"])
    shard_a = ScriptedConnector()

    class Interleaved(ScriptedConnector):
        def push(self, updates):
            # While this shard's call is in flight, shard two of the same run starts its push.
            push_changes(sqlite_warehouse, shard_a, "hubspot", "r1", _changes(["a"]), "v1")
            return super().push(updates)

    push_changes(sqlite_warehouse, Interleaved(), "hubspot", "r1", _changes(["b"]), "v1")
    log = _log(sqlite_warehouse)
    assert set(log["status"]) == {"confirmed"}, log[["record_id", "status"]].to_dict("records")


def test_given_long_push_then_heartbeat_keeps_the_short_lease_alive(sqlite_warehouse, monkeypatch):
    import leadflow.push.lease as lease_module

    def expires():
        with sqlite_warehouse.connect() as conn:
            return conn.execute(select(leases.c.expires_at)).scalar_one()

    # The lease's expiries follow a fake clock moved by hand past the TTL; an event tells when the
    # heartbeat thread has renewed past it, so nothing waits on real time passing.
    now = [1_000_000_000]
    clock = lambda: now[0]  # noqa: E731
    first = now[0] + 400
    extended = threading.Event()
    real_renew = lease_module.renew

    def renew_and_signal(*args, **kwargs):
        held = real_renew(*args, **kwargs)
        if expires() > first:
            extended.set()
        return held

    monkeypatch.setattr(lease_module, "renew", renew_and_signal)
    with push_lease(sqlite_warehouse, "hubspot", "cli__long", ttl_s=0.4, clock=clock):
        assert expires() == first
        now[0] += 500  # longer than the TTL: only renewals keep it ours
        assert extended.wait(timeout=10), "the heartbeat never extended the lease"
        assert holder_run(current_holder(sqlite_warehouse, "hubspot", clock=clock)) == "cli__long"
        with pytest.raises(LeaseBusy):
            with push_lease(sqlite_warehouse, "hubspot", "cli__other", ttl_s=0.4, clock=clock):
                pass
    assert current_holder(sqlite_warehouse, "hubspot", clock=clock) is None


def test_given_rejected_record_whose_scored_at_changes_each_run_then_attempts_still_count_up(sqlite_warehouse):
    _land(sqlite_warehouse, ["a"])
    settings = PushSettings(max_attempts=2)
    for n, run in enumerate(("r1", "r2", "r3")):
        changes = pd.concat([_changes(["a"]), pd.DataFrame(
            [{"record_id": "a", "field": "scored_at", "before": None, "after": f"2025-06-0{n + 1}"}])])
        push_changes(sqlite_warehouse, ScriptedConnector([{"a": "rejected"}]), "hubspot", run, changes, "v1", settings)
        release(sqlite_warehouse, "hubspot", run)  # what the run's report step does
    log = _log(sqlite_warehouse)
    by_run = log.groupby("run_id")
    assert {r: sorted(set(g["attempts"])) for r, g in by_run} == {"r1": [1], "r2": [2], "r3": [2]}
    assert set(log[log["run_id"] == "r3"]["status"]) == {"failed"}


class RatingConnector(ScriptedConnector):
    """Reports the Rating it set with each record's stage as a side write, as Salesforce does."""

    def push(self, updates):
        results = super().push(updates)
        return [replace(r, side_writes=(("rating", "Hot", "Warm"),)) if r.status in ("confirmed", "unknown") else r
                for r in results]


@pytest.mark.parametrize("answer", ["confirmed", "unknown"])
def test_given_side_write_then_it_is_logged_as_a_confirmed_write_of_the_run(sqlite_warehouse, answer):
    _land(sqlite_warehouse, ["a"])
    out = push_changes(sqlite_warehouse, RatingConnector([{"a": answer}]), "hubspot", "r1", _changes(["a"]), "v1",
                       sleep=lambda s: None)
    assert out.pushed == 1  # an unknown outcome is confirmed by the read-back, its side write kept
    log = _log(sqlite_warehouse).set_index("field")
    assert (log.loc["rating", "before"], log.loc["rating", "after"], log.loc["rating", "status"]) == (
        "Hot", "Warm", "confirmed")
    assert log.loc["rating", "run_id"] == "r1"


class Killed(BaseException):
    """The task process dies: no answer, no bookkeeping (BaseException, as SIGKILL leaves no handler)."""


def test_given_a_try_killed_after_the_crm_applied_a_batch_then_the_retry_of_the_run_reads_back_and_sends_only_the_rest(
        sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b", "c"])

    class DiesAfterTheCrmApplied(ScriptedConnector):
        def push(self, updates):
            super().push(updates)  # the CRM applies the batch...
            raise Killed()  # ...and the worker dies before it hears back

    first = DiesAfterTheCrmApplied(max_batch_size=2)
    with pytest.raises(Killed):
        push_changes(sqlite_warehouse, first, "hubspot", "r1", _changes(["a", "b", "c"]), "v1", sleep=lambda s: None)
    assert set(first.crm) == {"a", "b"} and set(_log(sqlite_warehouse)["status"]) == {"pending"}

    retry = ScriptedConnector(max_batch_size=2)
    retry.crm = first.crm  # the same CRM
    out = push_changes(sqlite_warehouse, retry, "hubspot", "r1", _changes(["a", "b", "c"]), "v1", sleep=lambda s: None)
    assert retry.calls == [["c"]]  # a and b already hold the run's values: not written twice
    assert out.pushed == 3
    log = _log(sqlite_warehouse)
    assert set(log.loc[log["status"] != "superseded", "status"]) == {"confirmed"}
