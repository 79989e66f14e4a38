"""Keyset windowing over search: nothing lost, nothing duplicated, safe watermarks, cap respected."""

from __future__ import annotations

import bisect
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.crm.base import CrmError
from leadflow.crm.hubspot_window import id_key, iter_pages
from leadflow.pulled import Watermark

CURSOR = "lastmodifieddate"


class FakeSearch:
    """In-memory HubSpot search: filters, one sort, limit, `after` offsets and the result cap.

    Ties on the cursor come back in an arbitrary (shuffled but stable) order, as nothing in
    HubSpot's documentation promises an order among equal timestamps.
    """

    def __init__(self, records: list[tuple[int, int]], cap: int = 10_000, seed: int = 0) -> None:
        rng = random.Random(seed)
        rows = [{"id": str(i), "properties": {CURSOR: str(ts), "hs_object_id": str(i)}} for i, ts in records]
        # Pre-sorted views so 100+ queries over 25,000 records stay fast.
        self.by_cursor = sorted(rows, key=lambda r: (int(r["properties"][CURSOR]), rng.random()))
        self.cursor_keys = [int(r["properties"][CURSOR]) for r in self.by_cursor]
        self.groups: dict[int, list[dict[str, Any]]] = {}
        for row in sorted(rows, key=lambda r: int(r["id"])):
            self.groups.setdefault(int(row["properties"][CURSOR]), []).append(row)
        self.group_ids = {ts: [int(r["id"]) for r in group] for ts, group in self.groups.items()}
        self.cap = cap
        self.calls: list[tuple[list[dict[str, Any]], str, int]] = []

    def __call__(self, filters: list[dict[str, Any]], sort: str, limit: int, after: int = 0) -> list[dict[str, Any]]:
        if after + limit > self.cap:
            raise AssertionError(f"400: paging past {self.cap} results")
        self.calls.append((filters, sort, limit))
        ops = {(f["propertyName"], f["operator"]): int(f["value"]) for f in filters}
        if sort == CURSOR:
            assert set(ops) <= {(CURSOR, "GTE"), (CURSOR, "GT")}, ops
            start = 0
            if (CURSOR, "GTE") in ops:
                start = bisect.bisect_left(self.cursor_keys, ops[(CURSOR, "GTE")])
            if (CURSOR, "GT") in ops:
                start = bisect.bisect_right(self.cursor_keys, ops[(CURSOR, "GT")])
            hits = self.by_cursor[start:]
        else:
            assert sort == "hs_object_id" and set(ops) <= {(CURSOR, "EQ"), ("hs_object_id", "GT")}, ops
            group = self.groups.get(ops[(CURSOR, "EQ")], [])
            ids = self.group_ids.get(ops[(CURSOR, "EQ")], [])
            hits = group[bisect.bisect_right(ids, ops.get(("hs_object_id", "GT"), -1)):]
        return hits[after : after + limit]


def cursor_of(record: dict[str, Any]) -> int:
    return int(record["properties"][CURSOR])


def pull_all(search: FakeSearch, since: Watermark | None = None, limit: int = 200, **kwargs: Any):
    pages = list(iter_pages(search, since, cursor_of=cursor_of, limit=limit, **kwargs))
    ids = [r["id"] for p in pages for r in p.records]
    return pages, ids


def test_given_25000_records_sharing_one_timestamp_then_all_pulled_once_within_the_cap() -> None:
    search = FakeSearch([(i, 1_700_000_000_000) for i in range(1, 25_001)], cap=10_000)
    pages, ids = pull_all(search)
    assert len(ids) == 25_000
    assert len(set(ids)) == 25_000
    # One range query discovers the group, then it is walked by id, 200 at a time.
    assert len(search.calls) <= 25_000 // 200 + 3
    assert {p.query for p in pages} == {"range", "tie"}
    assert pages[-1].watermark.modified_ms == 1_700_000_000_000


def test_given_more_than_the_cap_spread_over_time_then_all_pulled_once() -> None:
    rng = random.Random(3)
    records = [(i, 1_000_000 + rng.randrange(0, 3_000)) for i in range(1, 12_001)]
    search = FakeSearch(records, cap=10_000)
    _, ids = pull_all(search)
    assert sorted(ids, key=id_key) == [str(i) for i in range(1, 12_001)]


def test_given_since_then_only_records_at_or_after_it_are_pulled() -> None:
    search = FakeSearch([(1, 10), (2, 20), (3, 20), (4, 30)])
    _, ids = pull_all(search, Watermark(modified_ms=20))
    assert sorted(ids) == ["2", "3", "4"]
    assert search.calls[0][0] == [{"propertyName": CURSOR, "operator": "GTE", "value": "20"}]


def test_given_since_with_last_id_then_resumes_inside_the_group() -> None:
    search = FakeSearch([(1, 10), (2, 20), (3, 20), (4, 20), (5, 30)])
    _, ids = pull_all(search, Watermark(modified_ms=20, last_id="3"))
    assert sorted(ids) == ["4", "5"]


def test_given_no_records_then_no_pages() -> None:
    assert pull_all(FakeSearch([]))[0] == []


def test_watermark_is_capped_by_max_watermark_and_never_below_since() -> None:
    search = FakeSearch([(1, 100), (2, 500), (3, 900)])
    pages, _ = pull_all(search, Watermark(modified_ms=50), limit=2, max_watermark_ms=400)
    assert [p.watermark.modified_ms for p in pages][-1] == 400
    assert all(50 <= p.watermark.modified_ms <= 400 for p in pages)


def test_given_search_ignoring_filters_then_raises_instead_of_looping() -> None:
    def broken(filters, sort, limit):
        return [{"id": str(i), "properties": {CURSOR: "5"}} for i in range(limit)]

    with pytest.raises(CrmError, match="no progress"):
        list(iter_pages(broken, None, cursor_of=cursor_of, limit=10))


def _check_watermarks(pages, records: list[tuple[int, int]], since_ms: int | None) -> None:
    """After each page, everything before its watermark must already have been yielded."""
    yielded: set[str] = set()
    for page in pages:
        yielded.update(r["id"] for r in page.records)
        wm = page.watermark
        for rid, ts in records:
            if since_ms is not None and ts < since_ms:
                continue
            covered = ts < wm.modified_ms or (
                wm.last_id is not None and ts == wm.modified_ms and id_key(str(rid)) <= id_key(wm.last_id)
            )
            if covered:
                assert str(rid) in yielded, (rid, ts, wm)


@settings(max_examples=150, deadline=None)
@given(
    timestamps=st.lists(st.integers(min_value=0, max_value=12), min_size=0, max_size=80),
    limit=st.integers(min_value=2, max_value=9),
    since=st.none() | st.integers(min_value=0, max_value=12),
    seed=st.integers(min_value=0, max_value=1000),
)
def test_property_every_record_exactly_once_and_watermarks_safe(timestamps, limit, since, seed) -> None:
    records = [(i + 1, ts) for i, ts in enumerate(timestamps)]
    search = FakeSearch(records, cap=3 * limit, seed=seed)  # a tiny cap: any offset paging would break
    since_wm = Watermark(modified_ms=since) if since is not None else None
    pages, ids = pull_all(search, since_wm, limit=limit)
    expected = sorted(str(i) for i, ts in records if since is None or ts >= since)
    assert sorted(ids) == expected
    assert len(ids) == len(set(ids))
    _check_watermarks(pages, records, since)


@settings(max_examples=60, deadline=None)
@given(
    timestamps=st.lists(st.integers(min_value=0, max_value=6), min_size=1, max_size=60),
    limit=st.integers(min_value=2, max_value=6),
    stop_after=st.integers(min_value=0, max_value=10),
)
def test_property_interrupted_pull_resumed_from_its_watermark_loses_nothing(timestamps, limit, stop_after) -> None:
    records = [(i + 1, ts) for i, ts in enumerate(timestamps)]
    search = FakeSearch(records, cap=10_000)
    first = []
    watermark = None
    for n, page in enumerate(iter_pages(search, None, cursor_of=cursor_of, limit=limit)):
        if n >= stop_after:
            break
        first.extend(r["id"] for r in page.records)
        watermark = page.watermark  # committed together with the page
    _, second = pull_all(search, watermark, limit=limit)
    assert set(first) | set(second) == {str(i) for i, _ in records}
