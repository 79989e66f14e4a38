"""Synthetic labelled lead exports and helpers for the predictive-score tests (seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

SOURCES = ["Google", "google", "Direct Traffic", "Referral", "Olark Chat"]
ACTIVITIES = ["SMS Sent", "Email Opened", "Page Visited", "Chat", "Select"]
COUNTRIES = ["India", "United States", "Select", ""]

MAPPING = {
    "name": "synthetic",
    "id_column": "Lead ID",
    "label": {"column": "Won", "positive": ["1"], "negative": ["0"]},
    "missing_values": ["", "Select"],
    "numbers": ["Visits", "Time On Site"],
    "derived": [{"name": "Time Per Visit", "op": "ratio", "columns": ["Time On Site", "Visits"]}],
    "categories": ["Source", "Last Activity", "Country"],
    "excluded": ["Sales Notes"],
    "min_category_count": 5,
}


def make_leads(n: int, seed: int = 0) -> pd.DataFrame:
    """Leads whose outcome depends on time on site, last activity and source, plus noise."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(float)
    time_on_site = np.round(rng.gamma(1.5, 300, n))
    source = rng.choice(SOURCES, n)
    activity = rng.choice(ACTIVITIES, n, p=[0.3, 0.3, 0.2, 0.1, 0.1])
    country = rng.choice(COUNTRIES, n, p=[0.6, 0.1, 0.2, 0.1])
    logit = (
        -1.2
        + 1.6 * (time_on_site > 500)
        + 1.4 * (activity == "SMS Sent")
        - 1.0 * (activity == "Chat")
        + 0.8 * (np.char.lower(source.astype(str)) == "google")
        + rng.normal(0, 0.5, n)
    )
    won = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "Lead ID": [f"L{seed}-{i:05d}" for i in range(n)],
            "Visits": visits.astype(object),
            "Time On Site": time_on_site,
            "Source": source,
            "Last Activity": activity,
            "Country": country,
            "Sales Notes": np.where(won == 1, "closed", "lost"),  # leaks: never a feature
            "Won": won,
        }
    )
    frame.loc[frame.sample(frac=0.05, random_state=seed).index, "Visits"] = "Select"
    return frame


def run_cli(argv: list[str]) -> int:
    """Run a predict command through `leadflow`'s own entry point (its exit-code convention)."""
    from leadflow.cli import main

    return main(argv)
