"""A lease in the warehouse so that only one push per CRM writes at a time, whichever worker,
DAG run or CLI process tries (max_active_runs alone does not cover a CLI run beside a DAG run)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from leadflow.push.tables import leases
from leadflow.warehouse.repo import now_ms

log = logging.getLogger(__name__)


class LeaseBusy(RuntimeError):
    """Another push for the same CRM holds the lease."""


def try_acquire(engine: Engine, crm: str, holder: str, ttl_s: float, name: str = "push",
                clock: Callable[[], int] = now_ms) -> bool:
    """Take the lease if it is free, expired, or already ours; return whether we hold it."""
    now = clock()
    expires = now + int(ttl_s * 1000)
    with engine.begin() as conn:
        taken = conn.execute(
            update(leases)
            .where(
                leases.c.crm == crm,
                leases.c.name == name,
                or_(leases.c.holder == holder, leases.c.expires_at < now),
            )
            .values(holder=holder, expires_at=expires)
        ).rowcount
        if taken:
            return True
    try:
        with engine.begin() as conn:
            conn.execute(insert(leases).values(crm=crm, name=name, holder=holder, expires_at=expires))
        return True
    except IntegrityError:
        return False  # someone else inserted it first and it has not expired


def release(engine: Engine, crm: str, holder: str, name: str = "push") -> None:
    with engine.begin() as conn:
        conn.execute(
            delete(leases).where(and_(leases.c.crm == crm, leases.c.name == name, leases.c.holder == holder))
        )


def current_holder(engine: Engine, crm: str, name: str = "push") -> str | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(leases.c.holder, leases.c.expires_at).where(leases.c.crm == crm, leases.c.name == name)
        ).first()
    return row.holder if row and row.expires_at >= now_ms() else None


@contextmanager
def push_lease(engine: Engine, crm: str, holder: str, ttl_s: float = 3600.0) -> Iterator[None]:
    """Hold the CRM's push lease for the duration of the block, or raise LeaseBusy."""
    if not try_acquire(engine, crm, holder, ttl_s):
        other = current_holder(engine, crm)
        raise LeaseBusy(
            f"another push to {crm} is running ({other}); this one stops before writing. "
            "It will push on its next run or a retry."
        )
    log.info("push lease for %s taken by %s", crm, holder)
    try:
        yield
    finally:
        release(engine, crm, holder)
