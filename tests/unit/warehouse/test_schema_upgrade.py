"""A warehouse made by an earlier version gets the nullable columns added since, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from leadflow.warehouse.db import ensure_schema


def test_given_a_leads_table_without_the_raw_value_columns_then_ensure_schema_adds_them(warehouse):
    with warehouse.begin() as conn:
        conn.execute(text('ALTER TABLE leads DROP COLUMN crm_raw_lead_status'))
        conn.execute(text("INSERT INTO leads (crm, record_id, pulled_at, pull_run_id, shard_key) "
                          "VALUES ('hubspot', '1', 1, 'old', 0)"))
    ensure_schema(warehouse)
    assert "crm_raw_lead_status" in {c["name"] for c in inspect(warehouse).get_columns("leads")}
    with warehouse.connect() as conn:  # rows kept, the new column empty until the next pull
        assert conn.execute(text("SELECT record_id, crm_raw_lead_status FROM leads")).all() == [("1", None)]
    ensure_schema(warehouse)  # idempotent


def test_given_a_missing_required_column_then_the_error_names_table_and_column(sqlite_warehouse):
    with sqlite_warehouse.begin() as conn:
        conn.execute(text("ALTER TABLE push_overrides DROP COLUMN seen_at"))
    with pytest.raises(RuntimeError, match="push_overrides.*seen_at"):
        ensure_schema(sqlite_warehouse)
