"""Enrich a frame of leads: domains, company match, provider lookups, precedence, coverage.

Vectorised end to end: domains are extracted per distinct email / website, each distinct
company domain is looked up once through the chain, and answers are mapped back to the leads
with integer positions. One million leads with a warm cache take a few seconds.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadflow.enrich.chain import ProviderChain
from leadflow.enrich.coverage import coverage_report
from leadflow.enrich.domains import domain_flags, extract_domains, to_arrow_strings
from leadflow.enrich.providers import (
    EMPLOYEE_BANDS,
    MATCHED,
    REVENUE_BANDS,
    bands_of,
    normalise_countries,
)
from leadflow.enrich.resolve import SOURCE_NONE, resolve_field
from leadflow.enrich.settings import EnrichmentSettings
from leadflow.enrich.tables import LEAD_ENRICHMENT_COLUMNS

log = logging.getLogger(__name__)

# How a lead got its company domain, in order of trust (codes index ORIGINS).
ORIGINS: tuple[str, ...] = ("crm_company", "website", "email", "name_fuzzy")
CRM_COMPANY, WEBSITE, EMAIL, NAME_FUZZY = range(len(ORIGINS))
MATCH_METHODS: tuple[str, ...] = ("domain", "name_fuzzy", "none")

# resolved field -> (lead column, company column, record column) ; None = not in that frame
_FIELD_SOURCES: dict[str, tuple[str | None, str | None, str]] = {
    "industry": ("industry", "industry", "industry"),
    "employees": ("employees", "employees", "employee_count"),
    "annual_revenue": ("annual_revenue", "annual_revenue", "annual_revenue_usd"),
    "country": ("country", "country", "country_code"),
    "technologies": (None, "technologies", "technologies"),
    "founded_year": (None, "founded_year", "founded_year"),
}
_NUMERIC_FIELDS = {"employees", "annual_revenue", "founded_year"}


@dataclass
class EnrichmentResult:
    """One row per lead (`frame`), the run's coverage figures and the chain's lookup counts."""

    frame: pd.DataFrame
    coverage: dict[str, Any]
    lookups: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The part of the run summary this step owns (`enriched` and coverage)."""
        return {"enriched": self.coverage["enriched"], "coverage": self.coverage}


def enrich_leads(
    leads: pd.DataFrame,
    companies: pd.DataFrame,
    chain: ProviderChain,
    settings: EnrichmentSettings | None = None,
    now: datetime | int | float | None = None,
) -> EnrichmentResult:
    """Resolve each lead's company and firmographics.

    `leads` has `leadflow.schema.LEAD_COLUMNS` (at least crm, record_id, email, website,
    company_id, company_name and the firmographic columns), `companies` has
    `schema.COMPANY_COLUMNS`; they join on (crm, company_id). `now` (datetime or epoch ms;
    default: the current time) stamps the lookups and decides cache freshness.
    """
    settings = settings or EnrichmentSettings()
    now_ms = _to_ms(now)
    n = len(leads)
    leads = leads.reset_index(drop=True)
    comp_pos = _company_positions(leads, companies)
    comp = companies.reset_index(drop=True)

    def lead_col(name: str) -> pd.Series:
        if name in leads:
            return leads[name]
        return pd.Series(None, index=leads.index, dtype="str")

    def company_col(name: str | None) -> pd.Series:
        if name is None or name not in comp:
            return pd.Series(None, index=leads.index, dtype="str")
        return _take(comp[name], comp_pos)

    # --- domains ------------------------------------------------------------------------------
    email_domain = extract_domains(lead_col("email"))
    is_free, is_disposable = domain_flags(email_domain)
    website_domain = extract_domains(lead_col("website"))
    crm_company_domain = (
        _take(extract_domains(comp["domain"]), comp_pos) if "domain" in comp else company_col(None)
    )
    company_domain, origin = _pick_company_domain(
        [
            (CRM_COMPANY, crm_company_domain, _personal(crm_company_domain)),
            (WEBSITE, website_domain, _personal(website_domain)),
            # A free or disposable address says nothing about the employer.
            (EMAIL, email_domain, is_free | is_disposable),
        ],
        n,
    )

    # --- company name fallback ------------------------------------------------------------------
    name_score = np.full(n, np.nan)
    matcher = chain.name_matcher() if settings.fuzzy_enabled else None
    if matcher is not None:
        names = lead_col("company_name").astype("str")
        names = names.where(names.str.strip().ne("").fillna(False), company_col("name").astype("str"))
        need = company_domain.isna().to_numpy() & names.notna().to_numpy()
        if need.any():
            found, score = matcher.match_names(names[need], settings.fuzzy_threshold)
            rows = np.flatnonzero(need)
            ok = found.notna().to_numpy()
            company_domain = _fill_at(company_domain, rows[ok], found[ok])
            origin[rows[ok]] = NAME_FUZZY
            name_score[rows[ok]] = score.to_numpy()[ok]

    # --- lookups ---------------------------------------------------------------------------------
    encoded = pc.dictionary_encode(to_arrow_strings(company_domain))
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    distinct = encoded.dictionary.to_pylist()
    stats_before = Counter(chain.stats)
    answers = chain.lookup(distinct, now_ms)
    # answers are in `distinct` order, one per domain: codes index them directly.
    if len(answers) != len(distinct):  # pragma: no cover - guarded by ProviderChain.lookup
        raise RuntimeError("provider chain returned answers out of step with its domains")
    matched_answer = (answers["status"] == MATCHED).to_numpy(dtype=bool)
    matched = np.zeros(n, dtype=bool)
    has_domain = codes >= 0
    matched[has_domain] = matched_answer[codes[has_domain]]
    rec_pos = np.where(matched, codes, -1)

    def record(name: str) -> pd.Series:
        return _take(answers[name], rec_pos)

    by_name = origin == NAME_FUZZY
    match_method = np.where(matched, np.where(by_name, 1, 0), 2).astype(np.int8)
    confidence = record("confidence").to_numpy(dtype="float64", na_value=np.nan)
    confidence = np.where(by_name, confidence * name_score / 100.0, confidence)
    record_source = record("source")

    # --- precedence --------------------------------------------------------------------------------
    out: dict[str, Any] = {
        "crm": lead_col("crm").astype("str"),
        "record_id": lead_col("record_id").astype("str"),
        "email_domain": email_domain,
        "company_domain": company_domain,
        "domain_origin": _labels(origin, ORIGINS),
        "is_free_email": is_free,
        "is_disposable_email": is_disposable,
        "company_matched": matched,
        "match_method": _labels(match_method, MATCH_METHODS),
        "match_confidence": np.where(matched, confidence, np.nan),
        "company_name": record("name"),
        # record_source is NA wherever there is no match.
        "company_source": record_source.fillna(SOURCE_NONE),
    }
    for name, (lead_name, comp_name, rec_name) in _FIELD_SOURCES.items():
        crm_value = _crm_value(name, lead_col(lead_name) if lead_name else None, company_col(comp_name))
        enriched = record(rec_name)
        value, source = resolve_field(
            crm_value, enriched, record_source, settings.precedence_for(name)
        )
        out[name] = value
        out[f"{name}_source"] = source
    out["employee_band"] = bands_of(out["employees"], EMPLOYEE_BANDS)
    out["revenue_band"] = bands_of(out["annual_revenue"], REVENUE_BANDS)

    frame = pd.DataFrame({k: _plain(v) for k, v in out.items()})
    frame = frame[["crm", "record_id", *LEAD_ENRICHMENT_COLUMNS]]
    # This call's share of the chain's counters (a chain may serve several calls).
    lookups = {k: int(v) for k, v in (Counter(chain.stats) - stats_before).items()}
    coverage = coverage_report(frame, lookups)
    log.info(
        "enrichment: %d leads, %d matched to a company (%.1f%%), %d distinct domains",
        n,
        coverage["company_matched"],
        100.0 * coverage["match_rate"],
        len(distinct),
    )
    return EnrichmentResult(frame=frame, coverage=coverage, lookups=lookups)


# --- helpers --------------------------------------------------------------------------------------
def _to_ms(now: datetime | int | float | None) -> int:
    if now is None:
        return int(datetime.now().timestamp() * 1000)
    if isinstance(now, datetime):
        return int(now.timestamp() * 1000)
    return int(now)


def _company_positions(leads: pd.DataFrame, companies: pd.DataFrame) -> np.ndarray:
    """Row of each lead's company in `companies` (-1 when none), by (crm, company_id)."""
    if companies.empty or "company_id" not in leads or leads.empty:
        return np.full(len(leads), -1, dtype=np.int64)
    comp = companies.reset_index(drop=True)
    if "updated_at" in comp:
        # Duplicate company rows: the most recently updated one wins.
        order = comp["updated_at"].astype("float64").fillna(-np.inf).to_numpy().argsort(kind="stable")
        comp = comp.iloc[order]
    keys = _join_key(comp["crm"], comp["company_id"])
    # Later rows (newer) win: keep the last occurrence of each key.
    last = ~keys.duplicated(keep="last")
    positions = comp.index.to_numpy()[last]
    unique_keys = pa.array(keys[last], type=pa.large_string())
    lead_keys = pa.array(_join_key(leads["crm"], leads["company_id"]), type=pa.large_string())
    found = pc.index_in(lead_keys, value_set=unique_keys)  # hash join in Arrow
    found_np = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    return np.where(found_np >= 0, positions[np.maximum(found_np, 0)], -1)


def _join_key(crm: pd.Series, company_id: pd.Series) -> pd.Series:
    joined = pc.binary_join_element_wise(
        to_arrow_strings(crm.astype("str")), to_arrow_strings(company_id.astype("str")),
        pa.scalar("\x1f", pa.large_string()),
    )
    return pd.Series(joined, dtype="str")


def _take(values: pd.Series, positions: np.ndarray) -> pd.Series:
    """values[positions] with NA where the position is -1."""
    missing = positions < 0
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        arr = values.to_numpy(dtype="float64", na_value=np.nan)
        if len(arr) == 0:
            return pd.Series(np.full(len(positions), np.nan))
        return pd.Series(np.where(missing, np.nan, arr[np.maximum(positions, 0)]))
    arr = to_arrow_strings(values.astype("str"))
    picked = pc.take(arr, pa.array(np.maximum(positions, 0), mask=missing))
    return pd.Series(picked, dtype="str")


def _personal(domains: pd.Series) -> np.ndarray:
    free, disposable = domain_flags(domains)
    return free | disposable


def _pick_company_domain(
    candidates: list[tuple[int, pd.Series, np.ndarray]], n: int
) -> tuple[pd.Series, np.ndarray]:
    """First usable domain per row among the candidates, and the code of the candidate it came
    from (-1: none)."""
    chosen = pa.nulls(n, type=pa.large_string())
    origin = np.full(n, -1, dtype=np.int8)
    taken = np.zeros(n, dtype=bool)
    for code, domains, excluded in candidates:
        usable = domains.notna().to_numpy() & ~excluded & ~taken
        if usable.any():
            chosen = pc.if_else(pa.array(usable), to_arrow_strings(domains), chosen)
            origin[usable] = code
            taken |= usable
    return pd.Series(chosen, dtype="str"), origin


def _labels(codes: np.ndarray, labels: tuple[str, ...]) -> pd.Series:
    """A `str` Series of labels[code] (NA where code is -1), built without Python objects."""
    table = pa.array(labels, type=pa.large_string())
    index = pa.array(np.maximum(codes, 0).astype(np.int32), mask=codes < 0)
    return pd.Series(pc.take(table, index), dtype="str")


def _fill_at(series: pd.Series, rows: np.ndarray, values: pd.Series) -> pd.Series:
    """`series` with `values` placed at positions `rows` (where the series is missing)."""
    if len(rows) == 0:
        return series
    index = np.full(len(series), -1, dtype=np.int64)
    index[rows] = np.arange(len(rows))
    scattered = pc.take(to_arrow_strings(values), pa.array(np.maximum(index, 0), mask=index < 0))
    return pd.Series(pc.coalesce(to_arrow_strings(series), scattered), index=series.index, dtype="str")


def _crm_value(name: str, lead_value: pd.Series | None, company_value: pd.Series) -> pd.Series:
    """The CRM's value of a field: the lead's own, else its company's."""
    if name == "country":
        lead_value = normalise_countries(lead_value) if lead_value is not None else None
        company_value = normalise_countries(company_value)
    if name in _NUMERIC_FIELDS:
        comp = pd.to_numeric(company_value, errors="coerce").astype("float64")
        if lead_value is None:
            return comp.reset_index(drop=True)
        own = pd.to_numeric(lead_value, errors="coerce").astype("float64").reset_index(drop=True)
        return own.fillna(comp.reset_index(drop=True))
    comp = company_value.astype("str").reset_index(drop=True)
    if lead_value is None:
        return comp
    own = lead_value.astype("str").reset_index(drop=True)
    blank = own.isna() | own.str.strip().eq("").fillna(False)
    return own.where(~blank, comp)


def _plain(values: Any) -> Any:
    """Drop any index so that columns line up by position."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return values
