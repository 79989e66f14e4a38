from __future__ import annotations

import pytest

from leadflow.sandbox.faults import FaultInjector, FaultSpec


def test_parse_reads_every_kind():
    spec = FaultSpec.parse("429=0.1,5xx=0.05,partial=0.05,timeout=0.02,invalid=0.01,slow=0.05")
    assert (spec.rate_limited, spec.server_error, spec.partial, spec.timeout, spec.invalid, spec.slow) == (
        0.1, 0.05, 0.05, 0.02, 0.01, 0.05)
    assert str(FaultSpec.parse("5xx=1")) == "5xx=1"
    assert FaultSpec.parse("off") == FaultSpec()


@pytest.mark.parametrize("text, fragment", [
    ("teapot=0.1", "'teapot'"), ("429=lots", "'lots'"), ("5xx=1.5", "'5xx'"), ("slow", "KIND=RATE")])
def test_parse_error_names_the_bad_key_or_value(text, fragment):
    with pytest.raises(ValueError, match=fragment):
        FaultSpec.parse(text)


def test_same_seed_gives_same_fault_sequence():
    spec = FaultSpec.parse("429=0.2,5xx=0.2,slow=0.3,partial=0.3")
    a, b = FaultInjector(spec, seed=7), FaultInjector(spec, seed=7)
    seq_a = [a.draw(is_write=True, is_batch_write=True) for _ in range(200)]
    seq_b = [b.draw(is_write=True, is_batch_write=True) for _ in range(200)]
    assert seq_a == seq_b
    assert any(f.rate_limited for f in seq_a) and any(f.server_error for f in seq_a)
    assert {f.server_error for f in seq_a if f.server_error} == {502, 503}


def test_rates_are_respected_roughly():
    injector = FaultInjector(FaultSpec.parse("429=0.1"), seed=1)
    hits = sum(injector.draw(is_write=False, is_batch_write=False).rate_limited for _ in range(5000))
    assert 400 < hits < 600


def test_batch_faults_only_hit_batch_writes_and_timeouts_only_writes():
    injector = FaultInjector(FaultSpec.parse("partial=1,invalid=1,timeout=1"), seed=1)
    read = injector.draw(is_write=False, is_batch_write=False)
    assert not (read.partial or read.invalid or read.timeout)
    single_write = injector.draw(is_write=True, is_batch_write=False)
    assert single_write.timeout and not single_write.partial
    batch = injector.draw(is_write=True, is_batch_write=True)
    assert batch.partial and batch.invalid and batch.timeout


def test_pick_records_fails_at_least_one_and_not_all_of_a_large_batch():
    injector = FaultInjector(seed=3)
    ids = [str(i) for i in range(100)]
    picked = injector.pick_records(ids, 0.3)
    assert 10 < len(picked) < 60 and set(picked) <= set(ids)
    assert len(injector.pick_records(["only"], 0.0)) == 1


def test_configure_swaps_the_spec_at_run_time():
    injector = FaultInjector(seed=1)
    assert not injector.draw(is_write=False, is_batch_write=False).any
    injector.configure(FaultSpec.parse("5xx=1"))
    assert injector.draw(is_write=False, is_batch_write=False).server_error in (502, 503)
