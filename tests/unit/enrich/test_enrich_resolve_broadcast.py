"""The per-company broadcast resolution in `leads` agrees with `resolve.resolve_field` applied
to per-lead columns (the lead's own value unless blank, else its company's)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadflow.enrich.leads import _provider_codes, _resolve_broadcast
from leadflow.enrich.resolve import resolve_field


def _per_lead_text(lead: pd.Series, comp: pd.Series, comp_pos: np.ndarray) -> pd.Series:
    out = []
    for own, pos in zip(lead.astype(object), comp_pos):
        blank = not isinstance(own, str) or own.strip() == ""
        out.append(own if not blank else (comp.iloc[pos] if pos >= 0 else None))
    return pd.Series(out, dtype="str")


@pytest.mark.parametrize("precedence", ["crm", "enrichment"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_broadcast_resolution_matches_resolve_field_for_text(precedence: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    pool = np.array(["Software", " ", "", None, "Retail ", "\tx"], dtype=object)
    lead = pd.Series(rng.choice(pool, n), dtype="str")
    comp = pd.Series(rng.choice(pool, 30), dtype="str")
    answers = pd.Series(rng.choice(pool, 20), dtype="str")
    sources = pd.Series(rng.choice(np.array(["cache", "reference", None], dtype=object), 20), dtype="str")
    comp_pos = rng.integers(-1, 30, n)
    rec_pos = rng.integers(-1, 20, n)
    labels, provider_code = _provider_codes(sources, rec_pos)

    value, code = _resolve_broadcast(
        "industry", lead, comp, comp_pos, answers, rec_pos, provider_code, precedence, n
    )

    crm = _per_lead_text(lead, comp, comp_pos)
    enriched = pd.Series([answers.iloc[p] if p >= 0 else None for p in rec_pos], dtype="str")
    enriched_source = pd.Series([sources.iloc[p] if p >= 0 else None for p in rec_pos], dtype="str")
    want_value, want_source = resolve_field(crm, enriched, enriched_source, precedence)
    pd.testing.assert_series_equal(value, want_value, check_names=False)
    assert [labels[c] for c in code] == want_source.tolist()


@pytest.mark.parametrize("precedence", ["crm", "enrichment"])
def test_broadcast_resolution_matches_resolve_field_for_numbers(precedence: str) -> None:
    rng = np.random.default_rng(7)
    n = 300
    lead = pd.Series(np.where(rng.random(n) < 0.5, 10.0, np.nan))
    comp = pd.Series(np.where(rng.random(25) < 0.5, 20.0, np.nan))
    answers = pd.Series(np.where(rng.random(15) < 0.5, 30.0, np.nan))
    sources = pd.Series(["api"] * 15, dtype="str")
    comp_pos = rng.integers(-1, 25, n)
    rec_pos = rng.integers(-1, 15, n)
    labels, provider_code = _provider_codes(sources, rec_pos)

    value, code = _resolve_broadcast(
        "employees", lead, comp, comp_pos, answers, rec_pos, provider_code, precedence, n
    )

    comp_b = np.where(comp_pos >= 0, comp.to_numpy()[np.maximum(comp_pos, 0)], np.nan)
    crm = pd.Series(lead.to_numpy()).fillna(pd.Series(comp_b))
    enriched = pd.Series(np.where(rec_pos >= 0, answers.to_numpy()[np.maximum(rec_pos, 0)], np.nan))
    enriched_source = pd.Series(np.where(rec_pos >= 0, "api", None), dtype="str")
    want_value, want_source = resolve_field(crm, enriched, enriched_source, precedence)
    pd.testing.assert_series_equal(value, want_value, check_names=False)
    assert [labels[c] for c in code] == want_source.tolist()
