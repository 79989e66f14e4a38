"""The Leadflow page inside Airflow's own API server app: the plugin is discovered and mounted
under /leadflow, and only callers with a valid Airflow token get in (Airflow itself does not
protect plugin apps). Tokens are issued by Airflow's auth manager (SimpleAuthManager)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from leadflow_ui_seed import RUN_2, seed

pytestmark = pytest.mark.slow  # builds Airflow's API server app once (imports most of Airflow)


@pytest.fixture(scope="module")
def airflow_app(tmp_path_factory):
    import os

    from leadflow.warehouse.db import ensure_schema, get_engine

    var = tmp_path_factory.mktemp("var")
    url = f"sqlite:///{var / 'warehouse.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    seed(engine)
    engine.dispose()
    old = os.environ.get("LEADFLOW_WAREHOUSE_URL")
    os.environ["LEADFLOW_WAREHOUSE_URL"] = url
    from airflow import settings
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.models.revoked_token import RevokedToken

    # Token revocation is checked in Airflow's metadata DB: give the test home that one table.
    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    app = create_app("core")
    try:
        yield app, get_auth_manager()
    finally:
        if old is None:
            os.environ.pop("LEADFLOW_WAREHOUSE_URL", None)
        else:
            os.environ["LEADFLOW_WAREHOUSE_URL"] = old


@pytest.fixture
def client(airflow_app):
    return TestClient(airflow_app[0], follow_redirects=False)


def _token(auth_manager, **kwargs) -> str:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return auth_manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"), **kwargs)


def test_plugin_mounts_the_page_and_adds_a_nav_link():
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(a["url_prefix"] == "/leadflow" and a["name"] == "Leadflow" for a in apps)
    views, _ = plugins_manager._get_ui_plugins()
    assert any(v["href"] == "/leadflow/" and v["destination"] == "nav" for v in views)


def test_browser_without_token_is_redirected_to_the_airflow_login(client):
    resp = client.get("/leadflow/?crm=hubspot", headers={"Accept": "text/html"})
    assert resp.status_code == 307
    assert resp.headers["location"].startswith("/auth/login?next=")
    assert "%2Fleadflow%2F" in resp.headers["location"]


def test_api_request_without_token_gets_401(client):
    resp = client.get("/leadflow/api/data")
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert "runs" not in resp.text
    assert client.get("/leadflow/report", params={"crm": "hubspot", "run_id": RUN_2}).status_code == 401


def test_invalid_token_is_rejected_in_cookie_and_header(client, airflow_app):
    bad = _token(airflow_app[1])[:-4] + "AAAA"
    assert client.get("/leadflow/api/data", headers={"Authorization": f"Bearer {bad}"}).status_code == 401
    client.cookies.set("_token", "not-a-jwt")
    assert client.get("/leadflow/api/data").status_code == 401


def test_expired_token_is_rejected(client, airflow_app):
    expired = _token(airflow_app[1], expiration_time_in_seconds=-60)
    assert client.get("/leadflow/api/data", headers={"Authorization": f"Bearer {expired}"}).status_code == 401


def test_valid_cookie_token_opens_the_page(client, airflow_app):
    client.cookies.set("_token", _token(airflow_app[1]))
    resp = client.get("/leadflow/", headers={"Accept": "text/html"})
    assert resp.status_code == 200
    assert "signed in as admin" in resp.text
    assert 'id="runs-table"' in resp.text and RUN_2 in resp.text


def test_valid_bearer_token_reads_the_json(client, airflow_app):
    resp = client.get("/leadflow/api/data", headers={"Authorization": f"Bearer {_token(airflow_app[1])}"})
    assert resp.status_code == 200
    assert resp.json()["data"]["runs"][0]["run_id"] == RUN_2


def test_revoked_token_is_rejected(client, airflow_app):
    token = _token(airflow_app[1])
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/leadflow/api/data", headers=headers).status_code == 200
    airflow_app[1].revoke_token(token)
    assert client.get("/leadflow/api/data", headers=headers).status_code == 401
