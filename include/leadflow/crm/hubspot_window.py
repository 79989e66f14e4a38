"""Incremental paging over HubSpot's search API without losing or repeating records (pure logic).

HubSpot's search returns at most 10,000 results per query (paging past that is a 400), allows
one sort, and pages by an *offset* (`after`). Offsets are also fragile: a record modified while
we page leaves its place in the sorted result set and every later record shifts down by one,
so the next offset skips a record we never saw.

So this module never pages by offset. Every page is a fresh query that starts at the last
timestamp seen (keyset paging), which can never reach the cap:

* range step: `cursor >= T` (or `> T`), sorted by cursor ascending, first `limit` results.
  Records at T that were already yielded are skipped (only the ids seen *at T* are remembered).
* tie step: when one timestamp fills most of a page (bulk updates give thousands of records the
  same `lastmodifieddate`), the group at T is walked by id:
  `cursor == T AND hs_object_id > last_id`, sorted by id ascending; then the range continues
  with `cursor > T`.

Each page carries a watermark that is safe to store once the page is committed: every record
strictly before `modified_ms` (and, when `last_id` is set, every record at `modified_ms` with an
id up to `last_id`) has been yielded. The next run starts there; re-reading the few records at
the boundary is harmless because upserts are idempotent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from leadflow.crm.base import CrmError
from leadflow.pulled import Watermark

log = logging.getLogger(__name__)

# search(filters, sort_property, limit) -> records in the requested order
SearchFn = Callable[[list[dict[str, Any]], str, int], Sequence[Mapping[str, Any]]]
CursorFn = Callable[[Mapping[str, Any]], "int | None"]


@dataclass
class WindowPage:
    records: list[Mapping[str, Any]]
    watermark: Watermark
    query: str  # "range" or "tie", for logs and tests


def id_key(record_id: str) -> tuple[int, Any]:
    """Sort key matching HubSpot's numeric ordering of hs_object_id."""
    return (0, int(record_id)) if record_id.isdigit() else (1, record_id)


def iter_pages(
    search: SearchFn,
    since: Watermark | None,
    *,
    cursor_of: CursorFn,
    cursor_property: str = "lastmodifieddate",
    id_property: str = "hs_object_id",
    limit: int = 200,
    max_watermark_ms: int | None = None,
) -> Iterator[WindowPage]:
    """Yield every record modified at/after `since` exactly once, in cursor order.

    `cursor_of(record)` returns a record's cursor value in epoch ms. `max_watermark_ms` caps the
    watermarks (the search index lags writes: records modified just before the pull may not be
    visible yet, so the next run must look again from a little before the pull started).
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    floor = since.modified_ms if since else None
    t: int | None = since.modified_ms if since else None
    seen_at_t: set[str] = set()
    tie_last_id: str | None = None
    mode = "range"
    strict = False
    if since is not None and since.last_id:
        mode, tie_last_id = "tie", since.last_id
    last_yielded: Watermark | None = since

    def cap(wm: Watermark) -> Watermark:
        if max_watermark_ms is not None and wm.modified_ms > max_watermark_ms:
            wm = Watermark(modified_ms=max_watermark_ms)
        if floor is not None and wm.modified_ms < floor:
            wm = Watermark(modified_ms=floor)
        return wm

    while True:
        if mode == "range":
            filters = []
            if t is not None:
                filters.append({"propertyName": cursor_property, "operator": "GT" if strict else "GTE", "value": str(t)})
            results = list(search(filters, cursor_property, limit))
            if not results:
                return
            fresh: list[Mapping[str, Any]] = []
            last_t = t
            for record in results:
                rid = str(record["id"])
                cur = cursor_of(record)
                if cur is None:
                    # Matched the filter server-side; without a value it cannot move the window.
                    fresh.append(record)
                    continue
                if cur == last_t:
                    if rid in seen_at_t:
                        continue
                    seen_at_t.add(rid)
                elif last_t is None or cur > last_t:
                    last_t, seen_at_t = cur, {rid}
                fresh.append(record)
            if last_t is None:
                raise CrmError(f"HubSpot search results carry no {cursor_property}: cannot page incrementally")
            at_t = sum(1 for r in results if cursor_of(r) == last_t)
            if t is not None and last_t == t and at_t < len(results):
                # Only possible when results ignore the filter or the sort; never loop on that.
                raise CrmError("HubSpot search made no progress (results not filtered/sorted by the cursor?)")
            t, strict = last_t, False
            wm = cap(Watermark(modified_ms=t))
            if fresh or wm != last_yielded:
                yield WindowPage(fresh, wm, "range")
                last_yielded = wm
            if len(results) < limit:
                return
            if at_t * 2 > limit:
                mode, tie_last_id = "tie", None
                log.info("%d records share one %s; walking them by id", at_t, cursor_property)
        else:
            assert t is not None
            filters = [{"propertyName": cursor_property, "operator": "EQ", "value": str(t)}]
            if tie_last_id is not None:
                filters.append({"propertyName": id_property, "operator": "GT", "value": tie_last_id})
            results = list(search(filters, id_property, limit))
            fresh = [r for r in results if str(r["id"]) not in seen_at_t]
            if results:
                new_last = str(results[-1]["id"])
                if tie_last_id is not None and id_key(new_last) <= id_key(tie_last_id):
                    raise CrmError("HubSpot search made no progress walking ids (results not sorted by id?)")
                tie_last_id = new_last
            wm = cap(Watermark(modified_ms=t, last_id=tie_last_id))
            if fresh or wm != last_yielded:
                yield WindowPage(fresh, wm, "tie")
                last_yielded = wm
            if len(results) < limit:
                # Group at T complete: continue strictly after it.
                mode, strict, seen_at_t, tie_last_id = "range", True, set(), None
