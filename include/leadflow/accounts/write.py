"""Writing the account view to the CRM: leadflow's own company properties, changed values only.

Only the fields of `schema.COMPANY_OWNED_FIELDS` are ever sent (the connector refuses anything
else as well). The desired values are compared with the CRM's as the warehouse knows them, as
the owned contact fields are (`push.diff`): read with the company at its last pull, or written
by leadflow since. Only companies whose values the warehouse does not know (pulled by an earlier
version, or whose last write was not confirmed) are read from the CRM first. So a value already
there is not sent again, and the companies are not read again every run. Every value sent is
recorded in `company_writes` with the CRM's answer. A company write is not retried within the
run: the next run reads that company and sends the value again if it still differs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd
from sqlalchemy import Engine

from leadflow.accounts.store import known_company_values, remember_company_values
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
              "company_writes_rejected": 0, "company_writes_failed": 0, "companies_read": 0}
    if view.empty:
        return counts
    connector.ensure_company_schema()
    desired = desired_values(view)
    current = current_values(engine, connector, crm, list(desired))
    counts["companies_read"] = current.read
    changes = company_changes(desired, current.values, connector.format_company_value)
    counts["companies_missing"] = len(set(desired) - set(current.values))
    counts["companies_unchanged"] = len(current.values) - len(changes)
    for batch in chunks(sorted(changes), connector.max_batch_size):
        updates = [RecordUpdate(cid, {f: after for f, (_, after) in changes[cid].items()}) for cid in batch]
        results = connector.push_companies(updates)
        written_at = repo.now_ms()
        rows, confirmed, unconfirmed = [], {}, []
        for result in results:
            key = {"confirmed": "companies_written", "rejected": "company_writes_rejected"}.get(
                result.status, "company_writes_failed")
            counts[key] += 1
            written = changes[result.record_id]
            if result.status == "confirmed":
                confirmed[result.record_id] = {field: after for field, (_, after) in written.items()}
            else:
                unconfirmed.append(result.record_id)
            for field, (before, after) in written.items():
                rows.append({"crm": crm, "run_id": run_id, "company_id": result.record_id, "field": field,
                             "before": before, "after": after, "status": result.status,
                             "error": result.error, "written_at": written_at})
        with engine.begin() as conn:
            conn.execute(company_writes.insert(), rows)
            remember_company_values(conn, crm, confirmed, unconfirmed, written_at)
    log.info("accounts %s: %d companies written, %d unchanged, %d rejected, %d failed, %d not found; %d read "
             "first", crm, counts["companies_written"], counts["companies_unchanged"],
             counts["company_writes_rejected"], counts["company_writes_failed"], counts["companies_missing"],
             counts["companies_read"])
    return counts


@dataclass(frozen=True)
class CurrentValues:
    """`values`: company_id -> owned field -> the CRM's value, for the companies known to exist;
    `read`: how many of them had to be read from the CRM for it."""

    values: dict[str, dict[str, str | None]]
    read: int


def current_values(engine: Engine, connector: Any, crm: str, company_ids: Sequence[str]) -> CurrentValues:
    """The CRM's owned values of `company_ids`: as the warehouse knows them, and read from the
    CRM (`connector.read_companies`) for the others, which the warehouse then knows. A company
    the CRM does not return is left out."""
    known = known_company_values(engine, crm)
    values = {cid: known[cid] for cid in company_ids if cid in known}
    unknown = [cid for cid in company_ids if cid not in known]
    if unknown:
        read_at = repo.now_ms()
        found = connector.read_companies(unknown)
        values.update(found)
        with engine.begin() as conn:
            remember_company_values(conn, crm, found, (), read_at)
    return CurrentValues(values, len(unknown))
