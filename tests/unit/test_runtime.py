"""leadflow.runtime: the allocator setting of the vectorised pipeline steps, the garbage collector
while each step runs, the peak memory each step records."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from leadflow import runtime
from leadflow.env import LeadflowEnv

ENV_VAR = "LEADFLOW_KEEP_FREED_MEMORY_MB"

# Allocates and frees six 8 MB arrays ten times (after a warm-up) and prints the page faults.
_CHURN = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from leadflow.runtime import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "tuned" else 0
    for _ in range(3):
        arrays = [np.ones(1_000_000) for _ in range(6)]; del arrays
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        arrays = [np.ones(1_000_000) for _ in range(6)]; del arrays
    print(kept, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _churn(mode: str) -> tuple[int, int]:
    env = {**os.environ, ENV_VAR: "1024"}
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], check=True, capture_output=True, text=True, env=env)
    kept, faults = out.stdout.split()
    return int(kept), int(faults)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_applied", None)


def test_given_the_setting_then_freed_arrays_are_reused_without_page_faults() -> None:
    _, default_faults = _churn("default")
    kept, tuned_faults = _churn("tuned")
    assert kept == 1024
    assert default_faults > 1000  # glibc hands the blocks back and faults them in again
    assert tuned_faults < default_faults / 20


def test_given_zero_then_the_allocator_is_left_alone(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "0")
    assert runtime.keep_freed_memory() == 0


def test_given_the_variable_unset_then_the_allocator_is_left_alone(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert LeadflowEnv.model_fields["keep_freed_memory_mb"].default == 0
    assert runtime.keep_freed_memory() == 0


def test_given_not_a_number_then_warns_and_leaves_the_allocator(
    fresh: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_VAR, "lots")
    with caplog.at_level(logging.WARNING, logger="leadflow.runtime"):
        assert runtime.keep_freed_memory() == 0
    assert ENV_VAR in caplog.text and "valid integer" in caplog.text


def test_given_applied_once_then_later_calls_do_nothing_more(fresh: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "0")
    assert runtime.keep_freed_memory() == 0
    monkeypatch.setenv(ENV_VAR, "512")  # too late: the first call decided
    assert runtime.keep_freed_memory() == 0


# Fills 300 MiB in a fresh process started by this (larger or smaller) test process; prints its
# peak RSS in MiB.
_PEAK = textwrap.dedent(
    """
    from leadflow.runtime import peak_rss_mib
    block = bytearray(300 * 2**20)
    block[::4096] = b"x" * len(block[::4096])
    print(peak_rss_mib())
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent's size carries over on Linux")
def test_peak_rss_is_the_process_own_high_water_mark_not_its_parents() -> None:
    ballast = bytearray(400 * 2**20)  # the parent is larger than the child will ever be
    ballast[::4096] = b"x" * len(ballast[::4096])
    out = subprocess.run([sys.executable, "-c", _PEAK], check=True, capture_output=True, text=True)
    del ballast
    peak = float(out.stdout.strip())
    # The block and an interpreter with leadflow imported; the parent's 400+ MiB are not in it.
    assert 300 <= peak < 300 + 200


def test_each_recorded_step_carries_its_tasks_peak_memory(sqlite_warehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow import pipeline
    from leadflow.warehouse import repo

    monkeypatch.setattr(pipeline, "peak_rss_mib", lambda: 512.0)
    ctx = pipeline.RunContext(crm="hubspot", run_id="r-1", _engine=sqlite_warehouse)
    repo.start_run(sqlite_warehouse, "hubspot", "r-1", False)
    returned = pipeline._record(ctx, "push", {"pushed": 3}, shard=2)
    assert returned["peak_rss_mib"] == {"push[2]": 512.0}
    assert repo.get_run_summary(sqlite_warehouse, "hubspot", "r-1")["peak_rss_mib"] == {"push[2]": 512.0}


@pytest.fixture
def nothing_frozen() -> None:
    gc.unfreeze()  # a test process freezes nothing of its own; start from that
    yield
    gc.unfreeze()


def test_given_the_block_then_the_objects_made_before_it_are_out_of_the_collectors_passes_until_it_ends(
        nothing_frozen: None) -> None:
    plan = [[record] for record in range(10_000)]  # containers: what a full pass walks
    with runtime.objects_frozen():
        assert gc.get_freeze_count() >= len(plan)
    assert gc.get_freeze_count() == 0


def test_given_objects_made_in_the_block_then_its_freeze_adds_them(nothing_frozen: None) -> None:
    with runtime.objects_frozen() as freeze:
        before = gc.get_freeze_count()
        second_part = [[record] for record in range(10_000)]
        freeze()
        assert gc.get_freeze_count() >= before + len(second_part)
    assert gc.get_freeze_count() == 0


def test_given_an_error_in_the_block_then_the_objects_are_given_back(nothing_frozen: None) -> None:
    with pytest.raises(RuntimeError), runtime.objects_frozen():
        raise RuntimeError("the push failed")
    assert gc.get_freeze_count() == 0


def test_given_a_process_that_froze_objects_before_then_they_stay_frozen_after_the_block(
        nothing_frozen: None) -> None:
    gc.freeze()  # a parent that froze before it forked
    frozen = gc.get_freeze_count()
    with runtime.objects_frozen():
        pass
    assert gc.get_freeze_count() >= frozen


def test_given_a_push_then_its_calls_are_made_with_the_objects_frozen(
        sqlite_warehouse, nothing_frozen: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from leadflow import pipeline
    from leadflow.push.writer import PushOutcome
    from leadflow.warehouse import repo

    seen: list[int] = []

    def send(_on_batch):
        seen.append(gc.get_freeze_count())
        return PushOutcome()

    def parts(_ctx, _ready):
        yield 1, 0, send
        yield 1, 0, send

    monkeypatch.setattr(pipeline, "_prepared", parts)
    ctx = pipeline.RunContext(crm="hubspot", run_id="r-1", _engine=sqlite_warehouse, dry_run=True)
    repo.start_run(sqlite_warehouse, "hubspot", "r-1", True)
    pipeline.push(ctx)
    assert len(seen) == 2 and all(count > 0 for count in seen)
    assert gc.get_freeze_count() == 0


def test_given_a_timed_step_then_it_runs_with_the_objects_frozen_and_records_its_duration(
        nothing_frozen: None) -> None:
    from leadflow import pipeline

    summary: dict = {}
    with pipeline._timed(summary, "enrich"):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    assert summary["durations_s"]["enrich"] >= 0
