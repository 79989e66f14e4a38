"""Airflow-style connections, and how leadflow finds them (without importing Airflow here).

Where a connection comes from is a *resolver*, a function `conn_id -> Connection` that raises
`ConnectionNotFound` when the id is defined nowhere it looks:

- with Airflow installed, `airflow_lookup`: Airflow's own lookup (`leadflow.airflow_adapter`), so a
  connection from the UI / metadata database, an `AIRFLOW_CONN_*` variable or a secrets backend
  is found alike (inside a task through the Task SDK, elsewhere, e.g. the CLI, through the core
  lookup that reads the metadata database too);
- without Airflow, or for a given mapping, `connection_from_env`: the `AIRFLOW_CONN_*` form only.

`default_resolver()` picks between them; functions of the library take a `resolver` argument
defaulting to it. Airflow resolves a connection id `leadflow_hubspot` from the variable
`AIRFLOW_CONN_LEADFLOW_HUBSPOT`, in one of two forms:

- JSON: `{"conn_type": "http", "host": "127.0.0.1", "port": 8765, "schema": "http",
  "login": null, "password": "TOKEN", "extra": {"search_rate_per_s": 5}}`
- URI:  `http://:TOKEN@127.0.0.1:8765/http?search_rate_per_s=5` (userinfo and values
  percent-encoded; `__extra__=<json>` carries a JSON extra as Airflow writes it).

The token (the connection's password) never appears in repr/str or logs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from leadflow import airflow_adapter

log = logging.getLogger(__name__)

ENV_PREFIX = "AIRFLOW_CONN_"
# Connection types the leadflow hooks register in Airflow (form fields, Test button); connections
# of conn_type "http" work the same, without the UI's form and test.
HUBSPOT_CONN_TYPE = "leadflow_hubspot"
SALESFORCE_CONN_TYPE = "leadflow_salesforce"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
_SCHEMES = {"http", "https"}


class ConnectionConfigError(ValueError):
    """The connection is missing or malformed; the message names the connection id and where to set it."""


class ConnectionNotFound(ConnectionConfigError):
    """No connection with this id is defined where the resolver looks."""


def env_var_name(conn_id: str) -> str:
    """`leadflow_hubspot` -> `AIRFLOW_CONN_LEADFLOW_HUBSPOT` (Airflow's naming rule)."""
    return f"{ENV_PREFIX}{conn_id.upper()}"


@dataclass(frozen=True)
class Connection:
    """The parts of an Airflow connection leadflow uses. `password` holds the API token."""

    conn_id: str
    conn_type: str = "http"
    host: str | None = None
    port: int | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        """Airflow's name for `extra`, so code written against Airflow's connections reads this one."""
        return self.extra

    @property
    def token(self) -> str | None:
        """The bearer token (the connection's password)."""
        return self.password

    @property
    def base_url(self) -> str:
        """`scheme://host[:port]` without a trailing slash.

        The scheme is `schema` when it is "http"/"https" (Airflow's HTTP connection keeps the
        scheme there). Without one, loopback hosts default to http (the local sandbox) and every
        other host to https, so a token is never sent in clear to a remote API by omission.
        A host already carrying a scheme (`https://api.hubapi.com`) is used as given.
        """
        if not self.host:
            raise ConnectionConfigError(
                f"connection {self.conn_id!r} ({env_var_name(self.conn_id)}) has no host"
            )
        host = self.host.rstrip("/")
        if "://" in host:
            base = host
        else:
            scheme = (self.schema or "").lower()
            if scheme not in _SCHEMES:
                scheme = "http" if host.lower() in _LOOPBACK_HOSTS else "https"
            base = f"{scheme}://{host}"
        if self.port is not None and urlsplit(base).port is None:
            base = f"{base}:{self.port}"
        return base

    def __repr__(self) -> str:
        # Extra values may hold secrets (client secrets): show the keys only.
        return (
            f"Connection(conn_id={self.conn_id!r}, conn_type={self.conn_type!r}, "
            f"host={self.host!r}, port={self.port!r}, schema={self.schema!r}, "
            f"login={self.login!r}, password={'***' if self.password else None}, "
            f"extra_keys={sorted(self.extra)!r})"
        )

    __str__ = __repr__

    @classmethod
    def from_mapping(cls, conn_id: str, data: Mapping[str, Any], *, source: str = "") -> "Connection":
        """Build from Airflow's JSON form; `source` names where it came from, for errors."""
        where = source or f"connection {conn_id!r}"
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            # Airflow also accepts extra as a JSON-encoded string.
            extra = _json_object(extra, f"{where}: 'extra'") if extra.strip() else {}
        if not isinstance(extra, dict):
            raise ConnectionConfigError(f"{where}: 'extra' must be a JSON object")
        unknown = set(data) - {"conn_type", "host", "port", "schema", "login", "password", "extra", "description"}
        if unknown:
            raise ConnectionConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        return cls(
            conn_id=conn_id,
            conn_type=str(data.get("conn_type") or "http"),
            host=_opt_str(data.get("host")),
            port=_parse_port(data.get("port"), where),
            schema=_opt_str(data.get("schema")),
            login=_opt_str(data.get("login")),
            password=_opt_str(data.get("password")),
            extra=dict(extra),
        )

    @classmethod
    def from_uri(cls, conn_id: str, uri: str, *, source: str = "") -> "Connection":
        """Build from Airflow's URI form `type://login:password@host:port/schema?extra=..`."""
        where = source or f"connection {conn_id!r}"
        parts = urlsplit(uri)
        if not parts.scheme or "://" not in uri:
            raise ConnectionConfigError(f"{where}: not a connection URI (expected 'type://host...')")
        try:
            port = parts.port
        except ValueError:
            raise ConnectionConfigError(f"{where}: port is not a number") from None
        extra: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "__extra__":
                extra.update(_json_object(value, f"{where}: __extra__"))
            else:
                extra[key] = value
        schema = unquote(parts.path.lstrip("/")) or None
        return cls(
            conn_id=conn_id,
            conn_type=parts.scheme.replace("-", "_"),
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            schema=schema,
            login=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            extra=extra,
        )

    @classmethod
    def from_airflow(cls, conn: Any) -> "Connection":
        """Convert an Airflow `Connection` object (duck-typed, Airflow is not imported), for
        tasks whose connections live in Airflow's metadata database rather than the env."""
        extra = getattr(conn, "extra_dejson", None)
        if extra is None:
            raw = getattr(conn, "extra", None) or "{}"
            extra = json.loads(raw) if isinstance(raw, str) else dict(raw)
        return cls(
            conn_id=str(conn.conn_id),
            conn_type=str(getattr(conn, "conn_type", None) or "http"),
            host=_opt_str(getattr(conn, "host", None)),
            port=_parse_port(getattr(conn, "port", None), f"connection {conn.conn_id!r}"),
            schema=_opt_str(getattr(conn, "schema", None)),
            login=_opt_str(getattr(conn, "login", None)),
            password=_opt_str(getattr(conn, "password", None)),
            extra=dict(extra),
        )


Resolver = Callable[[str], Connection]


def not_found_message(conn_id: str) -> str:
    """What to do when connection `conn_id` is defined nowhere (the same advice everywhere)."""
    return (
        f"connection {conn_id!r} is not defined: add it in the Airflow UI (Admin > Connections) or with "
        f"`airflow connections add {conn_id} ...`, in a secrets backend, or as the environment variable "
        f"{env_var_name(conn_id)}"
    )


def airflow_lookup(conn_id: str) -> Connection:
    """The resolver through Airflow's own lookup: `conn_id` as a leadflow `Connection`."""
    found = airflow_adapter.airflow_connection(conn_id)
    if found is None:
        raise ConnectionNotFound(not_found_message(conn_id))
    conn = Connection.from_airflow(found)
    log.debug("connection %s from Airflow (%s, host %s)", conn_id, conn.conn_type, conn.host)
    return conn


def default_resolver() -> Resolver:
    """Airflow's connection lookup when Airflow is installed, else the `AIRFLOW_CONN_*` variables."""
    if importlib.util.find_spec("airflow") is None:
        return connection_from_env
    return airflow_lookup


def get_connection(
    conn_id: str, environ: Mapping[str, str] | None = None, *, resolver: Resolver | None = None
) -> Connection:
    """Connection `conn_id`: from `environ`'s `AIRFLOW_CONN_*` variable when a mapping is given,
    else through `resolver` (default: `default_resolver()`).

    Raises ConnectionNotFound when it is defined nowhere, ConnectionConfigError when malformed;
    both say what to set.
    """
    if environ is not None:
        return connection_from_env(conn_id, environ)
    return (resolver or default_resolver())(conn_id)


def find_connection(
    conn_id: str, environ: Mapping[str, str] | None = None, *, resolver: Resolver | None = None
) -> Connection | None:
    """Like `get_connection`, but None when the connection is not defined (optional connections:
    enrichment API, warehouse, alerts). A malformed one still raises."""
    try:
        return get_connection(conn_id, environ, resolver=resolver)
    except ConnectionNotFound:
        return None


def connection_from_env(conn_id: str, environ: Mapping[str, str] | None = None) -> Connection:
    """Read connection `conn_id` from `AIRFLOW_CONN_<CONN_ID>` (JSON or URI form) of `environ`
    (default: the process environment).

    Raises ConnectionNotFound when the variable is unset or empty, ConnectionConfigError naming
    it when malformed.
    """
    env = os.environ if environ is None else environ
    var = env_var_name(conn_id)
    raw = env.get(var)
    if raw is None or not raw.strip():
        raise ConnectionNotFound(
            f"connection {conn_id!r} is not configured: set the environment variable {var} "
            f'(JSON like {{"conn_type":"http","host":"127.0.0.1","port":8765,"password":"TOKEN"}} '
            f"or a URI like http://:TOKEN@127.0.0.1:8765)"
        )
    raw = raw.strip()
    source = f"environment variable {var}"
    if raw.startswith(("{", "[")):
        return Connection.from_mapping(conn_id, _json_object(raw, source), source=source)
    return Connection.from_uri(conn_id, raw, source=source)


def _json_object(text: str, what: str) -> dict[str, Any]:
    """`text` read as a JSON object, else a ConnectionConfigError naming `what`, the parser's
    message and position only: the text itself may hold a token."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConnectionConfigError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise ConnectionConfigError(f"{what} must be a JSON object")
    return value


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _parse_port(value: Any, where: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConnectionConfigError(f"{where}: 'port' must be an integer, got {value!r}") from None
    if not 0 < port < 65536:
        raise ConnectionConfigError(f"{where}: 'port' {port} is out of range")
    return port
