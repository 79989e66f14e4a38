"""Fixtures for the CRM unit tests (helpers live in crm_fakes.py)."""

from __future__ import annotations

import pytest
from crm_fakes import FakeClock

from leadflow.connections import Connection
from leadflow.crm.hubspot_mapping import HubSpotMapping, load_mapping


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="session")
def mapping() -> HubSpotMapping:
    return load_mapping()


@pytest.fixture
def connection() -> Connection:
    return Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=8765, schema="http", password="secret-token")
