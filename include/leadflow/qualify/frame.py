"""The engine's input frame: the warehouse's leads, enriched, with their company's firmographics
filled in and every column in the type the engine reads."""

from __future__ import annotations

import pandas as pd

from leadflow.enrich.domains import email_domain_flags
from leadflow.schema import LEAD_COLUMNS

_TS_COLUMNS = [c for c, kind in LEAD_COLUMNS.items() if kind == "ts"]
_NUMERIC = ("employees", "annual_revenue", "page_views", "visits", "pricing_page_views",
            "email_clicks", "content_downloads", "form_submissions")


def build_qualify_frame(leads: pd.DataFrame, companies: pd.DataFrame) -> pd.DataFrame:
    """The engine's input: leads with their company's firmographics filled in where neither the
    lead nor enrichment has them, timestamps as UTC datetimes, and e-mail domain flags."""
    frame = leads.copy()
    if not companies.empty:
        comp = companies.drop_duplicates("company_id").set_index("company_id")
        idx = frame["company_id"]
        for col in ("industry", "employees", "annual_revenue", "country"):
            frame[col] = frame[col].where(frame[col].notna(), idx.map(comp[col]))
        for lead_col, comp_col in (("technologies", "technologies"), ("company_domain", "domain")):
            fill = idx.map(comp[comp_col])
            frame[lead_col] = frame[lead_col].where(frame[lead_col].notna(), fill) if lead_col in frame else fill
    for col in _NUMERIC:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in _TS_COLUMNS:
        frame[col] = pd.to_datetime(pd.to_numeric(frame[col], errors="coerce"), unit="ms", utc=True)
    frame["do_not_contact"] = frame["do_not_contact"].astype("boolean").fillna(False).astype(bool)
    if "email_domain" not in frame.columns or "is_free_email" not in frame.columns:
        frame = frame.drop(columns=[c for c in ("email_domain", "is_free_email", "is_disposable_email")
                                    if c in frame.columns]).join(email_domain_flags(frame["email"]))
    for col in ("is_free_email", "is_disposable_email"):
        frame[col] = frame[col].astype("boolean").fillna(False).astype(bool)
    return frame
