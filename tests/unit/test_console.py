"""The shared terminal output: which errors mean "fix your input" and the compact run summary."""

from __future__ import annotations

import argparse
import io

import pytest

from leadflow import console


def test_library_configuration_errors_count_as_usage_errors():
    from leadflow.connections import ConnectionConfigError
    from leadflow.qualify.config import ModelConfigError
    from leadflow.settings import SettingsError

    assert console.is_usage_error(ConnectionConfigError("no connection"))
    assert console.is_usage_error(SettingsError("bad key"))
    assert console.is_usage_error(ModelConfigError(["stages: missing"], "m.yaml"))
    assert console.is_usage_error(FileNotFoundError(2, "No such file", "x.csv"))
    assert not console.is_usage_error(RuntimeError("the CRM is down"))
    assert not console.is_usage_error(ValueError("a bug"))
    assert console.is_usage_error(ValueError("--folds"), extra=(ValueError,))


@pytest.mark.parametrize("error,code", [(console.UsageError("--x"), 2), (console.CommandFailed("run failed"), 1),
                                        (RuntimeError("boom"), 1), (KeyboardInterrupt(), 130)])
def test_run_command_maps_outcomes_to_exit_codes(error, code):
    def func(args):
        raise error

    err = io.StringIO()
    assert console.run_command(func, argparse.Namespace(), err=err) == code
    assert "Traceback" not in err.getvalue()


def test_run_command_returns_the_command_code():
    assert console.run_command(lambda a: None, argparse.Namespace()) == 0
    assert console.run_command(lambda a: 1, argparse.Namespace()) == 1


def test_summary_names_top_quarantine_reasons_and_where_to_look(tmp_path):
    lines = console.summary_lines(
        {"crm": "hubspot", "run_id": "r1", "status": "success", "quarantined": 9, "pulled": 100,
         "started_at": 1_000, "finished_at": 31_500, "data_docs": "/var/dd/index.html"},
        quarantine_reasons=[{"expectation": "email_format", "column": "email", "records": 7},
                            {"expectation": "not_null", "column": "record_id", "records": 2}],
        report_path=tmp_path / "r1.html")
    assert lines[0] == "hubspot run r1: success in 30.5 s"
    assert "  quarantined  9 (top: email_format on email 7, not_null on record_id 2)" in lines
    assert f"  run report   {tmp_path / 'r1.html'}" in lines
    assert "  data docs    /var/dd/index.html" in lines


def test_step_line_shows_the_counts_that_matter_or_the_failed_state():
    assert console.step_line("extract", 12.34, {"pulled": 5000}).split() == ["extract", "12.3", "s", "pulled",
                                                                             "5,000"]
    assert console.step_line("qualify[0]", 0.4, {"scored": 7}).split()[-1] == "7"
    # The run's merged figures: every shard's counts added up.
    assert console.step_line("enrich[1]", 0.4, {"enriched": 9}).split()[-2:] == ["enriched", "9"]
    assert console.step_line("validate[3]", 0.4, {"quarantined": 2, "validated": 40}).split()[-4:] == \
        ["quarantined", "2", "of", "40"]
    assert console.step_line("validate_gate", 0.1, {"dq_failed_checks": 1}).split()[-3:] == ["1", "failed", "checks"]
    assert console.step_line("extract", 2.0, {}, state="up_for_retry").split()[-1] == "UP_FOR_RETRY"


def test_hint_for_a_refused_token_says_which_connection_to_fix():
    hint = console.hint_for("HubSpot refused the credentials (401): check connection leadflow_hubspot.")
    assert "AIRFLOW_CONN_LEADFLOW_<CRM>" in hint
    assert console.hint_for("division by zero") is None
