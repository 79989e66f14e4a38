"""The bundled reference file of companies by domain, and company-name matching against it.

The file (`leadflow/enrich/data/companies.parquet` unless settings name another CSV or Parquet
file) has one row per company. Columns: domain, name, industry, employee_count,
annual_revenue_usd, country_code, founded_year, technologies (";"-separated), optional
confidence. Friendlier spellings of a user's own list are accepted too (website, employees,
annual_revenue, country as a name): see `_ALIASES`.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from rapidfuzz import fuzz, process

from leadflow.enrich.domains import extract_domains
from leadflow.enrich.providers import (
    EMPLOYEE_BANDS,
    MATCHED,
    RECORD_COLUMNS,
    REVENUE_BANDS,
    bands_of,
    coerce_records,
    normalise_countries,
)

log = logging.getLogger(__name__)

BUNDLED_REFERENCE = Path(__file__).with_name("data") / "companies.parquet"

REFERENCE_COLUMNS: dict[str, str] = {
    "domain": "str",
    "name": "str",
    "industry": "str",
    "employee_count": "float",
    "annual_revenue_usd": "float",
    "country_code": "str",
    "founded_year": "float",
    "technologies": "str",
}
_ALIASES = {
    "website": "domain",
    "company": "name",
    "company_name": "name",
    "employees": "employee_count",
    "annual_revenue": "annual_revenue_usd",
    "revenue": "annual_revenue_usd",
    "country": "country_code",
}

# Legal-form words that say nothing about which company is meant ("Acme Inc" == "Acme").
_LEGAL_FORMS = frozenset(
    "inc incorporated corp corporation co company llc llp lp ltd limited plc gmbh ag kg sa sas "
    "sarl srl spa bv nv oy ab as pty pte kk".split()
)
_NON_WORD = re.compile(r"[^\w]+", re.UNICODE)
# Fuzzy matching scores (queries x choices) in blocks of about this many cells.
_CDIST_CELLS = 20_000_000
# Distinct names remembered by a name index (per threshold) before it starts afresh.
_MEMO_MAX = 500_000


def normalise_company_name(name: str | None) -> str:
    """Lowercase words without punctuation or trailing legal forms ("ACME, Inc." -> "acme")."""
    if not isinstance(name, str):
        return ""
    words = _NON_WORD.sub(" ", name.lower()).split()
    while len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words.pop()
    return " ".join(words)


class ReferenceProvider:
    """Companies from a local file, looked up by domain or (fuzzily) by name."""

    name = "reference"
    remote = False

    def __init__(self, companies: pd.DataFrame, *, fetched_at: int = 0, label: str = "") -> None:
        frame = _normalise_reference(companies)
        self._label = label or "in-memory"
        self._fetched_at = int(fetched_at)
        self._records = self._to_records(frame)
        self._index = pd.Index(self._records["domain"])
        self._names: _NameIndex | None = None
        log.info("reference %s: %d companies", self._label, len(self._records))

    @classmethod
    def from_path(cls, path: str | os.PathLike[str] | None = None) -> "ReferenceProvider":
        """Load a CSV or Parquet reference file (the bundled one when `path` is None)."""
        file = Path(path) if path is not None else BUNDLED_REFERENCE
        if not file.exists():
            raise FileNotFoundError(f"enrichment reference file not found: {file}")
        return cls(
            read_reference(file),
            fetched_at=int(file.stat().st_mtime * 1000),
            label=file.name,
        )

    def __len__(self) -> int:
        return len(self._records)

    @property
    def records(self) -> pd.DataFrame:
        """Every company of the file as normalised records (RECORD_COLUMNS); do not modify."""
        return self._records

    def _to_records(self, frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out["status"] = MATCHED
        out["source"] = self.name
        out["fetched_at"] = float(self._fetched_at)
        if "confidence" not in out:
            out["confidence"] = 1.0
        out["employee_band"] = bands_of(out["employee_count"], EMPLOYEE_BANDS)
        out["revenue_band"] = bands_of(out["annual_revenue_usd"], REVENUE_BANDS)
        return coerce_records(out[list(RECORD_COLUMNS)])

    def lookup(self, domains: Sequence[str], now_ms: int) -> pd.DataFrame:
        """Records of those `domains` the file lists (absence means "not in the file", not
        "unknown company", so it is no answer at all)."""
        positions = self._index.get_indexer(pd.Index(list(domains), dtype="str"))
        found = positions[positions >= 0]
        return self._records.iloc[found].reset_index(drop=True)

    def match_names(self, names: pd.Series, threshold: float) -> tuple[pd.Series, pd.Series]:
        """Best reference domain per company name and its score (0-100).

        Exact matches of the normalised name score 100; the rest are scored with rapidfuzz's
        token-sort ratio and kept when the best score reaches `threshold`. Only distinct names
        are scored. Returns (domain, score) aligned with `names`; NA where nothing qualifies.
        """
        if self._names is None:
            self._names = _NameIndex(self._records)
        return self._names.match(names, threshold)


class _NameIndex:
    def __init__(self, records: pd.DataFrame) -> None:
        keys = [normalise_company_name(n) for n in records["name"].tolist()]
        frame = pd.DataFrame(
            {"key": keys, "domain": records["domain"], "size": records["employee_count"].fillna(0)}
        )
        frame = frame[frame["key"] != ""]
        # Several companies may share a name: prefer the largest (the one people usually mean).
        frame = frame.sort_values(["key", "size"], ascending=[True, False], kind="stable")
        frame = frame.drop_duplicates("key")
        self.keys = frame["key"].tolist()
        self.domains = frame["domain"].to_numpy(dtype=object)
        self.exact = dict(zip(self.keys, self.domains))
        self._memo: dict[float, dict[Any, tuple[Any, float]]] = {}

    def match(self, names: pd.Series, threshold: float) -> tuple[pd.Series, pd.Series]:
        codes, uniques = pd.factorize(names, use_na_sentinel=True)
        values = uniques.tolist()
        best_domain = np.full(len(values), None, dtype=object)
        best_score = np.full(len(values), np.nan)
        # Answers per distinct name are remembered (per threshold): the index never changes.
        memo = self._memo.setdefault(float(threshold), {})
        todo = []
        for i, value in enumerate(values):
            hit = memo.get(value)
            if hit is None:
                todo.append(i)
            else:
                best_domain[i], best_score[i] = hit
        queries = {i: normalise_company_name(values[i]) for i in todo}
        fuzzy_rows = []
        for i in todo:
            query = queries[i]
            if not query:
                continue
            hit = self.exact.get(query)
            if hit is not None:
                best_domain[i], best_score[i] = hit, 100.0
            else:
                fuzzy_rows.append(i)
        if fuzzy_rows and self.keys:
            domains, scores = self._fuzzy([queries[i] for i in fuzzy_rows], threshold)
            best_domain[fuzzy_rows] = domains
            best_score[fuzzy_rows] = scores
        if len(memo) + len(todo) > _MEMO_MAX:
            memo.clear()
        for i in todo:
            memo[values[i]] = (best_domain[i], best_score[i])
        table_d = np.append(best_domain, None)
        table_s = np.append(best_score, np.nan)
        pick = np.where(codes < 0, len(table_d) - 1, codes)
        return (
            pd.Series(table_d[pick], index=names.index, dtype="str"),
            pd.Series(table_s[pick], index=names.index, dtype="float64"),
        )

    def _fuzzy(self, queries: list[str], threshold: float) -> tuple[np.ndarray, np.ndarray]:
        domains = np.full(len(queries), None, dtype=object)
        scores = np.full(len(queries), np.nan)
        rows = max(1, _CDIST_CELLS // max(1, len(self.keys)))
        for start in range(0, len(queries), rows):
            block = queries[start : start + rows]
            # score_cutoff lets rapidfuzz skip hopeless pairs early; below it a cell is 0.
            matrix = process.cdist(
                block,
                self.keys,
                scorer=fuzz.token_sort_ratio,
                score_cutoff=threshold,
                dtype=np.float32,
                workers=-1,
            )
            best = matrix.argmax(axis=1)
            top = matrix[np.arange(len(block)), best]
            ok = (top >= threshold) & (top > 0)
            idx = np.arange(start, start + len(block))
            domains[idx[ok]] = self.domains[best[ok]]
            scores[idx[ok]] = top[ok]
        return domains, scores


def read_reference(path: Path) -> pd.DataFrame:
    """Read a reference file with explicit dtypes (CSV or Parquet, by suffix)."""
    suffixes = "".join(path.suffixes).lower()
    if ".parquet" in suffixes:
        return pd.read_parquet(path)
    return pd.read_csv(
        path,
        dtype={c: ("float64" if k == "float" else "str") for c, k in REFERENCE_COLUMNS.items()},
        keep_default_na=False,
        na_values=[""],
    )


def _normalise_reference(raw: pd.DataFrame) -> pd.DataFrame:
    frame = raw.rename(columns={c: c.strip().lower() for c in raw.columns})
    frame = frame.rename(columns={a: c for a, c in _ALIASES.items() if a in frame and c not in frame})
    if "domain" not in frame:
        raise ValueError("enrichment reference file needs a 'domain' (or 'website') column")
    out = pd.DataFrame(index=frame.index)
    out["domain"] = extract_domains(frame["domain"])
    for column, kind in REFERENCE_COLUMNS.items():
        if column == "domain":
            continue
        values = frame[column] if column in frame else pd.Series(None, index=frame.index, dtype=object)
        if kind == "float":
            out[column] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            out[column] = values.astype("str")
    out["country_code"] = normalise_countries(out["country_code"])
    if "confidence" in frame:
        out["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce").fillna(1.0).clip(0, 1)
    bad = out["domain"].isna()
    if bad.any():
        log.warning("reference: %d rows without a usable domain skipped", int(bad.sum()))
    out = out[~bad].drop_duplicates("domain", keep="first")
    return out.reset_index(drop=True)


def load_reference(path: str | os.PathLike[str] | None = None) -> ReferenceProvider:
    """A provider for the reference file (the bundled one when None), parsed once per process
    and file version: workers that enrich many shards read it once, a replaced file is reread."""
    file = Path(path).resolve() if path is not None else BUNDLED_REFERENCE
    if not file.exists():
        raise FileNotFoundError(f"enrichment reference file not found: {file}")
    # One parse at a time: a second caller (enrich, while `leadflow run`'s warm-up thread parses
    # the file) waits for the first's result instead of parsing it again.
    with _LOADING:
        return _load_reference(str(file), file.stat().st_mtime_ns)


_LOADING = threading.Lock()


@lru_cache(maxsize=4)
def _load_reference(path: str, _mtime_ns: int) -> ReferenceProvider:
    return ReferenceProvider.from_path(path)
