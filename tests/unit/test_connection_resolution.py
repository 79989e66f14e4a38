"""Where connections come from: a resolver (Airflow's lookup, or AIRFLOW_CONN_* only), used alike
by the CRM, enrichment, warehouse and alert lookups."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

import leadflow.connections as connections
from leadflow import airflow_adapter
from leadflow.connections import (
    Connection,
    ConnectionConfigError,
    ConnectionNotFound,
    find_connection,
    get_connection,
)
from leadflow.enrich.chain import build_chain
from leadflow.enrich.settings import EnrichmentSettings
from leadflow.warehouse.db import url_from_connection, warehouse_url

NO_REFERENCE = EnrichmentSettings(reference_enabled=False, cache_enabled=False)


def resolver_of(*conns: Connection):
    """A resolver that knows these connections and asks for nothing else."""
    known = {c.conn_id: c for c in conns}
    asked: list[str] = []

    def resolve(conn_id: str) -> Connection:
        asked.append(conn_id)
        if conn_id not in known:
            raise ConnectionNotFound(connections.not_found_message(conn_id))
        return known[conn_id]

    resolve.asked = asked  # type: ignore[attr-defined]
    return resolve


# --- leadflow.connections ---------------------------------------------------------------------------
def test_given_a_mapping_then_only_its_airflow_conn_variable_is_read() -> None:
    env = {"AIRFLOW_CONN_LEADFLOW_HUBSPOT": json.dumps({"host": "127.0.0.1", "port": 8765, "password": "t"})}
    never = resolver_of()
    assert get_connection("leadflow_hubspot", env, resolver=never).base_url == "http://127.0.0.1:8765"
    assert never.asked == []


def test_given_no_mapping_then_the_resolver_answers() -> None:
    conn = Connection("leadflow_hubspot", host="crm.example", password="t")
    assert get_connection("leadflow_hubspot", resolver=resolver_of(conn)) is conn


def test_given_an_undefined_connection_then_find_is_none_and_get_says_every_place_to_define_it() -> None:
    assert find_connection("leadflow_enrichment", resolver=resolver_of()) is None
    with pytest.raises(ConnectionNotFound) as info:
        get_connection("leadflow_enrichment", resolver=resolver_of())
    message = str(info.value)
    assert "Airflow UI" in message and "airflow connections add leadflow_enrichment" in message
    assert "AIRFLOW_CONN_LEADFLOW_ENRICHMENT" in message


def test_given_a_malformed_connection_then_find_still_raises() -> None:
    with pytest.raises(ConnectionConfigError, match="AIRFLOW_CONN_X"):
        find_connection("x", {"AIRFLOW_CONN_X": "{oops"})


def test_given_airflow_installed_then_the_default_resolver_is_airflows_lookup() -> None:
    assert connections.default_resolver() is connections.airflow_lookup


def test_given_no_airflow_then_the_default_resolver_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setattr(connections.importlib.util, "find_spec", lambda name: None)
    assert connections.default_resolver() is connections.connection_from_env


def test_connection_offers_airflows_extra_dejson_name() -> None:
    assert Connection("x", extra={"path": "/hook"}).extra_dejson == {"path": "/hook"}


# --- Airflow's lookup (leadflow.airflow_adapter) ----------------------------------------------------
def test_given_outside_a_task_then_airflows_core_lookup_finds_an_environment_connection(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LEADFLOW_TEST_CORE", json.dumps(
        {"conn_type": "hubspot", "host": "127.0.0.1", "port": 8765, "schema": "http", "password": "tok",
         "extra": {"search_rate_per_s": 4}}))
    assert not airflow_adapter.in_task()
    conn = connections.airflow_lookup("leadflow_test_core")
    assert (conn.conn_type, conn.base_url, conn.token, conn.extra) == (
        "hubspot", "http://127.0.0.1:8765", "tok", {"search_rate_per_s": 4})


def test_given_outside_a_task_and_undefined_then_not_found_names_the_id() -> None:
    with pytest.raises(ConnectionNotFound, match="'leadflow_nowhere' is not defined"):
        connections.airflow_lookup("leadflow_nowhere")


def test_given_inside_a_task_then_the_task_sdk_lookup_is_used(monkeypatch) -> None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException
    from airflow.sdk.execution_time import task_runner

    sdk_conn = SimpleNamespace(conn_id="leadflow_hubspot", conn_type="http", host="h", port=None, schema="https",
                               login=None, password="tok", extra_dejson={})

    def lookup(cls, conn_id):
        if conn_id != "leadflow_hubspot":
            raise AirflowNotFoundException(conn_id)
        return sdk_conn

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", object(), raising=False)
    monkeypatch.setattr(BaseHook, "get_connection", classmethod(lookup))
    assert airflow_adapter.in_task()
    assert connections.airflow_lookup("leadflow_hubspot").base_url == "https://h"
    with pytest.raises(ConnectionNotFound):
        connections.airflow_lookup("leadflow_other")


# --- warehouse --------------------------------------------------------------------------------------
def test_given_a_postgres_connection_then_the_url_has_its_parts_and_options() -> None:
    conn = Connection("leadflow_warehouse", conn_type="postgres", host="db.internal", port=5433, schema="leads",
                      login="lf", password="p@ss/word", extra={"sslmode": "require"})
    url = url_from_connection(conn)
    from sqlalchemy import make_url

    parsed = make_url(url)
    assert (parsed.drivername, parsed.host, parsed.port, parsed.database) == ("postgresql+psycopg", "db.internal",
                                                                              5433, "leads")
    assert (parsed.username, parsed.password, dict(parsed.query)) == ("lf", "p@ss/word", {"sslmode": "require"})


def test_given_a_sqlite_connection_then_its_host_is_the_file(tmp_path) -> None:
    conn = Connection("leadflow_warehouse", conn_type="sqlite", host=str(tmp_path / "wh.db"))
    assert url_from_connection(conn) == f"sqlite:///{tmp_path / 'wh.db'}"


def test_given_an_unsupported_connection_type_then_the_error_names_connection_and_types() -> None:
    with pytest.raises(ConnectionConfigError, match=r"'leadflow_warehouse' has conn_type 'mysql'.*postgres"):
        url_from_connection(Connection("leadflow_warehouse", conn_type="mysql", host="h"))


def test_warehouse_prefers_the_connection_then_the_variable_then_sqlite(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv("LEADFLOW_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", "sqlite:////from/variable.db")
    conn = Connection("leadflow_warehouse", conn_type="postgres", host="db", schema="w", login="u", password="secret")
    with caplog.at_level(logging.INFO, logger="leadflow.warehouse.db"):
        assert warehouse_url(resolver_of(conn)) == "postgresql+psycopg://u:secret@db/w"
    assert "secret" not in caplog.text and "leadflow_warehouse" in caplog.text
    assert warehouse_url(resolver_of()) == "sqlite:////from/variable.db"
    monkeypatch.delenv("LEADFLOW_WAREHOUSE_URL")
    assert warehouse_url(resolver_of()) == f"sqlite:///{tmp_path / 'warehouse.db'}"


# --- enrichment -------------------------------------------------------------------------------------
def test_given_the_resolver_knows_the_enrichment_connection_then_the_api_provider_is_on() -> None:
    conn = Connection("leadflow_enrichment", host="127.0.0.1", port=9, schema="http", password="k")
    resolver = resolver_of(conn)
    chain = build_chain(None, NO_REFERENCE, resolver=resolver)
    assert chain.names == ["api"] and resolver.asked == ["leadflow_enrichment"]
    assert chain.providers[0].url == "http://127.0.0.1:9/v2/companies/find"


def test_given_the_resolver_knows_no_enrichment_connection_then_the_api_provider_is_off() -> None:
    assert build_chain(None, NO_REFERENCE, resolver=resolver_of()).names == []


# --- alerts -----------------------------------------------------------------------------------------
def test_alert_channels_come_from_the_resolver_and_a_bad_one_is_skipped_with_a_warning(monkeypatch, caplog) -> None:
    from leadflow import alerts

    webhook = Connection(alerts.WEBHOOK_CONN, host="hooks.example", extra={"path": "/x"})

    def resolve(conn_id: str) -> Connection:
        if conn_id == alerts.SMTP_CONN:
            raise ConnectionConfigError("connection 'leadflow_alerts_smtp': 'port' must be an integer")
        return resolver_of(webhook)(conn_id)

    monkeypatch.setattr(connections, "default_resolver", lambda: resolve)
    with caplog.at_level(logging.WARNING, logger="leadflow.alerts"):
        assert alerts._airflow_connection(alerts.WEBHOOK_CONN) is webhook
        assert alerts._airflow_connection(alerts.SMTP_CONN) is None
    assert "leadflow_alerts_smtp" in caplog.text and "port" in caplog.text
    monkeypatch.setattr(connections, "default_resolver", lambda: resolver_of())
    assert alerts._airflow_connection(alerts.WEBHOOK_CONN) is None


def _run_cli_script(script: str, tmp_path, **connections: str) -> subprocess.CompletedProcess[str]:
    """`script` in a fresh interpreter as the CLI runs (an empty AIRFLOW_HOME, no Airflow
    connection variables but `connections`' AIRFLOW_CONN_<ID>); it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    env.update({f"AIRFLOW_CONN_{conn_id.upper()}": uri for conn_id, uri in connections.items()})
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return out


def test_given_a_cli_process_then_the_airflow_lookup_leaves_its_stdout_and_logging_alone(tmp_path) -> None:
    """Importing Airflow points the root logger at stdout; `leadflow report --json` owns stdout."""
    out = _run_cli_script(
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO)\n"
        "from leadflow.connections import find_connection\n"
        "print(find_connection('leadflow_nowhere'))\n"
        "logging.getLogger('leadflow.x').info('after the lookup')\n", tmp_path)
    assert out.stdout == "None\n"
    assert "INFO:leadflow.x:after the lookup" in out.stderr


def test_given_a_cli_process_then_what_the_airflow_lookup_logs_goes_to_its_logging_not_stdout(tmp_path) -> None:
    """A connection with a password, no Fernet key: Airflow warns that it cannot encrypt. The
    warning is the process's to show (stderr here), not a line in `leadflow run`'s output."""
    out = _run_cli_script(
        "import logging, sys\n"
        "logging.basicConfig(stream=sys.stderr, level=logging.INFO)\n"
        "from leadflow.connections import find_connection\n"
        "print(find_connection('leadflow_somewhere').host)\n", tmp_path,
        leadflow_somewhere="http://:secret@crm.example.com")
    assert out.stdout == "crm.example.com\n"
    assert "secret" not in out.stdout + out.stderr
