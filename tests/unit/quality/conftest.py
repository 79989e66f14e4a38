"""Fixtures of the quality tests (helpers live in quality_helpers.py, importable by name)."""

from __future__ import annotations

import pytest

from leadflow.quality.row_checks import RowCheckOptions
from leadflow.quality.settings import QualitySettings


@pytest.fixture
def settings() -> QualitySettings:
    return QualitySettings()


@pytest.fixture
def options(settings: QualitySettings) -> RowCheckOptions:
    return RowCheckOptions.from_settings(settings, "hubspot")
