"""Builders shared by the quality tests (importable by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd

from leadflow.schema import LEAD_COLUMNS

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
NOW_MS = NOW.timestamp() * 1000
DAY_MS = 86_400_000.0


def good_lead(i: int, **overrides: Any) -> dict[str, Any]:
    """A lead that passes every row expectation."""
    lead: dict[str, Any] = {
        "crm": "hubspot",
        "record_id": str(1000 + i),
        "email": f"person{i}@acme-corp.com",
        "first_name": "Ann",
        "last_name": "Lee",
        "job_title": "VP Sales",
        "phone": "+1 555 0100",
        "company_name": "Acme",
        "website": "https://acme-corp.com",
        "company_id": "c1",
        "country": "US",
        "industry": "Software",
        "employees": 250.0,
        "annual_revenue": 5e7,
        "lifecycle_stage": "lead",
        "lead_status": "new",
        "budget_range": "5k-25k",
        "timeframe": "6_months",
        "pain_point": "reporting",
        "form_comments": "call me",
        "page_views": 12.0,
        "visits": 3.0,
        "pricing_page_views": 1.0,
        "email_clicks": 2.0,
        "content_downloads": 0.0,
        "form_submissions": 1.0,
        "demo_requested_at": NOW_MS - 2 * DAY_MS,
        "trial_started_at": np.nan,
        "webinar_attended_at": np.nan,
        "last_activity_at": NOW_MS - DAY_MS,
        "do_not_contact": False,
        "created_at": NOW_MS - 30 * DAY_MS,
        "updated_at": NOW_MS - DAY_MS,
        "is_deleted": False,
    }
    lead.update(overrides)
    return lead


def leads_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A frame shaped like the warehouse output: str text columns, float numbers/timestamps."""
    frame = pd.DataFrame(rows)
    for name, kind in LEAD_COLUMNS.items():
        if name not in frame.columns:
            continue
        if kind == "str" and pd.api.types.infer_dtype(frame[name], skipna=True) in ("string", "empty"):
            frame[name] = frame[name].astype("str")
    return frame


def good_frame(n: int, start: int = 0) -> pd.DataFrame:
    return leads_frame([good_lead(start + i) for i in range(n)])
