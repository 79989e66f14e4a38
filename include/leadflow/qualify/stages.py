"""Lifecycle stage and lead status decisions, vectorised over stage ranks.

Rules (the stage rule itself is `leadflow.stage_rule`, shared with the push):
- a record in a sales-owned stage (opportunity, customer, ...) or an unknown stage keeps its
  stage and its lead status untouched;
- a disqualified record keeps its stage (even when empty) and gets status "unqualified";
- a record with no stage gets the proposed stage; otherwise the later of current and proposed;
  SQL is proposed only with `stages.sql.auto` (by default sales sets it: `stage_cap`);
- qualified records: "nurture" when nurtured, a sales-working status (in progress, connected, ...)
  is kept, else the `lead_status.sales_ready` status for a sales-ready lead when configured,
  else "open" from `lead_status.open_from_stage` on and "new" below it.
"""

from __future__ import annotations

import numpy as np

from leadflow.qualify.columns import TextColumn
from leadflow.qualify.text import normalize
from leadflow.schema import SALES_OWNED_STAGES, STAGE_RANK, LeadStatus
from leadflow.stage_rule import KEEP, NONE, forward_stage, rank_code

# Statuses that mean a salesperson is working the record: leadflow leaves them alone.
SALES_WORKING_STATUSES: frozenset[str] = frozenset(
    {
        LeadStatus.IN_PROGRESS.value,
        LeadStatus.ATTEMPTED_TO_CONTACT.value,
        LeadStatus.CONNECTED.value,
        LeadStatus.OPEN_DEAL.value,
    }
)

def current_stage_ranks(stage: TextColumn) -> np.ndarray:
    """Per row: the rank of a model stage (0..3), `NONE` when empty, `KEEP` when not ours."""
    # Sales-owned stages and values we do not recognise are both left as they are (KEEP).
    per_unique = np.fromiter((rank_code(normalize(v)) for v in stage.uniques), dtype=np.int8,
                             count=len(stage.uniques))
    return stage.lookup(per_unique, NONE)


def is_sales_owned(value: str) -> bool:
    """True for stages leadflow never changes (kept for callers that check single values)."""
    return normalize(value) in SALES_OWNED_STAGES


def stage_cap(auto_sql: bool) -> int:
    """The highest stage rank leadflow writes: SQL only when the model says `stages.sql.auto`;
    otherwise a sales-ready lead stays MQL and sales moves it to SQL (the waterfall)."""
    return STAGE_RANK["sql"] if auto_sql else STAGE_RANK["mql"]


def final_stage_ranks(
    current: np.ndarray, proposed: np.ndarray, disqualified: np.ndarray
) -> np.ndarray:
    """The stage rank to write: `KEEP` keeps the record's own value, `NONE` stays empty."""
    # Disqualified: keep what the record has (rank, or empty); sales-owned/unknown: KEEP anyway.
    out = np.where(disqualified, current, forward_stage(current, proposed))
    return out.astype(np.int8, copy=False)


# Lead status codes, in the order of STATUS_VALUES.
STATUS_VALUES: tuple[str, ...] = (
    LeadStatus.NEW.value,
    LeadStatus.OPEN.value,
    LeadStatus.NURTURE.value,
    LeadStatus.UNQUALIFIED.value,
)
STATUS_KEEP = -1  # keep the record's own status


def status_codes(
    final_rank: np.ndarray,
    current_status: TextColumn,
    disqualified: np.ndarray,
    nurture: np.ndarray,
    open_rank: int,
    sales_ready: np.ndarray | None = None,
    sales_ready_status: str | None = None,
) -> np.ndarray:
    """Per row: an index into `STATUS_VALUES`, or `STATUS_KEEP` to keep the current status.
    `sales_ready_status` (a `STATUS_VALUES` name) is given to the `sales_ready` rows."""
    working_unique = np.fromiter(
        (normalize(v) in SALES_WORKING_STATUSES for v in current_status.uniques),
        dtype=bool,
        count=len(current_status.uniques),
    )
    working = current_status.lookup(working_unique, False)
    # A kept sales-owned stage has rank KEEP (< 0); compare only our own ranks.
    out = (final_rank >= open_rank).view(np.int8)  # 1 = open, 0 = new
    if sales_ready is not None and sales_ready_status is not None:
        out = np.where(sales_ready, np.int8(STATUS_VALUES.index(sales_ready_status)), out)
    out = np.where(working, np.int8(STATUS_KEEP), out)
    out = np.where(nurture, np.int8(2), out)
    out = np.where(disqualified, np.int8(3), out)
    out = np.where(final_rank == KEEP, np.int8(STATUS_KEEP), out)
    return out.astype(np.int8, copy=False)
