"""Run a page iterator one step ahead of its consumer, on a thread of its own.

A pull alternates two kinds of waiting: for the CRM (a page's round trip and the rate limiter's
spacing) and for the warehouse (landing the page). One after the other, the warehouse's share is
time the portal's rate allowance goes unused, and a pull at the API's ceiling leaves no room for
it. `prefetched` keeps fetching while the caller lands: the producer thread runs the iterator
(all of the connector's HTTP calls happen there), and the caller takes the items in order from
a bounded queue, so at most `depth` fetched items wait in memory.

An exception of the iterator is raised to the caller at the point in the sequence where it
happened, after the items before it. When the caller stops early (an exception of its own, or
`close()`), the producer is told to stop and the iterator is closed on its own thread.

`interleaved` runs several iterators at once the same way, each on its own thread, and yields
their items as they come: a pull that pages through two endpoints with separate rate limits.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_DONE = object()
# How often a producer blocked on a full queue looks whether the consumer has gone.
_POLL_S = 0.1


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetched(items: Iterator[T], depth: int = 2, *, name: str = "leadflow-prefetch") -> Iterator[T]:
    """Yield the items of `items` in order, fetching up to `depth` ahead on another thread.
    `depth` 0 iterates in the caller's thread (no thread at all)."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if depth == 0:
        yield from items
        return
    for _, item in interleaved([items], depth, name=name):
        yield item


def interleaved(sources: Sequence[Iterator[T]], depth: int = 2, *,
                name: str = "leadflow-prefetch") -> Iterator[tuple[int, T]]:
    """(index of its source, item) for every item of `sources`, as they come: each source runs on
    a thread of its own, its items in its order, and at most `depth` fetched items wait in all.
    A source's exception is raised once the items it yielded before it are taken; when the caller
    stops early every source is told to stop and closed on its own thread."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce(index: int, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not put((index, item)):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producers = [threading.Thread(target=produce, args=(index, items), name=f"{name}-{index}" if index else name,
                                  daemon=True)
                 for index, items in enumerate(sources)]
    for producer in producers:
        producer.start()
    running = len(producers)
    try:
        while running:
            item = handoff.get()
            if item is _DONE:
                running -= 1
                continue
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        for producer in producers:
            producer.join()
