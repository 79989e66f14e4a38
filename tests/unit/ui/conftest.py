"""Fixtures of the Leadflow page tests."""

from __future__ import annotations

import pytest
from leadflow_ui_seed import seed


@pytest.fixture
def seeded(sqlite_warehouse):
    seed(sqlite_warehouse)
    return sqlite_warehouse
