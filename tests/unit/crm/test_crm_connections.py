"""Connections parsed from AIRFLOW_CONN_* variables (JSON and URI forms), token never shown."""

from __future__ import annotations

import json
import logging

import pytest

from leadflow.connections import Connection, ConnectionConfigError, env_var_name, get_connection

TOKEN = "pat-na1-0000-very-secret"


def test_env_var_name_follows_airflow_rule() -> None:
    assert env_var_name("leadflow_hubspot") == "AIRFLOW_CONN_LEADFLOW_HUBSPOT"


def test_given_json_form_then_fields_extra_and_base_url_are_parsed() -> None:
    env = {
        "AIRFLOW_CONN_LEADFLOW_HUBSPOT": json.dumps(
            {"conn_type": "http", "host": "127.0.0.1", "port": 8765, "schema": "http",
             "password": TOKEN, "extra": {"search_rate_per_s": 4}}
        )
    }
    conn = get_connection("leadflow_hubspot", env)
    assert conn.base_url == "http://127.0.0.1:8765"
    assert conn.token == TOKEN
    assert conn.extra == {"search_rate_per_s": 4}
    assert conn.conn_type == "http"


def test_given_https_schema_and_hubspot_host_then_base_url_is_https_without_port() -> None:
    conn = Connection("hs", host="api.hubapi.com", schema="https", password=TOKEN)
    assert conn.base_url == "https://api.hubapi.com"


def test_given_remote_host_without_schema_then_defaults_to_https() -> None:
    assert Connection("hs", host="api.hubapi.com").base_url == "https://api.hubapi.com"
    assert Connection("hs", host="localhost", port=80).base_url == "http://localhost:80"


def test_given_host_with_scheme_then_it_is_used_as_given() -> None:
    assert Connection("hs", host="https://api.hubapi.com/").base_url == "https://api.hubapi.com"


def test_given_extra_as_json_string_then_it_is_decoded() -> None:
    env = {"AIRFLOW_CONN_X": json.dumps({"host": "127.0.0.1", "extra": json.dumps({"a": 1})})}
    assert get_connection("x", env).extra == {"a": 1}


def test_given_uri_form_then_password_is_unquoted_and_query_becomes_extra() -> None:
    env = {"AIRFLOW_CONN_LEADFLOW_HUBSPOT": "http://user:p%40ss%2Fword@127.0.0.1:9001/http?search_rate_per_s=2.5&page_size=100"}
    conn = get_connection("leadflow_hubspot", env)
    assert conn.token == "p@ss/word"
    assert conn.login == "user"
    assert conn.base_url == "http://127.0.0.1:9001"
    assert conn.extra == {"search_rate_per_s": "2.5", "page_size": "100"}


def test_given_uri_with_extra_json_then_it_is_merged() -> None:
    env = {"AIRFLOW_CONN_X": 'https://:tok@api.hubapi.com?__extra__={"daily_reserve": 500}'}
    conn = get_connection("x", env)
    assert conn.extra == {"daily_reserve": 500}
    assert conn.base_url == "https://api.hubapi.com"


def test_given_missing_variable_then_error_names_it() -> None:
    with pytest.raises(ConnectionConfigError, match="AIRFLOW_CONN_LEADFLOW_HUBSPOT"):
        get_connection("leadflow_hubspot", {})


def test_given_malformed_json_then_error_names_variable_but_not_token() -> None:
    env = {"AIRFLOW_CONN_LEADFLOW_HUBSPOT": '{"password": "' + TOKEN + '", "host": }'}
    with pytest.raises(ConnectionConfigError) as info:
        get_connection("leadflow_hubspot", env)
    assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in str(info.value)
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    "raw, needle",
    [
        ('{"host": "h", "port": "abc"}', "port"),
        ('{"host": "h", "port": 70000}', "port"),
        ('{"host": "h", "extra": [1]}', "extra"),
        ('{"host": "h", "pasword": "x"}', "pasword"),
        ("not a uri", "URI"),
        ('["a"]', "object"),
        ('{"host": "h", "extra": "{oops"}', r"'extra' is not valid JSON \(.* at position 1\)"),
        ("https://h?__extra__={oops", r"__extra__ is not valid JSON \(.* at position 1\)"),
        ("https://h?__extra__=[1]", "__extra__ must be a JSON object"),
    ],
)
def test_given_bad_values_then_error_names_the_key(raw: str, needle: str) -> None:
    with pytest.raises(ConnectionConfigError, match=needle):
        get_connection("x", {"AIRFLOW_CONN_X": raw})


def test_given_connection_without_host_then_base_url_raises_naming_variable() -> None:
    with pytest.raises(ConnectionConfigError, match="AIRFLOW_CONN_X"):
        Connection("x").base_url


def test_token_never_appears_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    conn = Connection("x", host="127.0.0.1", password=TOKEN, extra={"client_secret": "also-secret"})
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("connection %s / %r", conn, conn)
    for text in (repr(conn), str(conn), caplog.text):
        assert TOKEN not in text
        assert "also-secret" not in text
    assert "***" in repr(conn)


def test_from_airflow_converts_a_duck_typed_airflow_connection() -> None:
    class AirflowLike:
        conn_id, conn_type, host, port, schema, login, password = "x", "http", "127.0.0.1", 8765, "http", None, TOKEN
        extra_dejson = {"page_size": 50}

    conn = Connection.from_airflow(AirflowLike())
    assert (conn.base_url, conn.token, conn.extra) == ("http://127.0.0.1:8765", TOKEN, {"page_size": 50})
