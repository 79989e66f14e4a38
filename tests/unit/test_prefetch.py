"""`leadflow.prefetch`: order kept, errors raised in place, producers stopped; sources interleaved."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from leadflow.prefetch import interleaved, prefetched


def test_given_an_iterator_then_every_item_comes_in_order_from_another_thread() -> None:
    threads: list[str] = []

    def pages() -> Iterator[int]:
        for i in range(50):
            threads.append(threading.current_thread().name)
            yield i

    assert list(prefetched(pages(), depth=3, name="pull-test")) == list(range(50))
    assert set(threads) == {"pull-test"}


def test_given_depth_0_then_the_caller_thread_iterates() -> None:
    seen: list[str] = []

    def pages() -> Iterator[int]:
        seen.append(threading.current_thread().name)
        yield 1

    assert list(prefetched(pages(), depth=0)) == [1]
    assert seen == [threading.current_thread().name]


def test_given_the_iterator_fails_then_the_items_before_come_first_and_the_error_is_raised() -> None:
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("budget spent")

    got: list[int] = []
    with pytest.raises(RuntimeError, match="budget spent"):
        for item in prefetched(pages(), depth=2):
            got.append(item)
    assert got == [1, 2]


def test_given_the_consumer_stops_early_then_the_producer_stops_and_closes_the_iterator() -> None:
    produced: list[int] = []
    closed = threading.Event()

    def pages() -> Iterator[int]:
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            closed.set()

    stream = prefetched(pages(), depth=2)
    assert [next(stream), next(stream)] == [0, 1]
    stream.close()  # joins the producer
    assert closed.is_set()
    assert len(produced) <= 2 + 2 + 1  # what was taken, the queue's depth, one in hand


def test_given_the_consumer_raises_then_the_producer_is_not_left_running() -> None:
    def pages() -> Iterator[int]:
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    with pytest.raises(ValueError):
        for item in prefetched(pages(), depth=1):
            if item == 3:
                raise ValueError("landing failed")
    assert threading.active_count() == before


def test_given_a_negative_depth_then_it_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        list(prefetched(iter([1]), depth=-1))


def test_given_two_sources_then_both_run_at_once_and_each_keeps_its_order() -> None:
    both_started = threading.Barrier(2, timeout=5)  # neither can finish unless the other runs too

    def source(values: list[str]) -> Iterator[str]:
        both_started.wait()
        yield from values

    got = list(interleaved([source(["a1", "a2", "a3"]), source(["b1", "b2"])], depth=2))
    assert sorted(got) == [(0, "a1"), (0, "a2"), (0, "a3"), (1, "b1"), (1, "b2")]
    assert [v for i, v in got if i == 0] == ["a1", "a2", "a3"] and [v for i, v in got if i == 1] == ["b1", "b2"]


def test_given_one_source_fails_then_the_error_is_raised_and_the_other_is_stopped_and_closed() -> None:
    closed = threading.Event()

    def endless() -> Iterator[int]:
        try:
            while True:
                yield 1
        finally:
            closed.set()

    def failing() -> Iterator[int]:
        yield 2
        raise RuntimeError("429 budget")

    with pytest.raises(RuntimeError, match="429 budget"):
        for _ in interleaved([endless(), failing()], depth=1):
            pass
    assert closed.is_set()
    assert not [t for t in threading.enumerate() if t.name.startswith("leadflow-prefetch")]
