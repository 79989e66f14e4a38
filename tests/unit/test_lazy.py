"""`leadflow.lazy`: a package's public names imported on first use (what `leadflow.enrich` and
`leadflow.quality` export through)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import leadflow.enrich
import leadflow.quality
from leadflow.lazy import lazy_getattr


def test_a_name_is_imported_from_its_module_only_when_first_asked_for(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "lazy_probe_heavy.py").write_text("ANSWER = 42\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_probe_heavy", raising=False)
    getattr_ = lazy_getattr("probe", {"ANSWER": "lazy_probe_heavy"})
    assert "lazy_probe_heavy" not in sys.modules
    assert getattr_("ANSWER") == 42
    assert "lazy_probe_heavy" in sys.modules


def test_an_unexported_name_is_an_attribute_error_worded_as_python_words_it() -> None:
    with pytest.raises(AttributeError, match=r"^module 'leadflow.enrich' has no attribute 'nope'$"):
        leadflow.enrich.nope  # noqa: B018
    with pytest.raises(AttributeError, match=r"^module 'leadflow.quality' has no attribute 'nope'$"):
        leadflow.quality.nope  # noqa: B018


def test_the_packages_export_their_listed_names() -> None:
    from leadflow.enrich.domains import extract_domain
    from leadflow.quality.psi import population_stability_index

    assert leadflow.enrich.extract_domain is extract_domain
    assert leadflow.quality.population_stability_index is population_stability_index
