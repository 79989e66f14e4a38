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
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
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

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name=name, daemon=True)
    producer.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()
