"""Lifecycle stage proposals and lead statuses: forward only, sales-owned untouched."""

from __future__ import annotations

import pytest
from qualify_helpers import NOW, days_ago, lead, make_leads

from leadflow.qualify import score_leads

HOT = dict(
    job_title="CEO", industry="Software", employees=200, annual_revenue=50_000_000, budget_range=">100k",
    timeframe="this_quarter", pain_point="forecasting takes days", page_views=20, visits=5,
    demo_requested_at=days_ago(1), last_activity_at=days_ago(1),
)
COLD = dict(job_title="Engineer", industry="Retail", employees=30)


def _frame(model, *rows):
    return score_leads(make_leads(list(rows)), model, NOW)


def test_record_without_stage_gets_the_proposed_stage_up_to_mql(default_model):
    frame = _frame(default_model, lead(**COLD), lead(**COLD, form_submissions=1), lead(**HOT))
    assert list(frame["stage"]) == ["subscriber", "lead", "mql"]
    assert list(frame["proposed_stage"]) == ["subscriber", "lead", "sql"]


def test_stage_never_moves_backwards(default_model):
    frame = _frame(default_model, lead(**COLD, lifecycle_stage="sql"), lead(**COLD, lifecycle_stage="MQL"))
    assert list(frame["stage"]) == ["sql", "mql"]
    assert list(frame["proposed_stage"]) == ["subscriber", "subscriber"]


def test_stage_moves_forward_when_the_lead_qualifies(default_model):
    frame = _frame(default_model, lead(**HOT, lifecycle_stage="subscriber"))
    assert frame.loc[0, "stage"] == "mql"


@pytest.mark.parametrize("stage", ["opportunity", "customer", "evangelist", "other", "Customer", "legacy_value"])
def test_sales_owned_and_unknown_stages_and_their_status_are_never_changed(default_model, stage):
    frame = _frame(
        default_model,
        lead(**HOT, lifecycle_stage=stage, lead_status="connected"),
        lead(**COLD, do_not_contact=True, lifecycle_stage=stage, lead_status=None),
    )
    assert list(frame["stage"]) == [stage, stage]
    assert frame.loc[0, "lead_status"] == "connected"
    assert frame.loc[1, "lead_status"] is None
    assert frame.loc[1, "disqualification_reason"] == "do_not_contact"  # reported, not applied


def test_disqualified_lead_keeps_its_stage_even_when_empty(default_model):
    frame = _frame(
        default_model,
        lead(**HOT, email_domain="forecastly.com", lifecycle_stage="mql"),
        lead(**HOT, email_domain="forecastly.com"),
    )
    assert list(frame["stage"]) == ["mql", None]
    assert list(frame["lead_status"]) == ["unqualified", "unqualified"]
    assert list(frame["disqualification_reason"]) == ["competitor", "competitor"]


def test_bottom_of_funnel_action_within_window_makes_an_mql(default_model):
    frame = _frame(
        default_model,
        lead(**COLD, trial_started_at=days_ago(10)),
        lead(**COLD, trial_started_at=days_ago(91)),
    )
    assert list(frame["proposed_stage"]) == ["mql", "subscriber"]


def test_sql_needs_bant_advance_and_a_buyer_persona(default_model):
    frame = _frame(
        default_model,
        lead(**HOT),
        lead(**{**HOT, "budget_range": "<5k", "pain_point": None}),  # BANT 2 of 4
    )
    assert list(frame["proposed_stage"]) == ["sql", "mql"]
    assert list(frame["bant_count"]) == [4, 2]


def test_status_open_from_mql_new_below_and_sales_working_status_kept(default_model):
    frame = _frame(
        default_model,
        lead(**HOT),
        lead(**COLD),
        lead(**COLD, lead_status="in_progress"),
        lead(**COLD, lead_status="unqualified"),  # no longer disqualified: back in play
    )
    assert list(frame["lead_status"]) == ["open", "new", "in_progress", "new"]
