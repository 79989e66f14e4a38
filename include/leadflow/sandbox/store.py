"""SQLite state of the sandbox: objects, properties schema, write log, enrichment data.

One table per object type. The columns HubSpot clients sort and page on are real, indexed
INTEGER columns (`id` = hs_object_id, `created_ms` = createdate, `modified_ms` =
lastmodifieddate / hs_lastmodifieddate, `company_id` = associatedcompanyid) plus a lower-cased
`unique_key` (email / domain); every other property lives in the `props` JSON document, typed
(numbers, epoch ms, booleans) so SQL can compare it. `archived` is 0 (live), 1 (archived, with
`archived_ms`) or 2 (merged into `merged_into`: in no list, search or archived list);
`created_by` holds the `ChangeSource` of a record created through the API (NULL for a seeded
one). The file persists: a push is visible to the next pull, and a restarted server reuses the
world.

The `writes` table is both the write log and the property history: one row per applied property
change with its old and new wire value and who made it (`source_*`, `user_id`).

All access goes through one connection guarded by a lock: the server is single-process and every
statement is short, so this is simpler and faster than a pool.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from leadflow.sandbox.history import API, ChangeSource
from leadflow.sandbox.properties import (
    COLUMN_PROPERTIES,
    OBJECT_TYPES,
    UNIQUE_PROPERTY,
    PropertyDef,
    render_value,
    seeded_groups,
    seeded_properties,
)
from leadflow.sandbox.sqlite_file import SqliteFile

log = logging.getLogger(__name__)

_INDEXES: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS ix_{t}_modified ON obj_{t} (archived, modified_ms, id)",
    "CREATE INDEX IF NOT EXISTS ix_{t}_created ON obj_{t} (archived, created_ms, id)",
    "CREATE INDEX IF NOT EXISTS ix_{t}_unique ON obj_{t} (unique_key)",
    "CREATE INDEX IF NOT EXISTS ix_{t}_company ON obj_{t} (company_id)",
    # A search's `total` below an id (the full pull's search from the top) counts this range
    # alone: 3x faster than through ix_modified at 500,000 contacts, on the cores leadflow uses.
    "CREATE INDEX IF NOT EXISTS ix_{t}_live ON obj_{t} (archived, id)",
)
ARCHIVED, MERGED = 1, 2  # values of the `archived` column besides 0 (live)
# Columns added after the first release: (table kind, column, type). Old db files gain them on open.
_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("obj", "archived_ms", "INTEGER"), ("obj", "merged_into", "INTEGER"), ("obj", "created_by", "TEXT"),
    ("writes", "source_type", "TEXT NOT NULL DEFAULT 'API'"), ("writes", "source_id", "TEXT"),
    ("writes", "source_label", "TEXT"), ("writes", "user_id", "INTEGER"),
)


@dataclass
class Row:
    """One stored object. `props` holds the JSON-document properties (internal typed values)."""

    id: int
    created_ms: int
    modified_ms: int
    archived: bool
    unique_key: str | None
    company_id: int | None
    props: dict[str, Any] = field(default_factory=dict)
    archived_ms: int | None = None
    merged_into: int | None = None
    created_by: ChangeSource | None = None  # None: a seeded record (its origin comes from the seed)

    def value(self, object_type: str, name: str) -> Any:
        """Internal value of any property, column-backed or not."""
        column = COLUMN_PROPERTIES[object_type].get(name)
        if column is not None:
            return getattr(self, column)
        return self.props.get(name)


@dataclass(frozen=True)
class WriteEntry:
    """One applied property write (rendered wire values)."""

    seq: int
    at_ms: int
    object_type: str
    object_id: str
    property: str
    old: str | None
    new: str | None
    source: ChangeSource = API

    def to_api(self) -> dict[str, Any]:
        return {"seq": self.seq, "atMs": self.at_ms, "objectType": self.object_type, "objectId": self.object_id,
                "property": self.property, "old": self.old, "new": self.new, **self.source.to_api()}


# Strings SQLite's JSON writer copies verbatim (no quote, backslash or control character).
_JSON_PLAIN = re.compile(r'[^"\\\x00-\x1f\x7f]*')

_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))

_TOKEN_SPLIT = re.compile(r"[^0-9a-z@._+-]+")


def _contains_token(text: Any, pattern: Any) -> int:
    """SQL function for CONTAINS_TOKEN: does any whitespace/punctuation-separated token of
    `text` match `pattern` (case-insensitive, `*` as wildcard)?"""
    if text is None or pattern is None:
        return 0
    needle = str(pattern).lower()
    tokens = [t for t in _TOKEN_SPLIT.split(str(text).lower()) if t]
    # An e-mail also matches on its local part and its domain.
    extra = [p for t in tokens if "@" in t for p in t.split("@")]
    if "*" in needle:
        regex = re.compile("^" + ".*".join(re.escape(p) for p in needle.split("*")) + "$")
        return int(any(regex.match(t) for t in tokens + extra))
    return int(needle in tokens or needle in extra)


class SandboxStore(SqliteFile):
    """The sandbox's SQLite file. Thread-safe; create one per server process. Meta table: `meta`
    (`close`, `now_ms`, `get_meta`, `set_meta`, `has_world`: `SqliteFile`)."""

    def __init__(self, path: str | Path, *, clock: Any = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA temp_store=MEMORY")
        self._conn.execute("PRAGMA cache_size=-200000")  # ~200 MB page cache: 1M contacts stay hot
        self._conn.create_function("contains_token", 2, _contains_token, deterministic=True)
        self._schema_cache: dict[str, dict[str, PropertyDef]] = {}
        self._init_schema()

    # --- lifecycle ------------------------------------------------------------------------------
    def _init_schema(self) -> None:
        with self._lock:
            cur = self._conn
            cur.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            for t in OBJECT_TYPES:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS obj_{t} (id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, "
                    "modified_ms INTEGER NOT NULL, archived INTEGER NOT NULL DEFAULT 0, unique_key TEXT, "
                    "company_id INTEGER, props TEXT NOT NULL DEFAULT '{}')"
                )
                for ddl in _INDEXES:
                    cur.execute(ddl.format(t=t))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS properties (object_type TEXT NOT NULL, name TEXT NOT NULL, "
                "definition TEXT NOT NULL, PRIMARY KEY (object_type, name))"
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS property_groups (object_type TEXT NOT NULL, name TEXT NOT NULL, "
                "label TEXT NOT NULL, display_order INTEGER NOT NULL, PRIMARY KEY (object_type, name))"
            )
            cur.execute(
                "CREATE TABLE IF NOT EXISTS writes (seq INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, "
                "object_type TEXT NOT NULL, object_id TEXT NOT NULL, property TEXT NOT NULL, old_value TEXT, "
                "new_value TEXT)"
            )
            cur.execute("CREATE INDEX IF NOT EXISTS ix_writes_at ON writes (at_ms)")
            self._add_columns()
            for t in OBJECT_TYPES:  # partial: seeded records (never merged) cost it nothing
                cur.execute(f"CREATE INDEX IF NOT EXISTS ix_{t}_merged ON obj_{t} (merged_into) "
                            "WHERE merged_into IS NOT NULL")
            cur.execute("CREATE INDEX IF NOT EXISTS ix_writes_object ON writes (object_type, object_id, property, seq)")
            cur.execute("CREATE TABLE IF NOT EXISTS enrichment (domain TEXT PRIMARY KEY, data TEXT NOT NULL)")
            if self.get_meta("schema_seeded") is None:
                self._seed_schema()
            else:
                self._add_missing_properties()

    def _add_columns(self) -> None:
        """Give a db file made by an older sandbox the columns added since (NULL / default filled)."""
        tables = {"obj": [f"obj_{t}" for t in OBJECT_TYPES], "writes": ["writes"]}
        for kind, column, ddl in _ADDED_COLUMNS:
            for table in tables[kind]:
                have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")

    def _seed_schema(self) -> None:
        now_ms = self.now_ms()
        for object_type, groups in seeded_groups().items():
            for order, group in enumerate(groups):
                self._conn.execute("INSERT OR REPLACE INTO property_groups VALUES (?, ?, ?, ?)",
                                   (object_type, group["name"], group["label"], order))
        for object_type, props in seeded_properties().items():
            for prop in props:
                prop.created_ms = now_ms
                self._put_property(object_type, prop)
        self.set_meta("schema_seeded", "1")

    def _add_missing_properties(self) -> None:
        """A db file seeded by an older sandbox gains the HubSpot properties added since
        (e.g. hs_merged_object_ids); properties it has, changed or not, stay as they are."""
        have = {(t, n) for t, n in self._conn.execute("SELECT object_type, name FROM properties")}
        now_ms = self.now_ms()
        for object_type, props in seeded_properties().items():
            for prop in props:
                if (object_type, prop.name) not in have:
                    prop.created_ms = now_ms
                    self._put_property(object_type, prop)

    # --- properties -----------------------------------------------------------------------------
    def _put_property(self, object_type: str, prop: PropertyDef) -> None:
        data = prop.to_api()
        data["created_ms"] = prop.created_ms
        data["updated_ms"] = prop.updated_ms
        self._conn.execute("INSERT OR REPLACE INTO properties VALUES (?, ?, ?)",
                           (object_type, prop.name, json.dumps(data)))
        self._schema_cache.pop(object_type, None)

    def properties(self, object_type: str) -> dict[str, PropertyDef]:
        """Property definitions by name (cached; writes to the schema invalidate the cache)."""
        with self._lock:
            cached = self._schema_cache.get(object_type)
            if cached is None:
                rows = self._conn.execute(
                    "SELECT definition FROM properties WHERE object_type = ? ORDER BY rowid", (object_type,)
                ).fetchall()
                cached = {}
                for (definition,) in rows:
                    prop = PropertyDef.from_api(json.loads(definition))
                    cached[prop.name] = prop
                self._schema_cache[object_type] = cached
            return cached

    def add_property(self, object_type: str, prop: PropertyDef) -> None:
        with self._lock:
            prop.created_ms = prop.created_ms or self.now_ms()
            self._put_property(object_type, prop)

    def update_property(self, object_type: str, prop: PropertyDef) -> None:
        """Store a changed definition (same name), stamped with the time of the change."""
        with self._lock:
            prop.updated_ms = self.now_ms()
            self._put_property(object_type, prop)

    def groups(self, object_type: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT name, label, display_order FROM property_groups WHERE object_type = ? "
                "ORDER BY display_order, name", (object_type,)
            ).fetchall()
        return [{"name": n, "label": lbl, "displayOrder": order, "archived": False} for n, lbl, order in rows]

    def add_group(self, object_type: str, name: str, label: str, display_order: int | None = None) -> None:
        with self._lock:
            if display_order is None:
                row = self._conn.execute(
                    "SELECT COALESCE(MAX(display_order), -1) + 1 FROM property_groups WHERE object_type = ?",
                    (object_type,)).fetchone()
                display_order = int(row[0])
            self._conn.execute("INSERT INTO property_groups VALUES (?, ?, ?, ?)",
                               (object_type, name, label, display_order))

    # --- reading objects ------------------------------------------------------------------------
    _COLUMNS = "id, created_ms, modified_ms, archived, unique_key, company_id, props, archived_ms, merged_into, created_by"

    @staticmethod
    def _row(rec: Sequence[Any]) -> Row:
        return Row(id=rec[0], created_ms=rec[1], modified_ms=rec[2], archived=bool(rec[3]), unique_key=rec[4],
                   company_id=rec[5], props=json.loads(rec[6]), archived_ms=rec[7], merged_into=rec[8],
                   created_by=ChangeSource.from_json(rec[9]) if rec[9] else None)

    def count(self, object_type: str, *, archived: bool = False) -> int:
        with self._lock:
            return int(self._conn.execute(f"SELECT COUNT(*) FROM obj_{object_type} WHERE archived = ?",
                                          (int(archived),)).fetchone()[0])

    def get_rows(self, object_type: str, ids: Iterable[int], *, include_archived: bool = False) -> dict[int, Row]:
        ids = list(dict.fromkeys(ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        cond = "" if include_archived else " AND archived = 0"
        with self._lock:
            recs = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM obj_{object_type} WHERE id IN ({marks}){cond}", ids).fetchall()
        return {rec[0]: self._row(rec) for rec in recs}

    def get_rows_by_unique(self, object_type: str, keys: Iterable[str]) -> dict[str, Row]:
        """Rows by lower-cased email (contacts) / domain (companies); first (lowest id) wins."""
        keys = list(dict.fromkeys(k.lower() for k in keys))
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._lock:
            recs = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM obj_{object_type} WHERE unique_key IN ({marks}) AND archived = 0 "
                "ORDER BY id DESC", keys).fetchall()
        return {rec[4]: self._row(rec) for rec in recs}

    def list_page(self, object_type: str, *, after_id: int, limit: int, archived: bool = False) -> list[Row]:
        """Rows with id >= after_id in id order (HubSpot's list `after` is the next id)."""
        with self._lock:
            recs = self._conn.execute(
                f"SELECT {self._COLUMNS} FROM obj_{object_type} WHERE archived = ? AND id >= ? ORDER BY id LIMIT ?",
                (int(archived), after_id, limit)).fetchall()
        return [self._row(rec) for rec in recs]

    def search(self, object_type: str, where_sql: str, params: Sequence[Any], order_sql: str, limit: int,
               offset: int) -> tuple[int, list[Row]]:
        """Total matches and one page; `where_sql`/`order_sql` come from `search.compile_search`."""
        where = f"archived = 0 AND ({where_sql})" if where_sql else "archived = 0"
        with self._lock:
            total = int(self._conn.execute(f"SELECT COUNT(*) FROM obj_{object_type} WHERE {where}",
                                           params).fetchone()[0])
            recs = []
            if offset < total and limit > 0:
                recs = self._conn.execute(
                    f"SELECT {self._COLUMNS} FROM obj_{object_type} WHERE {where} ORDER BY {order_sql} "
                    "LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return total, [self._row(rec) for rec in recs]

    def explain(self, object_type: str, where_sql: str, params: Sequence[Any], order_sql: str,
                *, count: bool = False) -> list[str]:
        """SQLite's query plan for a search's page, or with `count` for its `total` (tests use it
        to prove the index is used)."""
        where = f"archived = 0 AND ({where_sql})" if where_sql else "archived = 0"
        query = (f"SELECT COUNT(*) FROM obj_{object_type} WHERE {where}" if count else
                 f"SELECT id FROM obj_{object_type} WHERE {where} ORDER BY {order_sql} LIMIT 200")
        with self._lock:
            rows = self._conn.execute(f"EXPLAIN QUERY PLAN {query}", params).fetchall()
        return [r[-1] for r in rows]

    def contacts_of_companies(self, company_ids: Sequence[int]) -> dict[int, list[int]]:
        if not company_ids:
            return {}
        marks = ",".join("?" * len(company_ids))
        with self._lock:
            recs = self._conn.execute(
                f"SELECT company_id, id FROM obj_contacts WHERE company_id IN ({marks}) AND archived = 0 ORDER BY id",
                list(company_ids)).fetchall()
        out: dict[int, list[int]] = {}
        for company_id, contact_id in recs:
            out.setdefault(company_id, []).append(contact_id)
        return out

    # --- writing objects ------------------------------------------------------------------------
    def save(self, object_type: str, rows: Sequence[Row], changes: Sequence[tuple[int, str, Any, Any]],
             at_ms: int, source: ChangeSource = API, merged: tuple[int, int] | None = None) -> None:
        """Persist updated rows and log their property changes, made by `source`, in one transaction.

        `changes` are (object id, property, old internal value, new internal value). `merged`
        (merged-away id, survivor id) repoints the records once merged into the merged-away one
        to the survivor, so a read of any merged id finds the live record in one step.
        """
        defs = self.properties(object_type)
        with self._lock, self._transaction():
            self._conn.executemany(
                f"UPDATE obj_{object_type} SET modified_ms = ?, unique_key = ?, company_id = ?, props = ?, "
                "archived = ?, archived_ms = ?, merged_into = ? WHERE id = ?",
                [(r.modified_ms, r.unique_key, r.company_id, json.dumps(r.props, separators=(",", ":")),
                  MERGED if r.merged_into else int(r.archived), r.archived_ms, r.merged_into, r.id) for r in rows])
            if merged is not None:
                self._conn.execute(f"UPDATE obj_{object_type} SET merged_into = ? WHERE merged_into = ?",
                                   (merged[1], merged[0]))
            self._log(object_type, changes, at_ms, defs, source)

    def create(self, object_type: str, rows: Sequence[Row], at_ms: int, source: ChangeSource = API) -> list[Row]:
        """Insert new rows (ids assigned by SQLite when `id` is 0) created by `source`, and log their values."""
        defs = self.properties(object_type)
        created: list[Row] = []
        with self._lock, self._transaction():
            for r in rows:
                r.created_by = source
                cur = self._conn.execute(
                    f"INSERT INTO obj_{object_type} (id, created_ms, modified_ms, archived, unique_key, company_id, "
                    "props, created_by) VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
                    (r.id or None, r.created_ms, r.modified_ms, r.unique_key, r.company_id,
                     json.dumps(r.props, separators=(",", ":")), source.to_json()))
                r.id = int(cur.lastrowid)
                created.append(r)
                self._log(object_type, [(r.id, k, None, v) for k, v in r.props.items() if v is not None], at_ms, defs,
                          source)
        return created

    def _log(self, object_type: str, changes: Sequence[tuple[int, str, Any, Any]], at_ms: int,
             defs: dict[str, PropertyDef], source: ChangeSource) -> None:
        # One executemany per batch: the history must not slow a batch update down.
        s = source
        self._conn.executemany(
            "INSERT INTO writes (at_ms, object_type, object_id, property, old_value, new_value, source_type, "
            "source_id, source_label, user_id) VALUES (?,?,?,?,?,?,?,?,?,?)",
            [(at_ms, object_type, str(oid), name, render_value(defs.get(name), old), render_value(defs.get(name), new),
              s.source_type, s.source_id, s.source_label, s.user_id)
             for oid, name, old, new in changes])

    def _transaction(self) -> "_Tx":
        return _Tx(self._conn)

    def touch(self, object_type: str, ids: Sequence[int], modified_ms: int) -> None:
        """Set the last-modified time of many records at once (what a bulk import does in HubSpot)."""
        with self._lock, self._transaction():
            self._conn.executemany(f"UPDATE obj_{object_type} SET modified_ms = ? WHERE id = ?",
                                   [(modified_ms, i) for i in ids])

    # --- write log ------------------------------------------------------------------------------
    def writes(self, *, since_ms: int = 0, since_seq: int = 0, object_type: str | None = None,
               limit: int = 10_000) -> list[WriteEntry]:
        sql = f"SELECT {self._WRITE_COLUMNS} FROM writes WHERE at_ms >= ? AND seq > ?"
        params: list[Any] = [since_ms, since_seq]
        if object_type:
            sql += " AND object_type = ?"
            params.append(object_type)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._lock:
            recs = self._conn.execute(sql, params).fetchall()
        return [self._write_entry(rec) for rec in recs]

    _WRITE_COLUMNS = ("seq, at_ms, object_type, object_id, property, old_value, new_value, source_type, source_id, "
                      "source_label, user_id")

    @staticmethod
    def _write_entry(rec: Sequence[Any]) -> WriteEntry:
        return WriteEntry(*rec[:7], source=ChangeSource(*rec[7:]))

    def history(self, object_type: str, ids: Sequence[int], names: Sequence[str]) -> dict[tuple[int, str],
                                                                                        list[WriteEntry]]:
        """Logged changes of these properties of these records, newest first, by (id, property)."""
        ids, names = list(dict.fromkeys(ids)), list(dict.fromkeys(names))
        if not ids or not names:
            return {}
        sql = (f"SELECT {self._WRITE_COLUMNS} FROM writes WHERE object_type = ? AND object_id IN "
               f"({','.join('?' * len(ids))}) AND property IN ({','.join('?' * len(names))}) ORDER BY seq DESC")
        with self._lock:
            recs = self._conn.execute(sql, [object_type, *map(str, ids), *names]).fetchall()
        out: dict[tuple[int, str], list[WriteEntry]] = {}
        for rec in recs:
            entry = self._write_entry(rec)
            out.setdefault((int(entry.object_id), entry.property), []).append(entry)
        return out

    # --- bulk load (seeding) --------------------------------------------------------------------
    def bulk_load(self, object_type: str, columns: dict[str, list[Any]], prop_names: Sequence[str],
                  chunk: int = 100_000) -> int:
        """Load a seeded world fast. `columns` holds id, created_ms, modified_ms, unique_key,
        company_id and one list per name in `prop_names`.

        Each JSON document is assembled column-wise (`_json_documents`: every distinct value of a
        column is rendered once, exactly as SQLite's json_object() would, null members dropped),
        then rows go straight into the object table with a 6-parameter executemany; indexes are
        built once at the end."""
        base = ["id", "created_ms", "modified_ms", "unique_key", "company_id"]
        n = len(columns["id"])
        with self._lock:
            # A crash mid-seed only loses the seed (the file is re-seeded), so skip fsyncs.
            self._conn.execute("PRAGMA synchronous=OFF")
            with self._transaction():
                for ddl in _INDEXES:  # building indexes once at the end is several times faster
                    name = ddl.format(t=object_type).split(" ON ")[0].split()[-1]
                    self._conn.execute(f"DROP INDEX IF EXISTS {name}")
                sql = (f"INSERT INTO obj_{object_type} (id, created_ms, modified_ms, archived, unique_key, "
                       "company_id, props) VALUES (?, ?, ?, 0, ?, ?, ?)")
                for start in range(0, n, chunk):
                    stop = min(n, start + chunk)
                    docs = self._json_documents([columns[p][start:stop] for p in prop_names], prop_names)
                    self._conn.executemany(sql, zip(*[columns[c][start:stop] for c in base], docs))
                for ddl in _INDEXES:
                    self._conn.execute(ddl.format(t=object_type))
            self._conn.execute(f"ANALYZE obj_{object_type}")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        return n

    def _json_documents(self, columns: Sequence[list[Any]], names: Sequence[str]) -> list[str]:
        """One compact JSON object per row: `json_patch('{}', json_object(name, value, ...))`
        byte for byte (members in `names` order, None members omitted), built column-wise."""
        if not columns:
            return []
        n = len(columns[0])
        parts = [self._json_members(values, name) for values, name in zip(columns, names)]
        # Every member carries a leading comma; the first one's is dropped.
        return ["{" + "".join(row)[1:] + "}" for row in zip(*parts)] if parts else ["{}"] * n

    def _json_members(self, values: list[Any], name: str) -> np.ndarray:
        """`,"name":<value>` per row ("" where the value is None), every distinct value rendered once."""
        prefix = "," + self._json_quote([name])[0] + ":"
        codes, uniques_index = pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)
        uniques = uniques_index.tolist()
        kinds = set(map(type, uniques))
        if kinds - {str, int, bool}:
            # Floats (1 and 1.0 factorize together but render differently) or anything unusual:
            # render row by row through SQLite itself.
            rendered = self._json_quote([None if v is None or v != v else v for v in values])
            return np.array(["" if r is None else prefix + r for r in rendered], dtype=object)
        if kinds <= {int, bool}:  # sqlite3 binds bools as integers
            out = [prefix + str(int(u)) for u in uniques]
        elif kinds == {str} and _JSON_PLAIN.fullmatch("".join(uniques)):
            out = [f'{prefix}"{u}"' for u in uniques]
        else:
            out = []
            for u in uniques:
                if isinstance(u, str):
                    # Strings needing escapes are quoted by SQLite itself, exactly as json_object() does.
                    out.append(f'{prefix}"{u}"' if _JSON_PLAIN.fullmatch(u) else prefix + self._json_quote([u])[0])
                else:
                    out.append(prefix + str(int(u)))
        table = np.array(out + [""], dtype=object)  # code -1 (missing) -> the trailing ""
        return table[codes]

    def _json_quote(self, values: Sequence[Any]) -> list[str | None]:
        """SQLite's json_quote() of each value (None stays None)."""
        out: list[str | None] = []
        step = 500
        for start in range(0, len(values), step):
            part = list(values[start:start + step])
            marks = ",".join("(?)" for _ in part)
            rows = self._conn.execute(f"SELECT json_quote(column1) FROM (VALUES {marks})", part).fetchall()
            out.extend(r[0] for r in rows)
        return [None if v is None else q for v, q in zip(values, out)]

    def load_enrichment(self, records: Iterable[tuple[str, dict[str, Any]]]) -> None:
        with self._lock, self._transaction():
            encode = _COMPACT_JSON.encode  # json.dumps(rec, separators=(",", ":")) without a new encoder per record
            self._conn.executemany("INSERT OR REPLACE INTO enrichment VALUES (?, ?)",
                                   ((d, encode(rec)) for d, rec in records))

    def enrichment(self, domain: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM enrichment WHERE domain = ?", (domain.lower(),)).fetchone()
        return None if row is None else json.loads(row[0])


class _Tx:
    """BEGIN/COMMIT around a block (the connection runs in autocommit mode otherwise)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


def unique_key_for(object_type: str, props: dict[str, Any]) -> str | None:
    value = props.get(UNIQUE_PROPERTY[object_type])
    return str(value).strip().lower() if value else None
