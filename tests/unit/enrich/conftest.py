"""Fixtures of the enrichment tests (helpers live in enrich_fakes.py, importable by name)."""

from __future__ import annotations

from enrich_fakes import clock, make_provider, reference  # noqa: F401  (pytest fixtures)
