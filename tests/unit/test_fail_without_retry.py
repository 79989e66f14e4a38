"""Permanent errors fail an Airflow task at once; transient ones keep the task's retries."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from leadflow.dag_support import fail_without_retry
from leadflow.connections import ConnectionNotFound
from leadflow.crm.base import CrmAuthError, CrmBudgetExhausted, CrmUnavailableError
from leadflow.pipeline import ChangeGuardError
from leadflow.push.lease import LeaseBusy
from leadflow.quality.results import CheckResult, QualityGateError
from leadflow.settings import SettingsError


@pytest.mark.parametrize("error", [
    CrmAuthError("HubSpot rejected the token (401): check connection leadflow_hubspot"),
    ChangeGuardError("the push would change 90 of 100 scored records"),
    QualityGateError([CheckResult(stage="batch", name="quarantine_share", success=False, observed="0.4",
                                  threshold="<= 0.2")]),
    SettingsError("leadflow.yaml: push.max_change_share: must be <= 1"),
    ConnectionNotFound("connection 'leadflow_hubspot' is not defined"),
    CrmBudgetExhausted("HubSpot's daily API limit is spent (429 DAILY)"),  # a retry minutes later finds it spent
])
def test_given_a_permanent_error_then_the_task_fails_without_retry_and_keeps_the_message(error):
    with pytest.raises(AirflowFailException) as info:
        with fail_without_retry():
            raise error
    assert str(error) in str(info.value) and info.value.__cause__ is error


@pytest.mark.parametrize("error", [CrmUnavailableError("503 from the CRM"), LeaseBusy("another push is running"),
                                   RuntimeError("disk full")])
def test_given_a_transient_error_then_it_propagates_for_the_tasks_retries(error):
    with pytest.raises(type(error)):
        with fail_without_retry():
            raise error
