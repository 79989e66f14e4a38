"""`run_all` builds the Great Expectations context on a thread of its own while the pull runs, and
leaves a failure there for the validate step to raise."""

from __future__ import annotations

import threading

from leadflow import pipeline


def test_given_a_run_then_the_gx_context_is_built_on_a_thread_of_its_own(monkeypatch):
    built_on: list[str] = []
    monkeypatch.setattr(pipeline, "get_runtime", lambda: built_on.append(threading.current_thread().name))
    pipeline._warm_up().join(timeout=10)
    assert built_on == ["leadflow-warm-up"]


def test_given_the_gx_context_fails_to_build_then_the_warm_up_says_nothing_and_ends(monkeypatch):
    def broken():
        raise ImportError("great_expectations is broken")

    monkeypatch.setattr(pipeline, "get_runtime", broken)
    thread = pipeline._warm_up()
    thread.join(timeout=10)
    assert not thread.is_alive()
