"""The SLA between marketing and sales, measured: every handoff (recorded once by qualify) and
what sales did with it (the verdict events), summed up per run, per week and per segment.

Each handoff has one outcome, the strongest verdict it got so far: converted, else rejected,
else accepted, else ignored (past the SLA with no answer), else pending. The outcomes add up to
the handoffs. `acceptance_rate` is (accepted + converted) / (accepted + converted + rejected):
sales' answers only, an ignored lead says nothing about its quality. Time to first touch is
from the handoff to the earliest change a person made to it (the first verdict by a person).

`measure` is pure (frames in, figures out); `record_handoffs` and `sla_figures` touch the
warehouse.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from leadflow.ownership import DAY_MS, Writer
from leadflow.verdicts.classify import Verdict
from leadflow.verdicts.read import float_or_none, load_events, load_handoffs, text_or_none
from leadflow.verdicts.tables import handoffs
from leadflow.warehouse.db import upsert

log = logging.getLogger(__name__)

OUTCOMES: tuple[str, ...] = ("converted", "rejected", "accepted", "ignored", "pending")  # strongest first
HOUR_MS = 3_600_000
WEEK_MS = 7 * DAY_MS
MONDAY_MS = 4 * DAY_MS  # the epoch was a Thursday; weeks start on Monday (ISO), 00:00 UTC
BAND_WIDTH = 10  # score points per band


def record_handoffs(engine: Engine, crm: str, run_id: str, scores: pd.DataFrame) -> int:
    """Store the handoffs among `scores` (sales-ready with a since) that are not stored yet, with
    the score, grade and persona they have now; returns how many rows were offered (a handoff
    already stored keeps its first row)."""
    ready = scores[scores["sales_ready"].fillna(False).astype(bool) & scores["sales_ready_since"].notna()]
    if ready.empty:
        return 0
    persona = ready["persona"] if "persona" in ready else pd.Series(None, index=ready.index, dtype=object)
    rows = [
        {"crm": crm, "record_id": str(rid), "handed_over_at": int(since), "score": float_or_none(score),
         "grade": text_or_none(grade), "persona": text_or_none(who), "reason": text_or_none(reason), "run_id": run_id}
        for rid, since, score, grade, who, reason in zip(
            ready["record_id"], ready["sales_ready_since"], ready["score"], ready["grade"], persona,
            ready["sales_ready_reason"])
    ]
    with engine.begin() as conn:
        upsert(conn, handoffs, rows, keys=["crm", "record_id", "handed_over_at"], update_columns=())
    return len(rows)


def sla_figures(engine: Engine, crm: str, now_ms: int, run_id: str | None = None, weeks: int = 12) -> dict[str, Any]:
    """`measure` over the warehouse's handoffs and verdict events of `crm`."""
    return measure(load_handoffs(engine, crm), load_events(engine, crm), now_ms=now_ms, run_id=run_id, weeks=weeks)


def outcomes(handed: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """`handed` with, per handoff, `outcome`, `sla_missed` (an ignored event, answered later or
    not) and `first_touch_ms` (the earliest verdict by a person, NaN when none)."""
    key = ["record_id", "handed_over_at"]
    out = handed.assign(record_id=handed["record_id"].astype(str),
                        handed_over_at=handed["handed_over_at"].astype(np.int64))
    if events.empty:
        return out.assign(outcome="pending", sla_missed=False, first_touch_ms=np.nan)
    ev = events.assign(record_id=events["record_id"].astype(str), handed_over_at=events["handed_over_at"].astype(np.int64))
    rank = {name: i for i, name in enumerate(OUTCOMES)}
    ev = ev.assign(rank=ev["verdict"].map(rank).fillna(len(OUTCOMES)).astype(int))
    strongest = ev.groupby(key, sort=False)["rank"].min().rename("rank")
    missed = ev[ev["verdict"] == Verdict.IGNORED.value].groupby(key, sort=False).size().rename("missed")
    person = ev[ev["writer"] == Writer.PERSON.value]
    touch = person.groupby(key, sort=False)["decided_at"].min().rename("first_touch_ms")
    joined = out.join(strongest, on=key).join(missed, on=key).join(touch, on=key)
    joined["outcome"] = [OUTCOMES[int(r)] if pd.notna(r) and int(r) < len(OUTCOMES) else "pending"
                         for r in joined["rank"]]
    joined["sla_missed"] = joined["missed"].notna().to_numpy()
    return joined.drop(columns=["rank", "missed"])


def _counts(frame: pd.DataFrame) -> dict[str, Any]:
    counts = frame["outcome"].value_counts()
    out: dict[str, Any] = {"handed_over": int(len(frame)), **{name: int(counts.get(name, 0)) for name in OUTCOMES}}
    answered = out["accepted"] + out["converted"] + out["rejected"]
    out["acceptance_rate"] = round((out["accepted"] + out["converted"]) / answered, 4) if answered else None
    return out


def _band(score: Any) -> str:
    if score is None or pd.isna(score):
        return "unknown"
    low = min(int(float(score) // BAND_WIDTH) * BAND_WIDTH, 100 - BAND_WIDTH)
    return f"{low}-{low + BAND_WIDTH}"


def _by(frame: pd.DataFrame, labels: pd.Series) -> dict[str, dict[str, Any]]:
    labels = labels.astype(object).where(labels.notna(), "unknown").astype(str)
    return {str(label): _counts(part) for label, part in frame.groupby(labels.to_numpy(), sort=True)}


def measure(handed: pd.DataFrame, events: pd.DataFrame, *, now_ms: int, run_id: str | None = None,
            weeks: int = 12) -> dict[str, Any]:
    """The SLA's figures (see the module docstring): totals with `acceptance_rate`, `sla_missed`
    and `median_hours_to_first_touch`; `by_score_band`, `by_grade`, `by_persona`;
    `rejection_reasons` (the field and value reps set, most frequent first); `weekly` (handoffs of
    each of the last `weeks` weeks by the week they were handed over, newest first); and, with
    `run_id`, `this_run` (handed over and verdicts seen in that run)."""
    frame = outcomes(handed, events) if len(handed) else pd.DataFrame(
        columns=["record_id", "handed_over_at", "score", "grade", "persona", "run_id", "outcome", "sla_missed",
                 "first_touch_ms"])
    totals = _counts(frame)
    touched = frame["first_touch_ms"].dropna() - frame.loc[frame["first_touch_ms"].notna(), "handed_over_at"]
    totals["sla_missed"] = int(frame["sla_missed"].sum()) if len(frame) else 0
    totals["median_hours_to_first_touch"] = round(float(touched.median()) / HOUR_MS, 2) if len(touched) else None
    rejected = events[events["verdict"] == Verdict.REJECTED.value] if len(events) else events
    reasons = (rejected.groupby([rejected["field"].fillna("?"), rejected["value"].fillna("?")]).size()
               .sort_values(ascending=False, kind="stable") if len(rejected) else pd.Series(dtype=int))
    start_of_week = now_ms - (now_ms - MONDAY_MS) % WEEK_MS
    weekly = []
    for i in range(weeks):
        low = start_of_week - i * WEEK_MS
        part = frame[(frame["handed_over_at"] >= low) & (frame["handed_over_at"] < low + WEEK_MS)]
        weekly.append({"week_start_ms": int(low), **_counts(part)})
    out = {
        **totals,
        "by_score_band": _by(frame, frame["score"].map(_band)) if len(frame) else {},
        "by_grade": _by(frame, frame["grade"]) if len(frame) else {},
        "by_persona": _by(frame, frame["persona"]) if len(frame) else {},
        "rejection_reasons": [{"field": f, "value": v, "count": int(n)} for (f, v), n in reasons.items()],
        "weekly": weekly,
    }
    if run_id is not None:
        seen = events[events["run_id"] == run_id]["verdict"].value_counts() if len(events) else pd.Series(dtype=int)
        out["this_run"] = {"handed_over": int((frame["run_id"] == run_id).sum()) if len(frame) else 0,
                           "verdicts": {v.value: int(seen.get(v.value, 0)) for v in Verdict}}
    return out


def ignored_alert(figures: dict[str, Any], threshold: int | None) -> str | None:
    """The alert text when more handed-over leads sit ignored past the SLA than `threshold`."""
    if threshold is None or figures.get("ignored", 0) <= threshold:
        return None
    return (f"{figures['ignored']} sales-ready leads ignored past the SLA (threshold {threshold}); "
            f"{figures['handed_over']} handed over in all")
