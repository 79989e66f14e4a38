"""The company write (`accounts.write.push_accounts_view`) compares with the CRM's values as the
warehouse knows them: it reads from the CRM only the companies whose values it does not know,
sends only what differs, and after each write knows what the CRM holds (a confirmed value) or
that it no longer knows (any other answer: read again next time)."""

from __future__ import annotations

import pandas as pd

from leadflow.accounts.write import push_accounts_view
from leadflow.crm.base import RecordResult
from leadflow.warehouse import repo

CRM = "hubspot"
KNOWN_AT = 1_700_000_000_000


class FakeCompanies:
    """A CRM's companies with leadflow's two owned fields; records every read and write."""

    max_batch_size = 2

    def __init__(self, held: dict[str, dict[str, str | None]], reject: set[str] = frozenset()) -> None:
        self.held = held
        self.reject = set(reject)
        self.reads: list[list[str]] = []
        self.writes: list[tuple[str, dict]] = []

    def ensure_company_schema(self) -> None:
        pass

    def format_company_value(self, _field: str, value) -> str:
        return str(value)

    def read_companies(self, ids):
        self.reads.append(sorted(ids))
        return {cid: dict(self.held[cid]) for cid in ids if cid in self.held}

    def push_companies(self, updates):
        out = []
        for update in updates:
            self.writes.append((update.record_id, dict(update.values)))
            if update.record_id in self.reject:
                out.append(RecordResult(update.record_id, "rejected", "invalid value", "validation"))
            else:
                self.held[update.record_id].update(update.values)
                out.append(RecordResult(update.record_id, "confirmed"))
        return out


def _pulled(engine, companies: dict[str, dict[str, str | None] | None]) -> None:
    """Land companies as a pull does; None: pulled without the owned values (an older version)."""
    rows = []
    for cid, owned in companies.items():
        row = {"company_id": cid, "name": f"Company {cid}"}
        if owned is not None:
            row.update({f"crm_{f}": v for f, v in owned.items()}, crm_owned_known_at=KNOWN_AT)
        rows.append(row)
    with engine.begin() as conn:
        repo.land_page(conn, CRM, "pull", [], rows, [])


def _view(scores: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame({"company_id": list(scores), "company_score": list(scores.values()),
                         "committee": [f"committee of {cid}" for cid in scores]})


def _crm(score: int, cid: str) -> dict[str, str]:
    return {"company_score": str(score), "buying_committee": f"committee of {cid}"}


def test_given_the_warehouse_knows_the_crms_values_then_nothing_is_read_and_only_what_differs_is_sent(warehouse):
    _pulled(warehouse, {"1": _crm(80, "1"), "2": _crm(40, "2")})
    crm = FakeCompanies({"1": _crm(80, "1"), "2": _crm(40, "2")})
    counts = push_accounts_view(warehouse, crm, CRM, "run", _view({"1": 80, "2": 55}))
    assert crm.reads == []
    assert crm.writes == [("2", {"company_score": "55"})]
    assert (counts["companies_written"], counts["companies_unchanged"], counts["companies_read"]) == (1, 1, 0)


def test_given_a_confirmed_write_then_the_next_run_neither_reads_nor_writes_that_company(warehouse):
    _pulled(warehouse, {"1": _crm(80, "1")})
    crm = FakeCompanies({"1": _crm(80, "1")})
    push_accounts_view(warehouse, crm, CRM, "run-1", _view({"1": 90}))
    counts = push_accounts_view(warehouse, crm, CRM, "run-2", _view({"1": 90}))
    assert crm.reads == [] and crm.writes == [("1", {"company_score": "90"})]
    assert (counts["companies_written"], counts["companies_unchanged"]) == (0, 1)


def test_given_companies_whose_values_the_warehouse_does_not_know_then_only_they_are_read_and_only_once(warehouse):
    _pulled(warehouse, {"1": _crm(80, "1"), "2": None, "3": None})
    crm = FakeCompanies({"1": _crm(80, "1"), "2": _crm(70, "2"), "3": _crm(10, "3")})
    view = _view({"1": 80, "2": 70, "3": 30})
    first = push_accounts_view(warehouse, crm, CRM, "run-1", view)
    assert crm.reads == [["2", "3"]] and first["companies_read"] == 2
    assert crm.writes == [("3", {"company_score": "30"})]  # company 2 already holds leadflow's values
    second = push_accounts_view(warehouse, crm, CRM, "run-2", view)
    assert crm.reads == [["2", "3"]] and second["companies_read"] == 0
    assert len(crm.writes) == 1 and second["companies_unchanged"] == 3


def test_given_a_write_that_is_not_confirmed_then_the_next_run_reads_that_company_before_writing(warehouse):
    _pulled(warehouse, {"1": _crm(80, "1"), "2": _crm(40, "2")})
    crm = FakeCompanies({"1": _crm(80, "1"), "2": _crm(40, "2")}, reject={"2"})
    first = push_accounts_view(warehouse, crm, CRM, "run-1", _view({"1": 80, "2": 55}))
    assert first["company_writes_rejected"] == 1 and crm.reads == []
    crm.reject.clear()
    second = push_accounts_view(warehouse, crm, CRM, "run-2", _view({"1": 80, "2": 55}))
    assert crm.reads == [["2"]] and second["companies_written"] == 1
    assert crm.writes == [("2", {"company_score": "55"})] * 2


def test_given_a_company_neither_the_warehouse_nor_the_crm_has_then_it_is_counted_missing_and_not_written(warehouse):
    _pulled(warehouse, {"1": _crm(80, "1")})
    crm = FakeCompanies({"1": _crm(80, "1")})
    counts = push_accounts_view(warehouse, crm, CRM, "run", _view({"1": 80, "9": 50}))
    assert crm.reads == [["9"]] and crm.writes == []
    assert (counts["companies_missing"], counts["companies_unchanged"]) == (1, 1)
