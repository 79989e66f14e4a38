"""Send batches to the CRM with a few calls in flight, results handed back in order.

The push loop records each batch's outcome in the warehouse before it moves on. Done one after
the other, a call's round trip and the recording of the previous batch add up, and a 100,000
record push runs far below the CRM's rate limit. Here worker threads keep up to `in_flight`
calls outstanding (the connector's rate limiter still spaces them) while the caller records the
batches in the order they were sent, on its own thread: the warehouse sees one writer.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

log = logging.getLogger(__name__)

B = TypeVar("B")
R = TypeVar("R")


def send_in_order(send: Callable[[B], R], batches: Iterable[B], in_flight: int) -> Iterator[tuple[B, R]]:
    """Yield (batch, send(batch)) in the order of `batches`, with at most `in_flight` calls
    outstanding. An exception of a call is raised when its turn comes; calls not yet started
    are then cancelled (the caller leaves their records pending, as after a crash)."""
    if in_flight <= 1:
        for batch in batches:
            yield batch, send(batch)
        return
    source = iter(batches)
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="leadflow-push")
    outstanding: deque[tuple[B, Future[R]]] = deque()
    try:
        for batch in source:
            outstanding.append((batch, pool.submit(send, batch)))
            if len(outstanding) >= in_flight:
                break
        while outstanding:
            batch, future = outstanding.popleft()
            result = future.result()
            following = next(source, None)
            if following is not None:
                outstanding.append((following, pool.submit(send, following)))
            yield batch, result
    finally:
        cancelled = sum(future.cancel() for _, future in outstanding)
        if cancelled:
            log.info("push: %d queued calls cancelled", cancelled)
        pool.shutdown(wait=True)

