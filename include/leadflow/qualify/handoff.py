"""The handoff to sales: which leads are sales-ready, why, and since when.

In the waterfall (qualification-notes.md) marketing qualifies a lead (MQL) and sales accepts and
confirms it (SQL). leadflow therefore hands a lead over instead of setting SQL: a lead meeting
the model's `stages.sql` criteria gets leadflow's own `sales_ready` fields (flag, since when,
short reason) and keeps its MQL stage unless the model says `stages.sql.auto`.

`reason_texts` renders the reason per sales-ready lead; `carry_since` keeps the "since" of a
lead that stays sales-ready from run to run; `hold_back_rejected` keeps a lead sales rejected
from being handed over again on the same evidence; `settle_handoffs` applies both to a run's
new scores. Pure functions over arrays and frames; no I/O.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadflow.qualify.config import BANT_CRITERIA, QualificationModel
from leadflow.schema import CRM_VALUE_PREFIX


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
    return _carried(scores, _earlier_since(scores, previous, crm_since))


def _carried(scores: pd.DataFrame, found: np.ndarray) -> pd.Series:
    """`scores["sales_ready_since"]` replaced by the earlier `found` "since" where there is one."""
    since = pd.to_numeric(scores["sales_ready_since"], errors="coerce").astype(float)
    keep = ~np.isnan(found) & (found < np.nan_to_num(since.to_numpy(), nan=np.inf))
    return since.where(~keep, found)


def _earlier_since(scores: pd.DataFrame, previous: pd.DataFrame, crm_since: pd.Series | None) -> np.ndarray:
    """Per row of `scores`, the "since" the lead already held as a sales-ready lead (the previous
    scores', else the CRM's), NaN where it was not sales-ready before or is not now."""
    ready = scores["sales_ready"].fillna(False).astype(bool).to_numpy()
    if not ready.any():
        return np.full(len(scores), np.nan)
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
    return np.where(ready, earlier.to_numpy(), np.nan)


REJECTED = "rejected"  # leadflow.verdicts.classify.Verdict.REJECTED (verdicts imports qualify)


def hold_back_rejected(
    scores: pd.DataFrame, events: pd.DataFrame, min_gain: float | None, fresh: pd.Series,
    handoffs: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """`scores` (after `carry_since`) with the leads whose latest handoff sales rejected held back.

    `events`: the stored verdict events (record_id, handed_over_at, verdict, value, score,
    decided_at); `fresh`: the "since" each sales-ready lead would get if handed over now.
    A sales-ready lead whose latest handoff was rejected is handed over again, as a new handoff,
    only if it was rejected once so far and its score now exceeds the score it was rejected with
    by more than `min_gain` (None: never). Otherwise it is not sales-ready; its reason says who
    rejected it why (the status the rep set) and when, and its status becomes nurture (a status
    the rep set stays theirs: push's ownership rule). A lead in a handoff made after the
    rejection, still without a verdict, is left alone. `handoffs` (record_id, handed_over_at:
    every handoff recorded) shows an earlier handoff after the rejection that ended without a
    verdict (the lead stopped being sales-ready): that was its one more chance. Returns the frame
    and the counts `held_back_after_rejection` and `handed_over_again`."""
    counts = {"held_back_after_rejection": 0, "handed_over_again": 0}
    ready = scores["sales_ready"].fillna(False).astype(bool).to_numpy()
    if not ready.any() or not len(events):
        return scores, counts
    events = events.assign(record_id=events["record_id"].astype(str),
                           handed_over_at=pd.to_numeric(events["handed_over_at"]).astype(np.int64))
    rejected = events[events["verdict"] == REJECTED]
    if not len(rejected):
        return scores, counts
    latest = events.groupby("record_id")["handed_over_at"].max()
    last = rejected.sort_values(["handed_over_at", "decided_at"]).groupby("record_id").tail(1).set_index("record_id")
    last = last[last["handed_over_at"].to_numpy() == latest.reindex(last.index).to_numpy()]
    times = rejected.groupby("record_id")["handed_over_at"].nunique()

    ids = scores["record_id"].astype(str)
    rejected_at = ids.map(last["handed_over_at"]).astype(float).to_numpy()
    since = pd.to_numeric(scores["sales_ready_since"], errors="coerce").astype(float).to_numpy()
    now = pd.to_numeric(fresh, errors="coerce").astype(float).to_numpy()
    later_handoff = (since > rejected_at) & (since < now)  # carried over from a handoff after the rejection
    affected = ready & ~np.isnan(rejected_at) & ~later_handoff
    if not affected.any():
        return scores, counts
    handed_score = ids.map(last["score"]).astype(float).to_numpy()
    once = ids.map(times).fillna(0).to_numpy() < 2
    if handoffs is not None and len(handoffs):
        # A handoff after the rejection that is not the current one: the chance was used.
        made = handoffs.assign(record_id=handoffs["record_id"].astype(str),
                               handed_over_at=pd.to_numeric(handoffs["handed_over_at"]).astype(np.int64))
        made = made.merge(last[["handed_over_at"]].rename(columns={"handed_over_at": "rejected_at"}),
                          left_on="record_id", right_index=True)
        used = set(made.loc[made["handed_over_at"] > made["rejected_at"], "record_id"])
        once &= ~(ids.isin(used).to_numpy() & ~later_handoff)
    again = affected & once & (min_gain is not None) & (
        pd.to_numeric(scores["score"], errors="coerce").to_numpy(dtype=float) > handed_score + (min_gain or 0))
    held = affected & ~again

    out = scores.copy()
    out["sales_ready_since"] = np.where(again, now, since)  # a new handoff, not the rejected one
    out.loc[held, "sales_ready"] = False
    out.loc[held, "sales_ready_since"] = np.nan
    out["sales_ready_reason"] = out["sales_ready_reason"].astype(object)
    out.loc[held, "sales_ready_reason"] = [
        _held_reason(last.loc[rid], min_gain if ok else None) for rid, ok in zip(ids[held], once[held])]
    nurture = held & out["lead_status"].notna().to_numpy()  # None: leadflow keeps the status
    out.loc[nurture, "lead_status"] = "nurture"
    counts.update(held_back_after_rejection=int(held.sum()), handed_over_again=int(again.sum()))
    return out, counts


def _held_reason(event: pd.Series, min_gain: float | None) -> str:
    value = event.get("value")
    why = f" ({value})" if isinstance(value, str) and value else ""
    day = pd.Timestamp(int(event["decided_at"]), unit="ms", tz="UTC").strftime("%Y-%m-%d")
    score = event.get("score")
    if min_gain is None or score is None or pd.isna(score):
        return f"rejected by sales{why} on {day}; not handed over again"
    return f"rejected by sales{why} on {day}; held back until score > {float(score) + min_gain:g}"


def crm_sales_ready_since(leads: pd.DataFrame) -> pd.Series | None:
    """The handoff time each lead holds in the CRM (epoch ms by record id), from the pulled
    `crm_sales_ready_since` values (rendered as ISO 8601 UTC)."""
    column = f"{CRM_VALUE_PREFIX}sales_ready_since"
    if column not in leads.columns or not leads[column].notna().any():
        return None
    held = leads[leads[column].notna()]
    moments = pd.to_datetime(held[column], utc=True, errors="coerce", format="ISO8601")
    ms = pd.Series(moments.to_numpy(dtype="datetime64[ns]").astype(np.int64) // 1_000_000,
                   index=held["record_id"].to_numpy(), dtype=float)
    return ms[moments.notna().to_numpy()]


# The columns of the previous score rows `settle_handoffs` reads: a caller loads only these.
PREVIOUS_COLUMNS = ("record_id", "sales_ready", "sales_ready_since")


def settle_handoffs(
    scores: pd.DataFrame, previous: pd.DataFrame, leads: pd.DataFrame, events: pd.DataFrame,
    handoffs: pd.DataFrame, min_gain: float | None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """A run's new `scores` against the handoffs so far: a lead that stays sales-ready keeps the
    time it was first handed over (`previous` scores, else the CRM's value on `leads`), and a lead
    sales rejected is not handed over again on the same evidence (`hold_back_rejected` with the
    stored verdict `events` and `handoffs`). Returns the scores and the counts `handed_over`
    (sales-ready now, not before), `held_back_after_rejection` and `handed_over_again`."""
    fresh = scores["sales_ready_since"]
    found = _earlier_since(scores, previous, crm_sales_ready_since(leads))
    # Sales-ready before (this run's "since" may equal it: a re-run the same day) is not new.
    held_before = ~np.isnan(found)
    scores = scores.assign(sales_ready_since=_carried(scores, found))
    scores, counts = hold_back_rejected(scores, events, min_gain, fresh, handoffs)
    handed_over = int((fresh.notna() & (scores["sales_ready_since"] == fresh) & ~held_before).sum())
    return scores, {"handed_over": handed_over, **counts}
