"""What both sandbox servers (HubSpot's in `server`, Salesforce's in `salesforce_server`) start
from: the seeded store file and a listening socket."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Callable

from leadflow.sandbox.store import SandboxStore
from leadflow.sandbox.world import SeedReport, WorldConfig, seed_store


def prepare_store(db_path: Path, *, contacts: int, seed: int, reseed: bool = False,
                  shared_timestamp_every: int = 0, clock: Callable[[], float] = time.time) -> tuple[SandboxStore,
                                                                                                   SeedReport | None]:
    """Open the db file; seed a world unless it already holds one (or `reseed`)."""
    store = SandboxStore(db_path, clock=clock)
    if reseed and store.has_world():
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(db_path) + suffix).unlink(missing_ok=True)
        store = SandboxStore(db_path, clock=clock)
    report = None
    if not store.has_world():
        report = seed_store(store, WorldConfig(seed=seed, contacts=contacts,
                                               shared_timestamp_every=shared_timestamp_every))
    return store, report


def bind_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
