"""What the HubSpot store (`store.py`) and the Salesforce store (`salesforce_store.py`) share:
one SQLite connection behind a lock, a clock, and a key-value meta table (the world's marker).

Each store opens its own connection and creates its own tables (its meta table included); this
base only reads and writes them.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Callable, ClassVar


class SqliteFile:
    # The store's key-value table (`key TEXT PRIMARY KEY, value TEXT`); a class constant, never input.
    _META_TABLE: ClassVar[str] = "meta"
    _conn: sqlite3.Connection
    _lock: threading.RLock
    _clock: Callable[[], float]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(f"SELECT value FROM {self._META_TABLE} WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute(f"INSERT OR REPLACE INTO {self._META_TABLE} VALUES (?, ?)", (key, value))

    def has_world(self) -> bool:
        return self.get_meta("world") is not None
