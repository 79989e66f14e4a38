"""Labels only from sales' verdicts and outcomes, one per handoff.

won: the handoff was converted, or a person moved the lead to a won stage (opportunity or
later; leadflow never sets those), or the lead holds such a stage now. lost: a person rejected
the handoff (unqualified, nurture, or the stage moved back below MQL). Anything else is still
open: excluded, and counted as matured (open longer than the maturation window) or not. No
value leadflow wrote is a label: its own lead status and stages up to MQL are not looked at.

`handoff_labels` and `calibration` are pure; `read_handoff_labels` reads their inputs from the
warehouse.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from leadflow.ownership import DAY_MS
from leadflow.verdicts.read import load_events, load_handoffs
from leadflow.warehouse import repo
from leadflow.warehouse.tables import leads

WON_STAGES: tuple[str, ...] = ("opportunity", "customer", "evangelist")
DEFAULT_MATURATION_DAYS = 60  # an open handoff younger than this may still be decided
KEY = ["record_id", "handed_over_at"]


def handoff_labels(handoffs: pd.DataFrame, events: pd.DataFrame, stage_now: pd.Series, *, now_ms: int,
                   maturation_days: int, won_stages: Iterable[str] = WON_STAGES) -> pd.DataFrame:
    """One row per handoff of `handoffs` (record_id, handed_over_at): `label` ("won", "lost" or
    None), `labelled_at` (epoch ms of the deciding change, NaN when open) and `why` (converted,
    won stage, rejected, open (matured) or immature). `events`: the verdict events; `stage_now`:
    the pulled canonical stage per record id (index). A won outcome outweighs a rejection: the
    lead was bought after all. The latest handoff of a lead gets a won stage it holds now."""
    won_stages = set(won_stages)
    out = handoffs[KEY].assign(record_id=handoffs["record_id"].astype(str),
                               handed_over_at=pd.to_numeric(handoffs["handed_over_at"]).astype(np.int64))
    out = out.drop_duplicates(KEY).reset_index(drop=True)
    out["label"], out["labelled_at"], out["why"] = None, np.nan, None
    if len(events):
        ev = events.assign(record_id=events["record_id"].astype(str),
                           handed_over_at=pd.to_numeric(events["handed_over_at"]).astype(np.int64))
        won = ev[(ev["verdict"] == "converted") | ((ev["verdict"] == "accepted") & ev["value"].isin(won_stages))]
        lost = ev[ev["verdict"] == "rejected"]
        for frame, label, why in ((lost, "lost", "rejected"), (won, "won", None)):
            first = frame.sort_values("decided_at").groupby(KEY, sort=False).head(1).set_index(KEY)
            index = out.set_index(KEY).index
            hit = index.isin(first.index)
            out.loc[hit, "label"] = label
            out.loc[hit, "labelled_at"] = first.reindex(index[hit])["decided_at"].to_numpy(dtype=float)
            out.loc[hit, "why"] = why if why else first.reindex(index[hit])["verdict"].map(
                {"converted": "converted", "accepted": "won stage"}).to_numpy()
    latest = out.groupby("record_id")["handed_over_at"].transform("max") == out["handed_over_at"]
    holds = out["record_id"].map(stage_now).isin(won_stages).to_numpy() & latest.to_numpy() & (out["label"] != "won")
    out.loc[holds, "label"], out.loc[holds, "why"] = "won", "won stage"
    out.loc[holds, "labelled_at"] = float(now_ms)  # seen by this read at the latest
    open_ = out["label"].isna()
    matured = out["handed_over_at"] + maturation_days * DAY_MS <= now_ms
    out.loc[open_ & matured, "why"] = "open (matured)"
    out.loc[open_ & ~matured, "why"] = "immature"
    return out


def read_handoff_labels(engine: Engine, crm: str, *, now_ms: int, maturation_days: int = DEFAULT_MATURATION_DAYS,
                        since_ms: int | None = None, until_ms: int | None = None) -> pd.DataFrame:
    """`handoff_labels` of the handoffs of `crm` made within [since_ms, until_ms), from the
    warehouse's handoffs, verdict events and pulled stages, with the handoff's `score`."""
    handed = load_handoffs(engine, crm)
    if since_ms is not None:
        handed = handed[handed["handed_over_at"] >= since_ms]
    if until_ms is not None:
        handed = handed[handed["handed_over_at"] < until_ms]
    if handed.empty:
        return pd.DataFrame(columns=[*KEY, "label", "labelled_at", "why", "score"])
    stage = repo.read_frame(engine, select(leads.c.record_id, leads.c.lifecycle_stage)
                            .where(leads.c.crm == crm, leads.c.is_deleted.is_not(True)))
    stage_now = pd.Series(stage["lifecycle_stage"].to_numpy(), index=stage["record_id"].astype(str))
    labels = handoff_labels(handed, load_events(engine, crm), stage_now, now_ms=now_ms, maturation_days=maturation_days)
    scores = handed.assign(record_id=handed["record_id"].astype(str),
                           handed_over_at=pd.to_numeric(handed["handed_over_at"]).astype(np.int64))
    return labels.merge(scores[[*KEY, "score"]].drop_duplicates(KEY), on=KEY, how="left")


def calibration(scores: pd.Series, labels: pd.Series, bins: int = 10) -> list[dict]:
    """Predicted against observed conversion by score band: per band of 100/`bins` points, the
    answered handoffs (label won or lost), the mean score as a conversion share, and the share
    won. A band nobody was handed over in is left out."""
    answered = labels.isin(["won", "lost"]).to_numpy()
    score = pd.to_numeric(scores, errors="coerce").to_numpy(dtype=float)[answered]
    won = (labels.to_numpy()[answered] == "won")
    keep = ~np.isnan(score)
    score, won = score[keep], won[keep]
    width = 100 / bins
    band = np.minimum((score // width).astype(int), bins - 1)
    out = []
    for b in range(bins):
        rows = band == b
        if rows.any():
            out.append({"band": f"{int(b * width)}-{int((b + 1) * width)}", "handoffs": int(rows.sum()),
                        "predicted": round(float(score[rows].mean()) / 100, 4),
                        "observed": round(float(won[rows].mean()), 4)})
    return out
