"""Overrides are recorded once per decision and counted every run."""

from __future__ import annotations

import pandas as pd

from leadflow.push.diff import OVERRIDE_COLUMNS
from leadflow.push.overrides import count_overrides, overrides_frame_rows, record_overrides, standing_overrides


def test_given_a_standing_override_then_it_is_not_recorded_again(sqlite_warehouse):
    frame = pd.DataFrame([["1", "lead_status", "in_progress", "open", None, True],
                          ["2", "lead_status", "unqualified", "open", "open", False]], columns=OVERRIDE_COLUMNS)
    rows = overrides_frame_rows(frame)
    assert [r["record_id"] for r in rows] == ["2"]
    with sqlite_warehouse.begin() as conn:
        record_overrides(conn, "hubspot", "r2", rows, seen_at=5)
    assert count_overrides(sqlite_warehouse, "hubspot", "r2") == 1
    assert standing_overrides(sqlite_warehouse, "hubspot") == {("2", "lead_status"): "unqualified"}
