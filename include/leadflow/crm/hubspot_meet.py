"""A full pull from both ends at once: the list endpoint from the lowest id up, and a search from
the highest id down, until they meet (pure logic; the HTTP calls are the caller's).

One cursor waits for each answer before it can ask for the next page. A portal answers in about
100-300 ms, so one list cursor makes 3-10 calls a second against the 10-19 its general limit
allows, and one search cursor about the 5 a second its own limit allows. Paging from both ends
spends both limits at once: their rates add up.

- The list pages by its own `after` cursor, in id order (the only order it has).
- The search pages by keyset, never by offset: `hs_object_id < lowest id seen`, sorted by id
  descending, so it never reaches the 10,000-result cap.
- Each side stops once it has passed the other's front. The pages the two had in flight when
  they met may overlap.

Exactly once: each side yields ids contiguously from its own end. A listed record at or above
the lowest id the search has yielded was yielded by the search already, and a searched record at
or below the highest id the list has yielded was yielded by the list. Those are dropped.

Contacts created during the pull above the search's first page are not in it; the caller's
watermark (the pull's start) brings them in on the next run.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator, Mapping

from leadflow.prefetch import interleaved

Record = Mapping[str, Any]
# after cursor (None: the first page) -> (records in id order, the next page's cursor or None)
ListPage = Callable[["str | None"], "tuple[list[Record], str | None]"]
# below (exclusive; None: from the highest id) -> records in descending id order, none at the end
SearchBelow = Callable[["int | None"], "list[Record]"]


def record_id(record: Record) -> int:
    return int(record["id"])


class _Fronts:
    """How far each side has fetched: the highest id listed and the lowest id searched."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.listed: int | None = None
        self.searched: int | None = None

    def list_reached(self, highest: int) -> None:
        with self._lock:
            self.listed = highest if self.listed is None else max(self.listed, highest)

    def search_reached(self, lowest: int) -> None:
        with self._lock:
            self.searched = lowest if self.searched is None else min(self.searched, lowest)

    def met(self) -> bool:
        with self._lock:
            return self.listed is not None and self.searched is not None and self.listed >= self.searched


def from_both_ends(list_page: ListPage, search_below: SearchBelow, *, depth: int = 2,
                   name: str = "leadflow-pull-both") -> Iterator[tuple[str, list[Record]]]:
    """("list" or "search", records new to this pull) per page of either side, as they come."""
    fronts = _Fronts()

    def listing() -> Iterator[list[Record]]:
        after: str | None = None
        while True:
            records, after = list_page(after)
            if records:
                fronts.list_reached(max(map(record_id, records)))
            yield records
            if not after or fronts.met():
                return

    def searching() -> Iterator[list[Record]]:
        below: int | None = None
        while not fronts.met():
            records = search_below(below)
            if not records:
                return
            below = min(map(record_id, records))
            fronts.search_reached(below)
            yield records

    listed_to: int | None = None  # every id up to here has been yielded (from the list)
    searched_to: int | None = None  # every id from here up has been yielded (from the search)
    for source, records in interleaved([listing(), searching()], depth, name=name):
        if not records:
            continue
        ids = [record_id(r) for r in records]
        if source == 0:
            fresh = [r for r, i in zip(records, ids) if searched_to is None or i < searched_to]
            listed_to = max(ids) if listed_to is None else max(listed_to, max(ids))
        else:
            fresh = [r for r, i in zip(records, ids) if listed_to is None or i > listed_to]
            searched_to = min(ids) if searched_to is None else min(searched_to, min(ids))
        if fresh:
            yield ("list" if source == 0 else "search"), fresh
