"""Reasons add up exactly to the score, clamp and blend are explicit, rendering is exact."""

from __future__ import annotations

import numpy as np
import pandas as pd
from qualify_helpers import NOW, days_ago, default_dict, lead, make_leads, model_from, reasons_of
from qualify_synthetic import generate_leads

from leadflow.qualify import evaluate, reason_table, render_reasons, to_frame
from leadflow.qualify import reasons as reasons_module


def _blending_model():
    doc = default_dict()
    doc["predictive"] = {"enabled": True, "weight": 0.3}
    return model_from(doc)


def test_reason_points_add_up_to_the_score_for_every_lead(default_model):
    leads = generate_leads(5000, seed=3, now=NOW)
    evaluation = evaluate(leads, default_model, NOW)
    assert np.array_equal(evaluation.points.sum(axis=0, dtype=np.int64), evaluation.score)
    table = reason_table(evaluation)
    per_lead = table.groupby("record_id", sort=False)["points"].sum()
    scores = pd.Series(evaluation.score.astype(np.int64), index=leads["record_id"].astype(object))
    assert per_lead.reindex(scores.index, fill_value=0).equals(scores)


def test_rendered_reason_points_add_up_to_the_score_with_blending():
    model = _blending_model()
    leads = generate_leads(3000, seed=5, now=NOW)
    predictive = pd.Series(np.random.default_rng(1).uniform(0, 100, len(leads)), index=leads.index)
    frame = to_frame(evaluate(leads, model, NOW, predictive))
    for text, score in zip(frame["reasons"], frame["score"]):
        parts = [p for p in text.split("; ") if p]
        assert sum(int(p.split(" ", 1)[0]) for p in parts) == score, text


def test_scores_are_clamped_to_100_with_a_clamp_reason(default_model):
    everything = lead(
        job_title="CEO", industry="Software", employees=200, annual_revenue=5e7, country="US",
        technologies="HubSpot;dbt", demo_requested_at=days_ago(0), trial_started_at=days_ago(0),
        page_views=20, visits=5, pricing_page_views=3, email_clicks=4, content_downloads=3,
        form_submissions=2, last_activity_at=days_ago(0), budget_range=">100k", timeframe="this_quarter",
        pain_point=" ".join(["forecasting"] * 25),
    )
    evaluation = evaluate(make_leads([everything]), default_model, NOW)
    reasons = dict(reasons_of(evaluation, 0))
    assert evaluation.score[0] == 100
    assert reasons["clamp"] < 0 and sum(reasons.values()) == 100


def test_scores_are_clamped_to_0_with_a_clamp_reason(default_model):
    awful = lead(job_title="Student", do_not_contact=True, is_disposable_email=True, employees=3,
                 is_free_email=True)
    evaluation = evaluate(make_leads([awful]), default_model, NOW)
    reasons = dict(reasons_of(evaluation, 0))
    assert evaluation.score[0] == 0
    assert reasons["clamp"] > 0 and sum(reasons.values()) == 0
    assert "clamp to 0-100" in render_reasons(evaluation)[0]


def test_reason_text_format_signs_and_shown_values(default_model):
    evaluation = evaluate(make_leads([lead(job_title="VP   Sales", industry="Software")]), default_model, NOW)
    text = render_reasons(evaluation)[0]
    assert text.split("; ")[:3] == ["+25 decider title: VP Sales", "+10 target industry: Software",
                                    "+5 small company (10-49)"]


def test_lead_without_any_reason_renders_empty_text(default_model):
    # Retail, 5M revenue, no title/size/behaviour: nothing in the default model applies.
    bare = {"industry": "Retail", "annual_revenue": 5_000_000.0, "job_title": "Engineer"}
    evaluation = evaluate(make_leads([bare]), default_model, NOW)
    assert dict(reasons_of(evaluation, 0)) == {"user_title": 5}
    evaluation.points[:] = 0  # and with no reasons at all
    assert render_reasons(evaluation)[0] == ""


def test_rendered_text_matches_each_leads_reason_pairs(default_model):
    leads = generate_leads(2000, seed=9, now=NOW)
    evaluation = evaluate(leads, default_model, NOW)
    slots = {s.id: s for s in evaluation.compiled.slots}
    texts = render_reasons(evaluation)
    titles = leads["job_title"].tolist()
    for i in range(len(leads)):
        expected = []
        for rid, pts in reasons_of(evaluation, i):
            slot = slots[rid]
            shown = titles[i] if slot.show == "job_title" else None
            if slot.show == "industry":
                shown = leads["industry"].iloc[i]
            if slot.show == "country":
                shown = leads["country"].iloc[i]
            expected.append(reasons_module.reason_text(slot, pts, shown))
        assert texts[i] == "; ".join(expected)


def test_long_shown_values_are_shortened_and_whitespace_collapsed():
    slot = reasons_module.Slot("decider_title", "decider title", "rule", "job_title")
    text = reasons_module.reason_text(slot, 25, "Chief   Executive Officer and " + "x" * 60)
    assert text.startswith("+25 decider title: Chief Executive Officer and ")
    assert len(text.split(": ", 1)[1]) == reasons_module.MAX_SHOWN_VALUE
