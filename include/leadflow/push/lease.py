"""A lease in the warehouse so that only one push per CRM writes at a time, whichever worker,
DAG run or CLI process tries (max_active_runs alone does not cover a CLI run beside a DAG run).

The lease belongs to a *run* (`holder` = the run id): every shard of the run, in whatever
process, may take it again; other runs are refused until it is released or expires.

A run that dies without releasing it (SIGKILL, OOM, a lost worker) must not block the CRM for the
whole TTL, so the stored holder is tagged with the last process that took or renewed it:
`<run id> host=<hostname> pid=<pid> beat=<epoch ms>`. Another run on the same host takes the
lease over at once when that process no longer exists and its last beat is older than
`DEAD_HOLDER_GRACE_S` (the grace covers a sibling shard of the dead process's run that is still
pushing and has not renewed yet). The writer renews the lease around its batches, extending
it by its TTL each time, so a live push never loses it however long it runs; holders on other
hosts are only ever released by the TTL. A holder that finds its lease gone (it stalled past the
TTL and another run took it) raises `LeaseLost` and writes nothing more.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from sqlalchemy import Engine, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from leadflow.push.tables import leases
from leadflow.warehouse.repo import now_ms

log = logging.getLogger(__name__)

DEFAULT_TTL_S = 3600.0
DEAD_HOLDER_GRACE_S = 10.0
_TAG = re.compile(r"^(?P<run>.*) host=(?P<host>\S+) pid=(?P<pid>\d+) beat=(?P<beat>\d+)$")


class LeaseBusy(RuntimeError):
    """Another push for the same CRM holds the lease."""


class LeaseLost(RuntimeError):
    """This run's lease expired and another run took it: the run must stop writing."""


def lease_lost_error(engine: Engine, crm: str, holder: str, name: str = "push",
                     clock: Callable[[], int] | None = None) -> LeaseLost:
    """The error for `holder` having lost the lease, naming who holds it now."""
    other = current_holder(engine, crm, name, clock=clock or now_ms)
    return LeaseLost(
        f"the {name} lease for {crm} held by run {holder} expired and was taken by {other or 'nobody yet'}: "
        "this run stopped writing. Values already sent are read back by the next run; re-run it to push the rest."
    )


def tag(holder: str, at_ms: int) -> str:
    """`holder` tagged with this process (what is stored)."""
    return f"{holder} host={socket.gethostname()} pid={os.getpid()} beat={at_ms}"


def holder_run(stored: str) -> str:
    """The run id part of a stored holder."""
    match = _TAG.match(stored)
    return match["run"] if match else stored


def _is(holder: str):
    """SQL: the stored holder is `holder` (tagged by any process, or untagged)."""
    return or_(leases.c.holder == holder, leases.c.holder.startswith(f"{holder} host=", autoescape=True))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def holder_is_dead(stored: str, now: int, grace_s: float = DEAD_HOLDER_GRACE_S) -> bool:
    """True when `stored` names a process of this host that no longer exists and whose last
    beat is older than the grace period."""
    match = _TAG.match(stored)
    if match is None or match["host"] != socket.gethostname():
        return False  # another host (or an untagged holder): only the TTL can tell
    pid = int(match["pid"])
    if pid == os.getpid() or _pid_alive(pid):
        return False
    return now - int(match["beat"]) >= grace_s * 1000


def try_acquire(engine: Engine, crm: str, holder: str, ttl_s: float, name: str = "push",
                clock: Callable[[], int] = now_ms) -> bool:
    """Take the lease if it is free, expired, already ours, or left by a dead process of this
    host; return whether we hold it."""
    now = clock()
    expires = now + int(ttl_s * 1000)
    stored = tag(holder, now)
    with engine.begin() as conn:
        taken = conn.execute(
            update(leases)
            .where(leases.c.crm == crm, leases.c.name == name, or_(_is(holder), leases.c.expires_at < now))
            .values(holder=stored, expires_at=expires)
        ).rowcount
        if taken:
            return True
    try:
        with engine.begin() as conn:
            conn.execute(insert(leases).values(crm=crm, name=name, holder=stored, expires_at=expires))
        return True
    except IntegrityError:
        # Someone inserted first: a sibling shard of this run (then the lease is ours too) or
        # another run.
        with engine.begin() as conn:
            taken = conn.execute(
                update(leases)
                .where(leases.c.crm == crm, leases.c.name == name, _is(holder))
                .values(holder=stored, expires_at=expires)
            ).rowcount
        if taken:
            return True
    return _take_over_dead(engine, crm, stored, expires, name, now)


def _take_over_dead(engine: Engine, crm: str, stored: str, expires: int, name: str, now: int) -> bool:
    with engine.connect() as conn:
        row = conn.execute(
            select(leases.c.holder, leases.c.expires_at).where(leases.c.crm == crm, leases.c.name == name)
        ).first()
    if row is None or not holder_is_dead(row.holder, now):
        return False
    with engine.begin() as conn:
        taken = conn.execute(
            update(leases)
            .where(leases.c.crm == crm, leases.c.name == name, leases.c.holder == row.holder,
                   leases.c.expires_at == row.expires_at)  # compare-and-swap: one taker wins
            .values(holder=stored, expires_at=expires)
        ).rowcount
    if taken:
        log.warning("push lease for %s taken over from run %s: its process is gone", crm, holder_run(row.holder))
    return bool(taken)


def renew(engine: Engine, crm: str, holder: str, ttl_s: float | None = None, name: str = "push",
          clock: Callable[[], int] = now_ms) -> bool:
    """Mark the lease as alive in this process and, with `ttl_s`, extend it to `ttl_s` from now
    (without it the expiry stays: a holder that only re-tags loses the lease at the TTL); False
    when `holder` does not hold it."""
    now = clock()
    values: dict[str, object] = {"holder": tag(holder, now)}
    if ttl_s is not None:
        values["expires_at"] = now + int(ttl_s * 1000)
    with engine.begin() as conn:
        return bool(
            conn.execute(
                update(leases).where(leases.c.crm == crm, leases.c.name == name, _is(holder)).values(**values)
            ).rowcount
        )


def release(engine: Engine, crm: str, holder: str, name: str = "push") -> None:
    with engine.begin() as conn:
        conn.execute(delete(leases).where(and_(leases.c.crm == crm, leases.c.name == name, _is(holder))))


def current_holder(engine: Engine, crm: str, name: str = "push",
                   clock: Callable[[], int] = now_ms) -> str | None:
    """The run holding the lease (with the host/pid tag of its last process), None when free."""
    with engine.connect() as conn:
        return live_holder(conn, crm, name, clock())


def live_holder(conn: Any, crm: str, name: str, now: int) -> str | None:
    """The stored holder of an unexpired lease, None when free or expired (on `conn`, so a
    caller can decide within its own transaction)."""
    row = conn.execute(
        select(leases.c.holder, leases.c.expires_at).where(leases.c.crm == crm, leases.c.name == name)
    ).first()
    return row.holder if row and row.expires_at >= now else None


class _Heartbeat(threading.Thread):
    """Renews (and extends) the lease in the background; `check()` raises LeaseLost once a
    renewal found it taken by another run."""

    def __init__(self, engine: Engine, crm: str, holder: str, ttl_s: float,
                 clock: Callable[[], int] = now_ms) -> None:
        super().__init__(name=f"lease-heartbeat-{crm}", daemon=True)
        self.engine, self.crm, self.holder, self.ttl_s, self.clock = engine, crm, holder, ttl_s, clock
        self.stopped = threading.Event()
        self.lost = threading.Event()

    def run(self) -> None:
        interval = min(self.ttl_s / 4, DEAD_HOLDER_GRACE_S / 2)
        while not self.stopped.wait(interval):
            try:
                if not renew(self.engine, self.crm, self.holder, self.ttl_s, clock=self.clock):
                    log.error("push lease for %s lost by %s (expired and taken over)", self.crm, self.holder)
                    self.lost.set()
                    return
            except Exception as exc:  # a busy database: try again at the next beat
                log.warning("push lease for %s: renewal failed (%s)", self.crm, type(exc).__name__)

    def check(self) -> None:
        """Call before each write: LeaseLost when the lease is no longer ours."""
        if self.lost.is_set():
            raise lease_lost_error(self.engine, self.crm, self.holder, clock=self.clock)


@contextmanager
def push_lease(engine: Engine, crm: str, holder: str, ttl_s: float = DEFAULT_TTL_S,
               clock: Callable[[], int] = now_ms) -> Iterator[_Heartbeat]:
    """Hold the CRM's push lease for the duration of the block (renewed by a heartbeat thread),
    or raise LeaseBusy. The block gets the heartbeat: call its `check()` before each write.
    `clock` (epoch ms) dates the expiries; the heartbeat's pace stays in real time."""
    if not try_acquire(engine, crm, holder, ttl_s, clock=clock):
        other = current_holder(engine, crm, clock=clock)
        raise LeaseBusy(
            f"another push to {crm} is running ({other}); this one stops before writing. "
            "It will push on its next run or a retry."
        )
    log.info("push lease for %s taken by %s", crm, holder)
    beat = _Heartbeat(engine, crm, holder, ttl_s, clock=clock)
    beat.start()
    try:
        yield beat
    finally:
        beat.stopped.set()
        beat.join(timeout=5)
        release(engine, crm, holder)
