"""Sales' verdicts, read every run: which handed-over leads to look at, one `connector.observe`
for them, and each new verdict stored once as an event.

Runs after the pull, before qualify: a lead sales moved to opportunity or customer leaves the
scored population at qualify, and its verdict must be read while its handoff is still known.

API calls stay low: a lead is looked at only when its pulled stage or status differs from what
was expected (leadflow's last write, else the values of its last verdict) and the pull of this
run brought it, or when its SLA ran out without a verdict (only the history can tell whether a
person touched it).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, or_, select

from leadflow.ownership import DAY_MS, SHARED_FIELDS
from leadflow.push.overrides import last_written
from leadflow.qualify.config import HandoffRules
from leadflow.verdicts.classify import FINAL_VERDICTS, HandedOver, Verdict, classify
from leadflow.verdicts.tables import handoff_verdicts, handoffs
from leadflow.warehouse import repo
from leadflow.warehouse.db import upsert
from leadflow.warehouse.tables import leads

log = logging.getLogger(__name__)

KEY = ["record_id", "handed_over_at"]  # one handoff of one lead
_EXPECTED = {"lifecycle_stage": "expected_stage", "lead_status": "expected_status"}


def load_events(engine: Engine, crm: str) -> pd.DataFrame:
    """The stored verdict events of `crm`, oldest first."""
    return repo.read_frame(engine, select(handoff_verdicts).where(handoff_verdicts.c.crm == crm)
                           .order_by(handoff_verdicts.c.id))


def load_handoffs(engine: Engine, crm: str) -> pd.DataFrame:
    """Every recorded handoff of `crm` (`verdicts.tables.handoffs`), oldest first."""
    return repo.read_frame(engine, select(handoffs).where(handoffs.c.crm == crm).order_by(handoffs.c.id))


def store_events(engine: Engine, rows: list[dict[str, Any]]) -> int:
    """Insert the events whose (crm, record, handoff, verdict) is not stored yet; returns how many
    rows were offered (the unique index drops repeats, so a re-run stores nothing twice)."""
    if not rows:
        return 0
    with engine.begin() as conn:
        upsert(conn, handoff_verdicts, rows, keys=["crm", "record_id", "handed_over_at", "verdict"],
               update_columns=())
    return len(rows)


def open_handoffs(engine: Engine, crm: str, events: pd.DataFrame) -> pd.DataFrame:
    """The handoffs still waiting for a final verdict: the sales-ready leads of the current
    scores, the earlier handoffs whose last verdict is not final (an accepted lead that reached
    opportunity is no longer scored, but may still convert), and the recorded handoffs with no
    verdict at all. Columns: record_id, handed_over_at, score, reason, expected_stage,
    expected_status, verdicts (frozenset)."""
    scores = repo.load_scores(engine, crm, columns=["record_id", "sales_ready", "sales_ready_since", "score",
                                                    "sales_ready_reason", "stage", "lead_status"])
    ready = scores[scores["sales_ready"].fillna(False).astype(bool) & scores["sales_ready_since"].notna()]
    current = pd.DataFrame({
        "record_id": ready["record_id"].astype(str).to_numpy(),
        "handed_over_at": pd.to_numeric(ready["sales_ready_since"]).astype(np.int64).to_numpy(),
        "score": pd.to_numeric(ready["score"]).astype(float).to_numpy(),
        "reason": ready["sales_ready_reason"].to_numpy(),
        # What leadflow wanted at the last qualify: the CRM's values unless someone changed them.
        "expected_stage": ready["stage"].to_numpy(),
        "expected_status": ready["lead_status"].to_numpy(),
    })
    current["verdicts"] = [frozenset()] * len(current)
    if len(events):
        events = events.assign(record_id=events["record_id"].astype(str),
                               handed_over_at=events["handed_over_at"].astype(np.int64))
        seen = events.groupby(KEY, sort=False).agg(
            verdicts=("verdict", lambda v: frozenset(Verdict(x) for x in v)), score=("score", "last"),
            reason=("reason", "last"), expected_stage=("stage", "last"), expected_status=("status", "last"),
        ).reset_index()
        # A handoff with a verdict: expected are the CRM's values when the verdict was seen.
        merged = current.drop(columns=["verdicts", "expected_stage", "expected_status"]).merge(
            seen[[*KEY, "verdicts", "expected_stage", "expected_status"]], on=KEY, how="left")
        merged["verdicts"] = [v if isinstance(v, frozenset) else frozenset() for v in merged["verdicts"]]
        fresh = ~merged.set_index(KEY).index.isin(seen.set_index(KEY).index)
        for column in ("expected_stage", "expected_status"):
            merged[column] = merged[column].where(~fresh, current[column].to_numpy())
        earlier = seen[~seen.set_index(KEY).index.isin(current.set_index(KEY).index)]
        current = pd.concat([merged, earlier[current.columns]], ignore_index=True)
    current = pd.concat([current, _recorded_without_verdict(engine, crm, current, events)], ignore_index=True)
    still_open = np.array([not (v & FINAL_VERDICTS) for v in current["verdicts"]], dtype=bool)
    current = current[still_open].reset_index(drop=True)
    # Before any verdict, expected is what leadflow last wrote, where it wrote.
    if len(current):
        written = last_written(engine, crm, current["record_id"])
        undecided = np.array([not v for v in current["verdicts"]], dtype=bool)
        for field in SHARED_FIELDS:
            ours = current["record_id"].map(lambda rid, f=field: written.get((rid, f), np.nan))
            column = _EXPECTED[field]
            current[column] = current[column].where(~(undecided & ours.notna().to_numpy()), ours)
    return current


def _recorded_without_verdict(engine: Engine, crm: str, current: pd.DataFrame, events: pd.DataFrame) -> pd.DataFrame:
    """The recorded handoffs neither in `current` nor answered: leads handed over that stopped
    being sales-ready before sales said anything. A rep may still answer them (convert one, or
    reject it), and that answer is the handoff's outcome."""
    made = load_handoffs(engine, crm)
    if made.empty:
        return current.iloc[0:0]
    made = made.assign(record_id=made["record_id"].astype(str),
                       handed_over_at=pd.to_numeric(made["handed_over_at"]).astype(np.int64))
    known = current.set_index(KEY).index
    if len(events):
        known = known.union(events.assign(record_id=events["record_id"].astype(str),
                                          handed_over_at=events["handed_over_at"].astype(np.int64))
                            .set_index(KEY).index)
    left = made[~made.set_index(KEY).index.isin(known)].drop_duplicates(KEY)
    return pd.DataFrame({"record_id": left["record_id"].to_numpy(), "handed_over_at": left["handed_over_at"].to_numpy(),
                         "score": pd.to_numeric(left["score"]).astype(float).to_numpy(),
                         "reason": left["reason"].to_numpy(), "expected_stage": None, "expected_status": None,
                         "verdicts": [frozenset()] * len(left)})


def _differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    left = a.astype(object).where(a.notna(), None).to_numpy()
    right = b.astype(object).where(b.notna(), None).to_numpy()
    return np.array([x != y for x, y in zip(left, right)], dtype=bool)


def to_look_at(handoffs: pd.DataFrame, snapshot: pd.DataFrame, run_id: str, rules: HandoffRules,
               now_ms: int) -> pd.DataFrame:
    """The handoffs whose CRM history must be read now (see the module docstring), with the
    pulled stage (`stage_now`). Leads gone from the CRM (deleted, merged away) drop out."""
    frame = handoffs.merge(snapshot, on="record_id", how="inner")
    changed = (_differs(frame["lifecycle_stage"], frame["expected_stage"])
               | _differs(frame["lead_status"], frame["expected_status"])) & (frame["pull_run_id"] == run_id).to_numpy()
    undecided = np.array([not v for v in frame["verdicts"]], dtype=bool)
    due = undecided & (frame["handed_over_at"].to_numpy(dtype=np.int64) + rules.sla_days * DAY_MS <= now_ms)
    return frame[changed | due].rename(columns={"lifecycle_stage": "stage_now"}).reset_index(drop=True)


def read_verdicts(engine: Engine, connector: Any, crm: str, run_id: str, rules: HandoffRules,
                  now_ms: int) -> dict[str, Any]:
    """Look at the open handoffs that need it, classify them, store the new verdict events.
    Returns the step's figures: handoffs watched, looked at, and new events by verdict."""
    events = load_events(engine, crm)
    handoffs = open_handoffs(engine, crm, events)
    # A lead replaced by the Contact it was converted into is not gone: its conversion is sales' verdict.
    converted = select(leads.c.converted_from).where(leads.c.crm == crm, leads.c.converted_from.is_not(None))
    snapshot = repo.read_frame(engine, select(leads.c.record_id, leads.c.lifecycle_stage, leads.c.lead_status,
                                              leads.c.pull_run_id)
                               .where(leads.c.crm == crm, or_(leads.c.is_deleted.is_not(True),
                                                              leads.c.record_id.in_(converted))))
    snapshot["record_id"] = snapshot["record_id"].astype(str)
    look = to_look_at(handoffs, snapshot, run_id, rules, now_ms) if len(handoffs) else handoffs
    observed = connector.observe(list(look["record_id"])) if len(look) else {}
    rows: list[dict[str, Any]] = []
    for item in look.itertuples(index=False):
        if item.record_id not in observed:  # gone from the CRM since the pull
            continue
        handed = HandedOver(item.record_id, int(item.handed_over_at), float_or_none(item.score), text_or_none(item.reason))
        fields = observed[item.record_id]
        decided = classify(handed, fields, rules, now_ms=now_ms, stage_now=text_or_none(item.stage_now))
        if decided is None or decided.verdict in item.verdicts:
            continue
        rows.append({
            "crm": crm, "record_id": item.record_id, "handed_over_at": handed.handed_over_at,
            "verdict": decided.verdict.value, "decided_at": int(decided.at),
            "writer": decided.writer.value if decided.writer else None, "changed_by": decided.by,
            "field": decided.field, "value": decided.value, "score": handed.score, "reason": handed.reason,
            # As pulled: the next run compares its pull with these.
            "stage": text_or_none(item.stage_now), "status": text_or_none(item.lead_status),
            "run_id": run_id, "seen_at": now_ms,
        })
    store_events(engine, rows)
    counts = Counter(row["verdict"] for row in rows)
    summary = {"handoffs_watched": int(len(handoffs)), "handoffs_looked_at": int(len(look)),
               "handoffs_gone": int(len(look) - sum(1 for rid in look["record_id"] if rid in observed)),
               "verdicts": {v.value: int(counts.get(v.value, 0)) for v in Verdict}}
    log.info("verdicts %s: %d open handoffs, %d looked at in the CRM's history, new events %s", crm,
             summary["handoffs_watched"], summary["handoffs_looked_at"], summary["verdicts"])
    return summary


def float_or_none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def text_or_none(value: Any) -> str | None:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
