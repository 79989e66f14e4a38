"""Pure parsing of company-enrichment API answers into `CompanyRecord` (no HTTP here).

Supported shape: the Clearbit-style company object (`name, domain, category{sector,industry},
geo{country,countryCode}, metrics{employees, employeesRange, annualRevenue,
estimatedAnnualRevenue}, tech[], foundedYear`). Exact metrics win over ranges; a range gives
its midpoint (an open range "10K+" its lower bound).
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from leadflow.enrich.domains import extract_domain
from leadflow.enrich.providers import (
    MATCHED,
    CompanyRecord,
    canonical_technology,
    normalise_country,
)

_AMOUNT = re.compile(r"^\$?\s*([0-9]+(?:\.[0-9]+)?)\s*([kmb]?)$", re.IGNORECASE)
_MULTIPLIER = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9}


class PayloadError(ValueError):
    """The API answered 200 with something that is not a company object."""


def parse_amount(text: str) -> float | None:
    """"$10M" -> 1e7, "1K" -> 1000, "250" -> 250; None when unparseable."""
    match = _AMOUNT.match(text.strip().replace(",", ""))
    if not match:
        return None
    return float(match.group(1)) * _MULTIPLIER[match.group(2).lower()]


def parse_range(value: Any) -> float | None:
    """Midpoint of "51-250" / "$1M-$10M"; lower bound of "10K+"; None when unparseable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.endswith("+"):
        return parse_amount(text[:-1])
    low, sep, high = text.partition("-")
    if not sep:
        return parse_amount(text)
    lo, hi = parse_amount(low), parse_amount(high)
    if lo is None or hi is None:
        return None
    return (lo + hi) / 2.0


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _year(value: Any) -> int | None:
    number = _number(value)
    if number is None or not 1600 <= number <= 2100:
        return None
    return int(number)


def parse_company(
    payload: Any, requested_domain: str, *, source: str, fetched_at: int
) -> CompanyRecord:
    """Normalise one Clearbit-style company object.

    The answer is filed under `requested_domain` (the key the chain asked for) even when the
    API returns a different canonical domain; then confidence drops to 0.8, because the API
    followed a redirect or merger we cannot verify.
    """
    if not isinstance(payload, Mapping):
        raise PayloadError("company payload is not a JSON object")
    metrics = payload.get("metrics") if isinstance(payload.get("metrics"), Mapping) else {}
    category = payload.get("category") if isinstance(payload.get("category"), Mapping) else {}
    geo = payload.get("geo") if isinstance(payload.get("geo"), Mapping) else {}

    employees = _number(metrics.get("employees"))
    if employees is None:
        employees = parse_range(metrics.get("employeesRange"))
    revenue = _number(metrics.get("annualRevenue"))
    if revenue is None:
        revenue = parse_range(metrics.get("estimatedAnnualRevenue"))
    country = normalise_country(_text(geo.get("countryCode"))) or normalise_country(
        _text(geo.get("country"))
    )
    tech = payload.get("tech") if isinstance(payload.get("tech"), list) else []
    answered = extract_domain(_text(payload.get("domain")))
    return CompanyRecord(
        domain=requested_domain,
        status=MATCHED,
        name=_text(payload.get("name")),
        industry=_text(category.get("industry")) or _text(category.get("sector")),
        employee_count=employees,
        annual_revenue_usd=revenue,
        country_code=country,
        founded_year=_year(payload.get("foundedYear")),
        technologies=tuple(
            name for name in (canonical_technology(t) for t in tech if isinstance(t, str)) if name
        ),
        source=source,
        confidence=1.0 if answered in (None, requested_domain) else 0.8,
        fetched_at=int(fetched_at),
    )
