"""The account view (buying committees per company) and the handoff's wait for a second persona:
table-driven rules over small frames of scored leads, and the `accounts` config block."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from qualify_helpers import default_dict

from leadflow.qualify import ModelConfigError, load_model
from leadflow.qualify.accounts import (
    WAITING,
    account_view,
    committee_reason,
    company_score,
    engaged_leads,
    wait_for_committee,
)

AS_OF = 1_767_225_600_000  # the run's day (epoch ms); a carried-over handoff is earlier
EARLIER = AS_OF - 3 * 86_400_000
PERSONA_AUTHORITY = {"executive": "decider", "director": "decider", "manager": "influencer",
                     "practitioner": "user", "student": "none", None: None}


def _members(*rows: tuple) -> pd.DataFrame:
    """(record_id, company_id, persona, score, engagement, disqualified, sales_ready, since)."""
    out = []
    for rid, company, persona, score, engagement, disq, ready, since in rows:
        out.append({"record_id": rid, "company_id": company, "persona": persona,
                    "authority": PERSONA_AUTHORITY[persona], "score": float(score),
                    "engagement_score": float(engagement), "disqualification_reason": disq,
                    "sales_ready": ready, "sales_ready_since": float(since) if since is not None else np.nan,
                    "sales_ready_reason": f"score {score} >= 70" if ready else None,
                    "stage": "mql", "lead_status": None, "lifecycle_stage": "mql"})
    return pd.DataFrame(out)


def _model(**accounts):
    doc = default_dict()
    doc["accounts"] = {**doc.get("accounts", {}), **accounts}
    from leadflow.qualify import model_from_dict

    return model_from_dict(doc)


@pytest.fixture(scope="module")
def model():
    return load_model()


@pytest.fixture(scope="module")
def waiting_model():
    return _model(handoff_waits_for_second_persona=True)


# --- pure rules ------------------------------------------------------------------------------------
@pytest.mark.parametrize("engaged, leads, covered, best, text", [
    (0, 1, [], 40, "0 engaged of 1 lead; best lead 40"),
    (1, 2, [], 55, "1 engaged of 2 leads: no committee role covered; best lead 55"),
    (3, 5, [("decider", ["executive"]), ("influencer", ["manager"])], 88,
     "3 engaged of 5 leads: decider (executive), influencer (manager); best lead 88"),
    (2, 2, [("decider", ["executive", "director"])], 71, "2 engaged of 2 leads: decider (executive, director); best lead 71"),
])
def test_committee_reason_names_engaged_leads_roles_with_personas_and_the_best_score(engaged, leads, covered, best, text):
    assert committee_reason(engaged, leads, covered, best) == text


@pytest.mark.parametrize("best, roles, points, expected", [
    (40.0, 0, 5, 40), (40.4, 2, 5, 50), (88.5, 3, 5, 100), (97.0, 1, 5, 100), (60.0, 3, 0, 60),
])
def test_company_score_is_best_score_plus_points_per_role_capped_at_100(best, roles, points, expected):
    assert company_score(best, roles, points) == expected


@pytest.mark.parametrize("engagement, disqualified, expected", [
    (25, None, True), (24.9, None, False), (90, "recruiter", False), (np.nan, None, False),
])
def test_engaged_means_engagement_at_the_threshold_and_not_disqualified(model, engagement, disqualified, expected):
    frame = pd.DataFrame({"engagement_score": [engagement], "disqualification_reason": [disqualified]})
    assert bool(engaged_leads(frame, model)[0]) is expected


def test_account_view_per_company_counts_engaged_leads_roles_personas_and_the_best_lead(model):
    members = _members(
        ("1", "c1", "executive", 88, 60, None, True, AS_OF),
        ("2", "c1", "manager", 50, 40, None, False, None),
        ("3", "c1", "practitioner", 30, 10, None, False, None),   # not engaged: no user role
        ("4", "c1", "student", 20, 80, "student", False, None),   # disqualified: not engaged
        ("5", "c2", "director", 70, 30, None, False, None),
        ("6", "c2", "executive", 70, 50, None, False, None),      # same score: the smaller id is best
        ("7", None, "executive", 95, 90, None, False, None),      # no company: no account
        ("8", " ", "manager", 60, 90, None, False, None),         # blank company: no account
    )
    view = account_view(members, model).set_index("company_id")
    assert list(view.index) == ["c1", "c2"]
    c1, c2 = view.loc["c1"], view.loc["c2"]
    assert (c1["leads"], c1["engaged"], c1["roles"], c1["personas"]) == (4, 2, "decider;influencer", "executive;manager")
    assert (c1["best_record_id"], c1["best_score"], c1["company_score"]) == ("1", 88.0, 98)
    assert c1["committee"] == "2 engaged of 4 leads: decider (executive), influencer (manager); best lead 88"
    assert (c2["roles"], c2["personas"], c2["best_record_id"], c2["company_score"]) == (
        "decider", "executive;director", "5", 75)
    assert c2["committee"] == ("2 engaged of 2 leads: decider (executive, vice president / head / director); "
                               "best lead 70")


def test_account_view_roles_follow_the_configured_authorities():
    model = _model(roles={"decider": ["decider", "influencer"], "influencer": [], "user": ["user"]}, role_points=10)
    members = _members(("1", "c1", "manager", 60, 50, None, False, None),
                       ("2", "c1", "practitioner", 40, 50, None, False, None))
    row = account_view(members, model).iloc[0]
    assert (row["roles"], row["company_score"]) == ("decider;user", 80)


def test_account_view_of_leads_without_companies_is_empty(model):
    view = account_view(_members(("1", None, "executive", 90, 90, None, True, AS_OF)), model)
    assert view.empty and "company_score" in view.columns


# --- the wait for a second persona ---------------------------------------------------------------
@pytest.mark.parametrize("case, rows, waits", [
    ("off by default: nobody waits", None, 0),
    ("alone at the company", [("1", "c1", "executive", 80, 60, None, True, AS_OF)], 1),
    ("a second engaged persona", [("1", "c1", "executive", 80, 60, None, True, AS_OF),
                                  ("2", "c1", "manager", 40, 30, None, False, None)], 0),
    ("the colleague is not engaged", [("1", "c1", "executive", 80, 60, None, True, AS_OF),
                                      ("2", "c1", "manager", 40, 10, None, False, None)], 1),
    ("the colleague has the same persona", [("1", "c1", "executive", 80, 60, None, True, AS_OF),
                                            ("2", "c1", "executive", 40, 50, None, False, None)], 1),
    ("the colleague is no buyer", [("1", "c1", "executive", 80, 60, None, True, AS_OF),
                                   ("2", "c1", "student", 40, 50, None, False, None)], 1),
    ("the colleague works elsewhere", [("1", "c1", "executive", 80, 60, None, True, AS_OF),
                                       ("2", "c2", "manager", 40, 50, None, False, None)], 1),
    ("no company", [("1", None, "executive", 80, 60, None, True, AS_OF)], 1),
    ("already handed over earlier", [("1", "c1", "executive", 80, 60, None, True, EARLIER)], 0),
    ("two ready personas hand each other over", [("1", "c1", "executive", 80, 60, None, True, AS_OF),
                                                 ("2", "c1", "practitioner", 75, 40, None, True, AS_OF)], 0),
])
def test_wait_for_a_second_engaged_persona(model, waiting_model, case, rows, waits):
    if rows is None:
        members = _members(("1", "c1", "executive", 80, 60, None, True, AS_OF))
        out, n = wait_for_committee(members, model, AS_OF)
        assert n == 0 and out is members
        return
    members = _members(*rows)
    out, n = wait_for_committee(members, waiting_model, AS_OF)
    assert n == waits, case
    lead = out.iloc[0]
    if waits:
        assert not lead["sales_ready"] and np.isnan(lead["sales_ready_since"])
        assert lead["sales_ready_reason"] == f"{WAITING}; score 80 >= 70"
    else:
        assert lead["sales_ready"] and lead["sales_ready_reason"] == "score 80 >= 70"
    assert len(out) == len(members)


def test_a_waiting_lead_under_auto_sql_stays_at_mql_and_loses_the_handoff_status():
    doc = default_dict()
    doc["accounts"] = {"handoff_waits_for_second_persona": True}
    doc["stages"]["sql"]["auto"] = True
    doc["lead_status"]["sales_ready"] = "new"
    from leadflow.qualify import model_from_dict

    model = model_from_dict(doc)
    members = _members(("1", "c1", "executive", 80, 60, None, True, AS_OF),
                       ("2", "c2", "executive", 80, 60, None, True, AS_OF))
    members["stage"] = "sql"
    members["lead_status"] = "new"
    members.loc[1, "lifecycle_stage"] = "sql"  # the CRM already holds SQL: the stage stays
    out, n = wait_for_committee(members, model, AS_OF)
    assert n == 2
    assert list(out["stage"]) == ["mql", "sql"]
    assert list(out["lead_status"]) == ["open", "open"]


# --- config ----------------------------------------------------------------------------------------
def test_default_model_has_the_accounts_block_with_the_wait_off():
    accounts = load_model().accounts
    assert accounts.roles.role_of() == {"decider": "decider", "influencer": "influencer", "user": "user"}
    assert accounts.engaged_min_engagement == 25 and accounts.role_points == 5
    assert accounts.handoff_waits_for_second_persona is False


@pytest.mark.parametrize("accounts, message", [
    ({"roles": {"decider": ["decider"], "influencer": ["decider"], "user": ["user"]}},
     "accounts.roles.influencer: 'decider' also counts as decider"),
    ({"roles": {"decider": ["none"], "influencer": [], "user": []}},
     "accounts.roles.decider: 'none' is the non-buyers' authority"),
    ({"roles": {"decider": ["boss"]}}, "accounts.roles.decider[0]:"),
    ({"engaged_min_engagement": 101}, "accounts.engaged_min_engagement:"),
    ({"engaged_min_engagement": "25"}, "accounts.engaged_min_engagement:"),
    ({"role_points": -1}, "accounts.role_points:"),
    ({"handoff_waits_for_second_persona": "yes"}, "accounts.handoff_waits_for_second_persona:"),
    ({"wait": True}, "accounts.wait: unknown key"),
])
def test_bad_accounts_config_fails_naming_the_key(tmp_path, accounts, message):
    doc = default_dict()
    doc["accounts"] = accounts
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with pytest.raises(ModelConfigError) as info:
        load_model(path)
    assert message in str(info.value)
