"""Fixtures for the unit tests of the command line (`leadflow`, `make run`'s reader)."""

from __future__ import annotations

import pytest


@pytest.fixture
def env_warehouse(tmp_path, monkeypatch):
    """An empty SQLite warehouse that commands find through LEADFLOW_WAREHOUSE_URL (and a var/
    folder of their own for reports); yields its engine."""
    from leadflow.warehouse.db import ensure_schema, get_engine

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", url)
    monkeypatch.setenv("LEADFLOW_VAR_DIR", str(tmp_path / "var"))
    engine = get_engine(url)
    ensure_schema(engine)
    yield engine
    engine.dispose()
