"""The handoff to sales: leadflow moves leads up to MQL and hands sales-ready ones over; sales
sets SQL (unless the model says `stages.sql.auto`)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from qualify_helpers import NOW, days_ago, default_dict, lead, make_leads, model_from

from leadflow.qualify import ModelConfigError, model_from_dict, score_leads
from leadflow.qualify.handoff import carry_since

HOT = dict(
    job_title="CEO", industry="Software", employees=200, annual_revenue=50_000_000, budget_range=">100k",
    timeframe="this_quarter", pain_point="forecasting takes days", page_views=20, visits=5,
    demo_requested_at=days_ago(1), last_activity_at=days_ago(1),
)
COLD = dict(job_title="Engineer", industry="Retail", employees=30)
NOW_MS = int(pd.Timestamp(NOW).value // 1_000_000)


def _frame(model, *rows, now=NOW):
    return score_leads(make_leads(list(rows)), model, now)


def _model(**changes):
    doc = default_dict()
    for path, value in changes.items():
        section, key = path.split("__")
        target = doc["stages"]["sql"] if section == "sql" else doc[section]
        target[key] = value
    return model_from(doc)


def test_given_default_model_then_a_sales_ready_lead_stays_mql_and_is_handed_over(default_model):
    frame = _frame(default_model, lead(**HOT), lead(**HOT, lifecycle_stage="lead"), lead(**COLD))
    assert list(frame["stage"]) == ["mql", "mql", "subscriber"]
    assert list(frame["sales_ready"]) == [True, True, False]
    assert list(frame["sales_ready_since"][:2]) == [NOW_MS, NOW_MS]
    assert np.isnan(frame.loc[2, "sales_ready_since"])
    assert frame.loc[2, "sales_ready_reason"] is None


def test_given_default_model_then_leadflow_never_sets_sql(default_model):
    frame = _frame(default_model, *[lead(**HOT, lifecycle_stage=s) for s in (None, "subscriber", "lead", "mql")])
    assert "sql" not in set(frame["stage"])
    assert frame["sales_ready"].all()


def test_given_a_lead_sales_already_moved_to_sql_then_its_stage_stays_sql(default_model):
    frame = _frame(default_model, lead(**HOT, lifecycle_stage="sql"), lead(**COLD, lifecycle_stage="sql"))
    assert list(frame["stage"]) == ["sql", "sql"]  # never backwards
    assert list(frame["sales_ready"]) == [True, False]


def test_given_sql_auto_then_leadflow_sets_sql():
    model = _model(sql__auto=True)
    frame = _frame(model, lead(**HOT), lead(**HOT, lifecycle_stage="mql"), lead(**COLD))
    assert list(frame["stage"]) == ["sql", "sql", "subscriber"]
    assert list(frame["sales_ready"]) == [True, True, False]


def test_given_a_sales_ready_lead_then_the_reason_names_score_bant_and_persona(default_model):
    frame = _frame(default_model, lead(**HOT))
    reason = frame.loc[0, "sales_ready_reason"]
    score = int(frame.loc[0, "score"])
    assert reason == f"score {score} >= 70; BANT 4 of 4 (budget, authority, need, timeline); persona executive"


def test_given_a_disqualified_or_sales_owned_lead_then_it_is_not_handed_over(default_model):
    frame = _frame(
        default_model,
        lead(**HOT, email_domain="forecastly.com"),  # competitor
        lead(**HOT, lifecycle_stage="opportunity"),
        lead(**HOT, lifecycle_stage="customer"),
    )
    assert list(frame["sales_ready"]) == [False, False, False]
    assert frame["sales_ready_reason"].isna().all()


def test_given_no_sales_ready_status_then_a_handed_over_lead_gets_the_usual_status(default_model):
    frame = _frame(default_model, lead(**HOT), lead(**HOT, lead_status="connected"))
    assert list(frame["lead_status"]) == ["open", "connected"]


def test_given_a_sales_ready_status_then_a_handed_over_lead_gets_it_and_sales_statuses_are_kept():
    model = _model(lead_status__sales_ready="new")
    frame = _frame(model, lead(**HOT), lead(**HOT, lead_status="in_progress"),
                   lead(**{**HOT, "budget_range": "<5k", "pain_point": None}))  # BANT 2 of 4: MQL
    assert list(frame["sales_ready"]) == [True, True, False]
    assert list(frame["lead_status"]) == ["new", "in_progress", "open"]


def test_given_an_unknown_sales_ready_status_then_the_config_error_names_the_key():
    doc = default_dict()
    doc["lead_status"]["sales_ready"] = "in_progress"
    with pytest.raises(ModelConfigError) as info:
        model_from_dict(doc)
    assert "lead_status.sales_ready: Input should be 'new' or 'open'" in str(info.value)


def test_given_a_misspelt_auto_key_then_the_config_error_names_it():
    doc = default_dict()
    doc["stages"]["sql"]["atuo"] = True
    with pytest.raises(ModelConfigError) as info:
        model_from_dict(doc)
    assert "stages.sql.atuo: unknown key" in str(info.value)


def test_given_auto_on_another_stage_then_the_config_error_names_it():
    doc = default_dict()
    doc["stages"]["mql"]["auto"] = True
    with pytest.raises(ModelConfigError) as info:
        model_from_dict(doc)
    assert "stages.mql.auto: unknown key" in str(info.value)


# --- since when: the first run that found the lead sales-ready ---------------------------------------


def _scores(ids, ready, since):
    return pd.DataFrame({"record_id": ids, "sales_ready": ready,
                         "sales_ready_since": [np.nan if s is None else float(s) for s in since]})


def test_given_a_lead_that_stays_sales_ready_then_since_is_stable_across_runs(default_model):
    first = _frame(default_model, lead(**HOT), lead(**COLD))
    later = NOW + timedelta(days=3)
    second = _frame(default_model, lead(**HOT, lifecycle_stage="mql"), lead(**COLD), now=later)
    assert second.loc[0, "sales_ready_since"] == NOW_MS + 3 * 86_400_000  # as scored
    carried = carry_since(second, first)
    assert carried[0] == NOW_MS  # the first run that found it sales-ready
    assert np.isnan(carried[1])


def test_given_a_lead_that_stopped_being_sales_ready_then_it_is_handed_over_anew():
    previous = _scores(["1", "2"], [False, True], [None, 100])
    now = _scores(["1", "2"], [True, False], [500, None])
    carried = carry_since(now, previous)
    assert carried[0] == 500
    assert np.isnan(carried[1])


def test_given_no_previous_scores_then_since_comes_from_the_crm():
    now = _scores(["1", "2", "3"], [True, True, False], [500, 500, None])
    crm = pd.Series({"1": 100.0, "3": 50.0})
    carried = carry_since(now, now.iloc[0:0], crm)
    assert list(carried[:2]) == [100, 500]
    assert np.isnan(carried[2])


def test_given_previous_scores_then_they_win_over_the_crm():
    previous = _scores(["1", "2"], [True, False], [200, None])
    now = _scores(["1", "2"], [True, True], [500, 500])
    carried = carry_since(now, previous, pd.Series({"1": 100.0, "2": 100.0}))
    assert list(carried) == [200, 500]  # "2" was scored before and not sales-ready: handed over now


def test_given_a_rerun_the_same_day_then_leads_already_sales_ready_are_not_counted_as_handed_over_again():
    from leadflow.qualify.handoff import PREVIOUS_COLUMNS, settle_handoffs

    # The previous scores as qualify loads them: their PREVIOUS_COLUMNS only.
    previous = _scores(["1", "2", "3"], [True, False, True], [500, None, 400])[list(PREVIOUS_COLUMNS)]
    # The same day: the engine's "since" for a lead still sales-ready equals the one it holds.
    now = _scores(["1", "2", "3"], [True, True, True], [500, 500, 500])
    no_events = pd.DataFrame(columns=["record_id", "handed_over_at", "verdict", "decided_at"])
    leads = pd.DataFrame({"record_id": ["1", "2", "3"]})
    scores, counts = settle_handoffs(now, previous, leads, no_events, pd.DataFrame(), None)
    assert list(scores["sales_ready_since"]) == [500, 500, 400]
    assert counts["handed_over"] == 1  # only "2" is new for sales
