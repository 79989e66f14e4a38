"""Sharded qualify/push, run in parallel on a real PostgreSQL warehouse, give the same scores and
the same CRM state as one unsharded run."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest

from leadflow.connections import Connection
from leadflow.pipeline import RunContext, enrich, extract, plan_push, push, qualify, report, validate, validate_scores
from leadflow.sandbox.server import running_sandbox
from leadflow.warehouse import repo

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def _ctx(sb, url, run_id, **kw):
    conn = Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http", password=sb.token)
    return RunContext(crm="hubspot", run_id=run_id, warehouse_url=url, connection=conn, **kw)


def _run(sb, url, run_id, shards):
    base = _ctx(sb, url, run_id, shards=shards)
    for step in (extract, enrich, validate):
        step(base)
    shard_ids = list(range(shards)) if shards > 1 else [None]
    with ThreadPoolExecutor(max_workers=len(shard_ids)) as pool:
        list(pool.map(lambda s: qualify(_ctx(sb, url, run_id, shard=s, shards=shards)), shard_ids))
    validate_scores(base)
    plan_push(base)
    with ThreadPoolExecutor(max_workers=len(shard_ids)) as pool:
        list(pool.map(lambda s: push(_ctx(sb, url, run_id, shard=s, shards=shards,
                                           rate_share=1 / len(shard_ids))), shard_ids))
    return report(base), base.engine


def _scores(engine):
    cols = ["record_id", "score", "fit_score", "engagement_score", "grade", "stage", "lead_status", "reasons"]
    return repo.load_scores(engine, "hubspot")[cols].sort_values("record_id").reset_index(drop=True)


def test_four_parallel_shards_equal_the_unsharded_run(new_pg_database, tmp_path):
    with running_sandbox(contacts=800, seed=11, db_path=tmp_path / "a.db", rate_limit="off",
                         search_rate_limit="off") as sb_a:
        single, engine_a = _run(sb_a, new_pg_database(), "single", shards=1)
        crm_a = {r.id: r.props for r in sb_a.store.list_page("contacts", after_id=0, limit=1000)}
    with running_sandbox(contacts=800, seed=11, db_path=tmp_path / "b.db", rate_limit="off",
                         search_rate_limit="off") as sb_b:
        sharded, engine_b = _run(sb_b, new_pg_database(), "sharded", shards=4)
        crm_b = {r.id: r.props for r in sb_b.store.list_page("contacts", after_id=0, limit=1000)}

    assert sharded["scored"] == single["scored"] > 0
    assert sharded["pushed"] == single["pushed"] > 0
    pd.testing.assert_frame_equal(_scores(engine_a), _scores(engine_b))
    compared = {k for props in crm_a.values() for k in props if k.startswith("leadflow_")} - {"leadflow_scored_at"}
    assert "leadflow_score" in compared
    for contact_id, props in crm_a.items():
        for key in sorted(compared) + ["lifecyclestage", "hs_lead_status"]:
            assert crm_b[contact_id].get(key) == props.get(key), (contact_id, key)
