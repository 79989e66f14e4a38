"""Batches sent with several calls in flight come back in order, never more than allowed at once."""

from __future__ import annotations

import threading

import pytest

from leadflow.batching import chunks
from leadflow.push.inflight import send_in_order


class Recorder:
    """A `send` that blocks until released, noting how many calls run at the same time."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.started: list[int] = []
        self.fail_on = fail_on
        self.gate = threading.Semaphore(0)

    def __call__(self, batch: list[int]) -> str:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.started.append(batch[0])
        self.gate.acquire(timeout=5)
        with self.lock:
            self.running -= 1
        if batch[0] == self.fail_on:
            raise RuntimeError("CRM said no")
        return f"done {batch[0]}"


def test_given_three_in_flight_then_results_come_back_in_send_order_and_never_more_than_three_run():
    send = Recorder()
    batches = list(chunks(list(range(20)), 2))
    for _ in batches:
        send.gate.release()
    out = list(send_in_order(send, batches, in_flight=3))
    assert [b for b, _ in out] == batches
    assert [r for _, r in out] == [f"done {b[0]}" for b in batches]
    assert send.peak <= 3


def test_given_one_in_flight_then_calls_run_on_the_callers_thread_one_after_the_other():
    seen = []
    out = list(send_in_order(lambda b: seen.append(threading.current_thread()) or len(b), [[1], [2, 3]], 1))
    assert out == [([1], 1), ([2, 3], 2)]
    assert set(seen) == {threading.current_thread()}


def test_given_a_failing_call_then_its_error_is_raised_in_turn_and_later_batches_are_not_all_sent():
    send = Recorder(fail_on=2)
    batches = [[i] for i in range(10)]
    for _ in batches:
        send.gate.release()
    got = []
    with pytest.raises(RuntimeError, match="CRM said no"):
        for batch, _ in send_in_order(send, batches, in_flight=2):
            got.append(batch[0])
    assert got == [0, 1]  # everything before the failure was handed back, in order
    assert max(send.started) <= 4  # at most the failing call's in-flight neighbours went out


def test_chunks_cuts_consecutive_slices():
    assert list(chunks([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(chunks([], 3)) == []
