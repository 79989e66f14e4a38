"""Leads the CRM archived, deleted or merged away leave the population in the run that sees it."""

from __future__ import annotations

from leadflow.pulled import RemovedRecord
from leadflow.warehouse import repo


def _land(engine, ids):
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", [{"record_id": i, "email": f"{i}@x.test"} for i in ids], [], [])


def test_given_deleted_and_merged_leads_then_they_leave_the_population_with_the_survivor_kept(warehouse):
    _land(warehouse, ["1", "2", "3"])
    with warehouse.begin() as conn:
        counts = repo.mark_removed(conn, "hubspot", [RemovedRecord("1"), RemovedRecord("2", merged_into="3"),
                                                     RemovedRecord("404")])
    assert counts == {"deleted": 1, "merged": 1}  # an unknown id counts nowhere
    assert list(repo.load_leads(warehouse, "hubspot")["record_id"]) == ["3"]
    everyone = repo.load_leads(warehouse, "hubspot", include_deleted=True).set_index("record_id")
    assert everyone.loc["2", "merged_into"] == "3" and bool(everyone.loc["1", "is_deleted"])


def test_given_a_removal_seen_twice_then_it_is_counted_once(sqlite_warehouse):
    _land(sqlite_warehouse, ["1"])
    for expected in ({"deleted": 1, "merged": 0}, {"deleted": 0, "merged": 0}):
        with sqlite_warehouse.begin() as conn:
            assert repo.mark_removed(conn, "hubspot", [RemovedRecord("1")]) == expected
