"""Write planning rules and batch-answer mapping (pure, no HTTP)."""

from __future__ import annotations

import pytest

from leadflow.crm.base import RecordResult, RecordUpdate
from leadflow.crm.hubspot_mapping import HubSpotMapping
from leadflow.crm.hubspot_push import assert_writable, classify, plan_update, results_from_batch
from leadflow.crm.write_core import ForbiddenPropertyError

JAN_1_2024_MS = 1_704_067_200_000


def test_owned_fields_are_renamed_and_formatted(mapping: HubSpotMapping) -> None:
    plan = plan_update(
        RecordUpdate("1", {"score": 87.0, "fit_score": 40.5, "grade": "A1", "bant_count": 3,
                           "scored_at": JAN_1_2024_MS, "reasons": None}),
        mapping,
    )
    assert plan.rejection is None and not plan.backward
    assert plan.fields == {
        "leadflow_score": "87", "leadflow_fit_score": "40.5", "leadflow_grade": "A1", "leadflow_bant_count": "3",
        "leadflow_scored_at": "2024-01-01T00:00:00.000Z", "leadflow_reasons": "",
    }


def test_stage_and_status_are_mapped_back_to_internal_values(mapping: HubSpotMapping) -> None:
    plan = plan_update(RecordUpdate("1", {"lifecycle_stage": "mql", "lead_status": "nurture"}, current_stage="lead"),
                       mapping)
    assert plan.fields == {"lifecyclestage": "marketingqualifiedlead", "hs_lead_status": "BAD_TIMING"}


@pytest.mark.parametrize("key", ["email", "firstname", "hubspotscore", "lifecyclestage", "leadflow_score"])
def test_given_a_field_leadflow_does_not_own_then_raises(mapping: HubSpotMapping, key: str) -> None:
    with pytest.raises(ForbiddenPropertyError, match=key):
        plan_update(RecordUpdate("1", {key: "x"}), mapping)


def test_assert_writable_refuses_foreign_properties(mapping: HubSpotMapping) -> None:
    assert_writable([{"id": "1", "properties": {"leadflow_score": "1", "lifecyclestage": "lead"}}], mapping.writable_properties)
    with pytest.raises(ForbiddenPropertyError, match="email"):
        assert_writable([{"id": "1", "properties": {"email": "x"}}], mapping.writable_properties)


def test_given_backward_stage_without_permission_then_rejected_and_nothing_sent(mapping: HubSpotMapping) -> None:
    plan = plan_update(RecordUpdate("1", {"lifecycle_stage": "lead", "score": 10}, current_stage="sql"), mapping)
    assert plan.fields == {}
    assert plan.rejection == RecordResult("1", "rejected", "stage 'sql' -> 'lead' moves backwards", "BACKWARD_STAGE")


def test_given_backward_stage_with_allow_backward_then_cleared_first(mapping: HubSpotMapping) -> None:
    plan = plan_update(
        RecordUpdate("1", {"lifecycle_stage": "lead"}, current_stage="sql", allow_backward=True), mapping
    )
    assert plan.rejection is None
    assert plan.backward is True
    assert plan.fields == {"lifecyclestage": "lead"}


@pytest.mark.parametrize(
    "update",
    [
        RecordUpdate("1", {"lifecycle_stage": "mql"}, current_stage="opportunity", allow_backward=True),
        RecordUpdate("1", {"lifecycle_stage": "customer"}, current_stage="sql"),
        RecordUpdate("1", {"lifecycle_stage": "evangelist"}),
    ],
)
def test_sales_owned_stages_are_never_touched(mapping: HubSpotMapping, update: RecordUpdate) -> None:
    plan = plan_update(update, mapping)
    assert plan.rejection is not None and plan.rejection.category == "SALES_OWNED_STAGE"


def test_given_unchanged_stage_then_stage_is_not_sent(mapping: HubSpotMapping) -> None:
    plan = plan_update(RecordUpdate("1", {"lifecycle_stage": "opportunity", "score": 5}, current_stage="opportunity"),
                       mapping)
    assert plan.rejection is None and plan.fields == {"leadflow_score": "5"}


def test_given_clearing_stage_without_permission_then_rejected(mapping: HubSpotMapping) -> None:
    plan = plan_update(RecordUpdate("1", {"lifecycle_stage": None}, current_stage="lead"), mapping)
    assert plan.rejection is not None and plan.rejection.category == "BACKWARD_STAGE"
    allowed = plan_update(RecordUpdate("1", {"lifecycle_stage": None}, current_stage="lead", allow_backward=True),
                          mapping)
    assert allowed.fields == {"lifecyclestage": ""} and not allowed.backward


def test_given_unmapped_status_then_rejected(mapping: HubSpotMapping) -> None:
    plan = plan_update(RecordUpdate("1", {"lead_status": "hot"}), mapping)
    assert plan.rejection is not None and plan.rejection.category == "MAPPING"


def test_given_unwritable_number_then_rejected(mapping: HubSpotMapping) -> None:
    plan = plan_update(RecordUpdate("1", {"score": "lots"}), mapping)
    assert plan.rejection is not None and plan.rejection.category == "INVALID_VALUE"


@pytest.mark.parametrize(
    "category, status, expected",
    [("LOCKED", None, "retryable"), ("RATE_LIMITS", None, "retryable"), ("CONFLICT", None, "retryable"),
     (None, 423, "retryable"), (None, 429, "retryable"), ("VALIDATION_ERROR", None, "rejected"),
     ("OBJECT_NOT_FOUND", None, "rejected"), ("PROPERTY_DOESNT_EXIST", None, "rejected")],
)
def test_classify_per_record_errors(category, status, expected) -> None:
    assert classify(category, status) == expected


def test_207_maps_every_id_to_its_outcome() -> None:
    body = {
        "status": "COMPLETE",
        "results": [{"id": "1"}, {"id": "4"}],
        "numErrors": 2,
        "errors": [
            {"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Object not found", "context": {"ids": ["2"]}},
            {"status": "error", "category": "LOCKED", "message": "locked", "context": {"ids": ["3"]}},
        ],
    }
    results = results_from_batch(["1", "2", "3", "4", "5"], 207, body)
    assert results["1"] == RecordResult("1", "confirmed")
    assert results["2"] == RecordResult("2", "rejected", "Object not found", "OBJECT_NOT_FOUND")
    assert results["3"].status == "retryable"
    assert results["4"].status == "confirmed"
    assert results["5"].status == "unknown"  # neither confirmed nor failed: read back


def test_200_confirms_every_id() -> None:
    results = results_from_batch(["1", "2"], 200, {"status": "COMPLETE", "results": [{"id": "1"}]})
    assert [r.status for r in results.values()] == ["confirmed", "confirmed"]
