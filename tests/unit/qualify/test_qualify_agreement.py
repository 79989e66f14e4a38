"""The vectorised engine agrees with the row-by-row reference on generated leads."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qualify_helpers import NOW, assert_agrees, default_dict, make_leads, model_from
from qualify_reference import score_frame
from qualify_synthetic import generate_leads

from leadflow.qualify import evaluate, to_frame

TITLES = [
    "CEO", "VP Sales", "Head of Marketing", "IT Manager", "Engineer", "Student", "Intern",
    "Recruiter", "Job Applicant", "Journalist", "Chief Revenue Officer", "Director of IT",
    "Sales Representative", "Team Lead", "Nurse", "Chef", "Student Assistant to the CEO",
    "  vp   marketing ", "HEAD OF SALES", "Account Executive", "Owner", "",
]
INDUSTRIES = ["Software", " software ", "SAAS", "Retail", "Government", "Education", "Media", ""]
COUNTRIES = ["US", "us", "Germany", "BR", "KP", "", "United States"]
BUDGETS = ["<5k", "5k-25k", "25k-100k", ">100k", " >100K ", ""]
TIMEFRAMES = ["this_quarter", "6_months", "12_months", "just_researching", "THIS_QUARTER"]
STAGES = ["subscriber", "lead", "mql", "sql", "MQL", " Lead", "opportunity", "customer",
          "evangelist", "other", "unknown_stage", ""]
STATUSES = ["new", "open", "in_progress", "nurture", "unqualified", "connected", "open_deal", ""]
DOMAINS = ["acme.com", "gmail.com", "forecastly.com", "mit.edu", "ox.ac.uk", "PipelinePro.io",
           "mailinator.com", "tum.de"]
PAIN = [
    "slow", "none", "Not interested", "reporting", "no need for another tool",
    "Our forecasting is done in spreadsheets and pipeline reviews take hours every week",
    "we have no visibility into which campaigns create revenue and attribution is a mess "
    "because sales and marketing disagree on lead quality and the CRM data is incomplete",
]
COMMENTS = ["just researching for now", "Please send pricing", "I want to apply for a job",
            "Press inquiry for an article", "no plans yet", "Interested in a demo", ""]
TECH = ["Salesforce", "HubSpot", "dbt", "snowflake", "Jira", "WordPress"]

words = st.lists(st.sampled_from(["pipeline", "data", "we", "need", "the", "forecast", "x"]),
                 min_size=0, max_size=40).map(" ".join)
free_text = st.one_of(st.none(), st.text(max_size=30), words)


def _text(pool: list[str]) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(pool), st.text(max_size=12))


def _number(boundaries: list[float], hi: float) -> st.SearchStrategy:
    return st.one_of(st.none(), st.sampled_from(boundaries),
                     st.floats(min_value=0, max_value=hi, allow_nan=False))


def _counter() -> st.SearchStrategy:
    return st.one_of(st.none(), st.integers(0, 30).map(float),
                     st.floats(min_value=-2, max_value=50, allow_nan=False))


# Ages around the default model's decay and window boundaries (days), plus future times.
_timestamps = st.one_of(
    st.none(),
    st.builds(
        lambda d, s: pd.Timestamp(NOW - timedelta(days=d, seconds=s)),
        st.sampled_from([-3, 0, 14, 30, 45, 60, 89, 90, 91, 120, 180, 365, 366, 800]),
        st.integers(-60, 60),
    ),
)
_bool = st.one_of(st.none(), st.booleans())

lead_rows = st.fixed_dictionaries(
    {
        "job_title": _text(TITLES),
        "industry": _text(INDUSTRIES),
        "country": _text(COUNTRIES),
        "employees": _number([5, 9, 10, 19, 20, 49, 50, 200, 4999, 5000], 1e6),
        "annual_revenue": _number([5e5, 1e6, 1e7, 1e8, 1e9, 5e9], 1e10),
        "budget_range": _text(BUDGETS),
        "timeframe": _text(TIMEFRAMES),
        "lifecycle_stage": _text(STAGES),
        "lead_status": _text(STATUSES),
        "pain_point": st.one_of(st.sampled_from(PAIN), free_text),
        "form_comments": st.one_of(st.sampled_from(COMMENTS), free_text),
        "page_views": _counter(),
        "visits": _counter(),
        "pricing_page_views": _counter(),
        "email_clicks": _counter(),
        "content_downloads": _counter(),
        "form_submissions": _counter(),
        "demo_requested_at": _timestamps,
        "trial_started_at": _timestamps,
        "webinar_attended_at": _timestamps,
        "last_activity_at": _timestamps,
        "do_not_contact": _bool,
        "is_free_email": _bool,
        "is_disposable_email": _bool,
        "email_domain": st.one_of(st.none(), st.sampled_from(DOMAINS)),
        "company_domain": st.one_of(st.none(), st.sampled_from(DOMAINS)),
        "technologies": st.one_of(
            st.none(), st.lists(st.sampled_from(TECH), max_size=4).map(lambda t: " ; ".join(t))
        ),
    }
)
predictive_values = st.one_of(st.just(np.nan), st.floats(min_value=-10, max_value=120, allow_nan=False))


def _variant_model():
    """Exercises what the default model leaves out: blending, floors, weighted BANT, shown values,
    leadflow setting SQL itself and a status for handed-over leads."""
    doc = default_dict()
    doc["stages"]["sql"]["auto"] = True
    doc["lead_status"]["sales_ready"] = "new"
    doc["predictive"] = {"enabled": True, "weight": 0.35}
    doc["bant"]["weights"] = {"budget": 0.5, "authority": 1.5, "need": 1.0, "timeline": 0.75}
    doc["bant"]["advance_threshold"] = 2.25
    doc["engagement"]["groups"][0]["min"] = -3
    doc["engagement"]["groups"][0]["rules"].append(
        {"id": "bounce", "label": "bounced visits", "field": "visits", "per_unit": True,
         "points": -3, "max_points": 9, "below": 3}
    )
    doc["signals"]["groups"][0]["rules"].append(
        {"id": "decider_budget", "label": "decider with budget", "show": "budget_range",
         "all": [{"field": "seniority", "in": ["executive", "director"]},
                 {"field": "budget_range", "missing": False}], "points": 3}
    )
    return model_from(doc)


VARIANT = _variant_model()
# database=None: never write hypothesis' example database into the working directory.
SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(rows=st.lists(lead_rows, min_size=1, max_size=50))
def test_engine_matches_reference_on_generated_leads_with_default_model(rows, default_model):
    leads = make_leads(rows)
    evaluation = evaluate(leads, default_model, NOW)
    assert_agrees(to_frame(evaluation), evaluation, score_frame(leads, default_model, NOW), leads)


@SETTINGS
@given(rows=st.lists(st.tuples(lead_rows, predictive_values), min_size=1, max_size=50),
       text_dtype=st.sampled_from(["object", "str", "category"]))
def test_engine_matches_reference_with_blending_weighted_bant_and_floors(rows, text_dtype):
    leads = make_leads([r for r, _ in rows], text_dtype=text_dtype)
    predictive = pd.Series([p for _, p in rows], index=leads.index)
    evaluation = evaluate(leads, VARIANT, NOW, predictive)
    reference = score_frame(leads, VARIANT, NOW, predictive)
    assert_agrees(to_frame(evaluation), evaluation, reference, leads)


@pytest.mark.parametrize("text_dtype", ["object", "str", "category"])
def test_engine_matches_reference_on_thousands_of_synthetic_leads(text_dtype, default_model):
    leads = generate_leads(2000, seed=11, now=NOW, text_dtype=text_dtype)
    evaluation = evaluate(leads, default_model, NOW)
    assert_agrees(to_frame(evaluation), evaluation, score_frame(leads, default_model, NOW), leads)
