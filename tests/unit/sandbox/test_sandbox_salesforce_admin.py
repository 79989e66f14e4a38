"""The Salesforce sandbox's admin counts over HTTP (in process, no server): what the data API was
asked is counted per endpoint and status, and `/_sandbox/reset-stats` starts the counts again."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from leadflow.sandbox.salesforce_api import SalesforceSettings, create_salesforce_app
from leadflow.sandbox.salesforce_store import SalesforceStore

TOKEN = "00D5g000000LfLw!unit-test-session"
FakeClock = Any  # conftest's `clock` fixture


@pytest.fixture
def client(tmp_path: Path, clock: FakeClock) -> Iterator[TestClient]:
    store = SalesforceStore(tmp_path / "sf.db", clock=clock)
    app = create_salesforce_app(SalesforceSettings(token=TOKEN), store, clock=clock)
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
        yield test_client
    store.close()


def test_salesforce_admin_stats_count_data_calls_and_reset_stats_empties_them(client: TestClient) -> None:
    assert client.get("/services/data/v59.0/limits").status_code == 200
    assert client.get("/services/data/v59.0/nowhere").status_code == 404
    stats = client.get("/_sandbox/stats").json()
    assert stats["total"] == 2 and stats["byStatus"] == {"200": 1, "404": 1}

    assert client.post("/_sandbox/reset-stats").status_code == 204
    assert client.get("/_sandbox/stats").json()["total"] == 0


def test_salesforce_admin_stats_need_the_org_session(client: TestClient) -> None:
    assert client.get("/_sandbox/stats", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/_sandbox/reset-stats", headers={"Authorization": "Bearer nope"}).status_code == 401
