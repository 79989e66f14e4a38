"""Sharded enrich/validate/qualify/push, run in parallel on a real PostgreSQL warehouse, give the
same enrichment, quarantine, data-quality results, scores and CRM state as one unsharded run; the
sharded push goes in two parts (`push_first_part`), and writes each value once as the unsharded run does."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
from sqlalchemy import select

from leadflow import pipeline
from leadflow.connections import Connection
from leadflow.enrich.store import load_enrichment
from leadflow.pipeline import (
    RunContext,
    enrich,
    extract,
    plan_push,
    push,
    qualify,
    report,
    validate,
    validate_gate,
    validate_scores,
)
from leadflow.quality.tables import dq_results
from leadflow.warehouse.quarantine_store import quarantine
from leadflow.sandbox.history import LEADFLOW_APP
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _ctx(sb, url, run_id, **kw):
    conn = Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token)
    return RunContext(crm="hubspot", run_id=run_id, warehouse_url=url, connection=conn, **kw)


def _mangle_some_emails(sb):
    """A few leads fail the row checks (quarantined), too few to fail the batch gate."""
    store = sb.store
    with store._lock:
        rows = store._conn.execute("SELECT id, props FROM obj_contacts ORDER BY id").fetchall()
        for contact_id, raw in rows[::50]:
            store._conn.execute("UPDATE obj_contacts SET props = ? WHERE id = ?",
                                (json.dumps({**json.loads(raw), "email": "not-an-email"}), contact_id))
        store._conn.commit()


def _run(sb, url, run_id, shards):
    _mangle_some_emails(sb)
    base = _ctx(sb, url, run_id, shards=shards)
    extract(base)
    shard_ids = list(range(shards)) if shards > 1 else [None]
    for step in (enrich, validate, qualify):
        with ThreadPoolExecutor(max_workers=len(shard_ids)) as pool:
            list(pool.map(lambda s: step(_ctx(sb, url, run_id, shard=s, shards=shards)), shard_ids))
        if step is validate:
            validate_gate(base)
    validate_scores(base)
    plan_push(base)
    with ThreadPoolExecutor(max_workers=len(shard_ids)) as pool:
        list(pool.map(lambda s: push(_ctx(sb, url, run_id, shard=s, shards=shards,
                                           rate_share=1 / len(shard_ids))), shard_ids))
    return report(base), base.engine


def _scores(engine):
    cols = ["record_id", "score", "fit_score", "engagement_score", "grade", "stage", "lead_status", "reasons"]
    return repo.load_scores(engine, "hubspot")[cols].sort_values("record_id").reset_index(drop=True)


def _enrichment(engine):
    return load_enrichment(engine, "hubspot").drop(columns=["run_id", "enriched_at"]) \
        .sort_values("record_id").reset_index(drop=True)


def _quality(engine):
    """The quarantine entries and the run's row and batch check results."""
    held = pd.read_sql(select(quarantine.c.record_id, quarantine.c.expectation, quarantine.c.column,
                              quarantine.c.value, quarantine.c.released_at), engine)
    checks = pd.read_sql(select(dq_results.c.stage, dq_results.c.expectation, dq_results.c.success,
                                dq_results.c.observed, dq_results.c.threshold, dq_results.c.unexpected_count)
                         .where(dq_results.c.stage.in_(["rows", "batch"])), engine)
    return (held.sort_values(["record_id", "expectation", "column"]).reset_index(drop=True),
            checks.sort_values(["stage", "expectation"]).reset_index(drop=True))


def _leadflow_writes(sb) -> list[tuple[str, str]]:
    """(contact, property) of each contact property change leadflow's app made: the sandbox's history."""
    with sb.store._lock:
        return sb.store._conn.execute(
            "SELECT object_id, property FROM writes WHERE object_type = 'contacts' AND source_type = ? "
            "AND source_id = ?", (LEADFLOW_APP.source_type, LEADFLOW_APP.source_id)).fetchall()


def test_four_parallel_shards_equal_the_unsharded_run(new_pg_database, tmp_path, monkeypatch):
    with running_sandbox(contacts=800, seed=11, db_path=tmp_path / "a.db", rate_limit="off",
                         search_rate_limit="off") as sb_a:
        single, engine_a = _run(sb_a, new_pg_database(), "single", shards=1)
        crm_a = {r.id: r.props for r in sb_a.store.list_page("contacts", after_id=0, limit=1000)}
        writes_a = _leadflow_writes(sb_a)
    # Each push shard's ~200 records in two parts: a third first, the rest diffed while it is written.
    monkeypatch.setattr(pipeline, "PUSH_FIRST_PART", 70)
    assert pipeline.push_first_part(1, 4, 800) == (1, 12)
    with running_sandbox(contacts=800, seed=11, db_path=tmp_path / "b.db", rate_limit="off",
                         search_rate_limit="off") as sb_b:
        sharded, engine_b = _run(sb_b, new_pg_database(), "sharded", shards=4)
        crm_b = {r.id: r.props for r in sb_b.store.list_page("contacts", after_id=0, limit=1000)}
        writes_b = _leadflow_writes(sb_b)

    for key in ("enriched", "validated", "quarantined", "skipped_owned", "dq_failed_checks"):
        assert sharded[key] == single[key], key
    assert single["quarantined"] > 0  # the sandbox's bad leads: the quarantine is compared, not empty
    assert not [k for k in sharded if k.startswith("_")]  # the gate's inputs stay out of the run's figures
    pd.testing.assert_frame_equal(_enrichment(engine_a), _enrichment(engine_b))
    for a, b in zip(_quality(engine_a), _quality(engine_b)):
        pd.testing.assert_frame_equal(a, b)
    assert sharded["scored"] == single["scored"] > 0
    assert sharded["pushed"] == single["pushed"] > 0
    pd.testing.assert_frame_equal(_scores(engine_a), _scores(engine_b))
    compared = {k for props in crm_a.values() for k in props if k.startswith("leadflow_")} - {"leadflow_scored_at"}
    assert "leadflow_score" in compared
    for contact_id, props in crm_a.items():
        for key in sorted(compared) + ["lifecyclestage", "hs_lead_status"]:
            assert crm_b[contact_id].get(key) == props.get(key), (contact_id, key)
    # Every value written once, in parts as in one go.
    assert sorted(writes_b) == sorted(writes_a)
    assert len(set(writes_b)) == len(writes_b) > 0
