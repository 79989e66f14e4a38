"""The seeded world: companies, contacts, behaviour and a won/lost history, reproducible by seed.

Everything is generated column-wise with numpy (names come from small Faker pools built once),
so 100,000 contacts take seconds to generate and load (figures: bench/bench_sandbox_seed.py).

Two views of the companies exist:
- `company_universe(seed, n)`: the truth (what an enrichment provider knows). Prefix-stable:
  the first m rows of `company_universe(seed, n)` equal `company_universe(seed, m)`, so a
  reference enrichment file can be built for any world size from the seed alone.
- the CRM copy (`World.companies`): the same companies with firmographics blanked on purpose,
  and countries typed the way CRM users type them ("DE", "Germany", "Deutschland").

Outcomes follow two latent variables, fit (persona and firmographic match) and intent
(behaviour), plus noise, so a model trained on won/lost history has real signal.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from faker import Faker

from leadflow.sandbox.properties import BUDGET_RANGES, DAY_MS, TECHNOLOGIES, TIMEFRAMES

log = logging.getLogger(__name__)

CONTACTS_PER_COMPANY = 8.0
_BLOCK = 1024  # companies per RNG block (keeps company_universe prefix-stable)

_PREFIXES = (
    "Blue", "North", "Apex", "Bright", "Clear", "Silver", "Iron", "Green", "Red", "Swift", "True", "Prime",
    "Nova", "Summit", "Harbor", "Cedar", "Maple", "Oak", "Pine", "River", "Stone", "Sun", "Star", "Wind",
    "Atlas", "Bold", "Core", "Delta", "Echo", "Fair", "Gold", "High", "Key", "Lake", "Meadow", "Noble",
    "Ocean", "Pilot", "Quant", "Rapid", "Sage", "Terra", "Union", "Vista", "West", "East", "South", "Zen",
    "Alpine", "Beacon", "Coral", "Dune", "Ember", "Falcon", "Granite", "Hawk", "Indigo", "Jade", "Kite",
    "Lumen", "Mosaic", "Nimbus", "Orbit", "Polar", "Quartz", "Ridge", "Sierra", "Tidal", "Ultra", "Vector",
    "Willow", "Yellow", "Arc", "Birch", "Cobalt", "Drift", "Elm", "Flint", "Grove", "Haven", "Isle",
    "Juniper", "Kestrel", "Lark", "Mint", "Nest", "Opal", "Peak", "Quill", "Raven", "Slate", "Thistle",
    "Umber", "Vale", "Wren", "Zephyr", "Amber", "Basalt", "Crimson", "Dawn",
)
_NOUNS = (
    "bridge", "field", "gate", "works", "point", "path", "wave", "line", "forge", "mark", "loop", "labs",
    "stack", "cloud", "mind", "ware", "scale", "shift", "flow", "grid", "hub", "link", "logic", "metric",
    "nest", "pulse", "quest", "rise", "sense", "signal", "span", "sphere", "spring", "stream", "track",
    "trail", "verse", "view", "vault", "yard", "base", "beam", "bay", "craft", "dock", "edge", "fleet",
    "frame", "glen", "harvest", "haus", "keep", "lane", "leaf", "light", "mill", "moor", "port", "reach",
    "root", "sail", "shore", "sky", "tide", "tower", "wood", "crest", "ford", "mere", "wick",
)
_SUFFIXES = (
    ("Analytics", "analytics"), ("Systems", "systems"), ("Logistics", "logistics"), ("Labs", "labs"),
    ("Software", "software"), ("Consulting", "consulting"), ("Group", "group"), ("Health", "health"),
    ("Capital", "capital"), ("Media", "media"), ("Energy", "energy"), ("Foods", "foods"),
    ("Robotics", "robotics"), ("Security", "security"), ("Partners", "partners"), ("Retail", "retail"),
    ("Solutions", "solutions"), ("Technologies", "tech"), ("Industries", "industries"), ("Studio", "studio"),
    ("", ""), ("", "hq"), ("Digital", "digital"), ("Networks", "networks"),
)
INDUSTRIES: tuple[tuple[str, str, float], ...] = (
    # (industry, sector, how well it fits the ideal customer profile 0..1)
    ("Software", "Information Technology", 1.0), ("IT Services", "Information Technology", 0.9),
    ("Financial Services", "Financials", 0.8), ("Marketing & Advertising", "Communication Services", 0.8),
    ("Healthcare", "Health Care", 0.5), ("Manufacturing", "Industrials", 0.5), ("Retail", "Consumer Discretionary", 0.5),
    ("Logistics", "Industrials", 0.6), ("Education", "Public Sector", 0.2), ("Telecommunications", "Communication Services", 0.6),
    ("Energy", "Energy", 0.3), ("Real Estate", "Real Estate", 0.3), ("Government", "Public Sector", 0.1),
    ("Non-profit", "Public Sector", 0.1), ("Media", "Communication Services", 0.4),
)
_INDUSTRY_WEIGHTS = np.array([16, 10, 8, 7, 8, 9, 7, 6, 5, 4, 4, 4, 3, 3, 6], dtype=float)
# (tld, ISO country code of most such companies, weight)
_TLDS: tuple[tuple[str, str, float], ...] = (
    (".com", "US", 62), (".io", "US", 7), (".co.uk", "GB", 7), (".de", "DE", 7), (".fr", "FR", 3),
    (".net", "US", 3), (".com.au", "AU", 2.5), (".nl", "NL", 2.5), (".ca", "CA", 2), (".es", "ES", 1.5),
    (".ch", "CH", 1.5), (".se", "SE", 1),
)
_COUNTRY_SPELLINGS: dict[str, tuple[str, ...]] = {
    # how CRM users type a country: ISO code, English name, local / sloppy variants
    "US": ("US", "United States", "USA", "U.S.", "united states"),
    "GB": ("GB", "United Kingdom", "UK", "England", "Great Britain"),
    "DE": ("DE", "Germany", "Deutschland", "germany"),
    "FR": ("FR", "France", "france"),
    "AU": ("AU", "Australia"),
    "NL": ("NL", "Netherlands", "The Netherlands", "Holland"),
    "CA": ("CA", "Canada"),
    "ES": ("ES", "Spain", "España"),
    "CH": ("CH", "Switzerland", "Schweiz"),
    "SE": ("SE", "Sweden"),
    "IN": ("IN", "India"),
}
_COUNTRY_NAMES = {code: spellings[1] for code, spellings in _COUNTRY_SPELLINGS.items()}


def _spell_countries(codes: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Pick one of the usual spellings of each ISO code (uniform by `r` in [0, 1))."""
    keys = list(_COUNTRY_SPELLINGS)
    width = max(len(v) for v in _COUNTRY_SPELLINGS.values())
    table = np.array([list(v) + [v[0]] * (width - len(v)) for v in _COUNTRY_SPELLINGS.values()], dtype=object)
    counts = np.array([len(v) for v in _COUNTRY_SPELLINGS.values()])
    row = pd.Categorical(codes, categories=keys).codes
    return table[row, (r * counts[row]).astype(int)]
_PHONE_PREFIX = {"US": "+1", "CA": "+1", "GB": "+44", "DE": "+49", "FR": "+33", "AU": "+61", "NL": "+31",
                 "ES": "+34", "CH": "+41", "SE": "+46", "IN": "+91"}
FREE_MAIL_DOMAINS: tuple[str, ...] = (
    "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "gmx.de", "web.de", "aol.com",
    "protonmail.com", "yahoo.co.uk",
)
DISPOSABLE_DOMAINS: tuple[str, ...] = ("mailinator.com", "yopmail.com", "guerrillamail.com", "10minutemail.com",
                                       "trashmail.com")
# (title, seniority 0..1, buyer?, weight)
JOB_TITLES: tuple[tuple[str, float, bool, float], ...] = (
    ("CEO", 1.0, True, 2.0), ("Founder", 1.0, True, 1.5), ("CTO", 1.0, True, 1.5), ("CFO", 0.9, True, 1.0),
    ("COO", 0.9, True, 0.8), ("CMO", 1.0, True, 1.2),
    ("VP Sales", 0.85, True, 2.5), ("VP Marketing", 0.85, True, 2.5), ("VP Engineering", 0.8, True, 1.5),
    ("VP Operations", 0.75, True, 1.0),
    ("Head of Marketing", 0.75, True, 3.0), ("Head of Sales", 0.75, True, 2.5), ("Director of IT", 0.7, True, 2.5),
    ("Director of Operations", 0.65, True, 2.0), ("Head of Growth", 0.7, True, 1.5),
    ("Marketing Manager", 0.5, True, 6.0), ("Sales Manager", 0.5, True, 5.0), ("IT Manager", 0.5, True, 5.0),
    ("Operations Manager", 0.45, True, 4.0), ("Product Manager", 0.45, True, 4.0),
    ("Software Engineer", 0.25, True, 8.0), ("Data Analyst", 0.25, True, 5.0), ("Marketing Specialist", 0.25, True, 5.0),
    ("Account Executive", 0.25, True, 4.0), ("Consultant", 0.3, True, 4.0),
    ("Sales Development Representative", 0.2, True, 4.0),
    ("Student", 0.0, False, 3.0), ("Intern", 0.0, False, 2.0), ("Job Applicant", 0.0, False, 1.5),
    ("Recruiter", 0.05, False, 1.5), ("Journalist", 0.05, False, 1.0), ("", 0.2, True, 5.0),
)
_PAIN_SHORT = ("pricing", "need a crm", "just looking", "info", "demo?", "reporting", "n/a", "test")
_PAIN_DETAILED = (
    "Our sales team loses track of inbound leads across three tools; we need one place to score and route them.",
    "We spend about two days a month reconciling marketing and sales reports by hand and want to automate it.",
    "Lead response times are over 48 hours because nobody knows which leads are ready; we want clear hand-off rules.",
    "We are migrating from spreadsheets and need data quality checks before our CRM grows further.",
    "Marketing qualified leads convert poorly; we need to understand which signals actually predict revenue.",
    "Our reps waste time on students and competitors signing up for trials; we need better qualification.",
)
_MESSAGES = (
    "Please send me pricing for 20 seats.", "Can we book a demo next week?", "Do you integrate with Salesforce?",
    "Looking for a case study in our industry.", "What does onboarding look like?",
    "I am writing an article about lead scoring tools.", "Is there a student licence?",
    "We would like to start a pilot this quarter.", "Just browsing, thanks.", "Do you offer EU data hosting?",
)
LIFECYCLE_SHARES: tuple[tuple[str, float], ...] = (
    # funnel proportions (by a noisy fit+intent score): most subscriber/lead, few customers
    ("subscriber", 0.34), ("lead", 0.40), ("marketingqualifiedlead", 0.12), ("salesqualifiedlead", 0.06),
    ("opportunity", 0.03), ("customer", 0.035), ("evangelist", 0.005), ("other", 0.01),
)


@dataclass(frozen=True)
class WorldConfig:
    """What to generate. `anchor_ms` is "now" for the world (default: today 00:00 UTC), so the
    world is reproducible from (seed, contacts, anchor_ms)."""

    seed: int = 42
    contacts: int = 5_000
    anchor_ms: int | None = None
    shared_timestamp_every: int = 0  # >0: each run of N consecutive contacts shares one lastmodifieddate
    enrichment_coverage: float = 0.85  # share of companies the enrichment API knows

    def anchor(self) -> int:
        if self.anchor_ms is not None:
            return self.anchor_ms
        now = datetime.now(timezone.utc)
        return int(datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp() * 1000)

    @property
    def companies(self) -> int:
        return max(1, int(round(self.contacts / CONTACTS_PER_COMPANY)))


@dataclass
class World:
    config: WorldConfig
    anchor_ms: int
    universe: pd.DataFrame  # the truth, one row per company (company_id = row + 1)
    companies: pd.DataFrame  # the CRM copy
    contacts: pd.DataFrame


# --- companies --------------------------------------------------------------------------------
def _sub_rng(seed: int, *parts: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, *parts])


def company_universe(seed: int, n: int) -> pd.DataFrame:
    """The true firmographics of the first `n` companies of the world with this seed.

    Columns: company_id (1-based), name, domain, industry, sector, employees, annual_revenue
    (USD), country_code (ISO alpha-2), country, founded_year, technologies (";"-separated).
    """
    if n <= 0:
        return pd.DataFrame(columns=["company_id", "name", "domain", "industry", "sector", "employees",
                                     "annual_revenue", "country_code", "country", "founded_year", "technologies"])
    space = len(_PREFIXES) * len(_NOUNS) * len(_SUFFIXES)
    if n > space:
        raise ValueError(f"at most {space} companies can be generated, asked for {n}")
    # One permutation of the name space for the seed: company i always gets combo perm[i].
    combo = _sub_rng(seed, 1).permutation(space)[:n]
    p_idx, rest = np.divmod(combo, len(_NOUNS) * len(_SUFFIXES))
    n_idx, s_idx = np.divmod(rest, len(_SUFFIXES))
    # Always whole blocks (then cut): a block's draws must not depend on how many rows are kept.
    blocks = [_universe_block(seed, b, _BLOCK) for b in range((n + _BLOCK - 1) // _BLOCK)]
    attrs = {k: np.concatenate([blk[k] for blk in blocks])[:n] for k in blocks[0]}

    names, domains = [], []
    tlds = [t[0] for t in _TLDS]
    for p, nn, s, t in zip(p_idx.tolist(), n_idx.tolist(), s_idx.tolist(), attrs["tld"].tolist()):
        label, slug = _SUFFIXES[s]
        noun = _NOUNS[nn]
        names.append(f"{_PREFIXES[p]}{noun}{(' ' + label) if label else ''}".strip())
        domains.append(f"{_PREFIXES[p].lower()}{noun}{slug}{tlds[t]}")
    frame = pd.DataFrame({
        "company_id": np.arange(1, n + 1),
        "name": names,
        "domain": domains,
    })
    dupes = frame["domain"].duplicated()
    if dupes.any():  # word joins can collide ("sun"+"rise" vs "sunr"+"ise"): make them unique
        frame.loc[dupes, "domain"] = [f"{d.split('.', 1)[0]}{i}.{d.split('.', 1)[1]}"
                                      for i, d in zip(frame.index[dupes], frame.loc[dupes, "domain"])]
    ind = attrs["industry"]
    frame["industry"] = [INDUSTRIES[i][0] for i in ind.tolist()]
    frame["sector"] = [INDUSTRIES[i][1] for i in ind.tolist()]
    frame["employees"] = attrs["employees"]
    frame["annual_revenue"] = attrs["revenue"]
    frame["country_code"] = attrs["country"]
    frame["country"] = [_COUNTRY_NAMES[c] for c in attrs["country"].tolist()]
    frame["founded_year"] = attrs["founded"]
    frame["technologies"] = attrs["tech"]
    return frame


def _universe_block(seed: int, block: int, size: int) -> dict[str, np.ndarray]:
    rng = _sub_rng(seed, 2, block)
    industry = rng.choice(len(INDUSTRIES), size=size, p=_INDUSTRY_WEIGHTS / _INDUSTRY_WEIGHTS.sum())
    employees = np.clip(np.round(np.exp(rng.normal(3.6, 1.7, size))), 1, 250_000).astype(np.int64)
    per_head = np.exp(rng.normal(np.log(160_000), 0.5, size))
    revenue = (np.round(employees * per_head / 1000) * 1000).astype(np.int64)
    tld_w = np.array([t[2] for t in _TLDS])
    tld = rng.choice(len(_TLDS), size=size, p=tld_w / tld_w.sum())
    home = np.array([_TLDS[t][1] for t in tld], dtype=object)
    # Most .com/.io companies are American, some are not.
    abroad = (np.isin(tld, [0, 1, 5])) & (rng.random(size) < 0.3)
    others = np.array(["GB", "DE", "CA", "IN", "FR", "NL"], dtype=object)
    home[abroad] = others[rng.integers(0, len(others), abroad.sum())]
    founded = (2024 - np.clip(np.round(rng.gamma(2.0, 9.0, size)), 0, 120)).astype(np.int64)
    # Each technology independently, more common ones first (about 2.5 per company on average).
    tech_p = np.linspace(0.25, 0.05, len(TECHNOLOGIES))
    has = rng.random((size, len(TECHNOLOGIES))) < tech_p
    masks = has @ (1 << np.arange(len(TECHNOLOGIES), dtype=np.int64))
    names = {m: ";".join(t for j, t in enumerate(TECHNOLOGIES) if m >> j & 1) for m in np.unique(masks).tolist()}
    tech_rows = [names[m] for m in masks.tolist()]
    return {"industry": industry, "employees": employees, "revenue": revenue, "tld": tld,
            "country": home, "founded": founded, "tech": np.array(tech_rows, dtype=object)}


def crm_companies(universe: pd.DataFrame, seed: int, anchor_ms: int) -> pd.DataFrame:
    """The CRM's copy of the companies: blanks where nobody filled the field in, countries typed
    in mixed forms, create/modify times over the past two years."""
    n = len(universe)
    rng = _sub_rng(seed, 3)
    out = universe[["company_id", "name", "domain"]].copy()

    def blank(values: pd.Series, share: float) -> pd.Series:
        return values.where(rng.random(n) >= share, None)

    out["industry"] = blank(universe["industry"].astype(object), 0.20)
    out["numberofemployees"] = blank(universe["employees"].astype(object), 0.25)
    out["annualrevenue"] = blank(universe["annual_revenue"].astype(object), 0.30)
    spelled = _spell_countries(universe["country_code"].to_numpy(dtype=object), rng.random(n))
    out["country"] = blank(pd.Series(spelled, dtype=object), 0.10)
    techs = universe["technologies"].where(universe["technologies"] != "", None)
    out["web_technologies"] = blank(techs.astype(object), 0.40)
    out["founded_year"] = blank(universe["founded_year"].astype(str).astype(object), 0.5)
    created = anchor_ms - (rng.random(n) * 760 * DAY_MS).astype(np.int64)
    out["created_ms"] = created
    out["modified_ms"] = created + ((anchor_ms - created) * rng.random(n) ** 0.5).astype(np.int64)
    return out


# --- contacts ---------------------------------------------------------------------------------
def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalpha())


def _name_pools(seed: int, size: int = 400) -> tuple[list[str], list[str]]:
    """First and last names from Faker, built once (a few hundred calls, not one per contact)."""
    firsts, lasts = _cached_name_pools(seed, size)
    return list(firsts), list(lasts)


@functools.lru_cache(maxsize=16)
def _cached_name_pools(seed: int, size: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per process and seed: Faker's locale discovery alone costs about a second."""
    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "nl_NL"])
    fake.seed_instance(seed)
    firsts = list(dict.fromkeys(fake.first_name() for _ in range(size)))
    lasts = list(dict.fromkeys(fake.last_name() for _ in range(size)))
    # Names that fold to nothing in ASCII would make broken e-mails.
    return tuple(f for f in firsts if _ascii(f)), tuple(n for n in lasts if _ascii(n))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _times_between(rng: np.random.Generator, start: np.ndarray, end: np.ndarray, present: np.ndarray) -> np.ndarray:
    span = np.maximum(end - start, 1)
    out = (start + (rng.random(len(start)) * span).astype(np.int64)).astype(object)
    out[~present] = None
    return out


def generate_contacts(config: WorldConfig, universe: pd.DataFrame, anchor_ms: int) -> pd.DataFrame:
    return pd.DataFrame(contact_columns(config, universe, anchor_ms))


def contact_columns(config: WorldConfig, universe: pd.DataFrame, anchor_ms: int) -> dict[str, Any]:
    """The contacts as plain numpy columns (what `generate_contacts` puts in a DataFrame).

    Seeding loads these directly: building the DataFrame converts every text column to pandas'
    string dtype and loading converts it back, which costs more than generating them."""
    n = config.contacts
    rng = _sub_rng(config.seed, 4)
    firsts, lasts = _name_pools(config.seed)
    fi = rng.integers(0, len(firsts), n)
    li = rng.integers(0, len(lasts), n)
    first = np.array(firsts, dtype=object)[fi]
    last = np.array(lasts, dtype=object)[li]
    first_ascii = np.array([_ascii(x) for x in firsts], dtype=object)[fi]
    last_ascii = np.array([_ascii(x) for x in lasts], dtype=object)[li]

    # Company: bigger companies have more contacts.
    weight = np.sqrt(universe["employees"].to_numpy(dtype=float))
    comp_idx = rng.choice(len(universe), size=n, p=weight / weight.sum())
    comp = universe.iloc[comp_idx].reset_index(drop=True)

    r_mail = rng.random(n)
    disposable = r_mail < 0.01
    free = (~disposable) & (r_mail < 0.16)
    work = ~(free | disposable)
    pattern = rng.integers(0, 4, n)
    locals_ = np.where(pattern == 0, first_ascii + "." + last_ascii,
                       np.where(pattern == 1, np.array([f[:1] for f in first_ascii], dtype=object) + last_ascii,
                                np.where(pattern == 2, first_ascii, first_ascii + "_" + last_ascii)))
    digits = rng.integers(1, 99, n).astype(str).astype(object)
    with_digits = (~work) & (rng.random(n) < 0.6)
    locals_ = np.where(with_digits, locals_ + digits, locals_)
    domain = comp["domain"].to_numpy(dtype=object).copy()
    domain[free] = np.array(FREE_MAIL_DOMAINS, dtype=object)[rng.integers(0, len(FREE_MAIL_DOMAINS), free.sum())]
    domain[disposable] = np.array(DISPOSABLE_DOMAINS, dtype=object)[
        rng.integers(0, len(DISPOSABLE_DOMAINS), disposable.sum())]
    email = pd.Series(locals_ + "@" + domain, dtype=object)
    dupes = email.duplicated()
    if dupes.any():  # same person-pattern at the same domain: add a number, as people do
        idx = np.flatnonzero(dupes.to_numpy())
        email.iloc[idx] = [e.replace("@", f"{i + 1}@", 1) for i, e in zip(idx.tolist(), email.iloc[idx].tolist())]

    # Persona.
    t_w = np.array([t[3] for t in JOB_TITLES])
    ti = rng.choice(len(JOB_TITLES), size=n, p=t_w / t_w.sum())
    title = np.array([t[0] for t in JOB_TITLES], dtype=object)[ti]
    seniority = np.array([t[1] for t in JOB_TITLES])[ti]
    buyer = np.array([t[2] for t in JOB_TITLES])[ti]
    title = np.where(title == "", None, title)

    # Latent fit and intent.
    emp = comp["employees"].to_numpy(dtype=float)
    size_fit = np.exp(-((np.log10(emp) - 2.7) ** 2) / 1.2)  # ideal: ~50..5,000 employees
    ind_fit = comp["industry"].map({i[0]: i[2] for i in INDUSTRIES}).to_numpy(dtype=float)
    fit = (1.0 * size_fit + 0.8 * ind_fit + 0.9 * seniority - 0.8 * free - 2.0 * disposable - 2.5 * (~buyer)
           + rng.normal(0, 0.5, n))
    intent = rng.normal(0, 1, n) + 0.3 * fit

    created = anchor_ms - (rng.random(n) ** 0.8 * 730 * DAY_MS).astype(np.int64)
    modified = created + ((anchor_ms - created) * rng.random(n) ** 0.5).astype(np.int64)
    if config.shared_timestamp_every > 0:
        groups = np.arange(n) // config.shared_timestamp_every
        modified = pd.Series(modified).groupby(groups).transform("max").to_numpy()

    page_views = rng.poisson(np.exp(1.3 + 0.7 * intent))
    visits = np.maximum(np.minimum(page_views, np.round(page_views / rng.uniform(1.3, 4.0, n))), 1)
    pricing = rng.poisson(np.exp(-1.2 + 0.9 * intent))
    clicks = rng.poisson(np.exp(-0.4 + 0.5 * intent))
    downloads = rng.poisson(np.exp(-0.9 + 0.6 * intent))
    conversions = rng.poisson(np.exp(-0.6 + 0.5 * intent)) + (rng.random(n) < 0.7)
    demo = rng.random(n) < _sigmoid(-2.8 + 1.2 * intent + 0.4 * fit)
    trial = rng.random(n) < _sigmoid(-3.2 + 1.0 * intent + 0.3 * fit)
    webinar = rng.random(n) < _sigmoid(-2.2 + 0.6 * intent)
    last_seen = created + ((anchor_ms - created) * rng.beta(1 + np.clip(intent + 1, 0, 4), 1.0)).astype(np.int64)

    # Form answers.
    budget_score = np.log10(emp) + 0.5 * seniority + rng.normal(0, 0.5, n)
    budget = np.array(BUDGET_RANGES, dtype=object)[np.digitize(budget_score, [1.5, 2.4, 3.3])]
    budget[rng.random(n) < 0.3] = None
    timeframe = np.array(TIMEFRAMES, dtype=object)[np.digitize(-(intent + rng.normal(0, 0.7, n)), [-1.0, 0.0, 0.8])]
    timeframe[rng.random(n) < 0.3] = None
    detailed = rng.random(n) < _sigmoid(-0.5 + 0.6 * fit + 0.4 * intent)
    pain = np.where(detailed, np.array(_PAIN_DETAILED, dtype=object)[rng.integers(0, len(_PAIN_DETAILED), n)],
                    np.array(_PAIN_SHORT, dtype=object)[rng.integers(0, len(_PAIN_SHORT), n)])
    pain[rng.random(n) < 0.4] = None
    message = np.array(_MESSAGES, dtype=object)[rng.integers(0, len(_MESSAGES), n)]
    message[rng.random(n) < 0.5] = None

    # Funnel position from a noisy score; customers are the won history.
    quality = 0.7 * fit + 0.8 * intent + rng.normal(0, 0.6, n)
    rank = quality.argsort().argsort() / max(n - 1, 1)
    bounds = np.cumsum([s for _, s in LIFECYCLE_SHARES])[:-1]
    stage_idx = np.digitize(rank, bounds)
    stage_names = np.array([s for s, _ in LIFECYCLE_SHARES], dtype=object)
    # Evangelist/other are not a quality tier: move a few random contacts there instead.
    stage_idx[stage_idx >= 6] = 5
    special = rng.random(n)
    stage_idx[special < 0.005] = 6
    stage_idx[(special >= 0.005) & (special < 0.015)] = 7
    # Students, applicants, journalists never become opportunities or customers.
    stage_idx[(~buyer) & (stage_idx >= 4) & (stage_idx <= 5)] = 1
    stage = stage_names[stage_idx]
    status = _lead_status(rng, stage_idx, fit, buyer)

    has_company = work | (free & (rng.random(n) < 0.5))
    company_id = np.where(has_company, comp["company_id"].to_numpy(), 0).astype(object)
    company_id[~has_company] = None
    typed_company = comp["name"].to_numpy(dtype=object).copy()
    variant = rng.random(n)
    typed_company = np.where(variant < 0.1, np.char.lower(typed_company.astype(str)).astype(object),
                             np.where(variant < 0.18, typed_company + " Inc.", typed_company))
    typed_company[(rng.random(n) < 0.1) | disposable] = None
    website = np.where(rng.random(n) < 0.3, "https://www." + comp["domain"].to_numpy(dtype=object), None)
    cc = comp["country_code"].to_numpy(dtype=object)
    country = _spell_countries(cc, rng.random(n))
    country[rng.random(n) < 0.4] = None
    prefix = pd.Series(cc).map(_PHONE_PREFIX).to_numpy(dtype=object)
    phone = prefix + " " + rng.integers(200_000_000, 999_999_999, n).astype(str).astype(object)
    phone[rng.random(n) < 0.3] = None
    industry = comp["industry"].to_numpy(dtype=object).copy()
    industry[rng.random(n) < 0.8] = None

    return {
        "id": np.arange(1, n + 1),
        "created_ms": created,
        "modified_ms": modified,
        "company_id": company_id,
        "email": email.to_numpy(),
        "firstname": first,
        "lastname": last,
        "jobtitle": title,
        "phone": phone,
        "company": typed_company,
        "website": website,
        "country": country,
        "industry": industry,
        "lifecyclestage": stage,
        "hs_lead_status": status,
        "message": message,
        "hs_analytics_num_page_views": page_views,
        "hs_analytics_num_visits": visits.astype(np.int64),
        "hs_analytics_last_timestamp": last_seen,
        "hs_email_click": clicks,
        "hs_email_optout": rng.random(n) < 0.04,
        "num_conversion_events": conversions.astype(np.int64),
        "budget_range": budget,
        "purchase_timeframe": timeframe,
        "pain_point": pain,
        "pricing_page_views": pricing,
        "content_downloads": downloads,
        "demo_requested_at": _times_between(rng, created, np.full(n, anchor_ms), demo),
        "trial_started_at": _times_between(rng, created, np.full(n, anchor_ms), trial),
        "webinar_attended_at": _times_between(rng, created, np.full(n, anchor_ms), webinar),
        # latent variables, kept for tests and backtests (never loaded into the CRM)
        "_fit": fit,
        "_intent": intent,
    }


def _lead_status(rng: np.random.Generator, stage_idx: np.ndarray, fit: np.ndarray, buyer: np.ndarray) -> np.ndarray:
    n = len(stage_idx)
    r = rng.random(n)
    status = np.full(n, None, dtype=object)
    # lead / MQL / SQL: working statuses
    working = np.array(["NEW", "OPEN", "ATTEMPTED_TO_CONTACT", "CONNECTED", "IN_PROGRESS", "BAD_TIMING"], dtype=object)
    pick = working[rng.integers(0, len(working), n)]
    status[stage_idx == 0] = np.where(r[stage_idx == 0] < 0.3, "NEW", None)
    status[stage_idx == 1] = pick[stage_idx == 1]
    status[stage_idx == 2] = np.where(r[stage_idx == 2] < 0.5, "OPEN", "IN_PROGRESS")
    status[stage_idx == 3] = np.where(r[stage_idx == 3] < 0.5, "CONNECTED", "OPEN_DEAL")
    status[stage_idx == 4] = "OPEN_DEAL"
    # Lost history: closed as unqualified, more often for poor fit and for non-buyers.
    # Non-buyers (students, applicants, journalists) are closed out even from the subscriber stage.
    lost_p = _sigmoid(-1.0 - 1.2 * fit) + 0.3 * (~buyer)
    open_stage = np.isin(stage_idx, [1, 2, 3]) | ((stage_idx == 0) & ~buyer)
    lost = open_stage & (rng.random(n) < lost_p)
    status[lost] = "UNQUALIFIED"
    return status


# --- sales' hidden judgement and new inbound leads (simulations over days) ----------------------
# The timestamps of a contact's behaviour (epoch ms), shifted together when it arrives later.
ACTIVITY_TIMES: tuple[str, ...] = ("hs_analytics_last_timestamp", "demo_requested_at", "trial_started_at",
                                   "webinar_attended_at")
_HIDDEN_STREAM = 5  # sub-RNG of the hidden part of the sales propensity (4 is the contacts')


def sales_propensity(fit: Any, intent: Any, seed: int, *, intent_weight: float = 0.8,
                     hidden_weight: float = 0.4) -> np.ndarray:
    """How much sales buy into each lead: mostly its buying intent (`intent_weight`), the rest
    its latent fit, plus `hidden_weight` times what the CRM never shows (a budget just freed, a
    champion who left), drawn from `seed`. Sales weigh intent over fit where the rules weigh
    persona and firmographics heavily: what a model learning from their verdicts can find.

    Part of the seeded world and never loaded into the CRM: the sandbox's reps decide from it
    (`leadflow.sandbox.actors.PropensityAnswers`), while leadflow sees only the fields that
    correlate with fit and intent. Same inputs and seed, same propensity."""
    fit, intent = np.asarray(fit, dtype=float), np.asarray(intent, dtype=float)
    if fit.shape != intent.shape:
        raise ValueError(f"fit and intent differ in shape: {fit.shape} and {intent.shape}")
    hidden = _sub_rng(seed, _HIDDEN_STREAM).normal(0, 1, len(fit))
    return (1 - intent_weight) * fit + intent_weight * intent + hidden_weight * hidden


def inbound_contacts(universe: pd.DataFrame, seed: int, n: int, anchor_ms: int, *,
                     recent_days: float = 30.0) -> pd.DataFrame:
    """`n` new inbound leads of the world whose companies are `universe`, as they arrive at
    `anchor_ms`: people like the world's contacts (fit, intent, behaviour, form answers drawn the
    same way, with `_fit`, `_intent` and `_propensity`), whose behaviour happened within the
    `recent_days` before they arrive (the world's two years, compressed) and who enter the CRM as
    fresh leads (stage `lead`, no lead status). Arriving a day later: add `DAY_MS` to every
    `ACTIVITY_TIMES` column."""
    if recent_days <= 0:
        raise ValueError(f"recent_days must be positive, got {recent_days}")
    columns = contact_columns(WorldConfig(seed=seed, contacts=n, anchor_ms=anchor_ms), universe, anchor_ms)
    out = pd.DataFrame(columns).drop(columns=["id", "created_ms", "modified_ms"])
    squeeze = recent_days / 730
    for name in ACTIVITY_TIMES:
        values = pd.to_numeric(out[name], errors="coerce")
        squeezed = anchor_ms - ((anchor_ms - values) * squeeze).round()
        out[name] = pd.Series([None if v != v else int(v) for v in squeezed.tolist()], dtype=object)
    out["lifecyclestage"] = "lead"
    out["hs_lead_status"] = None
    out["_propensity"] = sales_propensity(out["_fit"], out["_intent"], seed)
    return out


def generate_world(config: WorldConfig) -> World:
    anchor = config.anchor()
    universe = company_universe(config.seed, config.companies)
    companies = crm_companies(universe, config.seed, anchor)
    contacts = generate_contacts(config, universe, anchor)
    return World(config=config, anchor_ms=anchor, universe=universe, companies=companies, contacts=contacts)


# --- enrichment -------------------------------------------------------------------------------
_EMPLOYEE_BANDS = ((10, "1-10"), (50, "11-50"), (250, "51-250"), (1000, "251-1K"), (5000, "1K-5K"),
                   (10_000, "5K-10K"), (50_000, "10K-50K"), (100_000, "50K-100K"))
_REVENUE_BANDS = ((1e6, "$0-$1M"), (1e7, "$1M-$10M"), (5e7, "$10M-$50M"), (1e8, "$50M-$100M"),
                  (2.5e8, "$100M-$250M"), (5e8, "$250M-$500M"), (1e9, "$500M-$1B"), (1e10, "$1B-$10B"))


def _band(value: float, bands: tuple[tuple[float, str], ...], top: str) -> str:
    for upper, label in bands:
        if value <= upper:
            return label
    return top


def domain_fraction(seed: int, domain: str, salt: str) -> float:
    """A stable pseudo-random number in [0, 1) for a domain (which companies the provider knows,
    which are "queued" on first lookup)."""
    digest = hashlib.blake2b(f"{seed}:{salt}:{domain.lower()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def enrichment_record(row: dict[str, Any], seed: int) -> dict[str, Any]:
    """One company in the shape of the common company-enrichment APIs (Clearbit style)."""
    revenue_known = domain_fraction(seed, row["domain"], "revenue") < 0.6
    return {
        "id": hashlib.blake2b(row["domain"].encode(), digest_size=16).hexdigest(),
        "name": row["name"],
        "legalName": None,
        "domain": row["domain"],
        "category": {"sector": row["sector"], "industry": row["industry"]},
        "geo": {"country": row["country"], "countryCode": row["country_code"]},
        "metrics": {
            "employees": int(row["employees"]),
            "employeesRange": _band(row["employees"], _EMPLOYEE_BANDS, "100K+"),
            "annualRevenue": int(row["annual_revenue"]) if revenue_known else None,
            "estimatedAnnualRevenue": _band(row["annual_revenue"], _REVENUE_BANDS, "$10B+"),
        },
        "tech": [t.lower().replace(" ", "_") for t in row["technologies"].split(";") if t],
        "foundedYear": int(row["founded_year"]),
    }


def enrichment_records(universe: pd.DataFrame, seed: int, coverage: float) -> list[tuple[str, dict[str, Any]]]:
    """The companies the enrichment API knows: most, not all (and no free-mail domains)."""
    out = []
    keys = list(universe.columns)
    # Column lists zipped into dicts: the same plain values as to_dict("records"), much faster.
    for values in zip(*(universe[k].tolist() for k in keys)):
        row = dict(zip(keys, values))
        if domain_fraction(seed, row["domain"], "known") < coverage:
            out.append((row["domain"], enrichment_record(row, seed)))
    return out


# --- loading ----------------------------------------------------------------------------------
CONTACT_PROPS: tuple[str, ...] = (
    "email", "firstname", "lastname", "jobtitle", "phone", "company", "website", "country", "industry",
    "lifecyclestage", "hs_lead_status", "message", "hs_analytics_num_page_views", "hs_analytics_num_visits",
    "hs_analytics_last_timestamp", "hs_email_click", "hs_email_optout", "num_conversion_events", "budget_range",
    "purchase_timeframe", "pain_point", "pricing_page_views", "content_downloads", "demo_requested_at",
    "trial_started_at", "webinar_attended_at",
)
COMPANY_PROPS: tuple[str, ...] = ("name", "domain", "industry", "numberofemployees", "annualrevenue", "country",
                                  "web_technologies", "founded_year")


def _column(values: Any) -> list[Any]:
    """numpy/pandas column -> list of plain Python values with None for missing."""
    arr = np.asarray(values)
    if arr.dtype.kind == "b":
        return [bool(v) for v in arr.tolist()]
    if arr.dtype.kind in "iu":
        return arr.tolist()
    if arr.dtype.kind == "f":
        return [None if v != v else (int(v) if v.is_integer() else v) for v in arr.tolist()]
    # Object columns hold Python values already; NaN (the only value unequal to itself) -> None.
    return [None if v is None or v != v else v for v in arr.tolist()]


@dataclass(frozen=True)
class SeedReport:
    contacts: int
    companies: int
    enrichment_companies: int
    generate_seconds: float
    load_seconds: float
    anchor_ms: int


def seed_store(store: Any, config: WorldConfig) -> SeedReport:
    """Generate the world and load it into a (fresh) SandboxStore."""
    t0 = time.perf_counter()
    anchor = config.anchor()
    universe = company_universe(config.seed, config.companies)
    comp = crm_companies(universe, config.seed, anchor)
    contacts = contact_columns(config, universe, anchor)
    t1 = time.perf_counter()
    store.bulk_load("companies", {
        "id": comp["company_id"].tolist(), "created_ms": comp["created_ms"].tolist(),
        "modified_ms": comp["modified_ms"].tolist(), "unique_key": comp["domain"].str.lower().tolist(),
        "company_id": [None] * len(comp),
        **{p: _column(comp[p]) for p in COMPANY_PROPS},
    }, COMPANY_PROPS)
    con = contacts
    store.bulk_load("contacts", {
        "id": con["id"].tolist(), "created_ms": con["created_ms"].tolist(),
        "modified_ms": con["modified_ms"].tolist(), "unique_key": [e.lower() for e in con["email"].tolist()],
        "company_id": _column(con["company_id"]),
        **{p: _column(con[p]) for p in CONTACT_PROPS},
    }, CONTACT_PROPS)
    enrichment = enrichment_records(universe, config.seed, config.enrichment_coverage)
    store.load_enrichment(enrichment)
    store.set_meta("world", json.dumps({"seed": config.seed, "contacts": config.contacts,
                                        "companies": len(comp), "anchor_ms": anchor,
                                        "shared_timestamp_every": config.shared_timestamp_every}))
    t2 = time.perf_counter()
    log.info("seeded %d contacts, %d companies (%d known to enrichment) in %.2fs + %.2fs load",
             config.contacts, len(comp), len(enrichment), t1 - t0, t2 - t1)
    return SeedReport(config.contacts, len(comp), len(enrichment), t1 - t0, t2 - t1, anchor)
