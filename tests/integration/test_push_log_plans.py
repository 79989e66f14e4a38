"""The push's bookkeeping statements on PostgreSQL use the primary key and the record index once
the push has logged its first entries, also when the table had never been analysed (autovacuum
analyses a table about once a minute; a push logs tens of thousands of entries a minute)."""

from __future__ import annotations

import pytest
from sqlalchemy import text, update

from leadflow.push.writer import _entries_still, _Ledger, _log_row, _logged_ids
from leadflow.warehouse.db import ensure_schema, get_engine
from leadflow.warehouse.tables import push_log

pytestmark = pytest.mark.postgres

ENTRIES = 60_000
FIELDS = ("score", "grade", "fit_score", "engagement_score", "reasons", "stage")


def _plan(conn, statement) -> str:
    compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
    return "\n".join(row[0] for row in conn.execute(text(f"EXPLAIN {compiled}")))


@pytest.fixture
def lagging_statistics(new_pg_database):
    """A push log given 60,000 pending entries of one run, never analysed, then a group of entries
    logged by the push (`_Ledger.log`) and the statistics it refreshes before recording answers
    (`_Ledger.analyse`)."""
    engine = get_engine(new_pg_database())
    ensure_schema(engine)

    def entries(run_id: str, status: str, start: int, count: int) -> list[dict]:
        return [{"run_id": run_id, "crm": "hubspot", "record_id": str((start + n) // len(FIELDS)),
                 "field": FIELDS[n % len(FIELDS)], "before": None, "after": "1", "model_version": "v1",
                 "status": status, "attempts": 0, "error": None, "created_at": 0, "updated_at": 0}
                for n in range(count)]

    with engine.begin() as conn:
        conn.execute(push_log.insert(), entries("now", "pending", 0, ENTRIES))
    # the push's first group of entries logged: records past those above
    first = ENTRIES // len(FIELDS)
    ledger = _Ledger(engine, [(str(first + n), f, None, "1", 0) for n in range(800) for f in FIELDS],
                     lambda item, status: _log_row("now", "hubspot", "v1", 0, item, status))
    ledger.log(str(first + n) for n in range(800))
    ledger.analyse()
    assert len(ledger.by_field) == 800 * len(FIELDS)
    yield engine
    engine.dispose()


def test_given_lagging_statistics_then_answers_are_recorded_by_primary_key(lagging_statistics):
    with lagging_statistics.connect() as conn:
        ids = [row[0] for row in conn.execute(text("SELECT id FROM push_log WHERE run_id = 'now' LIMIT 500"))]
        plan = _plan(conn, update(push_log).where(_entries_still(ids, ("pending", "superseded")))
                     .values(status="confirmed"))
    assert "push_log_pkey" in plan and "ix_push_log_status" not in plan and "ix_push_log_run" not in plan, plan


def test_given_lagging_statistics_then_logged_ids_are_read_back_by_record(lagging_statistics):
    records = [str(n) for n in range(5_000, 5_500)]
    with lagging_statistics.connect() as conn:
        plan = _plan(conn, _logged_ids("hubspot", "now", records, highest=0))
        found = conn.execute(_logged_ids("hubspot", "now", records, highest=0)).all()
    assert "ix_push_log_record" in plan and "ix_push_log_run" not in plan and "ix_push_log_status" not in plan, plan
    assert len(found) == len(records) * len(FIELDS)
