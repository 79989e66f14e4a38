"""The model's `handoff` block (the SLA's days and the statuses and stages of sales' answers):
defaults, and errors that name the key."""

from __future__ import annotations

import pytest
import yaml

from leadflow.qualify.config import DEFAULT_MODEL_PATH, ModelConfigError, load_model, model_from_dict


def _doc(handoff):
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    doc["handoff"] = handoff
    return doc


def test_default_model_has_a_three_day_sla_and_the_waterfalls_answers():
    rules = load_model().handoff
    assert rules.sla_days == 3
    assert "in_progress" in rules.accepted_statuses and "unqualified" in rules.rejected_statuses
    assert rules.accepted_stages == ["sql", "opportunity"] and rules.converted_stages == ["customer", "evangelist"]


def test_default_model_hands_a_rejected_lead_over_again_above_its_score_plus_15_and_null_means_never():
    assert load_model().handoff.rehandoff_min_score_gain == 15
    assert model_from_dict(_doc({"rehandoff_min_score_gain": None})).handoff.rehandoff_min_score_gain is None


def test_given_no_handoff_block_then_defaults_apply():
    doc = _doc(None)
    del doc["handoff"]
    assert model_from_dict(doc).handoff.sla_days == 3


@pytest.mark.parametrize("handoff, message", [
    ({"sla_days": 0}, "handoff.sla_days: Input should be greater than or equal to 1"),
    ({"sla_days": "3"}, "handoff.sla_days: Input should be a valid integer"),
    ({"accepted_statuses": ["working"]}, "handoff.accepted_statuses[0]: Input should be 'new'"),
    ({"rejected_statuses": ["unqualified"], "accepted_statuses": ["unqualified"]},
     "handoff.rejected_statuses: ['unqualified'] also in handoff.accepted_statuses"),
    ({"accepted_statuses": ["open", "in_progress"]},
     "handoff.accepted_statuses: ['open'] are the statuses leadflow hands leads over with"),
    ({"accepted_stages": ["mql", "sql"]}, "handoff.accepted_stages: ['mql'] are not beyond MQL"),
    ({"converted_stages": ["opportunity", "customer"]},
     "handoff.converted_stages: ['opportunity'] also in handoff.accepted_stages"),
    ({"sla_dayz": 3}, "handoff.sla_dayz: unknown key"),
    ({"rehandoff_min_score_gain": 0}, "handoff.rehandoff_min_score_gain: Input should be greater than 0"),
    ({"rehandoff_min_score_gain": "lots"}, "handoff.rehandoff_min_score_gain: Input should be a valid number"),
])
def test_given_a_bad_handoff_block_then_the_error_names_the_key(handoff, message):
    with pytest.raises(ModelConfigError) as err:
        model_from_dict(_doc(handoff))
    assert any(line.startswith(message) for line in err.value.errors), err.value.errors
