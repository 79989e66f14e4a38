"""Batched write-back: audit log entries, transient retries, unknown outcomes, rejected rows."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow.crm.base import RecordResult
from leadflow.push.lease import release
from leadflow.push.writer import PushSettings, prepare_push, preview, push_changes
from leadflow.warehouse import repo
from leadflow.warehouse.repo import now_ms
from leadflow.warehouse.tables import push_log


class FakeConnector:
    name = "hubspot"
    max_batch_size = 2

    def __init__(self, script=None):
        self.script = list(script or [])  # per call: {record_id: status}
        self.calls = []
        self.crm = {}

    def push(self, updates):
        self.calls.append([u.record_id for u in updates])
        plan = self.script.pop(0) if self.script else {}
        results = []
        for u in updates:
            status = plan.get(u.record_id, "confirmed")
            if status in ("confirmed", "unknown"):
                self.crm.setdefault(u.record_id, {}).update(u.values)
            results.append(RecordResult(u.record_id, status, error="bad value" if status == "rejected" else None))
        return results

    def read(self, ids):
        return [{"record_id": i, **self.crm.get(i, {})} for i in ids]


def _changes(ids, field="score", after="50"):
    return pd.DataFrame({"record_id": ids, "field": field, "before": None, "after": after})


def _log(engine):
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(push_log)).mappings().all())


def _land(engine, ids):
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", [{"record_id": i} for i in ids], [], [])


def test_given_five_changed_records_then_three_batched_calls_and_all_confirmed(sqlite_warehouse):
    _land(sqlite_warehouse, list("abcde"))
    fake = FakeConnector()
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(list("abcde")), "v1")
    assert (out.pushed, out.write_calls) == (5, 3)
    assert set(_log(sqlite_warehouse)["status"]) == {"confirmed"}
    leads = repo.load_leads(sqlite_warehouse, "hubspot").set_index("record_id")
    assert leads.loc["a", "crm_score"] == "50"


def test_given_transient_error_then_record_is_retried_within_the_run(sqlite_warehouse):
    _land(sqlite_warehouse, ["a", "b"])
    sleeps = []
    fake = FakeConnector([{"b": "retryable"}])
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(["a", "b"]), "v1",
                       sleep=sleeps.append)
    assert fake.calls == [["a", "b"], ["b"]] and sleeps == [2.0]
    assert out.pushed == 2


def test_given_timeout_then_outcome_is_read_back_instead_of_rewritten(sqlite_warehouse):
    _land(sqlite_warehouse, ["a"])
    fake = FakeConnector([{"a": "unknown"}])
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r1", _changes(["a"]), "v1", sleep=lambda s: None)
    assert fake.calls == [["a"]]  # the CRM held the value: no second write
    assert out.pushed == 1


def test_given_rejection_then_retried_next_runs_until_failed(sqlite_warehouse):
    _land(sqlite_warehouse, ["a"])
    settings = PushSettings(max_attempts=2)
    for run in ("r1", "r2"):
        fake = FakeConnector([{"a": "rejected"}])
        out = push_changes(sqlite_warehouse, fake, "hubspot", run, _changes(["a"]), "v1", settings)
        assert out.rejected == 1
        release(sqlite_warehouse, "hubspot", run)  # what the run's report step does
    fake = FakeConnector([{"a": "rejected"}])
    out = push_changes(sqlite_warehouse, fake, "hubspot", "r3", _changes(["a"]), "v1", settings)
    assert out.failed == 1 and fake.calls == []
    log = _log(sqlite_warehouse)
    assert list(log.sort_values("id")["status"]) == ["rejected", "rejected", "failed"]
    assert list(log.sort_values("id")["attempts"]) == [1, 2, 2]


def test_given_entries_left_pending_by_a_killed_run_then_next_run_supersedes_them(sqlite_warehouse):
    _land(sqlite_warehouse, ["a"])

    class Killed(FakeConnector):
        def push(self, updates):
            raise KeyboardInterrupt

    started = now_ms()
    try:
        push_changes(sqlite_warehouse, Killed(), "hubspot", "r1", _changes(["a"]), "v1", clock=lambda: started)
    except KeyboardInterrupt:
        pass
    # The killed run's lease has expired by the time the next run pushes.
    after_ttl = started + int(PushSettings().lease_ttl_s * 1000) + 1
    push_changes(sqlite_warehouse, FakeConnector(), "hubspot", "r2", _changes(["a"]), "v1", clock=lambda: after_ttl)
    log = _log(sqlite_warehouse).sort_values("id")
    assert list(log["status"]) == ["superseded", "confirmed"]


def test_preview_counts_fields_and_stage_transitions():
    changes = pd.DataFrame({
        "record_id": ["1", "1", "2"], "field": ["score", "lifecycle_stage", "lifecycle_stage"],
        "before": ["10", "lead", None], "after": ["40", "mql", "lead"],
    })
    p = preview(changes)
    assert p["records"] == 2 and p["per_field"] == {"lifecycle_stage": 2, "score": 1}
    assert p["stage_transitions"] == {"lead -> mql": 1, "(empty) -> lead": 1}
    assert p["samples"][0]["changes"]["score"] == {"before": "10", "after": "40"}


def test_rollback_restores_values_where_crm_still_holds_ours_and_skips_human_changes(sqlite_warehouse):
    from leadflow.push.rollback import rollback_run

    _land(sqlite_warehouse, ["a", "b"])
    fake = FakeConnector()
    changes = pd.DataFrame({"record_id": ["a", "b"], "field": "score", "before": ["10", "20"], "after": "50"})
    push_changes(sqlite_warehouse, fake, "hubspot", "r1", changes, "v1")
    release(sqlite_warehouse, "hubspot", "r1")  # what the run's report step does
    fake.crm["b"]["score"] = "99"  # a human edited b afterwards

    dry = rollback_run(sqlite_warehouse, fake, "hubspot", "r1", dry_run=True)
    assert (dry.restored, dry.skipped_changed) == (1, ["b"])
    assert fake.crm["a"]["score"] == "50"

    report = rollback_run(sqlite_warehouse, fake, "hubspot", "r1")
    assert report.restored == 1 and report.skipped_changed == ["b"]
    assert fake.crm["a"]["score"] == "10" and fake.crm["b"]["score"] == "99"
    assert repo.load_leads(sqlite_warehouse, "hubspot").set_index("record_id").loc["a", "crm_score"] == "10"


def test_rollback_skips_a_shared_value_a_person_set_again_even_when_it_equals_leadflows(sqlite_warehouse):
    from leadflow.ownership import Observed, Writer
    from leadflow.push.rollback import rollback_run

    _land(sqlite_warehouse, ["a", "b"])

    class WithHistory(FakeConnector):
        writers = {"a": Writer.LEADFLOW, "b": Writer.PERSON}  # b: a rep re-set the very same status

        def observe(self, ids):
            return {i: {"lead_status": Observed(self.crm.get(i, {}).get("lead_status"), writer=self.writers[i])}
                    for i in ids}

    fake = WithHistory()
    changes = pd.DataFrame({"record_id": ["a", "b"], "field": "lead_status", "before": ["new", "new"],
                            "after": "open"})
    push_changes(sqlite_warehouse, fake, "hubspot", "r1", changes, "v1")
    release(sqlite_warehouse, "hubspot", "r1")
    report = rollback_run(sqlite_warehouse, fake, "hubspot", "r1")
    assert report.restored == 1 and report.skipped_changed == ["b"]
    assert (fake.crm["a"]["lead_status"], fake.crm["b"]["lead_status"]) == ("new", "open")



def test_given_a_push_ends_then_no_bookkeeping_thread_is_left_running(sqlite_warehouse):
    import threading

    _land(sqlite_warehouse, list("abcde"))
    push_changes(sqlite_warehouse, FakeConnector(), "hubspot", "r1", _changes(list("abcde")), "v1")
    assert not [t for t in threading.enumerate() if t.name.startswith("leadflow-push-log")]


def test_given_any_batch_then_its_entries_are_logged_pending_before_it_is_sent(sqlite_warehouse):
    ids = [f"r{n:02d}" for n in range(30)]
    _land(sqlite_warehouse, ids)
    logged_when_sent: list[dict[str, str]] = []

    class Watching(FakeConnector):
        def push(self, updates):
            with sqlite_warehouse.connect() as conn:
                rows = conn.execute(select(push_log.c.record_id, push_log.c.status)).all()
            logged_when_sent.append({r: s for r, s in rows if r in {u.record_id for u in updates}})
            return super().push(updates)

    settings = PushSettings(calls_in_flight=3)
    out = push_changes(sqlite_warehouse, Watching(), "hubspot", "r1", _changes(ids), "v1", settings)
    assert out.pushed == 30 and out.write_calls == 15
    assert all(len(seen) == 2 and set(seen.values()) == {"pending"} for seen in logged_when_sent)
    assert set(_log(sqlite_warehouse)["status"]) == {"confirmed"}


def test_given_the_warehouse_fails_while_recording_then_the_push_raises_it(sqlite_warehouse, monkeypatch):
    import pytest

    from leadflow.push import writer

    _land(sqlite_warehouse, list("abcdef"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(writer, "_record", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        push_changes(sqlite_warehouse, FakeConnector(), "hubspot", "r1", _changes(list("abcdef")), "v1")


def test_given_a_prepared_push_then_no_call_goes_out_until_it_is_sent(sqlite_warehouse):
    _land(sqlite_warehouse, list("abc"))
    fake = FakeConnector()
    send = prepare_push(sqlite_warehouse, fake, "hubspot", "r1", _changes(list("abc")), "v1")
    assert fake.calls == []
    sent = []
    out = send(sent.append)
    assert (out.pushed, out.write_calls) == (3, 2) and sum(sent) == 3
    assert set(_log(sqlite_warehouse)["status"]) == {"confirmed"}


def test_given_two_parts_prepared_before_the_first_is_sent_then_each_record_is_written_once(sqlite_warehouse):
    _land(sqlite_warehouse, list("abcd"))
    fake = FakeConnector()
    first = prepare_push(sqlite_warehouse, fake, "hubspot", "r1", _changes(list("ab")), "v1")
    second = prepare_push(sqlite_warehouse, fake, "hubspot", "r1", _changes(list("cd")), "v1")
    outcome = first(None)
    outcome.add(second(None))
    assert fake.calls == [["a", "b"], ["c", "d"]]
    assert (outcome.pushed, outcome.write_calls, outcome.changed_records) == (4, 2, 4)
    log = _log(sqlite_warehouse)
    assert sorted(log["record_id"]) == list("abcd") and set(log["status"]) == {"confirmed"}


def test_given_many_batches_then_entries_are_logged_in_groups_growing_from_one_batch_each_before_its_calls():
    # The bookkeeping thread's order: what `submit` is given, run at once here.
    from concurrent.futures import Future

    from leadflow.crm.base import RecordUpdate
    from leadflow.push.writer import _Ledger

    logged: list[list[str]] = []
    handed: list[tuple[int, list[str]]] = []  # (groups logged when the batch was handed out, batch)

    submitted: list[str] = []

    class Ledger(_Ledger):
        def log(self, records):
            logged.append(list(records))

        def analyse(self):
            pass

    def submit(fn, *args):
        submitted.append(fn.__name__)
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    updates = [RecordUpdate(record_id=str(i), values={"score": i}) for i in range(2_300)]
    for batch in Ledger(None, [], dict).logged_batches(updates, 100, 8, submit):
        handed.append((len(logged), [u.record_id for u in batch]))
    # Batches of 100 in groups of 1, 2, 4, 8, 8: the first call waits for one batch's entries.
    assert [len(g) // 100 for g in logged] == [1, 2, 4, 8, 8]
    assert [r for g in logged for r in g] == [u.record_id for u in updates]
    # The statistics are refreshed once, behind the second group's entries (before any answer).
    assert submitted == ["log", "log", "analyse", "log", "log", "log"]
    # A batch goes out only once its group is logged.
    for groups_logged, batch in handed:
        assert set(batch) <= {r for g in logged[:groups_logged] for r in g}
