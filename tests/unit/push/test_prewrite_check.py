"""The ownership rule right before each write batch: values read fresh from the CRM with their
history decide which shared fields are still leadflow's to write."""

from __future__ import annotations

import pandas as pd
from sqlalchemy import select

from leadflow.crm.base import RecordResult
from leadflow.ownership import Observed, Writer
from leadflow.push.tables import push_overrides
from leadflow.push.writer import push_changes
from leadflow.warehouse import repo
from leadflow.warehouse.tables import push_log

NOW = 1_800_000_000_000


class HistoryConnector:
    """A CRM whose shared fields carry who set them; records what it was asked to write."""

    name = "hubspot"
    max_batch_size = 10

    def __init__(self, fields):
        self.fields = fields  # record -> field -> Observed
        self.written = []
        self.current_stages = {}  # record -> the current stage a write of the stage carried
        self.observed_calls = []

    def observe(self, ids):
        self.observed_calls.append(list(ids))
        return {i: self.fields[i] for i in ids if i in self.fields}

    def push(self, updates):
        self.written.extend((u.record_id, dict(u.values)) for u in updates)
        self.current_stages.update((u.record_id, u.current_stage) for u in updates if "lifecycle_stage" in u.values)
        return [RecordResult(u.record_id, "confirmed") for u in updates]

    def read(self, ids):
        return []


def _changes(rows):
    return pd.DataFrame(rows, columns=["record_id", "field", "before", "after", "verify"])


def _land(engine, ids):
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", [{"record_id": i} for i in ids], [], [])


def _statuses(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(push_log.c.record_id, push_log.c.field, push_log.c.status)).all()
    return {(r, f): s for r, f, s in rows}


def _overrides(engine):
    with engine.connect() as conn:
        return pd.DataFrame(conn.execute(select(push_overrides)).mappings().all())


def test_given_a_rep_changed_the_status_after_the_pull_then_it_is_left_and_recorded(sqlite_warehouse):
    _land(sqlite_warehouse, ["1"])
    crm = HistoryConnector({"1": {"lead_status": Observed("in_progress", writer=Writer.PERSON, changed_at=NOW,
                                                          changed_by="user:7")}})
    changes = _changes([("1", "lead_status", "new", "open", False), ("1", "scored_at", None, "5", False)])
    out = push_changes(sqlite_warehouse, crm, "hubspot", "r1", changes, "v1", clock=lambda: NOW)
    assert crm.written == []  # only a passenger was left: nothing to send
    assert (out.overridden, out.write_calls, out.prewrite_checks) == (1, 0, 1)
    assert _statuses(sqlite_warehouse) == {("1", "lead_status"): "overridden", ("1", "scored_at"): "skipped"}
    row = _overrides(sqlite_warehouse).iloc[0]
    assert (row["current"], row["wanted"], row["writer"], row["changed_by"]) == ("in_progress", "open", "person",
                                                                                    "user:7")


def test_given_a_creation_default_then_the_candidate_is_written(sqlite_warehouse):
    _land(sqlite_warehouse, ["1"])
    crm = HistoryConnector({"1": {"lifecycle_stage": Observed("subscriber", writer=Writer.DEFAULT)}})
    changes = _changes([("1", "lifecycle_stage", "subscriber", "mql", True), ("1", "score", None, "70", False)])
    out = push_changes(sqlite_warehouse, crm, "hubspot", "r1", changes, "v1", clock=lambda: NOW)
    assert crm.written == [("1", {"lifecycle_stage": "mql", "score": "70"})]
    assert crm.current_stages == {"1": "subscriber"}
    assert out.overridden == 0
    assert set(_statuses(sqlite_warehouse).values()) == {"confirmed"}


def test_given_a_stage_override_then_the_owned_fields_are_still_written(sqlite_warehouse):
    _land(sqlite_warehouse, ["1"])
    crm = HistoryConnector({"1": {"lifecycle_stage": Observed("lead", writer=Writer.WORKFLOW)}})
    changes = _changes([("1", "lifecycle_stage", "lead", "mql", True), ("1", "score", None, "70", False)])
    push_changes(sqlite_warehouse, crm, "hubspot", "r1", changes, "v1", clock=lambda: NOW)
    assert crm.written == [("1", {"score": "70"})]
    assert _statuses(sqlite_warehouse) == {("1", "lifecycle_stage"): "overridden", ("1", "score"): "confirmed"}


def test_given_the_record_is_gone_from_the_crm_then_its_shared_fields_are_skipped(sqlite_warehouse):
    _land(sqlite_warehouse, ["1"])
    crm = HistoryConnector({})
    out = push_changes(sqlite_warehouse, crm, "hubspot", "r1",
                       _changes([("1", "lead_status", None, "open", False)]), "v1", clock=lambda: NOW)
    assert crm.written == [] and out.skipped == 1


def test_given_batches_without_shared_fields_then_nothing_is_read(sqlite_warehouse):
    _land(sqlite_warehouse, ["1", "2"])
    crm = HistoryConnector({})
    push_changes(sqlite_warehouse, crm, "hubspot", "r1",
                 _changes([("1", "score", None, "5", False), ("2", "score", None, "6", False)]), "v1")
    assert crm.observed_calls == [] and len(crm.written) == 2


def test_given_a_connector_without_history_then_candidates_are_left_and_sure_writes_go(sqlite_warehouse):
    _land(sqlite_warehouse, ["1", "2"])

    class NoHistory(HistoryConnector):
        observe = None

    crm = NoHistory({})
    changes = _changes([("1", "lead_status", "new", "open", True), ("2", "lead_status", None, "open", False)])
    out = push_changes(sqlite_warehouse, crm, "hubspot", "r1", changes, "v1", clock=lambda: NOW)
    assert crm.written == [("2", {"lead_status": "open"})]
    assert out.overridden == 1


def test_given_stage_writes_scattered_among_score_writes_then_they_share_one_read(sqlite_warehouse):
    ids = [str(i) for i in range(1, 31)]
    _land(sqlite_warehouse, ids)
    # Every third record also moves its stage; the connector writes 10 records per call.
    rows = [(i, "score", None, "50", False) for i in ids]
    rows += [(i, "lifecycle_stage", None, "mql", False) for i in ids if int(i) % 3 == 0]
    crm = HistoryConnector({})
    out = push_changes(sqlite_warehouse, crm, "hubspot", "r1", _changes(rows), "v1", clock=lambda: NOW)
    assert crm.observed_calls == [[str(i) for i in range(3, 31, 3)]]
    assert (out.write_calls, out.prewrite_checks, out.pushed) == (3, 1, 30)
