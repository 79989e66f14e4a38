"""Planning Salesforce writes with the Rating: derived from the stage, or restored by a rollback."""

from __future__ import annotations

import pytest

from leadflow.crm.base import RecordUpdate
from leadflow.crm.salesforce_mapping import load_mapping
from leadflow.crm.salesforce_push import RATING, plan_update
from leadflow.crm.write_core import ForbiddenPropertyError

MAPPING = load_mapping()


def test_given_stage_move_then_rating_is_derived_from_the_new_stage() -> None:
    plan = plan_update(RecordUpdate("00Q1", {"lifecycle_stage": "mql"}, current_stage="lead"), MAPPING)
    assert plan.fields[MAPPING.rating_field] == MAPPING.rating_by_stage["mql"]


def test_given_rollback_with_logged_rating_then_the_logged_rating_wins_over_the_derived_one() -> None:
    values = {"lifecycle_stage": "lead", RATING: "Hot"}
    plan = plan_update(RecordUpdate("00Q1", values, current_stage="mql", allow_backward=True), MAPPING)
    assert plan.rejection is None
    assert plan.fields[MAPPING.stage_field] == MAPPING.stage_to_crm("lead")
    assert plan.fields[MAPPING.rating_field] == "Hot"


def test_given_rollback_to_an_empty_rating_then_rating_is_cleared() -> None:
    values = {"lifecycle_stage": "lead", RATING: None}
    update = RecordUpdate("00Q1", values, current_stage="mql", allow_backward=True)
    assert plan_update(update, MAPPING).fields[MAPPING.rating_field] is None


def test_given_rating_but_no_rating_field_in_the_mapping_then_it_is_refused() -> None:
    without = MAPPING.model_copy(update={"rating_field": None, "rating_by_stage": {}})
    with pytest.raises(ForbiddenPropertyError, match="'rating'"):
        plan_update(RecordUpdate("00Q1", {RATING: "Hot"}), without)
