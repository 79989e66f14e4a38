"""The HubSpot and Salesforce hooks' test_connection() against the running sandbox (HubSpot over
HTTP, Salesforce over TLS with its self-signed certificate), the sandbox's token-info endpoint,
and the hooks reached the way Airflow's Test button reaches them (connection type -> provider
-> hook)."""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Iterator

import pytest
import requests

from leadflow.airflow_hooks import HUBSPOT_REQUIRED_SCOPES, HubSpotHook, SalesforceHook
from leadflow.crm.hubspot_session import TOKEN_INFO_PATH
from leadflow.sandbox.hubspot_api import SANDBOX_HUB_ID
from leadflow.sandbox.server import running_sandbox


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with running_sandbox(contacts=20, seed=3, salesforce=True) as handle:
        yield handle


def _define(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> str:
    """Define an Airflow connection the way a deployment may: an AIRFLOW_CONN_* variable."""
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))
    return conn_id


def _hubspot(monkeypatch, sandbox, token: str, conn_type: str = "leadflow_hubspot", port: int | None = None) -> HubSpotHook:
    conn_id = _define(monkeypatch, "hooktest_hubspot", conn_type=conn_type, host="127.0.0.1",
                      port=port or sandbox.port, schema="http", password=token)
    return HubSpotHook(hubspot_conn_id=conn_id)


def _salesforce(monkeypatch, sandbox, **fields: Any) -> SalesforceHook:
    sf = sandbox.salesforce
    base = {"conn_type": "leadflow_salesforce", "host": sf.host, "port": sf.port, "schema": "https",
            "password": sf.token, "extra": {"verify": str(sf.cert_path)}}
    return SalesforceHook(salesforce_conn_id=_define(monkeypatch, "hooktest_salesforce", **{**base, **fields}))


# --- the sandbox's token introspection --------------------------------------------------------------
def test_token_info_answers_portal_app_and_scopes_for_the_sandbox_token(sandbox) -> None:
    resp = requests.post(f"{sandbox.base_url}{TOKEN_INFO_PATH}", json={"tokenKey": sandbox.token}, timeout=10)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {"userId", "hubId", "appId", "scopes"} and body["hubId"] == SANDBOX_HUB_ID
    assert set(HUBSPOT_REQUIRED_SCOPES) <= set(body["scopes"])


def test_token_info_answers_401_for_an_unknown_token_and_400_without_one(sandbox) -> None:
    wrong = requests.post(f"{sandbox.base_url}{TOKEN_INFO_PATH}", json={"tokenKey": "pat-na1-wrong"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["category"] == "INVALID_AUTHENTICATION"
    missing = requests.post(f"{sandbox.base_url}{TOKEN_INFO_PATH}", json={}, timeout=10)
    assert missing.status_code == 400 and missing.json()["category"] == "VALIDATION_ERROR"


# --- HubSpot ----------------------------------------------------------------------------------------
def test_given_the_sandbox_token_then_hubspot_test_says_token_ok_with_its_scopes(monkeypatch, sandbox) -> None:
    ok, message = _hubspot(monkeypatch, sandbox, sandbox.token).test_connection()
    assert ok, message
    assert message.startswith("token OK, scopes: ") and "crm.objects.contacts.write" in message
    assert str(SANDBOX_HUB_ID) in message and sandbox.token not in message


def test_given_a_wrong_token_then_hubspot_test_fails_saying_to_paste_the_current_token(monkeypatch, sandbox) -> None:
    ok, message = _hubspot(monkeypatch, sandbox, "pat-na1-not-the-token").test_connection()
    assert not ok
    assert "rejected the access token (401)" in message and "Password field" in message
    assert "pat-na1-not-the-token" not in message


def test_given_a_token_lacking_a_scope_then_hubspot_test_names_the_missing_scope(monkeypatch, sandbox) -> None:
    ctx = sandbox.context
    full = ctx.settings
    monkeypatch.setattr(ctx, "settings", full.model_copy(update={"token_scopes": ("crm.objects.contacts.read",)}))
    ok, message = _hubspot(monkeypatch, sandbox, sandbox.token).test_connection()
    assert not ok
    assert "lacks the scope(s) crm.objects.contacts.write" in message and "crm.schemas.contacts.write" in message


def test_given_an_http_typed_connection_then_the_hook_tests_it_all_the_same(monkeypatch, sandbox) -> None:
    ok, message = _hubspot(monkeypatch, sandbox, sandbox.token, conn_type="http").test_connection()
    assert ok, message


def test_given_nothing_listening_then_hubspot_test_fails_within_seconds(monkeypatch, sandbox) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    started = time.monotonic()
    ok, message = _hubspot(monkeypatch, sandbox, sandbox.token, port=closed_port).test_connection()
    assert not ok and f"Nothing answers at http://127.0.0.1:{closed_port}" in message
    assert time.monotonic() - started < 10  # no retries with backoff behind a Test button


# --- Salesforce -------------------------------------------------------------------------------------
def test_given_the_sandbox_session_id_then_salesforce_test_says_token_ok_with_the_api_budget(monkeypatch, sandbox) -> None:
    ok, message = _salesforce(monkeypatch, sandbox).test_connection()
    assert ok, message
    assert message.startswith("token OK (session id), API v59.0, daily API requests left: ")


def test_given_an_oauth_client_then_salesforce_test_runs_the_token_flow(monkeypatch, sandbox) -> None:
    sf = sandbox.salesforce
    hook = _salesforce(monkeypatch, sandbox, password=None,
                       extra={"verify": str(sf.cert_path), "client_id": sf.client_id, "client_secret": sf.client_secret})
    ok, message = hook.test_connection()
    assert ok, message
    assert message.startswith("token OK (OAuth client credentials)")


def test_given_a_wrong_session_id_then_salesforce_test_fails_naming_the_connection(monkeypatch, sandbox) -> None:
    ok, message = _salesforce(monkeypatch, sandbox, password="00Dwrong!session").test_connection()
    assert not ok
    assert "refused the credentials of connection 'hooktest_salesforce'" in message and "session" in message
    assert "00Dwrong!session" not in message


def test_given_a_wrong_client_secret_then_salesforce_test_says_oauth_refused_the_client(monkeypatch, sandbox) -> None:
    sf = sandbox.salesforce
    hook = _salesforce(monkeypatch, sandbox, password=None,
                       extra={"verify": str(sf.cert_path), "client_id": sf.client_id, "client_secret": "nope"})
    ok, message = hook.test_connection()
    assert not ok and "OAuth refused the client" in message and "invalid_client" in message


def test_given_no_ca_file_then_salesforce_test_fails_on_the_self_signed_certificate(monkeypatch, sandbox) -> None:
    ok, message = _salesforce(monkeypatch, sandbox, extra={}).test_connection()
    assert not ok and "TLS certificate is not trusted" in message and "'verify'" in message


# --- as Airflow's Test button reaches them ----------------------------------------------------------
@pytest.mark.parametrize(("good_token", "expected_ok"), [(True, True), (False, False)])
def test_airflow_connection_test_finds_the_hook_by_connection_type(sandbox, good_token, expected_ok) -> None:
    """`Connection.test_connection()` (what the api-server's test endpoint calls) -> provider
    registry (pyproject's entry point) -> HubSpotHook.test_connection."""
    from airflow.sdk import Connection as AirflowConnection

    conn = AirflowConnection(conn_id="leadflow_hubspot_test_button", conn_type="leadflow_hubspot",
                             host="127.0.0.1", port=sandbox.port, schema="http",
                             password=sandbox.token if good_token else "pat-wrong")
    ok, message = conn.test_connection()
    assert ok is expected_ok, message
    assert message.startswith("token OK") if expected_ok else "401" in message
