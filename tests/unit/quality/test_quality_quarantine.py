"""The quarantine table on SQLite and PostgreSQL: enter, refresh, leave, re-enter."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from quality_helpers import NOW

from leadflow.quality.quarantine import (
    quarantine_count,
    quarantine_entries,
    quarantined_ids,
    top_quarantine_reasons,
    update_quarantine,
)


def _failures(*rows: tuple[str, str, str, object]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"crm": "hubspot", "record_id": r, "expectation": e, "column": c, "value": v}
         for r, e, c, v in rows],
        columns=["crm", "record_id", "expectation", "column", "value"],
    )


def test_failing_records_enter_quarantine_with_their_reason(warehouse):
    failures = _failures(("1", "email_syntax", "email", "nope"), ("2", "number_range", "employees", -1.0))
    counts = update_quarantine(warehouse, "hubspot", "run-1", failures, ["3"], NOW)
    assert counts == {"quarantined": 2, "released": 0, "active": 2}
    entries = quarantine_entries(warehouse, "hubspot")
    assert entries[["record_id", "expectation", "column", "value", "run_id"]].values.tolist() == [
        ["1", "email_syntax", "email", "nope", "run-1"],
        ["2", "number_range", "employees", "-1.0", "run-1"],
    ]
    assert (entries["first_seen"] == int(NOW.timestamp() * 1000)).all()
    assert quarantined_ids(warehouse, "hubspot") == {"1", "2"}
    assert quarantined_ids(warehouse, "salesforce") == set()


def test_a_record_that_passes_later_leaves_quarantine_with_an_audit_trail(warehouse):
    update_quarantine(warehouse, "hubspot", "run-1", _failures(("1", "required", "email", None)), [], NOW)
    later = NOW + timedelta(days=1)
    counts = update_quarantine(warehouse, "hubspot", "run-2", _failures(), ["1"], later)
    assert counts == {"quarantined": 0, "released": 1, "active": 0}
    assert quarantine_count(warehouse, "hubspot") == 0
    history = quarantine_entries(warehouse, "hubspot", include_released=True)
    assert history["released_run_id"].tolist() == ["run-2"]
    assert int(history["released_at"].iloc[0]) == int(later.timestamp() * 1000)


def test_repeat_failures_refresh_last_seen_and_keep_first_seen(warehouse):
    failures = _failures(("1", "email_syntax", "email", "a"))
    update_quarantine(warehouse, "hubspot", "run-1", failures, [], NOW)
    later = NOW + timedelta(hours=6)
    update_quarantine(warehouse, "hubspot", "run-2", _failures(("1", "email_syntax", "email", "b")), [], later)
    entry = quarantine_entries(warehouse, "hubspot").iloc[0]
    assert entry["first_seen"] == int(NOW.timestamp() * 1000)
    assert entry["last_seen"] == int(later.timestamp() * 1000)
    assert (entry["run_id"], entry["value"]) == ("run-2", "b")


def test_a_fixed_reason_is_released_while_another_stays(warehouse):
    both = _failures(("1", "email_syntax", "email", "a"), ("1", "number_range", "visits", -2))
    update_quarantine(warehouse, "hubspot", "run-1", both, [], NOW)
    update_quarantine(warehouse, "hubspot", "run-2", both.iloc[[1]], [], NOW + timedelta(hours=1))
    assert top_quarantine_reasons(warehouse, "hubspot", 5) == [
        {"expectation": "number_range", "column": "visits", "records": 1}]


def test_records_missing_from_an_incremental_batch_stay_quarantined(warehouse):
    update_quarantine(warehouse, "hubspot", "run-1", _failures(("1", "required", "email", None)), [], NOW)
    update_quarantine(warehouse, "hubspot", "run-2", _failures(), ["2", "3"], NOW + timedelta(hours=1))
    assert quarantined_ids(warehouse, "hubspot") == {"1"}


def test_a_released_record_that_fails_again_starts_a_new_episode(warehouse):
    failure = _failures(("1", "required", "email", None))
    update_quarantine(warehouse, "hubspot", "run-1", failure, [], NOW)
    update_quarantine(warehouse, "hubspot", "run-2", _failures(), ["1"], NOW + timedelta(days=1))
    again = NOW + timedelta(days=2)
    update_quarantine(warehouse, "hubspot", "run-3", failure, [], again)
    entry = quarantine_entries(warehouse, "hubspot").iloc[0]
    assert entry["first_seen"] == int(again.timestamp() * 1000)
    assert pd.isna(entry["released_at"])


def test_rerunning_the_same_run_is_idempotent(warehouse):
    failures = _failures(("1", "required", "email", None))
    first = update_quarantine(warehouse, "hubspot", "run-1", failures, ["2"], NOW)
    second = update_quarantine(warehouse, "hubspot", "run-1", failures, ["2"], NOW)
    assert first == second
    assert len(quarantine_entries(warehouse, "hubspot", include_released=True)) == 1


def test_large_batches_stay_under_the_bound_parameter_limit(warehouse):
    n = 4_000  # 4,000 rows x 10 columns would exceed SQLite's 32,766 parameters in one statement
    failures = _failures(*[(str(i), "number_range", "visits", -1) for i in range(n)])
    assert update_quarantine(warehouse, "hubspot", "run-1", failures, [], NOW)["active"] == n
    counts = update_quarantine(warehouse, "hubspot", "run-2", _failures(), [str(i) for i in range(n)],
                               NOW + timedelta(hours=1))
    assert counts["released"] == n and counts["active"] == 0
