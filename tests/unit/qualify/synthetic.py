"""Synthetic leads for the qualification tests and bench/bench_qualify.py (numpy; no network, no
faker, reproducible by seed).

The value distributions are deliberately realistic in *shape*: thousands of distinct job
titles, a few thousand distinct free-text answers and tens of thousands of domains for a
million leads — not one distinct string per lead — because the engine's speed depends on it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from leadflow.schema import LEAD_COLUMNS

_ROLES = (
    "CEO", "CFO", "CTO", "COO", "CMO", "Chief Revenue Officer", "Founder", "Co-Founder", "Owner",
    "President", "Managing Director", "VP Sales", "VP Marketing", "SVP Revenue",
    "Vice President Operations", "Head of Marketing", "Head of Sales", "Head of RevOps",
    "Director of Sales", "Marketing Director", "IT Director", "IT Manager", "Sales Manager",
    "Marketing Manager", "Product Manager", "Team Lead", "Engineer", "Software Engineer",
    "Data Analyst", "Sales Representative", "Account Executive", "Marketing Specialist",
    "Consultant", "Administrator", "Student", "Intern", "Working Student", "Recruiter",
    "Talent Acquisition Partner", "Job Applicant", "Job Seeker", "Journalist", "Reporter",
    "Editor", "Nurse", "Chef", "Teacher", "Pilot", "Freelancer", "",
)
_ROLE_WEIGHTS = np.array(
    [2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1, 3, 3, 1, 1, 3, 3, 1, 3, 2, 2, 4, 4, 4, 3, 3, 5, 5, 4, 4, 3,
     3, 3, 2, 2, 2, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2],
    dtype=float,
)
_PREFIXES = ("", "Senior ", "Junior ", "Global ", "Regional ", "Interim ", "Deputy ", "Acting ",
             "Lead ", "Principal ", "Associate ", "Assistant ")
_SUFFIXES = ("", ", EMEA", ", DACH", ", North America", " (Remote)", ", Enterprise", ", SMB",
             " - Europe", ", APAC")

_INDUSTRIES = (
    "Software", "SaaS", "Information Technology", "Internet", "Financial Services",
    "Marketing and Advertising", "E-commerce", "Telecommunications", "Retail", "Manufacturing",
    "Healthcare", "Education", "Government", "Non-profit", "Agriculture", "Construction",
    "Logistics", "Media", "Hospitality", "Real Estate", "Insurance", "Automotive", "Energy",
    "Consulting", "Legal", "Pharmaceuticals", "Biotechnology", "Food & Beverages", "Gaming",
    "Aerospace",
)
_COUNTRIES = (
    "US", "CA", "GB", "DE", "AT", "CH", "FR", "NL", "SE", "DK", "AU", "ES", "IT", "PL", "BR",
    "MX", "IN", "JP", "SG", "ZA", "NG", "AR", "NO", "FI", "BE", "IE", "PT", "CZ", "NZ", "KR",
    "United States", "Germany", "United Kingdom", "KP", "IR",
)
_BUDGETS = ("<5k", "5k-25k", "25k-100k", ">100k")
_TIMEFRAMES = ("this_quarter", "6_months", "12_months", "just_researching")
_STAGES = ("subscriber", "lead", "mql", "sql", "opportunity", "customer", "evangelist", "other")
_STATUSES = ("new", "open", "in_progress", "nurture", "unqualified", "attempted_to_contact",
             "connected", "open_deal")
_TECH = ("Salesforce", "HubSpot", "Pipedrive", "Microsoft Dynamics", "Snowflake", "BigQuery",
         "Redshift", "dbt", "Segment", "Looker", "Tableau", "Zendesk", "Slack", "Jira",
         "WordPress", "Shopify", "Marketo", "Intercom")
_PAIN_SHORT = ("slow", "reporting", "none", "n/a", "pipeline", "forecasting", "not interested",
               "nothing", "data", "too many tools", "no need", "churn")
_PAIN_PARTS = (
    "Our forecasting is done in spreadsheets", "pipeline reviews take hours every week",
    "we have no visibility into which campaigns create revenue", "attribution is a mess",
    "sales and marketing disagree on lead quality", "the CRM data is incomplete",
    "quota attainment is unpredictable", "reporting to the board takes days",
    "we lose deals we do not see coming", "our reps spend too much time on admin",
    "churn surprises us every quarter", "leadership wants one source of truth",
)
# Comments in rough proportion: most are ordinary, a few reveal non-buyers.
_COMMENTS = (
    "", "Please send pricing", "Looking for a demo next week", "just researching for now",
    "We want to evaluate revenue analytics this quarter", "I would like to apply for a job opening",
    "Press inquiry for an article about sales tech", "Here is my resume",
    "no plans yet, just curious", "Interested in forecasting and pipeline analytics",
)
_COMPETITORS = ("pipelinepro.io", "forecastly.com", "revgauge.com", "salesmetrics.ai")
_FREE = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "gmx.de", "web.de", "icloud.com")
_DISPOSABLE = ("mailinator.com", "10minutemail.com", "guerrillamail.com")
_EDU = ("mit.edu", "stanford.edu", "ox.ac.uk", "tum.de", "uni-muenchen.de")


def _pick(rng: np.random.Generator, n: int, pool: np.ndarray, weights: np.ndarray | None,
          missing: float) -> np.ndarray:
    """n values from `pool` (object array), a `missing` share of them None."""
    p = None if weights is None else weights / weights.sum()
    out = pool[rng.choice(len(pool), size=n, p=p)]
    if missing:
        out[rng.random(n) < missing] = None
    return out


def _title_pool(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    titles, weights = [], []
    for role, w in zip(_ROLES, _ROLE_WEIGHTS):
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                if role or not (prefix or suffix):
                    titles.append(f"{prefix}{role}{suffix}")
                    # Plain titles are far more common than decorated variants.
                    weights.append(w * (8.0 if not prefix and not suffix else 1.0))
    idx = rng.permutation(len(titles))[:size]
    return np.array(titles, dtype=object)[idx], np.array(weights)[idx]


def _text_pool(rng: np.random.Generator, size: int) -> np.ndarray:
    texts = list(_PAIN_SHORT)
    while len(texts) < size:
        k = int(rng.integers(1, 5))
        parts = rng.choice(len(_PAIN_PARTS), size=k, replace=False)
        texts.append("; ".join(_PAIN_PARTS[i] for i in parts) + f" (team of {int(rng.integers(2, 200))})")
    return np.array(list(dict.fromkeys(texts)), dtype=object)


def generate_leads(
    n: int,
    *,
    seed: int = 0,
    now: datetime | None = None,
    text_dtype: str = "str",
    distinct_titles: int = 3000,
    distinct_domains: int = 20000,
    distinct_pain_points: int = 3000,
) -> pd.DataFrame:
    """A frame of `n` synthetic leads with `LEAD_COLUMNS` and the enrichment columns.

    `text_dtype` is the dtype of text columns: "str" (the pandas 3 default string dtype),
    "object" or "category". Timestamps are datetime64[ns, UTC] relative to `now`.
    """
    rng = np.random.default_rng(seed)
    now = now or default_now()
    now_ts = pd.Timestamp(now)

    titles, title_w = _title_pool(rng, distinct_titles)
    companies = np.array([f"company{i}.com" for i in range(distinct_domains)], dtype=object)
    domain_pool = np.concatenate([companies, np.array(_FREE + _DISPOSABLE + _EDU + _COMPETITORS, dtype=object)])
    domain_w = np.concatenate([
        np.full(len(companies), 1.0), np.full(len(_FREE), 0.25 * len(companies) / len(_FREE)),
        np.full(len(_DISPOSABLE), 0.01 * len(companies)), np.full(len(_EDU), 0.01 * len(companies)),
        np.full(len(_COMPETITORS), 0.005 * len(companies)),
    ])
    email_domain = _pick(rng, n, domain_pool, domain_w, 0.02)
    company_domain = _pick(rng, n, companies, None, 0.2)
    tech_pool = np.array(
        [";".join(sorted(set(rng.choice(_TECH, size=int(rng.integers(1, 5)))))) for _ in range(600)],
        dtype=object,
    )

    def counter(lam: float, missing: float) -> np.ndarray:
        out = rng.poisson(lam, n).astype(np.float64)
        out[rng.random(n) < missing] = np.nan
        return out

    def timestamps(share: float, max_days: float) -> pd.Series:
        ns = now_ts.value - (rng.random(n) * max_days * 86_400e9).astype(np.int64)
        values = pd.to_datetime(ns, utc=True).as_unit("ns")
        return pd.Series(values).where(pd.Series(rng.random(n) < share), pd.NaT)

    free = np.isin(email_domain, _FREE)
    data: dict[str, object] = {
        "crm": np.full(n, "hubspot", dtype=object),
        "record_id": np.arange(1, n + 1).astype(str).astype(object),
        "email": None,
        "first_name": None,
        "last_name": None,
        "job_title": _pick(rng, n, titles, title_w, 0.05),
        "phone": None,
        "company_name": None,
        "website": None,
        "company_id": None,
        "country": _pick(rng, n, np.array(_COUNTRIES, dtype=object), None, 0.1),
        "industry": _pick(rng, n, np.array(_INDUSTRIES, dtype=object), None, 0.1),
        "employees": np.where(rng.random(n) < 0.1, np.nan, np.round(np.exp(rng.normal(4.5, 1.8, n)))),
        "annual_revenue": np.where(rng.random(n) < 0.2, np.nan, np.round(np.exp(rng.normal(16, 2, n)), -3)),
        "lifecycle_stage": _pick(rng, n, np.array(_STAGES, dtype=object),
                                 np.array([30, 30, 10, 5, 3, 3, 1, 1.0]), 0.15),
        "lead_status": _pick(rng, n, np.array(_STATUSES, dtype=object), None, 0.3),
        "budget_range": _pick(rng, n, np.array(_BUDGETS, dtype=object), None, 0.4),
        "timeframe": _pick(rng, n, np.array(_TIMEFRAMES, dtype=object), None, 0.4),
        "pain_point": _pick(rng, n, _text_pool(rng, distinct_pain_points), None, 0.4),
        "form_comments": _pick(rng, n, np.array(_COMMENTS, dtype=object), None, 0.5),
        "page_views": counter(6, 0.1),
        "visits": counter(2, 0.1),
        "pricing_page_views": counter(0.5, 0.1),
        "email_clicks": counter(1, 0.1),
        "content_downloads": counter(0.4, 0.1),
        "form_submissions": counter(0.6, 0.1),
        "demo_requested_at": timestamps(0.05, 200),
        "trial_started_at": timestamps(0.04, 200),
        "webinar_attended_at": timestamps(0.08, 400),
        "last_activity_at": timestamps(0.85, 365),
        "do_not_contact": rng.random(n) < 0.02,
        "created_at": timestamps(1.0, 730),
        "updated_at": timestamps(1.0, 30),
        "is_deleted": np.zeros(n, dtype=bool),
        "email_domain": email_domain,
        "company_domain": company_domain,
        "is_free_email": free,
        "is_disposable_email": np.isin(email_domain, _DISPOSABLE),
        "technologies": _pick(rng, n, tech_pool, None, 0.3),
    }
    frame = pd.DataFrame(index=pd.RangeIndex(n))
    for name, values in data.items():
        kind = LEAD_COLUMNS.get(name, "bool" if name.startswith("is_") else "str")
        if values is None:
            values = np.full(n, None, dtype=object)
        if kind == "str":
            series = pd.Series(values, dtype=object)
            if text_dtype == "str":
                series = series.astype("str")
            elif text_dtype == "category":
                series = series.astype("category")
            frame[name] = series
        elif kind == "ts":
            frame[name] = pd.Series(values).astype("datetime64[ns, UTC]")
        else:
            frame[name] = values
    return frame


def default_now() -> datetime:
    """The fixed scoring time used with `generate_leads` defaults (2025-06-01 12:00 UTC)."""
    return datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


__all__ = ["default_now", "generate_leads"]
