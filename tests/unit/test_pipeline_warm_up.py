"""`run_all` does the later steps' one-off work (the enrichment reference file, the Great
Expectations context) on a thread of its own while the pull runs, and leaves a failure there for
the step that needs the piece to raise."""

from __future__ import annotations

import threading

import pytest

from leadflow import pipeline
from leadflow.settings import PipelineSettings


def _ctx(reference_enabled: bool = True) -> pipeline.RunContext:
    settings = PipelineSettings.model_validate({"enrichment": {"reference_enabled": reference_enabled}})
    return pipeline.RunContext(crm="hubspot", run_id="warm", settings=settings)


@pytest.fixture
def built_on(monkeypatch) -> dict[str, str]:
    """Which piece was built on which thread."""
    seen: dict[str, str] = {}

    def recorder(name):
        return lambda *args: seen.__setitem__(name, threading.current_thread().name)

    monkeypatch.setattr(pipeline, "load_reference", recorder("reference"))
    monkeypatch.setattr(pipeline, "get_runtime", recorder("gx"))
    return seen


def test_given_a_run_then_the_later_steps_one_off_work_is_done_on_a_thread_of_its_own(built_on):
    pipeline._warm_up(_ctx()).join(timeout=10)
    assert built_on == {"reference": "leadflow-warm-up", "gx": "leadflow-warm-up"}


def test_given_the_reference_file_is_off_then_it_is_not_parsed(built_on):
    pipeline._warm_up(_ctx(reference_enabled=False)).join(timeout=10)
    assert set(built_on) == {"gx"}


def test_given_a_piece_fails_to_build_then_the_others_are_still_built_and_the_warm_up_ends(monkeypatch, built_on):
    def broken(*args):
        raise ImportError("broken install")

    monkeypatch.setattr(pipeline, "load_reference", broken)
    thread = pipeline._warm_up(_ctx())
    thread.join(timeout=10)
    assert not thread.is_alive() and set(built_on) == {"gx"}
