"""The account view in the warehouse: replaced per CRM each run, read by the push and the page."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
from sqlalchemy import Engine, select, update

from leadflow.accounts.tables import accounts
from leadflow.batching import chunks
from leadflow.schema import COMPANY_OWNED_FIELDS, COMPANY_OWNED_KNOWN_AT, CRM_VALUE_PREFIX
from leadflow.warehouse.db import update_by_key
from leadflow.warehouse.tables import companies
from leadflow.qualify.accounts import VIEW_COLUMNS, wait_for_committee
from leadflow.qualify.config import QualificationModel
from leadflow.warehouse import repo


def save_accounts(engine: Engine, crm: str, run_id: str, view: pd.DataFrame) -> int:
    """Replace the CRM's account view with `view` (qualify.accounts.VIEW_COLUMNS); returns rows."""
    computed_at = repo.now_ms()
    rows = []
    for record in view[list(VIEW_COLUMNS)].astype(object).where(view[list(VIEW_COLUMNS)].notna(), None) \
            .to_dict("records"):
        record.update(crm=crm, run_id=run_id, computed_at=computed_at,
                      leads=int(record["leads"]), engaged=int(record["engaged"]),
                      company_score=int(record["company_score"]),
                      best_score=None if record["best_score"] is None else float(record["best_score"]))
        rows.append(record)
    with engine.begin() as conn:
        conn.execute(accounts.delete().where(accounts.c.crm == crm))
        if rows:
            conn.execute(accounts.insert(), rows)
    return len(rows)


def load_accounts(engine: Engine, crm: str) -> pd.DataFrame:
    return repo.read_frame(engine, select(accounts).where(accounts.c.crm == crm).order_by(accounts.c.company_id))


# --- leadflow's own company values as the CRM holds them ------------------------------------------
_OWNED_VALUE_COLUMNS = {field: f"{CRM_VALUE_PREFIX}{field}" for field in COMPANY_OWNED_FIELDS}
_IDS_PER_STATEMENT = 500


def known_company_values(engine: Engine, crm: str) -> dict[str, dict[str, str | None]]:
    """company_id -> owned company field -> the CRM's value as the warehouse knows it (read with
    the company at its last pull, or written by leadflow since), for the companies whose values
    are known (`COMPANY_OWNED_KNOWN_AT` set)."""
    cols = [companies.c[c] for c in _OWNED_VALUE_COLUMNS.values()]
    query = select(companies.c.company_id, *cols).where(
        companies.c.crm == crm, companies.c[COMPANY_OWNED_KNOWN_AT].is_not(None))
    with engine.connect() as conn:
        return {str(row[0]): dict(zip(_OWNED_VALUE_COLUMNS, row[1:])) for row in conn.execute(query)}


def remember_company_values(conn: Any, crm: str, values: Mapping[str, Mapping[str, str | None]],
                            forget: Iterable[str], at_ms: int) -> None:
    """In the transaction `conn`: the owned values leadflow just confirmed writing (`values`:
    company_id -> field -> value) are the CRM's as of `at_ms`; the values of the companies in
    `forget` are no longer known (a write whose outcome is not a confirmation: the next run
    reads them before writing)."""
    update_by_key(conn, companies, ("crm", "company_id"), [
        {"crm": crm, "company_id": cid, **{_OWNED_VALUE_COLUMNS[f]: v for f, v in fields.items()},
         COMPANY_OWNED_KNOWN_AT: at_ms}
        for cid, fields in values.items() if fields])
    for ids in chunks(sorted(set(forget)), _IDS_PER_STATEMENT):
        conn.execute(update(companies).where(companies.c.crm == crm, companies.c.company_id.in_(ids))
                     .values({COMPANY_OWNED_KNOWN_AT: None}))


# What the account view and the wait for the committee read (`qualify.accounts`) and what a
# handoff records (`verdicts.sla.record_handoffs`): the score rows without their reasons text and
# model versions, most of the scores' memory at 1,000,000 leads.
MEMBER_COLUMNS: tuple[str, ...] = (
    "record_id", "score", "grade", "engagement_score", "disqualification_reason", "stage", "lead_status",
    "sales_ready", "sales_ready_since", "sales_ready_reason", "persona", "authority",
)
# What `wait_for_committee` changes in a held lead's score.
HELD_COLUMNS: tuple[str, ...] = ("sales_ready", "sales_ready_since", "sales_ready_reason", "stage", "lead_status")


def hold_for_committee(engine: Engine, crm: str, run_id: str, model: QualificationModel,
                       as_of_ms: int) -> tuple[pd.DataFrame, int]:
    """Every shard's scores (`MEMBER_COLUMNS`) with each lead's company and current stage (the
    account view's members), with the handoffs that wait for a second engaged persona held back
    (`qualify.accounts.wait_for_committee`) and those leads' scores stored. Returns the members
    and how many handoffs wait."""
    scores = repo.load_scores(engine, crm, columns=MEMBER_COLUMNS)
    leads = repo.load_leads(engine, crm, columns=["record_id", "company_id", "lifecycle_stage"])
    members, waits = wait_for_committee(scores.merge(leads, on="record_id", how="left"), model, as_of_ms)
    if waits:
        held = scores["sales_ready"].fillna(False).astype(bool).to_numpy() & \
            ~members["sales_ready"].fillna(False).astype(bool).to_numpy()
        _save_held(engine, crm, run_id, members.loc[held])
    return members, waits


def _save_held(engine: Engine, crm: str, run_id: str, held: pd.DataFrame) -> None:
    """The held leads' whole score rows with what the wait changed (`HELD_COLUMNS`), stored."""
    changed = held.set_index("record_id")[list(HELD_COLUMNS)]
    rows = repo.load_score_rows(engine, crm, changed.index)
    for column in HELD_COLUMNS:
        rows[column] = changed[column].reindex(rows["record_id"]).to_numpy()
    repo.save_scores(engine, crm, run_id, rows, replace=False)
