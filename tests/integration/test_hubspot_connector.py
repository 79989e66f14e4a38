"""HubSpotConnector against the real sandbox (FastAPI over loopback HTTP).

Each test starts its own small sandbox so fault settings and writes never leak between tests.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest
import requests

from leadflow.connections import Connection
from leadflow.crm.base import CrmAuthError, CrmBudgetExhausted, RecordUpdate
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.pulled import Watermark
from leadflow.sandbox.server import running_sandbox


class NoSleep:
    """Clock + sleeper that advance virtual time: retries and pacing cost no wall time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def connect(sandbox: Any, *, token: str | None = None, fake_time: NoSleep | None = None, **extra: Any) -> HubSpotConnector:
    conn = Connection("leadflow_hubspot", host="127.0.0.1", port=sandbox.port, schema="http",
                      password=token or sandbox.token, extra=extra)
    kwargs: dict[str, Any] = {"rng": random.Random(1)}
    if fake_time is not None:
        kwargs.update(clock=fake_time, sleeper=fake_time.sleep)
    return HubSpotConnector.from_connection(conn, **kwargs)


def pull_ids(connector: HubSpotConnector, since: Watermark | None = None) -> list[str]:
    return [lead["record_id"] for page in connector.pull(since) for lead in page.leads]


def sandbox_stats(sandbox: Any) -> dict[str, Any]:
    response = requests.get(f"{sandbox.base_url}/_sandbox/stats", headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=5)
    response.raise_for_status()
    return response.json()


def test_given_429_bursts_then_pull_retries_and_succeeds() -> None:
    with running_sandbox(contacts=300, seed=3, faults="429=0.3", fault_seed=2,
                         rate_limit="off", search_rate_limit="off") as sandbox:
        fake_time = NoSleep()
        with connect(sandbox, fake_time=fake_time) as connector:
            ids = pull_ids(connector)
        assert len(ids) == len(set(ids)) == 300
        assert connector.stats.rate_limited > 0
        assert connector.stats.retries == connector.stats.rate_limited
        assert fake_time.slept >= connector.stats.rate_limited * 1.0  # each 429 waited its policy's floor


def test_given_wrong_token_then_fails_fast_with_actionable_message() -> None:
    with running_sandbox(contacts=20, seed=3) as sandbox:
        with connect(sandbox, token="pat-wrong-token") as connector:
            with pytest.raises(CrmAuthError) as info:
                pull_ids(connector)
        message = str(info.value)
        assert "HubSpot rejected the token (401)" in message and "leadflow_hubspot" in message
        assert "pat-wrong-token" not in message
        assert connector.stats.requests == 1


def test_given_daily_limit_spent_then_budget_exhausted_without_waiting() -> None:
    with running_sandbox(contacts=50, seed=3, daily_limit=3) as sandbox:
        fake_time = NoSleep()
        with connect(sandbox, fake_time=fake_time, page_size=10) as connector:
            with pytest.raises(CrmBudgetExhausted):
                pull_ids(connector)
        assert connector.stats.retries == 0


@pytest.mark.slow
def test_given_25000_contacts_sharing_one_timestamp_then_all_pulled_once() -> None:
    with running_sandbox(contacts=25_000, seed=4, shared_timestamp_every=25_000,
                         rate_limit="off", search_rate_limit="off") as sandbox:
        with connect(sandbox, search_rate_per_s=1000, rate_limit_per_10s=100_000) as connector:
            pages = list(connector.pull(None))
        ids = [lead["record_id"] for page in pages for lead in page.leads]
        assert len(ids) == 25_000
        assert len(set(ids)) == 25_000
        assert len({lead["updated_at"] for page in pages for lead in page.leads}) == 1
        # Never paged past HubSpot's 10,000-result cap: the sandbox would have answered 400.
        status = sandbox_stats(sandbox)["byStatus"]
        assert set(status) == {"200"}, status


def test_ensure_schema_then_push_is_visible_on_read_and_on_the_next_pull() -> None:
    with running_sandbox(contacts=120, seed=5) as sandbox:
        with connect(sandbox) as connector:
            connector.ensure_schema()
            assert connector.stage_options()[:4] == ["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead"]
            first = list(connector.pull(None))
            lead = first[0].leads[0]
            rid = lead["record_id"]
            assert lead["crm_score"] is None
            scored_at = int(time.time() * 1000) // 1000 * 1000
            values = {"score": 73.5, "grade": "A2", "reasons": "+15 title is VP; -5 free mail", "bant_count": 3,
                      "model_version": "v1", "scored_at": scored_at, "lead_status": "in_progress"}
            [result] = connector.push([RecordUpdate(rid, values)])
            assert result.status == "confirmed"
            [row] = connector.read([rid])
            for field in ("score", "grade", "reasons", "bant_count", "model_version", "scored_at"):
                assert row[field] == connector.format_value(field, values[field]), field
            assert row["lead_status"] == "in_progress"
            again = {l["record_id"]: l for page in connector.pull(first[-1].watermark) for l in page.leads}
        assert again[rid]["crm_score"] == "73.5" and again[rid]["crm_grade"] == "A2"


def test_given_partial_batch_failures_then_207_is_mapped_per_record() -> None:
    with running_sandbox(contacts=60, seed=6, faults="partial=1", fault_seed=2) as sandbox:
        with connect(sandbox) as connector:
            connector.ensure_schema()
            ids = [str(i) for i in range(1, 21)]
            results = connector.push([RecordUpdate(i, {"score": 10}) for i in ids])
            assert [r.record_id for r in results] == ids
            statuses = {r.status for r in results}
            assert statuses == {"confirmed", "retryable"}
            assert all(r.category == "LOCKED" for r in results if r.status == "retryable")
            current = {row["record_id"]: row["score"] for row in connector.read(ids)}
        for r in results:
            assert (current[r.record_id] == "10") == (r.status == "confirmed")


def test_given_invalid_records_then_they_are_rejected_with_the_crm_message() -> None:
    with running_sandbox(contacts=60, seed=6, faults="invalid=1", fault_seed=3) as sandbox:
        with connect(sandbox) as connector:
            connector.ensure_schema()
            results = connector.push([RecordUpdate(str(i), {"score": 5}) for i in range(1, 11)])
        rejected = [r for r in results if r.status == "rejected"]
        assert rejected and all(r.category == "VALIDATION_ERROR" and r.error for r in rejected)
        assert {r.status for r in results} <= {"confirmed", "rejected"}


def test_given_write_timeout_then_every_record_unknown_and_read_back_decides() -> None:
    async def held(seconds: float) -> None:
        await asyncio.sleep(1.0)  # the sandbox holds its answer; the client gives up first

    with running_sandbox(contacts=30, seed=7, sleep=held) as sandbox:
        with connect(sandbox, read_timeout_s=0.3) as connector:
            connector.ensure_schema()
            requests.post(f"{sandbox.base_url}/_sandbox/faults", json={"spec": "timeout=1", "seed": 1},
                          headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=5).raise_for_status()
            results = connector.push([RecordUpdate("1", {"score": 99}), RecordUpdate("2", {"score": 98})])
            assert [r.status for r in results] == ["unknown", "unknown"]
            assert connector.stats.retries == 0
            requests.post(f"{sandbox.base_url}/_sandbox/faults", json={"spec": "off"},
                          headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=5).raise_for_status()
            rows = {r["record_id"]: r["score"] for r in connector.read(["1", "2"])}
        assert rows == {"1": "99", "2": "98"}  # applied: read-back turns "unknown" into confirmed


def test_backward_stage_is_refused_unless_allowed_then_cleared_and_set() -> None:
    with running_sandbox(contacts=40, seed=8) as sandbox:
        with connect(sandbox) as connector:
            connector.ensure_schema()
            [r] = connector.push([RecordUpdate("3", {"lifecycle_stage": "sql"}, current_stage=None)])
            assert r.status == "confirmed"
            assert connector.read(["3"])[0]["lifecycle_stage"] == "sql"
            [r] = connector.push([RecordUpdate("3", {"lifecycle_stage": "lead"}, current_stage="sql")])
            assert (r.status, r.category) == ("rejected", "BACKWARD_STAGE")
            assert connector.read(["3"])[0]["lifecycle_stage"] == "sql"
            [r] = connector.push([RecordUpdate("3", {"lifecycle_stage": "lead"}, current_stage="sql",
                                               allow_backward=True)])
            assert r.status == "confirmed"
            assert connector.read(["3"])[0]["lifecycle_stage"] == "lead"


@pytest.mark.slow
def test_search_runs_close_to_but_under_the_rolling_one_second_ceiling() -> None:
    # Default sandbox limits: search 5 per rolling second, 100 per rolling 10 s.
    with running_sandbox(contacts=300, seed=9) as sandbox:
        with connect(sandbox, page_size=10, full_pull="search") as connector:
            start = time.monotonic()
            ids = pull_ids(connector)
            elapsed = time.monotonic() - start
        stats = sandbox_stats(sandbox)
        searches = {k: v for k, v in stats["byEndpointStatus"].items() if "search" in k}
        total = sum(sum(v.values()) for v in searches.values())
        limited = sum(v.get("429", 0) for v in searches.values())
    assert len(set(ids)) == 300
    rate = total / elapsed
    print(f"search: {total} requests in {elapsed:.2f} s = {rate:.2f}/s, {limited} x 429")
    assert rate >= 0.9 * 5
    assert limited / total < 0.01


@pytest.mark.slow
def test_full_pull_lists_contacts_close_to_but_under_the_general_ceiling() -> None:
    # 20 calls per rolling second on the sandbox's general limit, the connector told the same.
    with running_sandbox(contacts=1500, seed=9, rate_limit="40/2") as sandbox:
        with connect(sandbox, list_page_size=10, rate_limit_per_10s=200, full_pull="list") as connector:
            start = time.monotonic()
            ids = pull_ids(connector)
            elapsed = time.monotonic() - start
        stats = sandbox_stats(sandbox)
    by_endpoint = {k: v for k, v in stats["byEndpointStatus"].items() if "/_sandbox" not in k}
    total = sum(sum(v.values()) for v in by_endpoint.values())
    limited = sum(v.get("429", 0) for v in by_endpoint.values())
    listed = sum(by_endpoint.get("GET /crm/v3/objects/contacts", {}).values())
    general = sum(sum(v.values()) for k, v in by_endpoint.items() if "search" not in k)
    assert len(ids) == len(set(ids)) == 1500
    # The companies are searched for, on the search limit the list leaves idle.
    assert listed == 150 and set(k for k in by_endpoint if "search" in k) == {"POST /crm/v3/objects/companies/search"}
    assert not [k for k in by_endpoint if "batch/read" in k]
    rate = listed / elapsed
    print(f"list: {listed} pages in {elapsed:.2f} s = {rate:.2f}/s; {general} general and {total} requests in all, "
          f"{limited} x 429")
    assert rate >= 0.9 * 20
    assert limited / total < 0.01


def _timed_full_pull(sandbox: Any, mode: str) -> tuple[list[str], float]:
    admin = {"Authorization": f"Bearer {sandbox.token}"}
    # the same limits again: empty rolling windows, as on a portal left alone for a while
    requests.post(f"{sandbox.base_url}/_sandbox/rate-limits", json={"rate_limit": "100/10", "search_rate_limit": "5/1"},
                  headers=admin, timeout=5).raise_for_status()
    requests.post(f"{sandbox.base_url}/_sandbox/reset-stats", headers=admin, timeout=5).raise_for_status()
    with connect(sandbox, full_pull=mode) as connector:
        start = time.monotonic()
        ids = pull_ids(connector)
        return ids, time.monotonic() - start


@pytest.mark.slow
def test_given_a_remote_portals_latency_then_a_pull_from_both_ends_beats_one_list_cursor() -> None:
    # HubSpot Starter's limits (10 calls/s general, 5 searches/s) and 150 ms an answer: one list
    # cursor makes about 6 calls a second; the search from the top adds its own limit's pages.
    with running_sandbox(contacts=6_000, seed=5, latency_seconds=0.15) as sandbox:
        both, both_s = _timed_full_pull(sandbox, "both")
        stats = sandbox_stats(sandbox)["byEndpointStatus"]
        listed, listed_s = _timed_full_pull(sandbox, "list")
    assert len(both) == len(set(both)) == 6_000 and set(both) == set(listed)
    assert sum(stats["POST /crm/v3/objects/contacts/search"].values()) > 5
    assert sum(stats["GET /crm/v3/objects/contacts"].values()) > 5
    print(f"from both ends {both_s:.1f} s, one list cursor {listed_s:.1f} s")
    assert both_s < 0.7 * listed_s
