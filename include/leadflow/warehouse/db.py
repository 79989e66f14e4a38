"""Warehouse connection, schema creation and bulk upserts for SQLite and PostgreSQL.

Where the warehouse is, first found wins: the connection `leadflow_warehouse` (Airflow's lookup
when Airflow is installed: UI / metadata database, `AIRFLOW_CONN_LEADFLOW_WAREHOUSE`, secrets
backends), then `LEADFLOW_WAREHOUSE_URL`, then a SQLite file in the var folder.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from sqlalchemy import URL, Engine, Table, and_, bindparam, create_engine, event, inspect, make_url, text, update
from sqlalchemy.dialects import postgresql, sqlite

from leadflow.batching import chunks
from leadflow.connections import ConnectionConfigError, find_connection
from leadflow.env import leadflow_env, project_root
from leadflow.warehouse.tables import metadata

if TYPE_CHECKING:
    from leadflow.connections import Connection, Resolver

log = logging.getLogger(__name__)

# Modules that register further tables on `metadata`; imported before create_all so one call
# creates the whole warehouse.
_TABLE_MODULES = (
    "leadflow.enrich.tables",
    "leadflow.quality.tables",
    "leadflow.warehouse.quarantine_store",
    "leadflow.predict.tables",
    "leadflow.push.tables",
    "leadflow.verdicts.tables",
    "leadflow.accounts.tables",
    "leadflow.shared_limit",
)

__all__ = ["project_root", "var_dir", "default_warehouse_url", "warehouse_url", "url_from_connection",
           "get_engine", "ensure_schema", "upsert"]

WAREHOUSE_CONN_ID = "leadflow_warehouse"
# Airflow connection types the warehouse accepts, and the SQLAlchemy driver of each.
_DRIVERS = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg", "sqlite": "sqlite"}


def var_dir() -> Path:
    """Local state (SQLite warehouse, Data Docs, run reports): `LEADFLOW_VAR_DIR` or var/ (created)."""
    folder = leadflow_env().var_path
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def default_warehouse_url() -> str:
    return f"sqlite:///{var_dir() / 'warehouse.db'}"


def url_from_connection(conn: Connection) -> str:
    """A SQLAlchemy URL from an Airflow connection: postgres (host, port, login, password,
    schema = database, extra = query options such as sslmode) or sqlite (host = the file path,
    as Airflow's SQLite connection keeps it)."""
    driver = _DRIVERS.get(conn.conn_type.lower())
    if driver is None:
        raise ConnectionConfigError(
            f"connection {conn.conn_id!r} has conn_type {conn.conn_type!r}; the warehouse needs one of "
            f"{sorted(_DRIVERS)} (or unset it and use LEADFLOW_WAREHOUSE_URL)"
        )
    if driver == "sqlite":
        path = conn.host or conn.schema
        if not path:
            raise ConnectionConfigError(f"connection {conn.conn_id!r} (sqlite) needs the database file path as its host")
        return f"sqlite:///{path}"
    if not conn.host:
        raise ConnectionConfigError(f"connection {conn.conn_id!r} (postgres) has no host")
    query = {str(k): str(v) for k, v in conn.extra.items()}
    url = URL.create(driver, username=conn.login, password=conn.password, host=conn.host, port=conn.port,
                     database=conn.schema, query=query)
    return url.render_as_string(hide_password=False)


def warehouse_url(resolver: Resolver | None = None) -> str:
    """The warehouse URL: connection `leadflow_warehouse`, else `LEADFLOW_WAREHOUSE_URL`, else
    SQLite in the var folder. `resolver` looks the connection up (default: Airflow's lookup when
    Airflow is installed, else `AIRFLOW_CONN_LEADFLOW_WAREHOUSE`)."""
    conn = find_connection(WAREHOUSE_CONN_ID, resolver=resolver)
    if conn is not None:
        url = url_from_connection(conn)
        log.info("warehouse: connection %s (%s)", WAREHOUSE_CONN_ID, _shown(url))
        return url
    return leadflow_env().warehouse_url or default_warehouse_url()


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cur = dbapi_connection.cursor()
    # WAL lets the UI read while a run writes; busy_timeout makes concurrent writers wait
    # instead of failing with "database is locked".
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def get_engine(url: str | None = None) -> Engine:
    """An engine for `url`, else for `warehouse_url()` (the module docstring says the order)."""
    url = url or warehouse_url()
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    # hide_parameters: a database error's text goes into logs and alerts; the bound values are
    # leads' emails and names, so they are left out of it.
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        event.listen(engine, "connect", _tune_sqlite)
    else:
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)
    return engine


def ensure_schema(engine: Engine) -> None:
    """Create every missing warehouse table (idempotent)."""
    for module in _TABLE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not exc.name or not module.startswith(exc.name):
                raise
    metadata.create_all(engine)
    _add_missing_columns(engine)


def _add_missing_columns(engine: Engine) -> None:
    """A warehouse made by an earlier version gets the nullable columns added since (their
    value is filled by the next pull); create_all only creates missing tables. A missing
    NOT NULL column cannot be added this way and is reported."""
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {c["name"] for c in inspector.get_columns(table.name)}
        missing = [c for c in table.columns if c.name not in present]
        for column in missing:
            if not column.nullable:
                raise RuntimeError(f"warehouse table {table.name!r} lacks the required column {column.name!r}: "
                                   "migrate it by hand or start from an empty warehouse")
            kind = column.type.compile(dialect=engine.dialect)
            with engine.begin() as conn:
                conn.execute(text(f'ALTER TABLE "{table.name}" ADD COLUMN "{column.name}" {kind}'))
            log.info("warehouse table %s: added column %s", table.name, column.name)


def upsert_many(conn: Any, table: Table, columns: Mapping[str, Sequence[Any]]) -> int:
    """Insert rows given column-wise (equal-length value lists, None for NULL), or update the
    non-key columns of rows whose primary key exists. Returns the number of rows.

    The statement is compiled once and handed to the driver's executemany with plain tuples:
    SQLAlchemy's per-row parameter processing would otherwise dominate (several times slower).
    So the values must be what the driver binds as they are (`repo.driver_values`: Python
    str, int, float, bool or None), and a column with a Python-side default must be given (the
    compiled statement asks for its value); one left out otherwise gets the database's value
    (NULL, a serial id).
    One statement binds one row: far below SQLite's 32,766 parameters, and no multi-row VALUES
    statement to compile (seconds per few thousand rows).
    """
    names = list(columns)
    if not names or not len(columns[names[0]]):
        return 0
    keys = [c.name for c in table.primary_key.columns]
    stmt = dialect_insert(conn)(table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in names if c not in keys})
    return _send(conn, stmt, columns)


def insert_many(conn: Any, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Plain INSERT of `rows` (mappings with the same keys), sent as `upsert_many` sends its rows:
    one compiled statement and the driver's executemany, so the values must be what the driver
    binds as they are. A column the rows leave out gets its scalar default (as SQLAlchemy would
    give it). Returns the number of rows."""
    if not rows:
        return 0
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    for column in table.columns:
        if column.name not in columns and column.default is not None and column.default.is_scalar:
            columns[column.name] = [column.default.arg] * len(rows)
    return _send(conn, dialect_insert(conn)(table), columns)


def update_by_key(conn: Any, table: Table, keys: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> int:
    """UPDATE the row of each of `rows` found by its `keys` columns, setting its other columns.
    Rows that set the same columns go in one executemany. Returns the number of rows given."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        sets = tuple(sorted(c for c in row if c not in keys))
        if sets:  # bind names apart from the columns' own (SQLAlchemy reserves those in SET)
            groups.setdefault(sets, []).append({f"k_{c}" if c in keys else f"v_{c}": v for c, v in row.items()})
    for sets, params in groups.items():
        stmt = (update(table).where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)))
                .values({c: bindparam(f"v_{c}") for c in sets}))
        conn.execute(stmt, params)
    return len(rows)


def dialect_insert(conn: Any) -> Any:
    """The INSERT construct of `conn`'s dialect (SQLite's or PostgreSQL's), which has ON CONFLICT."""
    insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}.get(conn.dialect.name)
    if insert is None:  # pragma: no cover - the warehouse only runs on these two
        raise ValueError(f"unsupported warehouse dialect {conn.dialect.name!r}")
    return insert


def _send(conn: Any, stmt: Any, columns: Mapping[str, Sequence[Any]]) -> int:
    """`stmt` compiled once for `columns` and executed with their values, one row a set."""
    names = list(columns)
    compiled = stmt.compile(dialect=conn.dialect, column_keys=names)
    if compiled.positional:
        order = list(compiled.positiontup or [])
        params: list[Any] = list(zip(*(columns[name] for name in order)))
    else:
        params = [dict(zip(names, values)) for values in zip(*(columns[n] for n in names))]
    conn.exec_driver_sql(str(compiled), params)
    return len(params)


def upsert(
    conn: Any,
    table: Table,
    rows: Sequence[dict[str, Any]],
    keys: Sequence[str] | None = None,
    update_columns: Sequence[str] | None = None,
) -> int:
    """Insert rows, updating the non-key columns of rows whose key already exists.

    Every row must carry the same columns. One statement is compiled and executed for all rows
    (the driver batches them), which is much cheaper than compiling a VALUES list per chunk.
    Returns the number of rows written. `update_columns=()` only inserts: a row whose key
    exists is left as it is.
    """
    if not rows:
        return 0
    keys = list(keys or [c.name for c in table.primary_key.columns])
    columns = list(rows[0].keys())
    updates = [c for c in (columns if update_columns is None else update_columns) if c not in keys]
    stmt = dialect_insert(conn)(table)
    if updates:
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in updates})
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    for chunk in chunks(rows, 50_000):
        conn.execute(stmt, list(chunk))
    return len(rows)
