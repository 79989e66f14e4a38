"""Coverage figures of one enrichment run, for the run summary and the quality gate.

All numbers are plain ints and floats (JSON-ready). Shares are fractions of all leads in the
frame, rounded to 4 decimals.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from leadflow.enrich.tables import LEAD_ENRICHMENT_FIELDS

# Sources that mean "filled by enrichment" (as opposed to "crm" or "none").
ENRICHMENT_SOURCES = ("cache", "reference", "api")


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def _counts(values: pd.Series) -> dict[str, int]:
    # Categorical columns count every category, also the absent ones: those are left out.
    counts = values.value_counts(dropna=True)
    return {str(k): int(v) for k, v in sorted(counts.items(), key=lambda kv: str(kv[0])) if v}


def coverage_report(frame: pd.DataFrame, lookups: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Coverage of an enrichment result frame (see `leads.enrich_leads`).

    Keys: leads; company_matched and match_rate; match_method counts; company_source counts
    (which provider matched the company); free_email / disposable_email counts; enriched (leads
    with at least one field filled by a provider); fields: per field the share filled and the
    count per source; lookups: the provider chain's counters.
    """
    total = int(len(frame))
    matched = int(frame["company_matched"].sum()) if total else 0
    enriched_any = pd.Series(False, index=frame.index)
    fields: dict[str, Any] = {}
    for name in LEAD_ENRICHMENT_FIELDS:
        source = frame[f"{name}_source"]
        filled = int(frame[name].notna().sum())
        enriched_any |= source.isin(ENRICHMENT_SOURCES).fillna(False)
        fields[name] = {"filled": _share(filled, total), "sources": _counts(source)}
    return {
        "leads": total,
        "company_matched": matched,
        "match_rate": _share(matched, total),
        "match_method": _counts(frame["match_method"]),
        "company_source": _counts(frame.loc[frame["company_matched"].astype(bool), "company_source"]),
        "with_company_domain": int(frame["company_domain"].notna().sum()),
        "free_email": int(frame["is_free_email"].sum()),
        "disposable_email": int(frame["is_disposable_email"].sum()),
        "enriched": int(enriched_any.sum()),
        "fields": fields,
        "lookups": {str(k): int(v) for k, v in (lookups or {}).items()},
    }
