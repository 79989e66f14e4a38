"""The accounts step reads only the score columns the account view and the committee wait use
(all of every score was most of its memory at 1,000,000 leads), and still stores each held lead's
whole score row: the wait's changes, everything else as qualify left it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qualify_helpers import default_dict

from leadflow.accounts.store import MEMBER_COLUMNS, hold_for_committee
from leadflow.qualify import model_from_dict
from leadflow.qualify.accounts import WAITING, account_view, wait_for_committee
from leadflow.schema import SCORE_COLUMNS, SCORE_PERSONA_COLUMNS
from leadflow.warehouse import repo

AS_OF = 1_767_225_600_000
PERSONAS = [("executive", "decider"), ("manager", "influencer"), ("practitioner", "user"), (None, None)]
STORED = [c for c in SCORE_COLUMNS if c != "crm"] + list(SCORE_PERSONA_COLUMNS) + ["predictive_version",
                                                                                   "rules_version"]


def _world(n: int, seed: int) -> tuple[list[dict], pd.DataFrame]:
    rng = np.random.default_rng(seed)
    leads, scores = [], []
    for i in range(n):
        rid = str(1000 + i)
        company = None if i % 17 == 0 else f"c{rng.integers(0, n // 4)}"
        persona, authority = PERSONAS[rng.integers(0, len(PERSONAS))]
        ready = bool(rng.random() < 0.3)
        leads.append({"record_id": rid, "email": f"{rid}@example.com", "updated_at": 1_700_000_000_000,
                      "company_id": company, "lifecycle_stage": rng.choice(["lead", "mql", "sql"])})
        scores.append({"crm": "hubspot", "record_id": rid, "model_version": "m1", "score": float(rng.integers(0, 100)),
                       "fit_score": float(rng.integers(0, 100)), "engagement_score": float(rng.integers(0, 100)),
                       "grade": "B2", "bant_budget": True, "bant_authority": None, "bant_need": False,
                       "bant_timeline": True, "bant_count": 2.0,
                       "disqualification_reason": "student" if i % 23 == 0 else None,
                       "stage": "sql" if ready else "mql", "lead_status": "open" if ready else "new",
                       "reasons": f"+{i} fit; +3 visits", "sales_ready": ready,
                       "sales_ready_since": (AS_OF if rng.random() < 0.7 else AS_OF - 86_400_000) if ready else None,
                       "sales_ready_reason": f"score {i} >= 70" if ready else None, "persona": persona,
                       "authority": authority, "predictive_version": "p7", "rules_version": "r3@abc"})
    return leads, pd.DataFrame(scores)


@pytest.fixture
def waiting_model():
    doc = default_dict()
    doc["accounts"] = {**doc.get("accounts", {}), "handoff_waits_for_second_persona": True}
    doc["stages"]["sql"]["auto"] = True
    return model_from_dict(doc)


def _stored_world(engine, n: int, seed: int) -> pd.DataFrame:
    """`_world(n, seed)` landed and scored in the warehouse; returns its scores."""
    leads, scores = _world(n, seed=seed)
    with engine.begin() as conn:
        repo.land_page(conn, "hubspot", "pull", leads, [], [])
    repo.save_scores(engine, "hubspot", "qualify", scores)
    return scores


def _stored(engine) -> pd.DataFrame:
    return repo.load_scores(engine, "hubspot")[STORED].sort_values("record_id").reset_index(drop=True)


def test_given_many_companies_then_members_and_held_rows_equal_those_from_whole_scores(sqlite_warehouse,
                                                                                     waiting_model):
    engine = sqlite_warehouse
    scores = _stored_world(engine, 400, seed=5)
    # What the step did when it read every score column: the wait over whole score rows, the
    # held rows stored as they were then.
    whole = repo.load_scores(engine, "hubspot")
    lead_cols = repo.load_leads(engine, "hubspot", columns=["record_id", "company_id", "lifecycle_stage"])
    expected_members, expected_waits = wait_for_committee(whole.merge(lead_cols, on="record_id", how="left"),
                                                          waiting_model, AS_OF)
    assert expected_waits > 0

    members, waits = hold_for_committee(engine, "hubspot", "accounts", waiting_model, AS_OF)

    assert waits == expected_waits
    assert set(members.columns) == {*MEMBER_COLUMNS, "company_id", "lifecycle_stage"}
    pd.testing.assert_frame_equal(account_view(members, waiting_model), account_view(expected_members, waiting_model))
    for column in MEMBER_COLUMNS:
        pd.testing.assert_series_equal(members[column].astype(object), expected_members[column].astype(object),
                                       check_names=True)
    stored = _stored(engine)
    want = expected_members[STORED].astype(object).where(expected_members[STORED].notna(), None)
    want = want.sort_values("record_id").reset_index(drop=True)
    got = stored.astype(object).where(stored.notna(), None)
    for column in STORED:
        assert got[column].tolist() == want[column].tolist(), column
    held = got[got["sales_ready_reason"].fillna("").str.startswith(WAITING)]
    assert len(held) == waits and not held["sales_ready"].any()
    assert set(held["reasons"]) <= set(scores["reasons"]) and set(held["rules_version"]) == {"r3@abc"}


def test_given_no_lead_waits_then_no_score_is_rewritten(sqlite_warehouse):
    engine = sqlite_warehouse
    scores = _stored_world(engine, 60, seed=2)
    before = repo.load_scores(engine, "hubspot")
    model = model_from_dict(default_dict())  # the wait is off
    members, waits = hold_for_committee(engine, "hubspot", "accounts", model, AS_OF)
    assert waits == 0 and len(members) == len(scores)
    pd.testing.assert_frame_equal(repo.load_scores(engine, "hubspot"), before)
