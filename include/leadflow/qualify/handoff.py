"""The handoff to sales: which leads are sales-ready, why, and since when.

In the waterfall (qualification-notes.md) marketing qualifies a lead (MQL) and sales accepts and
confirms it (SQL). leadflow therefore hands a lead over instead of setting SQL: a lead meeting
the model's `stages.sql` criteria gets leadflow's own `sales_ready` fields (flag, since when,
short reason) and keeps its MQL stage unless the model says `stages.sql.auto`.

`reason_texts` renders the reason per sales-ready lead; `carry_since` keeps the "since" of a
lead that stays sales-ready from run to run. Pure functions over arrays and frames; no I/O.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadflow.qualify.config import BANT_CRITERIA, QualificationModel


def reason_texts(
    model: QualificationModel,
    ready: np.ndarray,
    score: np.ndarray,
    bant: dict[str, np.ndarray],
    persona_codes: np.ndarray,
) -> np.ndarray:
    """Object array: a short reason for each `ready` row ("score 82 >= 70; BANT 3 of 4 (budget,
    need, timeline); persona executive"), None elsewhere.

    Rendered once per distinct (score, BANT criteria met, persona): a few hundred texts, not one
    per lead."""
    out = np.full(len(ready), None, dtype=object)
    rows = np.flatnonzero(ready)
    if not len(rows):
        return out
    bits = np.zeros(len(rows), dtype=np.int64)
    for i, name in enumerate(BANT_CRITERIA):
        bits |= bant[name][rows].astype(np.int64) << i
    personas = len(model.personas) + 1  # + "no persona" (code -1)
    key = (score[rows].astype(np.int64) * 16 + bits) * personas + (persona_codes[rows].astype(np.int64) + 1)
    unique, inverse = np.unique(key, return_inverse=True)
    texts = np.empty(len(unique), dtype=object)
    for j, k in enumerate(unique.tolist()):
        rest, persona = divmod(k, personas)
        points, met = divmod(rest, 16)
        texts[j] = _reason(model, points, met, persona - 1)
    out[rows] = texts[inverse]
    return out


def _reason(model: QualificationModel, score: int, met_bits: int, persona: int) -> str:
    rule = model.stages.sql
    if rule.min_score is not None and score >= rule.min_score:
        parts = [f"score {score} >= {rule.min_score}"]
    else:  # reached through `stages.sql.or_when`
        parts = [f"score {score}, sales-ready condition met"]
    met = [name for i, name in enumerate(BANT_CRITERIA) if met_bits >> i & 1]
    parts.append(f"BANT {len(met)} of {len(BANT_CRITERIA)}" + (f" ({', '.join(met)})" if met else ""))
    if persona >= 0:
        parts.append(f"persona {model.personas[persona].label}")
    return "; ".join(parts)


def carry_since(scores: pd.DataFrame, previous: pd.DataFrame, crm_since: pd.Series | None = None) -> pd.Series:
    """`scores["sales_ready_since"]` with the earlier "since" of each lead that was already
    sales-ready: from the previous scores of the lead, or, for a lead without previous scores
    (a warehouse started afresh), from what the CRM holds (`crm_since`: epoch ms by record id),
    so that the handoff time sales has seen stays.

    A lead that stopped being sales-ready and came back is handed over anew: only a lead that is
    sales-ready now and was before keeps its time."""
    since = pd.to_numeric(scores["sales_ready_since"], errors="coerce").astype(float)
    ready = scores["sales_ready"].fillna(False).astype(bool).to_numpy()
    if not ready.any():
        return since
    ids = scores["record_id"]
    earlier = pd.Series(np.nan, index=scores.index)
    if crm_since is not None and len(crm_since):
        earlier = pd.to_numeric(ids.map(crm_since), errors="coerce").astype(float)
    if len(previous) and "sales_ready_since" in previous.columns:
        was_ready = previous["sales_ready"].fillna(False).astype(bool).to_numpy()
        before = pd.Series(
            np.where(was_ready, pd.to_numeric(previous["sales_ready_since"], errors="coerce"), np.nan),
            index=previous["record_id"].to_numpy(),
        )
        scored_before = ids.isin(before.index).to_numpy()
        earlier = earlier.where(~scored_before, pd.to_numeric(ids.map(before), errors="coerce").astype(float))
    found = earlier.to_numpy()
    keep = ready & ~np.isnan(found) & (found < np.nan_to_num(since.to_numpy(), nan=np.inf))
    return since.where(~keep, earlier)
