"""The account view: buying committees per company, and the handoff's wait for a second persona.

B2B purchases are decided by a committee (decider, influencer, user), so one engaged lead says
less than several people of one company engaging. From the scored leads of every shard (with the
company id of each lead and the persona and authority the engine derived from the job title):

- `account_view` summarises each company: leads, engaged leads (engagement_score at least
  `accounts.engaged_min_engagement`, not disqualified), the committee roles and personas the
  engaged leads cover, the best lead and its score, the company score (best score +
  `accounts.role_points` per covered role, capped at 100) and a short committee reason;
- `wait_for_committee` holds back a lead newly found sales-ready until another engaged lead with
  a different buyer persona works at its company (`accounts.handoff_waits_for_second_persona`);
- `account_figures` sums the view up in counts for the run summary and the run report.

Pure functions over frames; no I/O.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from leadflow.qualify.config import ROLES, QualificationModel
from leadflow.schema import STAGE_RANK

VIEW_COLUMNS: tuple[str, ...] = (
    "company_id", "leads", "engaged", "roles", "personas", "best_record_id", "best_score", "company_score",
    "committee",
)
WAITING = "waiting for a second engaged buyer persona at the company"


def _company_ids(frame: pd.DataFrame) -> pd.Series:
    """Company id as text; None where the lead has no company (blank counts as none)."""
    ids = frame["company_id"].astype(object).where(frame["company_id"].notna(), None)
    ids = ids.map(lambda v: None if v is None or not str(v).strip() else str(v).strip())
    return ids


def engaged_leads(frame: pd.DataFrame, model: QualificationModel) -> np.ndarray:
    """Bool per lead: engaged (engagement_score >= the threshold) and not disqualified."""
    engagement = pd.to_numeric(frame["engagement_score"], errors="coerce").to_numpy(dtype=float)
    qualified = frame["disqualification_reason"].isna().to_numpy()
    return (np.nan_to_num(engagement, nan=-1.0) >= model.accounts.engaged_min_engagement) & qualified


def _roles(frame: pd.DataFrame, model: QualificationModel) -> pd.Series:
    """Committee role per lead from its authority (None: not a buyer, or no persona)."""
    role_of = model.accounts.roles.role_of()
    authority = frame["authority"].astype(object).where(frame["authority"].notna(), None)
    return authority.map(lambda a: role_of.get(a) if a is not None else None)


def committee_reason(engaged: int, leads: int, covered: list[tuple[str, list[str]]], best_score: int) -> str:
    """"3 engaged of 5 leads: decider (executive), influencer (manager); best lead 88"."""
    head = f"{engaged} engaged of {leads} lead{'s' if leads != 1 else ''}"
    if covered:
        head += ": " + ", ".join(f"{role} ({', '.join(labels)})" for role, labels in covered)
    elif engaged:
        head += ": no committee role covered"
    return f"{head}; best lead {best_score}"


def company_score(best_score: float, roles_covered: int, role_points: int) -> int:
    """Best lead's score + points per covered role, capped at 100."""
    return int(min(100, int(np.floor(best_score + 0.5)) + role_points * roles_covered))


def account_view(members: pd.DataFrame, model: QualificationModel) -> pd.DataFrame:
    """One row per company (`VIEW_COLUMNS`, by company id) from `members`: scored leads with
    record_id, company_id, score, engagement_score, disqualification_reason, persona, authority.
    Leads without a company belong to no account. The best lead: highest score, ties to the
    smallest record id. `roles` and `personas` are ";"-joined (role order, persona order)."""
    ids = _company_ids(members)
    frame = pd.DataFrame({
        "company_id": ids,
        "record_id": members["record_id"].astype(str),
        "score": pd.to_numeric(members["score"], errors="coerce").fillna(0.0).astype(float),
        "engaged": engaged_leads(members, model),
        "role": _roles(members, model),
        "persona": members["persona"].astype(object).where(members["persona"].notna(), None),
    }, index=members.index)
    frame = frame[frame["company_id"].notna()]
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VIEW_COLUMNS})
    by_company = frame.groupby("company_id", sort=True)
    best = frame.sort_values(["company_id", "score", "record_id"], ascending=[True, False, True]) \
        .drop_duplicates("company_id").set_index("company_id")
    view = pd.DataFrame({"leads": by_company.size(), "engaged": by_company["engaged"].sum().astype(int)})
    view["best_record_id"] = best["record_id"]
    view["best_score"] = best["score"]

    # Engaged buyers: which (company, role, persona) are covered, in role and persona order.
    order = {p.id: i for i, p in enumerate(model.personas)}
    labels = {p.id: p.label for p in model.personas}
    buyers = frame[frame["engaged"] & frame["role"].notna()]
    buyers = buyers.assign(role_rank=buyers["role"].map(ROLES.index),
                           persona_rank=buyers["persona"].map(lambda p: order.get(p, len(order))))
    buyers = buyers.drop_duplicates(["company_id", "role", "persona"]).sort_values(
        ["company_id", "role_rank", "persona_rank"])
    covered: dict[str, list[tuple[str, list[str]]]] = {}
    personas: dict[str, list[str]] = {}
    for company, role, persona in zip(buyers["company_id"], buyers["role"], buyers["persona"]):
        roles = covered.setdefault(company, [])
        if not roles or roles[-1][0] != role:
            roles.append((role, []))
        roles[-1][1].append(labels.get(persona, str(persona)))
        personas.setdefault(company, []).append(str(persona))

    points = model.accounts.role_points
    rows = []
    for company, leads, engaged, best_id, best_score in zip(view.index, view["leads"], view["engaged"],
                                                             view["best_record_id"], view["best_score"]):
        roles = covered.get(company, [])
        score = int(np.floor(best_score + 0.5))
        rows.append({
            "company_id": company, "leads": int(leads), "engaged": int(engaged),
            "roles": ";".join(role for role, _ in roles) or None,
            "personas": ";".join(dict.fromkeys(personas.get(company, []))) or None,
            "best_record_id": best_id, "best_score": float(best_score),
            "company_score": company_score(best_score, len(roles), points),
            "committee": committee_reason(int(engaged), int(leads), roles, score),
        })
    return pd.DataFrame(rows, columns=list(VIEW_COLUMNS))


def wait_for_committee(members: pd.DataFrame, model: QualificationModel, as_of_ms: int) -> tuple[pd.DataFrame, int]:
    """`members` (scores with company_id, persona, authority and, when known, the CRM's current
    `lifecycle_stage`) with the handoff held back where the company has no second engaged buyer
    persona, when `accounts.handoff_waits_for_second_persona` is on; and how many wait.

    Only a lead handed over now waits (its since is this run's `as_of_ms`): one sales already
    has keeps it. A waiting lead is not sales-ready, has no since, and its reason says it waits
    (then why it would be ready). Under `stages.sql.auto` its proposed SQL falls back to MQL
    (unless the CRM already holds SQL or later), and a status the handoff gave it becomes the
    status of a qualified lead at that stage."""
    if not model.accounts.handoff_waits_for_second_persona or members.empty:
        return members, 0
    ready = members["sales_ready"].fillna(False).astype(bool).to_numpy()
    since = pd.to_numeric(members["sales_ready_since"], errors="coerce").to_numpy(dtype=float)
    fresh = ready & ~(since < as_of_ms)  # a carried-over since is earlier than this run's
    if not fresh.any():
        return members, 0
    ids = _company_ids(members)
    persona = members["persona"].astype(object).where(members["persona"].notna(), None)
    buyer = engaged_leads(members, model) & _roles(members, model).notna().to_numpy() & ids.notna().to_numpy()
    # (company, persona) as one key: is the lead's own persona among its company's engaged buyers?
    key = ids.fillna("") + "\x1f" + persona.fillna("").astype(str)
    pairs = pd.DataFrame({"company_id": ids[buyer], "key": key[buyer]}).drop_duplicates("key")
    distinct = pairs.groupby("company_id").size()
    in_set = key.isin(set(pairs["key"])).to_numpy() & ids.notna().to_numpy()
    others = ids.map(distinct).fillna(0).to_numpy(dtype=int) - in_set.astype(int)
    waiting = fresh & (others < 1)
    if not waiting.any():
        return members, 0

    out = members.copy()
    out["sales_ready"] = np.where(waiting, False, ready)
    out["sales_ready_since"] = np.where(waiting, np.nan, since)
    reason = out["sales_ready_reason"].astype(object)
    out["sales_ready_reason"] = [f"{WAITING}; {r}" if w and r else (WAITING if w else r)
                                 for w, r in zip(waiting, reason)]
    if model.stages.sql.auto:
        current = members.get("lifecycle_stage", pd.Series(None, index=members.index))
        at_sql = current.map(lambda s: STAGE_RANK.get(s, -1) >= STAGE_RANK["sql"] if isinstance(s, str) else False)
        back = waiting & (out["stage"].to_numpy(dtype=object) == "sql") & ~at_sql.to_numpy(dtype=bool)
        out.loc[back, "stage"] = "mql"
    rules = model.lead_status
    if rules.sales_ready is not None:
        status_given = waiting & (out["lead_status"].to_numpy(dtype=object) == rules.sales_ready)
        ranks = out["stage"].map(lambda s: STAGE_RANK.get(s, -1) if isinstance(s, str) else -1).to_numpy()
        usual = np.where(ranks >= STAGE_RANK[rules.open_from_stage], "open", "new")
        out["lead_status"] = np.where(status_given, usual, out["lead_status"].to_numpy(dtype=object))
    return out, int(waiting.sum())


SCORE_BANDS: tuple[str, ...] = ("0-19", "20-39", "40-59", "60-79", "80-100")


def _bands(values: pd.Series) -> dict[str, int]:
    """How many values fall in each of `SCORE_BANDS` (missing ones in none)."""
    scores = pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)
    band = np.clip(np.floor(scores / 20).astype(int), 0, len(SCORE_BANDS) - 1)
    return {name: int((band == i).sum()) for i, name in enumerate(SCORE_BANDS)}


def account_figures(view: pd.DataFrame, committee_waits: int = 0) -> dict[str, Any]:
    """The account view (`account_view`) in counts, with no company, lead or value in it:
    companies, those with engaged leads, those whose engaged leads cover two or more committee
    roles, engaged leads, companies per role and per persona covered, companies by company
    score and by their best lead's score (`SCORE_BANDS`), and the handoffs held back for a
    second persona (`committee_waits`)."""
    roles, personas = ([str(v).split(";") for v in view[column].tolist() if isinstance(v, str) and v]
                       for column in ("roles", "personas"))
    engaged = pd.to_numeric(view["engaged"], errors="coerce").fillna(0)
    return {
        "companies": int(len(view)),
        "with_engaged_leads": int((engaged > 0).sum()),
        "committees": sum(len(r) >= 2 for r in roles),
        "engaged_leads": int(engaged.sum()),
        "roles": {role: sum(role in r for r in roles) for role in ROLES},
        "personas": dict(sorted(Counter(p for covered in personas for p in covered).items())),
        "company_score": _bands(view["company_score"]),
        "best_lead_score": _bands(view["best_score"]),
        "committee_waits": int(committee_waits),
    }
