"""Enrich a frame of leads: domains, company match, provider lookups, precedence, coverage.

Vectorised end to end: domains are extracted per distinct email / website and handled as codes
into a small pool of distinct values; each distinct
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
from sqlalchemy import Engine

from leadflow.enrich.chain import ProviderChain, build_chain
from leadflow.enrich.coverage import coverage_report
from leadflow.enrich.domains import domain_flags, extract_domains_encoded, to_arrow_strings
from leadflow.enrich.providers import (
    EMPLOYEE_BANDS,
    MATCHED,
    REVENUE_BANDS,
    bands_of,
    normalise_countries,
)
from leadflow.enrich.resolve import SOURCE_CRM, SOURCE_NONE, choose_sources
from leadflow.enrich.settings import EnrichmentSettings, Precedence
from leadflow.enrich.store import store_and_read_back, store_enrichment
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
    """One row per lead (`frame`), the run's coverage figures and the chain's lookup counts;
    `stored`: the rows as stored, read back (`enrich_and_store(keep_stored=True)`)."""

    frame: pd.DataFrame
    coverage: dict[str, Any]
    lookups: dict[str, int] = field(default_factory=dict)
    stored: pd.DataFrame | None = None

    def summary(self) -> dict[str, Any]:
        """The part of the run summary this step owns (`enriched` and coverage)."""
        return {"enriched": self.coverage["enriched"], "coverage": self.coverage}


def enrich_and_store(engine: Engine, crm: str, run_id: str, leads: pd.DataFrame, companies: pd.DataFrame,
                     settings: EnrichmentSettings, now: datetime, *, keep_stored: bool = False) -> EnrichmentResult:
    """The run's enrich step: `enrich_leads` through the configured chain (closed after), the
    result stored in `lead_enrichment` (and, `keep_stored`, kept as read back)."""
    chain = build_chain(engine, settings)
    try:
        result = enrich_leads(leads, companies, chain, settings, now=now)
    finally:
        close = getattr(chain, "close", None)
        if close:
            close()
    if keep_stored:
        result.stored = store_and_read_back(engine, crm, run_id, result.frame)
    else:
        store_enrichment(engine, crm, run_id, result.frame)
    return result


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
    # Worked on as codes into one small array of distinct domains (`pool`): emails, websites
    # and CRM company domains share few distinct values; flags and choices are made per pool
    # entry and broadcast with integer positions.
    e_dom, e_code = extract_domains_encoded(lead_col("email"))
    w_dom, w_code = extract_domains_encoded(lead_col("website"))
    if "domain" in comp:
        c_dom, c_code_comp = extract_domains_encoded(comp["domain"])
        c_code = np.where(comp_pos >= 0, c_code_comp[np.maximum(comp_pos, 0)] if len(comp) else -1, -1)
    else:
        c_dom, c_code = pa.array([], type=pa.large_string()), np.full(n, -1, dtype=np.int64)
    pool = pa.concat_arrays([c_dom, w_dom, e_dom])
    w_off, e_off = len(c_dom), len(c_dom) + len(w_dom)
    pool_free, pool_disposable = domain_flags(pd.Series(pool, dtype="str"))
    pool_ok = pool.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    pool_personal = pool_free | pool_disposable

    def in_pool(code: np.ndarray, offset: int) -> np.ndarray:
        return np.where(code >= 0, code + offset, -1)

    def flag(values: np.ndarray, code: np.ndarray) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        has = code >= 0
        out[has] = values[code[has]]
        return out

    email_code = in_pool(e_code, e_off)
    email_domain = _gather(pool, email_code)
    is_free, is_disposable = flag(pool_free, email_code), flag(pool_disposable, email_code)
    chosen, origin = _pick_company_codes(
        [
            (CRM_COMPANY, c_code),
            (WEBSITE, in_pool(w_code, w_off)),
            # A free or disposable address says nothing about the employer.
            (EMAIL, email_code),
        ],
        pool_ok,
        pool_personal,
        n,
    )

    # --- company name fallback ------------------------------------------------------------------
    name_score = np.full(n, np.nan)
    matcher = chain.name_matcher() if settings.fuzzy_enabled else None
    if matcher is not None:
        names = lead_col("company_name").astype("str")
        names = names.where(names.str.strip().ne("").fillna(False), company_col("name").astype("str"))
        need = (chosen < 0) & names.notna().to_numpy()
        if need.any():
            found, score = matcher.match_names(names[need], settings.fuzzy_threshold)
            rows = np.flatnonzero(need)
            ok = found.notna().to_numpy()
            extra = to_arrow_strings(found[ok].reset_index(drop=True))
            chosen[rows[ok]] = len(pool) + np.arange(len(extra))
            pool = pa.concat_arrays([pool, extra])
            origin[rows[ok]] = NAME_FUZZY
            name_score[rows[ok]] = score.to_numpy()[ok]

    # --- lookups ---------------------------------------------------------------------------------
    # Distinct company domains in order of first appearance among the leads.
    pool_enc = pc.dictionary_encode(pool)
    pool_uniq = pc.fill_null(pool_enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    uniq = np.where(chosen >= 0, pool_uniq[np.maximum(chosen, 0)] if len(pool) else -1, -1)
    present, first = np.unique(uniq, return_index=True)
    keep = present >= 0
    present = present[keep][np.argsort(first[keep], kind="stable")]
    remap = np.full(len(pool_enc.dictionary), -1, dtype=np.int64)
    remap[present] = np.arange(len(present))
    codes = np.where(uniq >= 0, remap[np.maximum(uniq, 0)] if len(remap) else -1, -1)
    distinct_arr = pool_enc.dictionary.take(pa.array(present))
    distinct = distinct_arr.to_pylist()
    company_domain = _gather(distinct_arr, codes)
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
    confidence = _take_float(answers["confidence"], rec_pos)
    confidence = np.where(by_name, confidence * name_score / 100.0, confidence)
    # Providers as small codes: label_codes index `source_labels` ("crm", "none", providers...).
    source_labels, provider_code = _provider_codes(answers["source"], rec_pos)

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
        "company_source": _labels(np.where(provider_code < 0, _LABEL_NONE, provider_code), source_labels),
    }
    for name, (lead_name, comp_name, rec_name) in _FIELD_SOURCES.items():
        lead_value = leads[lead_name] if lead_name and lead_name in leads else None
        comp_value = comp[comp_name] if comp_name and comp_name in comp else None
        value, source_code = _resolve_broadcast(
            name, lead_value, comp_value, comp_pos, answers[rec_name], rec_pos, provider_code,
            settings.precedence_for(name), n,
        )
        out[name] = value
        out[f"{name}_source"] = _labels(source_code, source_labels)
    out["employee_band"] = bands_of(out["employees"], EMPLOYEE_BANDS, categorical=True)
    out["revenue_band"] = bands_of(out["annual_revenue"], REVENUE_BANDS, categorical=True)

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
    lead_keys = _join_key_arrow(leads["crm"], leads["company_id"])
    found = pc.index_in(lead_keys, value_set=unique_keys)  # hash join in Arrow
    found_np = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    return np.where(found_np >= 0, positions[np.maximum(found_np, 0)], -1)


def _join_key(crm: pd.Series, company_id: pd.Series) -> pd.Series:
    return pd.Series(_join_key_arrow(crm, company_id), dtype="str")


def _join_key_arrow(crm: pd.Series, company_id: pd.Series) -> pa.Array:
    return pc.binary_join_element_wise(
        to_arrow_strings(crm.astype("str")), to_arrow_strings(company_id.astype("str")),
        pa.scalar("\x1f", pa.large_string()),
    )


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


def _gather(values: pa.Array, codes: np.ndarray) -> pd.Series:
    """A `str` Series of values[code] (NA where code is -1)."""
    if len(values) == 0:
        return pd.Series(pa.nulls(len(codes), type=pa.large_string()), dtype="str")
    return pd.Series(pc.take(values, pa.array(np.maximum(codes, 0), mask=codes < 0)), dtype="str")


def _pick_company_codes(
    candidates: list[tuple[int, np.ndarray]], pool_ok: np.ndarray, pool_personal: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """First usable domain per row among the candidates (codes into the pool; -1: none), and
    the code of the candidate it came from (-1: none). Usable: present, not free / disposable."""
    chosen = np.full(n, -1, dtype=np.int64)
    origin = np.full(n, -1, dtype=np.int8)
    taken = np.zeros(n, dtype=bool)
    for code, pool_code in candidates:
        has = pool_code >= 0
        safe = np.maximum(pool_code, 0)
        usable = has & ~taken
        if len(pool_ok):
            usable &= pool_ok[safe] & ~pool_personal[safe]
        else:
            usable &= False
        if usable.any():
            chosen[usable] = pool_code[usable]
            origin[usable] = code
            taken |= usable
    return chosen, origin


def _labels(codes: np.ndarray, labels: tuple[str, ...]) -> pd.Series:
    """A categorical Series of labels[code] (NA where code is -1): the codes are used as they
    are, where a text column would copy a label into each of a million rows."""
    return pd.Series(pd.Categorical.from_codes(np.where(codes < 0, -1, codes), categories=list(labels)))


_LABEL_CRM, _LABEL_NONE = 0, 1


def _take_float(values: pd.Series, positions: np.ndarray) -> np.ndarray:
    """values[positions] as float64 (NaN where the position is -1)."""
    arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    if len(arr) == 0:
        return np.full(len(positions), np.nan)
    return np.where(positions < 0, np.nan, arr[np.maximum(positions, 0)])


def _provider_codes(sources: pd.Series, rec_pos: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """(labels, per-lead code into labels of the answering provider; -1 where none).

    labels[0] is "crm", labels[1] is "none"; providers follow. Built on the distinct answers
    (one per domain), then broadcast to the leads with integer positions.
    """
    text = sources.astype("str")
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    labels = [SOURCE_CRM, SOURCE_NONE]
    slot = np.empty(len(uniques), dtype=np.int64)
    for i, label in enumerate(uniques):
        if label not in labels:
            labels.append(label)
        slot[i] = labels.index(label)
    per_answer = np.where(codes < 0, -1, slot[np.maximum(codes, 0)] if len(slot) else -1)
    per_lead = np.full(len(rec_pos), -1, dtype=np.int64)
    ok = rec_pos >= 0
    per_lead[ok] = per_answer[rec_pos[ok]]
    return tuple(labels), per_lead


def _text_empty(arr: pa.Array) -> np.ndarray:
    """is_empty on an Arrow text array: null or blank after trimming whitespace."""
    if len(arr) == 0:
        return np.zeros(0, dtype=bool)
    length = pc.utf8_length(pc.utf8_trim_whitespace(arr))
    return pc.fill_null(pc.equal(length, 0), True).to_numpy(zero_copy_only=False).astype(bool)


def _resolve_broadcast(
    name: str,
    lead_value: pd.Series | None,
    comp_value: pd.Series | None,
    comp_pos: np.ndarray,
    enriched: pd.Series,
    rec_pos: np.ndarray,
    provider_code: np.ndarray,
    precedence: Precedence,
    n: int,
) -> tuple[Any, np.ndarray]:
    """`resolve.resolve_field` of one field (the CRM value: the lead's own unless blank, else its
    company's; the enriched value: the matched answer's) without building per-lead copies of
    the company and answer columns: emptiness is decided once per company row / per answer and
    broadcast with positions; the chosen value is gathered with one `take`.

    Returns (values, source codes into the labels of `_provider_codes`).
    """
    has_comp = comp_pos >= 0
    has_rec = rec_pos >= 0
    safe_comp = np.maximum(comp_pos, 0)
    safe_rec = np.maximum(rec_pos, 0)
    numeric = name in _NUMERIC_FIELDS
    if numeric:
        own = (
            np.full(n, np.nan)
            if lead_value is None
            else pd.to_numeric(lead_value, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        )
        comp_arr = (
            np.zeros(0)
            if comp_value is None
            else pd.to_numeric(comp_value, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        )
        rec_arr = pd.to_numeric(enriched, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        comp_b = np.where(has_comp, comp_arr[safe_comp], np.nan) if len(comp_arr) else np.full(n, np.nan)
        crm = np.where(np.isnan(own), comp_b, own)
        rec_b = np.where(has_rec, rec_arr[safe_rec], np.nan) if len(rec_arr) else np.full(n, np.nan)
        has_crm = ~np.isnan(crm)
        has_enriched = ~np.isnan(rec_b)
    else:
        if name == "country":
            lead_value = normalise_countries(lead_value) if lead_value is not None else None
            comp_value = normalise_countries(comp_value) if comp_value is not None else None
        own_arr = (
            pa.nulls(n, type=pa.large_string()) if lead_value is None else _arrow(lead_value)
        )
        comp_arr = pa.array([], type=pa.large_string()) if comp_value is None else _arrow(comp_value)
        rec_arr = _arrow(enriched)
        # The lead's own value unless blank (pandas' notion), else the company's.
        if lead_value is None:
            own_used = own_ok = np.zeros(n, dtype=bool)
        else:
            own = lead_value.astype("str")
            if getattr(own.dtype, "storage", None) == "pyarrow":
                # pandas strips Arrow-backed text with utf8_trim_whitespace: the same test.
                own_used = own_ok = ~_text_empty(own_arr)
            else:
                own_used = ~(own.isna() | own.str.strip().eq("").fillna(False)).to_numpy(dtype=bool)
                own_ok = own_used & ~_text_empty(own_arr)
        comp_ok = np.zeros(n, dtype=bool)
        if len(comp_arr):
            comp_ok = has_comp & ~_text_empty(comp_arr)[safe_comp]
        rec_ok = np.zeros(n, dtype=bool)
        if len(rec_arr):
            rec_ok = has_rec & ~_text_empty(rec_arr)[safe_rec]
        has_crm = np.where(own_used, own_ok, comp_ok)
        has_enriched = rec_ok
    use_crm, use_enriched = choose_sources(has_crm, has_enriched, precedence)
    source = np.where(use_crm, _LABEL_CRM, np.where(use_enriched, provider_code, _LABEL_NONE))
    source = np.where(source < 0, _LABEL_NONE, source)
    if numeric:
        value = np.where(use_crm, crm, np.where(use_enriched, rec_b, np.nan))
        return pd.Series(value, dtype="float64"), source
    # Fallback values (company's or the answer's) come from small arrays: one gather.
    small = pa.concat_arrays([comp_arr, rec_arr])
    index = np.full(n, -1, dtype=np.int64)
    from_comp = use_crm & ~own_used
    index[from_comp] = comp_pos[from_comp]
    index[use_enriched] = len(comp_arr) + rec_pos[use_enriched]
    if len(small):
        fallback = pc.take(small, pa.array(np.maximum(index, 0), mask=index < 0))
    else:
        fallback = pa.nulls(n, type=pa.large_string())
    from_own = use_crm & own_used
    if from_own.any():
        picked = pc.if_else(pa.array(from_own), own_arr, fallback)
    else:
        picked = fallback
    return pd.Series(picked, dtype="str"), source


def _arrow(values: pd.Series) -> pa.Array:
    arr = pa.array(values.astype("str"), type=pa.large_string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _plain(values: Any) -> Any:
    """Drop any index so that columns line up by position."""
    if isinstance(values, pd.Series):
        return values.reset_index(drop=True)
    return values
