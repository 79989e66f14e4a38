"""Fixtures for the qualification tests; makes the reference and helpers importable by name.

The row-by-row reference, the frame helpers and the synthetic leads (the benchmark loads these
too) live beside the tests; they are registered under unique module names so they never clash
with other packages' test helpers.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def _load(module_name: str, filename: str) -> None:
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, _HERE / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)


_load("qualify_reference", "reference.py")
_load("qualify_helpers", "helpers.py")
_load("qualify_synthetic", "synthetic.py")


@pytest.fixture(scope="session")
def default_model():
    from leadflow.qualify import load_model

    return load_model()
