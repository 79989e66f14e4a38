"""Only one push per CRM at a time, on both databases; an expired lease can be taken over."""

from __future__ import annotations

import pytest

from leadflow.push.lease import LeaseBusy, push_lease, try_acquire


def test_given_lease_held_then_a_second_holder_is_refused(warehouse):
    assert try_acquire(warehouse, "hubspot", "run-a", ttl_s=60)
    assert not try_acquire(warehouse, "hubspot", "run-b", ttl_s=60)
    assert try_acquire(warehouse, "hubspot", "run-a", ttl_s=60)  # renewing is fine
    assert try_acquire(warehouse, "salesforce", "run-b", ttl_s=60)  # other CRM, other lease


def test_given_lease_expired_then_another_holder_takes_it(warehouse):
    assert try_acquire(warehouse, "hubspot", "dead-worker", ttl_s=1, clock=lambda: 1_000)
    assert try_acquire(warehouse, "hubspot", "run-b", ttl_s=60, clock=lambda: 10_000)


def test_context_manager_releases_and_reports_the_holder(warehouse):
    with push_lease(warehouse, "hubspot", "run-a"):
        with pytest.raises(LeaseBusy, match="run-a"):
            with push_lease(warehouse, "hubspot", "run-b"):
                pass
    with push_lease(warehouse, "hubspot", "run-b"):
        pass


def test_given_lease_taken_by_another_run_then_the_holders_check_raises_lease_lost(warehouse):
    from sqlalchemy import update

    from leadflow.push.lease import LeaseLost
    from leadflow.push.tables import leases

    with push_lease(warehouse, "hubspot", "rollback__run-a", ttl_s=0.04) as lease:
        lease.check()  # ours
        with warehouse.begin() as conn:  # what a run does that found the lease expired
            conn.execute(update(leases).values(holder="cli__other host=x pid=1 beat=1", expires_at=10**13))
        assert lease.lost.wait(timeout=5), "the heartbeat never noticed the take-over"
        with pytest.raises(LeaseLost, match="rollback__run-a expired and was taken by cli__other"):
            lease.check()
