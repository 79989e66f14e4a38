"""Faults keyed on the request: concurrent clients get the same faults whatever the arrival order."""

from __future__ import annotations

from leadflow.sandbox.faults import FaultInjector, FaultSpec

SPEC = FaultSpec.parse("429=0.1,5xx=0.05,partial=0.2,timeout=0.1,invalid=0.2")


def _draws(order: list[str], seed: int = 3) -> dict[str, list]:
    injector = FaultInjector(SPEC, seed=seed)
    out: dict[str, list] = {}
    for key in order:
        faults = injector.draw(is_write=True, is_batch_write=True, key=key)
        picked = injector.pick_records([f"{key}-{i}" for i in range(10)], 0.3, faults.key)
        out.setdefault(key, []).append((faults.rate_limited, faults.server_error, faults.partial,
                                        faults.timeout, faults.invalid, tuple(picked)))
    return out


def test_given_keyed_requests_in_another_order_then_each_request_gets_the_same_faults():
    keys = [f"POST /batch/update body{i}" for i in range(200)] * 2  # each body sent twice
    forward, backward = _draws(keys), _draws(list(reversed(keys)))
    assert forward == backward
    # The second sending of a body is drawn afresh, not a copy of the first.
    assert any(first != second for first, second in forward.values())
    assert sum(any(d[:5]) for draws in forward.values() for d in draws) > 50  # faults do happen


def test_given_another_seed_then_the_faults_differ():
    keys = [f"POST /batch/update body{i}" for i in range(100)]
    assert _draws(keys, seed=3) != _draws(keys, seed=4)
