"""Landing a CRM pull in the warehouse: where it starts, and each page stored with its watermark
in one transaction (leads, companies, issues, removals), counted for the run's summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from leadflow.pulled import Watermark
from leadflow.warehouse import repo


def pull_since(engine: Engine, crm: str, full_refresh: bool, since: datetime | None) -> Watermark | None:
    """Where the pull starts: everything on a full refresh, `since` when given, else the stored
    watermark."""
    if full_refresh:
        return None
    if since is not None:
        return Watermark(modified_ms=int(since.timestamp() * 1000))
    return repo.get_watermark(engine, crm)


@dataclass
class PullTally:
    """What the pages landed so far hold (a pull cut short keeps its figures)."""

    pulled: int = 0
    companies: int = 0
    issues: int = 0
    pages: int = 0
    deleted: int = 0
    merged: int = 0
    held: list[str] = field(default_factory=list)  # leads quarantined for values the warehouse cannot store

    def summary(self, unseen_deleted: int = 0) -> dict[str, Any]:
        return {"pulled": self.pulled, "companies_pulled": self.companies, "input_issues": self.issues,
                "quarantined_unstorable": len(self.held), "pages": self.pages,
                "marked_deleted": unseen_deleted + self.deleted + self.merged,
                "removed_deleted": self.deleted, "removed_merged": self.merged}


def land_pulled_page(engine: Engine, crm: str, run_id: str, page: Any, tally: PullTally) -> None:
    """Store one page (a connector's `crm.base.LeadPage`) and its watermark in one transaction, so a pull
    stopped at any point resumes after the last page stored."""
    with engine.begin() as conn:
        landed = repo.land_page(conn, crm, run_id, page.leads, page.companies, page.issues)
        removed = repo.mark_removed(conn, crm, page.removed)
        if page.watermark is not None:
            repo.set_watermark(conn, crm, page.watermark)
    tally.pulled += landed.leads
    tally.held.extend(landed.held_ids)
    tally.companies += len(page.companies)
    tally.issues += len(page.issues)
    tally.pages += 1 if page.leads else 0
    tally.deleted += removed["deleted"]
    tally.merged += removed["merged"]
