"""Writing the account view to the CRM: leadflow's own company properties, changed values only.

Only the fields of `schema.COMPANY_OWNED_FIELDS` are ever sent (the connector refuses anything
else as well). Before writing, the current values are read from the CRM, so a value already
there is not sent again; every value sent is recorded in `company_writes` with the CRM's answer.
A company write is not retried within the run: the next run's comparison sends it again.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import pandas as pd
from sqlalchemy import Engine

from leadflow.accounts.tables import company_writes
from leadflow.batching import chunks
from leadflow.crm.base import RecordUpdate
from leadflow.warehouse import repo

log = logging.getLogger(__name__)


def desired_values(view: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """company_id -> owned company field -> the value leadflow wants there."""
    return {str(cid): {"company_score": int(score), "buying_committee": committee}
            for cid, score, committee in zip(view["company_id"], view["company_score"], view["committee"])}


def company_changes(desired: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, str | None]],
                    render: Any) -> dict[str, dict[str, tuple[str | None, str]]]:
    """company_id -> field -> (before, after) for the values that differ from the CRM's, as the
    CRM renders them (`render(field, value)`). Companies the CRM did not return are left out."""
    out: dict[str, dict[str, tuple[str | None, str]]] = {}
    for cid, values in desired.items():
        if cid not in current:
            continue
        for field, value in values.items():
            if value is None:
                continue
            after = render(field, value)
            before = current[cid].get(field)
            if (before or "") != after:
                out.setdefault(cid, {})[field] = (before, after)
    return out


def push_accounts_view(engine: Engine, connector: Any, crm: str, run_id: str, view: pd.DataFrame) -> dict[str, int]:
    """Write the view's company score and committee reason to the CRM; the counts for the run."""
    counts = {"companies_written": 0, "companies_unchanged": 0, "companies_missing": 0,
              "company_writes_rejected": 0, "company_writes_failed": 0}
    if view.empty:
        return counts
    connector.ensure_company_schema()
    desired = desired_values(view)
    current = connector.read_companies(list(desired))
    changes = company_changes(desired, current, connector.format_company_value)
    counts["companies_missing"] = len(set(desired) - set(current))
    counts["companies_unchanged"] = len(current) - len(changes)
    for batch in chunks(sorted(changes), connector.max_batch_size):
        updates = [RecordUpdate(cid, {f: after for f, (_, after) in changes[cid].items()}) for cid in batch]
        results = connector.push_companies(updates)
        written_at = repo.now_ms()
        rows = []
        for result in results:
            key = {"confirmed": "companies_written", "rejected": "company_writes_rejected"}.get(
                result.status, "company_writes_failed")
            counts[key] += 1
            for field, (before, after) in changes[result.record_id].items():
                rows.append({"crm": crm, "run_id": run_id, "company_id": result.record_id, "field": field,
                             "before": before, "after": after, "status": result.status,
                             "error": result.error, "written_at": written_at})
        with engine.begin() as conn:
            conn.execute(company_writes.insert(), rows)
    log.info("accounts %s: %d companies written, %d unchanged, %d rejected, %d failed, %d not found", crm,
             counts["companies_written"], counts["companies_unchanged"], counts["company_writes_rejected"],
             counts["company_writes_failed"], counts["companies_missing"])
    return counts
