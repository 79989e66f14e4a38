"""Focused tests: one behaviour of the default model (or a small variant) per test."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from qualify_helpers import NOW, days_ago, default_dict, lead, make_leads, model_from, reasons_of

from leadflow.qualify import evaluate, render_reasons, score_leads
from leadflow.schema import SCORE_COLUMNS


def _score(model, *rows, now=NOW, predictive=None):
    leads = make_leads(list(rows))
    evaluation = evaluate(leads, model, now, predictive)
    return evaluation, score_leads(leads, model, now, predictive)


def _reasons(model, row, now=NOW) -> dict[str, int]:
    evaluation, _ = _score(model, row, now=now)
    return dict(reasons_of(evaluation, 0))


# --- outputs -----------------------------------------------------------------------------------


def test_output_has_score_columns_first_and_records_model_version(default_model):
    _, frame = _score(default_model, lead(), lead(job_title="CEO"))
    assert list(frame.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    assert set(frame["model_version"]) == {default_model.version}
    assert frame["score"].between(0, 100).all() and (frame["score"] % 1 == 0).all()
    assert frame["bant_budget"].dtype == bool
    assert frame["grade"].dtype == object


def test_missing_optional_columns_count_as_missing(default_model):
    leads = make_leads([lead(job_title="CEO")]).drop(
        columns=["email_domain", "company_domain", "is_free_email", "is_disposable_email", "technologies",
                 "pain_point", "demo_requested_at"]
    )
    frame = score_leads(leads, default_model, NOW)
    assert frame.loc[0, "disqualification_reason"] is None
    assert frame.loc[0, "fit_score"] == 50  # 25 decider + 5 small company = 30 of 60


def test_naive_now_is_rejected(default_model):
    with pytest.raises(ValueError, match="timezone-aware"):
        score_leads(make_leads([lead()]), default_model, datetime(2025, 1, 1))


def test_index_of_the_input_is_kept(default_model):
    leads = make_leads([lead(), lead(job_title="CEO")])
    leads.index = pd.Index([10, 20])
    frame = score_leads(leads, default_model, NOW)
    assert list(frame.index) == [10, 20]


# --- personas (fit: demographics) -----------------------------------------------------------------


def test_decider_title_adds_points_and_shows_the_title(default_model):
    evaluation, frame = _score(default_model, lead(job_title="VP Sales"))
    assert dict(reasons_of(evaluation, 0))["decider_title"] == 25
    assert "+25 decider title: VP Sales" in frame.loc[0, "reasons"]
    assert frame.loc[0, "persona"] == "director" and frame.loc[0, "authority"] == "decider"


def test_influencer_without_authority_is_kept_not_disqualified(default_model):
    _, frame = _score(default_model, lead(job_title="Marketing Manager", timeframe="this_quarter"))
    row = frame.loc[0]
    assert row["authority"] == "influencer"
    assert not row["bant_authority"]
    assert row["disqualification_reason"] is None
    assert row["lead_status"] != "unqualified"


def test_first_matching_persona_wins(default_model):
    _, frame = _score(default_model, lead(job_title="Student Assistant to the CEO"))
    assert frame.loc[0, "persona"] == "student"
    assert frame.loc[0, "disqualification_reason"] == "student"


def test_title_patterns_ignore_case_and_extra_blanks(default_model):
    _, frame = _score(default_model, lead(job_title="  head OF   marketing "), lead(job_title="cEo"))
    assert list(frame["persona"]) == ["director", "executive"]


# --- firmographics -------------------------------------------------------------------------------


def test_target_and_poor_fit_industries_add_and_subtract_case_insensitively(default_model):
    assert _reasons(default_model, lead(industry=" software "))["target_industry"] == 10
    assert _reasons(default_model, lead(industry="Government"))["poor_fit_industry"] == -10
    assert "target_industry" not in _reasons(default_model, lead(industry="Retail"))


@pytest.mark.parametrize(
    ("employees", "rule", "points"),
    [(9, "size_micro", -10), (10, "size_small", 5), (49, "size_small", 5), (50, "size_core", 15),
     (4999, "size_core", 15), (5000, "size_enterprise", 10)],
)
def test_company_size_bands_include_lower_and_exclude_upper_bound(default_model, employees, rule, points):
    reasons = _reasons(default_model, lead(employees=employees))
    assert reasons[rule] == points
    assert sum(1 for r in reasons if r.startswith("size_")) == 1


def test_revenue_bands_and_missing_revenue(default_model):
    assert _reasons(default_model, lead(annual_revenue=10_000_000))["revenue_core"] == 10
    assert _reasons(default_model, lead(annual_revenue=999_999))["revenue_tiny"] == -5
    assert not any(r.startswith("revenue") for r in _reasons(default_model, lead(annual_revenue=None)))


def test_country_and_technology_rules(default_model):
    reasons = _reasons(default_model, lead(country="de", technologies="Jira; salesforce ;dbt"))
    assert reasons["target_country"] == 5
    assert reasons["uses_crm"] == 5 and reasons["uses_data_stack"] == 5
    assert _reasons(default_model, lead(country="KP"))["unsupported_country"] == -15


def test_free_email_domain_subtracts_points(default_model):
    evaluation, frame = _score(default_model, lead(is_free_email=True))
    assert dict(reasons_of(evaluation, 0))["free_email"] == -10
    assert "-10 free email domain" in frame.loc[0, "reasons"]


# --- engagement: per-unit points, caps, decay --------------------------------------------------------


def test_per_unit_points_are_limited_by_max_points(default_model):
    recent = days_ago(0)
    assert _reasons(default_model, lead(page_views=3, last_activity_at=recent))["page_views"] == 3
    assert _reasons(default_model, lead(page_views=50, last_activity_at=recent))["page_views"] == 8


def test_group_cap_limits_points_with_a_cap_reason(default_model):
    reasons = _reasons(
        default_model, lead(page_views=20, visits=5, pricing_page_views=3, last_activity_at=days_ago(0))
    )
    assert (reasons["page_views"], reasons["visits"], reasons["pricing_page"]) == (8, 6, 8)
    assert reasons["cap_web"] == 15 - 22


def test_group_floor_limits_negative_points(default_model):
    doc = default_dict()
    doc["engagement"]["groups"][-1]["rules"].append(
        {"id": "never_opened", "label": "never clicked", "field": "email_clicks", "at_least": 0,
         "below": 1, "points": -10}
    )
    model = model_from(doc)
    reasons = _reasons(model, lead(email_clicks=0, last_activity_at=days_ago(200)))
    assert (reasons["inactive_90d"], reasons["never_opened"], reasons["cap_inactivity"]) == (-10, -10, 5)


@pytest.mark.parametrize(("age_days", "points"), [(0, 20), (30, 10), (60, 5), (90, 3), (120, 1), (121, None)])
def test_demo_request_points_halve_every_half_life_and_expire(default_model, age_days, points):
    reasons = _reasons(default_model, lead(demo_requested_at=days_ago(age_days)))
    assert reasons.get("demo_requested") == points


def test_same_lead_scores_lower_when_scored_later(default_model):
    row = lead(demo_requested_at=pd.Timestamp("2025-05-01T00:00:00Z"))
    early = _reasons(default_model, row, now=pd.Timestamp("2025-05-01T00:00:00Z").to_pydatetime())
    late = _reasons(default_model, row, now=pd.Timestamp("2025-05-31T00:00:00Z").to_pydatetime())
    assert (early["demo_requested"], late["demo_requested"]) == (20, 10)


def test_counter_decay_uses_last_activity_and_no_timestamp_means_no_decay(default_model):
    assert _reasons(default_model, lead(pricing_page_views=2, last_activity_at=days_ago(14)))["pricing_page"] == 4
    assert _reasons(default_model, lead(pricing_page_views=2, last_activity_at=None))["pricing_page"] == 8
    assert "pricing_page" not in _reasons(default_model, lead(pricing_page_views=2, last_activity_at=days_ago(91)))


def test_future_event_timestamps_count_as_now(default_model):
    assert _reasons(default_model, lead(trial_started_at=days_ago(-5)))["trial_started"] == 15


def test_inactivity_subtracts_points(default_model):
    assert _reasons(default_model, lead(last_activity_at=days_ago(91)))["inactive_90d"] == -10
    assert "inactive_90d" not in _reasons(default_model, lead(last_activity_at=days_ago(90)))


# --- red flags and positive signs -------------------------------------------------------------------


def test_short_pain_point_is_a_red_flag_and_detailed_one_a_positive_sign(default_model):
    assert _reasons(default_model, lead(pain_point="too slow"))["short_pain_point"] == -8
    detailed = " ".join(["our pipeline reviews take hours"] * 5)
    assert _reasons(default_model, lead(pain_point=detailed))["detailed_pain_point"] == 8
    assert "short_pain_point" not in _reasons(default_model, lead(pain_point=None))


def test_detailed_form_comments_are_a_positive_sign(default_model):
    assert _reasons(default_model, lead(form_comments=" ".join(["word"] * 30)))["detailed_comments"] == 4


def test_large_company_with_tiny_budget_is_inconsistent(default_model):
    reasons = _reasons(default_model, lead(annual_revenue=200_000_000, budget_range="<5k"))
    assert reasons["budget_inconsistent_large"] == -6
    reasons = _reasons(default_model, lead(employees=5, budget_range=">100k"))
    assert reasons["budget_inconsistent_small"] == -6


def test_urgent_timeframe_contradicting_just_researching_is_a_red_flag(default_model):
    reasons = _reasons(default_model, lead(timeframe="this_quarter", form_comments="Just researching options"))
    assert reasons["timeframe_contradiction"] == -6
    assert "timeframe_contradiction" not in _reasons(default_model, lead(timeframe="this_quarter"))


# --- BANT ----------------------------------------------------------------------------------------------


def test_each_bant_criterion_is_met_by_its_conditions(default_model):
    _, frame = _score(
        default_model,
        lead(budget_range="25k-100k"),
        lead(budget_range=None, annual_revenue=20_000_000),  # no answer: company size as hint
        lead(budget_range="<5k", annual_revenue=20_000_000),  # stated tiny budget wins
        lead(job_title="CFO"),
        lead(pain_point="forecast accuracy"),
        lead(timeframe="6_months"),
        lead(timeframe="just_researching"),
    )
    assert list(frame["bant_budget"]) == [True, True, False, False, False, False, False]
    assert frame.loc[3, "bant_authority"] and not frame.loc[0, "bant_authority"]
    assert frame.loc[4, "bant_need"]
    assert list(frame["bant_timeline"][5:]) == [True, False]


def test_bant_advances_at_three_of_four_by_default(default_model):
    three = lead(job_title="CEO", budget_range=">100k", timeframe="this_quarter")
    evaluation, frame = _score(default_model, three, {**three, "timeframe": None})
    assert list(frame["bant_count"]) == [3, 2]
    assert list(evaluation.bant_advanced) == [True, False]


def test_bant_weights_let_two_heavy_criteria_advance():
    doc = default_dict()
    doc["bant"]["weights"] = {"budget": 1.5, "authority": 1.5, "need": 0.5, "timeline": 0.5}
    model = model_from(doc)
    evaluation, frame = _score(model, lead(job_title="CEO", budget_range=">100k"))
    assert frame.loc[0, "bant_count"] == 2 and frame.loc[0, "bant_weight"] == 3.0
    assert evaluation.bant_advanced[0]


def test_bant_points_count_towards_the_score(default_model):
    reasons = _reasons(default_model, lead(budget_range="5k-25k", timeframe="6_months"))
    assert (reasons["bant_budget"], reasons["bant_timeline"]) == (5, 5)


# --- disqualifiers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"do_not_contact": True}, "do_not_contact"),
        ({"email_domain": "Forecastly.com"}, "competitor"),
        ({"company_domain": "revgauge.com"}, "competitor"),
        ({"is_disposable_email": True}, "disposable_email"),
        ({"job_title": "Job Applicant"}, "job_applicant"),
        ({"form_comments": "Attached is my CV for the role"}, "job_applicant"),
        ({"job_title": "Senior Recruiter"}, "recruiter"),
        ({"job_title": "Marketing Intern"}, "student"),
        ({"email_domain": "cs.stanford.edu"}, "student"),
        ({"job_title": "Tech Journalist"}, "journalist"),
        ({"form_comments": "Press inquiry about your funding"}, "journalist"),
        ({"pain_point": "none"}, "no_need"),
        ({"pain_point": "We don't need a tool for that"}, "no_need"),
        ({"job_title": "Head Chef"}, "persona_mismatch"),
    ],
)
def test_each_disqualifier_sets_its_reason_code_and_unqualified_status(default_model, overrides, code):
    evaluation, frame = _score(default_model, lead(lifecycle_stage="lead", **overrides))
    row = frame.loc[0]
    assert row["disqualification_reason"] == code
    assert row["lead_status"] == "unqualified"
    assert row["stage"] == "lead"
    assert dict(reasons_of(evaluation, 0))[code] < 0


def test_competitor_domain_shows_as_negative_reason(default_model):
    _, frame = _score(default_model, lead(job_title="CEO", email_domain="pipelinepro.io"))
    assert "-30 competitor domain" in frame.loc[0, "reasons"]


def test_first_matching_disqualifier_names_the_reason_but_all_cost_points(default_model):
    evaluation, frame = _score(default_model, lead(do_not_contact=True, is_disposable_email=True))
    assert frame.loc[0, "disqualification_reason"] == "do_not_contact"
    reasons = dict(reasons_of(evaluation, 0))
    assert (reasons["do_not_contact"], reasons["disposable_email"]) == (-50, -30)


def test_missing_title_is_not_a_persona_mismatch(default_model):
    _, frame = _score(default_model, lead(job_title=None), lead(job_title="   "))
    assert list(frame["disqualification_reason"]) == [None, None]


def test_do_not_contact_false_or_missing_does_not_disqualify(default_model):
    _, frame = _score(default_model, lead(do_not_contact=False), lead(do_not_contact=None))
    assert list(frame["disqualification_reason"]) == [None, None]


# --- nurture, grades, blend -------------------------------------------------------------------------------


def test_fit_lead_without_timeline_goes_to_nurture(default_model):
    fit = lead(job_title="CEO", industry="Software", employees=200, annual_revenue=50_000_000)
    _, frame = _score(default_model, fit, {**fit, "timeframe": "just_researching"},
                      {**fit, "timeframe": "this_quarter"}, lead(job_title="Engineer"))
    assert list(frame["lead_status"]) == ["nurture", "nurture", "open", "new"]
    assert frame.loc[0, "fit_score"] >= 50 and frame.loc[3, "fit_score"] < 50


def test_nurture_caps_the_proposed_stage_at_mql(default_model):
    ready = lead(job_title="CEO", industry="Software", employees=200, annual_revenue=50_000_000,
                 budget_range=">100k", pain_point="forecasting takes days", page_views=20, visits=5,
                 demo_requested_at=days_ago(1), last_activity_at=days_ago(1))
    _, frame = _score(default_model, ready, {**ready, "timeframe": "this_quarter"})
    assert list(frame["lead_status"]) == ["nurture", "open"]
    assert list(frame["proposed_stage"]) == ["mql", "sql"]
    assert list(frame["sales_ready"]) == [False, True]  # nurtured leads are not handed over


def test_nurture_can_be_disabled():
    doc = default_dict()
    doc["nurture"]["enabled"] = False
    _, frame = _score(model_from(doc), lead(job_title="CEO", industry="Software", employees=200))
    assert frame.loc[0, "lead_status"] == "open"  # score 70 >= MQL: open for sales


@pytest.mark.parametrize(
    ("row", "grade"),
    [
        (lead(job_title="CEO", industry="Software", employees=200, annual_revenue=5e7, country="US",
              technologies="HubSpot;dbt", demo_requested_at=days_ago(0), page_views=20, visits=5,
              pricing_page_views=3, email_clicks=4, content_downloads=3, form_submissions=2,
              last_activity_at=days_ago(0)), "A1"),
        (lead(job_title=None, employees=3, is_free_email=True), "D4"),
        (lead(job_title="CEO", industry="Software", employees=200, page_views=8, visits=1,
              last_activity_at=days_ago(0)), "A3"),
    ],
)
def test_grade_combines_fit_letter_and_engagement_digit(default_model, row, grade):
    _, frame = _score(default_model, row)
    assert frame.loc[0, "grade"] == grade


def test_predictive_score_is_blended_with_an_explicit_blend_reason():
    doc = default_dict()
    doc["predictive"] = {"enabled": True, "weight": 0.2}
    model = model_from(doc)
    leads = [lead(), lead(), lead()]
    predictive = pd.Series([100.0, np.nan, 0.0])
    evaluation, frame = _score(model, *leads, predictive=predictive)
    base = int(frame.loc[1, "score"])  # no predictive score: unchanged
    assert frame.loc[0, "score"] == np.floor(0.8 * base + 20 + 0.5)
    assert dict(reasons_of(evaluation, 0))["blend"] == frame.loc[0, "score"] - base
    assert "blend" not in dict(reasons_of(evaluation, 1))
    assert "predictive blend (20%)" in frame.loc[2, "reasons"]


def test_blend_reason_shows_the_predictive_top_factors_and_still_adds_up():
    doc = default_dict()
    doc["predictive"] = {"enabled": True, "weight": 0.3}
    model = model_from(doc)
    leads = make_leads([lead(), lead(), lead()])
    predictive = pd.Series([95.0, np.nan, 80.0])
    factors = pd.Series(["Last Activity = SMS Sent +12, Lead Origin = API -4", "ignored", "x" * 400])
    frame = score_leads(leads, model, NOW, predictive, predictive_factors=factors)
    evaluation = evaluate(leads, model, NOW, predictive, factors)
    blend = [r for r in frame.loc[0, "reasons"].split("; ") if "predictive blend" in r]
    assert blend == [f"{dict(reasons_of(evaluation, 0))['blend']:+d} predictive blend (30%): "
                     "Last Activity = SMS Sent +12, Lead Origin = API -4"]
    assert "ignored" not in frame.loc[1, "reasons"]  # no predictive score: no blend, no factors
    long_piece = [r for r in frame.loc[2, "reasons"].split("; ") if "predictive blend" in r][0]
    assert long_piece.endswith("…") and len(long_piece.split(": ", 1)[1]) == 160
    for row in range(3):  # the text's leading points still add up to the score
        pieces = frame.loc[row, "reasons"].split("; ")
        assert sum(int(p.split(" ", 1)[0]) for p in pieces) == frame.loc[row, "score"]


def test_predictive_scores_are_ignored_when_disabled(default_model):
    _, plain = _score(default_model, lead())
    _, given = _score(default_model, lead(), predictive=pd.Series([100.0]))
    assert plain.loc[0, "score"] == given.loc[0, "score"]


def test_predictive_series_is_aligned_by_index():
    doc = default_dict()
    doc["predictive"] = {"enabled": True, "weight": 0.5}
    model = model_from(doc)
    leads = make_leads([lead(), lead()])
    leads.index = pd.Index(["a", "b"])
    frame = score_leads(leads, model, NOW, pd.Series({"b": 100.0, "a": 0.0}))
    assert frame.loc["b", "score"] > frame.loc["a", "score"]


def test_render_reasons_for_selected_rows_only(default_model):
    leads = make_leads([lead(job_title="CEO"), lead(is_free_email=True), lead()])
    evaluation = evaluate(leads, default_model, NOW)
    full = render_reasons(evaluation)
    assert list(render_reasons(evaluation, np.array([False, True, False]))) == [full[1]]
    assert list(render_reasons(evaluation, np.array([2, 0]))) == [full[2], full[0]]
    frame = score_leads(leads, default_model, NOW, render=False)
    assert frame["reasons"].isna().all()
