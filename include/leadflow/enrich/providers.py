"""The provider interface and the one normalised company schema every provider answers in.

A provider answers for a batch of domains with a DataFrame of `RECORD_COLUMNS` (one row per
domain it has an answer for). Batch, not per-domain, because the cache and the reference file
answer a hundred thousand domains in one query / one index lookup. Single records
(`CompanyRecord`) exist for code that builds answers one at a time, like the HTTP provider.

Also here: the pure normalisers shared by all providers (employee and revenue bands, ISO
country codes via pycountry, technology lists).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pycountry

# status of an answer
MATCHED = "matched"
NOT_FOUND = "not_found"
PENDING = "pending"  # the provider queued the lookup ("202, ask later")
ERROR = "error"
STATUSES = (MATCHED, NOT_FOUND, PENDING, ERROR)

# Columns of a provider answer; kinds as in leadflow.schema ("str", "float").
RECORD_COLUMNS: dict[str, str] = {
    "domain": "str",
    "status": "str",
    "name": "str",
    "industry": "str",
    "employee_count": "float",
    "employee_band": "str",
    "annual_revenue_usd": "float",
    "revenue_band": "str",
    "country_code": "str",  # ISO 3166-1 alpha-2
    "founded_year": "float",
    "technologies": "str",  # ";"-separated, sorted, de-duplicated
    "source": "str",  # which provider answered: cache | reference | api
    "confidence": "float",  # 0-1
    "fetched_at": "float",  # epoch ms when the original answer was obtained
}


@runtime_checkable
class CompanyProvider(Protocol):
    """Something that knows companies by domain.

    `name` is the source recorded on enriched fields. `remote` providers cost API calls: the
    chain does not ask them about domains with a fresh cached "not found".
    """

    name: str
    remote: bool

    def lookup(self, domains: Sequence[str], now_ms: int) -> pd.DataFrame:
        """Answers (RECORD_COLUMNS) for those of `domains` the provider can answer for."""
        ...


@dataclass(frozen=True)
class CompanyRecord:
    """One normalised answer about one domain."""

    domain: str
    status: str = MATCHED
    name: str | None = None
    industry: str | None = None
    employee_count: float | None = None
    annual_revenue_usd: float | None = None
    country_code: str | None = None
    founded_year: int | None = None
    technologies: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""
    confidence: float = 1.0
    fetched_at: int = 0

    def to_row(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "status": self.status,
            "name": self.name,
            "industry": self.industry,
            "employee_count": _float_or_nan(self.employee_count),
            "employee_band": employee_band(self.employee_count),
            "annual_revenue_usd": _float_or_nan(self.annual_revenue_usd),
            "revenue_band": revenue_band(self.annual_revenue_usd),
            "country_code": self.country_code,
            "founded_year": _float_or_nan(self.founded_year),
            "technologies": join_technologies(self.technologies),
            "source": self.source,
            "confidence": float(self.confidence),
            "fetched_at": float(self.fetched_at),
        }


def records_to_frame(records: Iterable[CompanyRecord]) -> pd.DataFrame:
    """A frame of RECORD_COLUMNS from records (typed, even when empty)."""
    return coerce_records(pd.DataFrame([r.to_row() for r in records], columns=list(RECORD_COLUMNS)))


def empty_records() -> pd.DataFrame:
    return coerce_records(pd.DataFrame(columns=list(RECORD_COLUMNS)))


def coerce_records(frame: pd.DataFrame) -> pd.DataFrame:
    """Give a provider answer exactly RECORD_COLUMNS with explicit dtypes."""
    out = {}
    for name, kind in RECORD_COLUMNS.items():
        col = frame[name] if name in frame else pd.Series(None, index=frame.index, dtype=object)
        if kind == "float":
            out[name] = pd.to_numeric(col, errors="coerce").astype("float64")
        else:
            out[name] = col.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _float_or_nan(value: float | int | None) -> float:
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --- bands -----------------------------------------------------------------------------------
# Lower bounds and labels; the common bands of B2B firmographics (LinkedIn-style headcount).
EMPLOYEE_BANDS: tuple[tuple[float, str], ...] = (
    (1, "1-10"),
    (11, "11-50"),
    (51, "51-200"),
    (201, "201-500"),
    (501, "501-1000"),
    (1001, "1001-5000"),
    (5001, "5001-10000"),
    (10001, "10001+"),
)
REVENUE_BANDS: tuple[tuple[float, str], ...] = (
    (0, "<1M"),
    (1e6, "1M-10M"),
    (1e7, "10M-50M"),
    (5e7, "50M-100M"),
    (1e8, "100M-250M"),
    (2.5e8, "250M-1B"),
    (1e9, "1B-10B"),
    (1e10, "10B+"),
)


def _band(value: float | None, bands: tuple[tuple[float, str], ...]) -> str | None:
    v = _float_or_nan(value)
    if math.isnan(v) or v < bands[0][0]:
        return None
    label = bands[0][1]
    for lower, name in bands:
        if v >= lower:
            label = name
    return label


def employee_band(count: float | None) -> str | None:
    """"51-200" style band of a headcount; None when unknown or below 1."""
    return _band(count, EMPLOYEE_BANDS)


def revenue_band(usd: float | None) -> str | None:
    """"10M-50M" style band of an annual revenue in USD; None when unknown or negative."""
    return _band(usd, REVENUE_BANDS)


def bands_of(
    values: pd.Series | np.ndarray, bands: tuple[tuple[float, str], ...], *, categorical: bool = False
) -> pd.Series:
    """Vectorised band labels (NA where the value is missing or below the first bound), as text
    or, with `categorical`, as a category column (no label copied per row)."""
    numbers = np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype="float64")
    bounds = np.array([b for b, _ in bands])
    slot = np.searchsorted(bounds, numbers, side="right") - 1
    missing = np.isnan(numbers) | (slot < 0)
    index = values.index if isinstance(values, pd.Series) else None
    if categorical:
        codes = np.where(missing, -1, slot)
        return pd.Series(pd.Categorical.from_codes(codes, categories=[name for _, name in bands]), index=index)
    # Labels gathered in Arrow from the small table: no per-row Python objects.
    table = pa.array([name for _, name in bands], type=pa.large_string())
    picked = pc.take(table, pa.array(np.where(missing, 0, slot).astype(np.int32), mask=missing))
    return pd.Series(picked, index=index, dtype="str")


# --- countries -------------------------------------------------------------------------------
# Spellings CRMs are full of that pycountry's lookup does not know.
_COUNTRY_ALIASES = {
    "uk": "GB",
    "u.k.": "GB",
    "great britain": "GB",
    "britain": "GB",
    "england": "GB",
    "scotland": "GB",
    "wales": "GB",
    "northern ireland": "GB",
    "u.s.": "US",
    "u.s.a.": "US",
    "america": "US",
    "united states of america": "US",
    "russia": "RU",
    "turkey": "TR",
    "holland": "NL",
    "deutschland": "DE",
    "south korea": "KR",
    "korea": "KR",
    "north korea": "KP",
    "czech republic": "CZ",
    "ivory coast": "CI",
    "vatican": "VA",
    "laos": "LA",
    "syria": "SY",
    "macedonia": "MK",
    "swaziland": "SZ",
    "burma": "MM",
    "uae": "AE",
}


@lru_cache(maxsize=8192)
def normalise_country(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code for a country code or name ("Germany", "DEU", "de"); None if
    unrecognised."""
    if not isinstance(value, str):
        return None
    text = re.sub(r"\s+", " ", value).strip()
    if not text:
        return None
    key = text.lower()
    if key in _COUNTRY_ALIASES:
        return _COUNTRY_ALIASES[key]
    if key.startswith("the "):
        return normalise_country(text[4:])
    try:
        return pycountry.countries.lookup(text).alpha_2
    except LookupError:
        return None


def normalise_countries(values: pd.Series) -> pd.Series:
    """Vectorised `normalise_country` (runs once per distinct spelling)."""
    arr = pa.array(values.astype("str"), type=pa.large_string(), from_pandas=True)
    encoded = pc.dictionary_encode(arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr)
    codes = pa.array(
        [normalise_country(v) for v in encoded.dictionary.to_pylist()], type=pa.large_string()
    )
    return pd.Series(pc.take(codes, encoded.indices), index=values.index, dtype="str")


# --- technologies -----------------------------------------------------------------------------
def join_technologies(items: Iterable[str] | str | None) -> str | None:
    """Sorted, de-duplicated, ";"-joined technology names; None when there are none."""
    if items is None:
        return None
    if isinstance(items, str):
        items = items.split(";")
    names = sorted({str(i).strip() for i in items if i is not None and str(i).strip()})
    return ";".join(names) if names else None


# Vendors spell technologies as slugs ("google_analytics", "aws"); CRMs and the model config
# use display names ("Google Analytics", "AWS"). Known names map exactly; others are title-cased.
_KNOWN_TECHNOLOGIES = (
    "Salesforce", "HubSpot", "Marketo", "Pardot", "Google Analytics", "Google Tag Manager",
    "Segment", "Snowflake", "BigQuery", "Redshift", "Databricks", "dbt", "Looker", "Tableau",
    "Power BI", "AWS", "Azure", "Google Cloud", "Cloudflare", "Shopify", "WordPress", "Drupal",
    "Magento", "Zendesk", "Intercom", "Freshdesk", "Slack", "Microsoft Teams", "Zoom", "Stripe",
    "PayPal", "Kubernetes", "Docker", "React", "Angular", "Vue.js", "Node.js", "SAP", "Oracle",
    "Workday", "NetSuite", "Microsoft Dynamics", "Pipedrive", "Zoho", "Mailchimp", "Jira",
    "Confluence", "GitHub", "GitLab", "Atlassian", "Okta", "Twilio", "SendGrid", "Datadog",
)
_TECH_KEY = re.compile(r"[\s_\-.]+")
_TECH_BY_KEY = {_TECH_KEY.sub("", name.lower()): name for name in _KNOWN_TECHNOLOGIES}


@lru_cache(maxsize=4096)
def canonical_technology(name: str | None) -> str | None:
    """Display name of a technology ("google_analytics" -> "Google Analytics")."""
    if not isinstance(name, str):
        return None
    key = _TECH_KEY.sub("", name.lower())
    if not key:
        return None
    if key in _TECH_BY_KEY:
        return _TECH_BY_KEY[key]
    words = _TECH_KEY.sub(" ", name).strip()
    # Keep a vendor's own capitals ("NetSuite"); only all-lowercase slugs are title-cased.
    return words.title() if words.islower() else words
