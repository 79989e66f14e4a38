"""Fixtures for the sandbox unit tests: a controllable clock and small stores."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from leadflow.sandbox.hubspot_service import HubSpotService
from leadflow.sandbox.store import Row, SandboxStore, unique_key_for

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, start: float = T0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[SandboxStore]:
    s = SandboxStore(tmp_path / "crm.db", clock=clock)
    yield s
    s.close()


def _add_contacts(store: SandboxStore, rows: list[dict[str, Any]]) -> list[int]:
    out = []
    for spec in rows:
        spec = dict(spec)
        modified = spec.pop("_modified", int(T0 * 1000))
        created = spec.pop("_created", modified)
        company = spec.pop("_company", None)
        row = Row(id=0, created_ms=created, modified_ms=modified, archived=False,
                  unique_key=unique_key_for("contacts", spec), company_id=company, props=spec)
        out.append(store.create("contacts", [row], modified)[0].id)
    return out


@pytest.fixture
def add_contacts(store: SandboxStore) -> Callable[[list[dict[str, Any]]], list[int]]:
    """Insert contacts given as {property: internal value}; `_modified`/`_created`/`_company`
    set the column-backed fields. Returns their ids."""
    return lambda rows: _add_contacts(store, rows)


@pytest.fixture
def t0_ms() -> int:
    return int(T0 * 1000)


@pytest.fixture
def service(store: SandboxStore) -> HubSpotService:
    return HubSpotService(store)
