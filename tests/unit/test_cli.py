"""`leadflow` exit codes (0 success, 1 failed run or check, 2 usage or configuration error), the
example in every `--help`, and the compact run summary of `leadflow run` and `leadflow report`."""

from __future__ import annotations

import argparse
import json

import pytest

from leadflow import cli
from leadflow.pipeline import STEPS, ChangeGuardError
from leadflow.warehouse import repo

OK_SUMMARY = {
    "crm": "hubspot", "run_id": "cli-1", "status": "success", "pulled": 50, "companies_pulled": 7,
    "enriched": 40, "validated": 45, "skipped_owned": 5, "quarantined": 0, "scored": 45,
    "disqualified": 3, "changed": 12, "pushed": 11, "rejected": 1, "failed": 0, "write_calls": 1,
    "push_api_requests": 3,
    "extract_api": {"requests": 4, "rate_limited": 2, "throttled_s": 0.5},
    "preview": {"stage_transitions": {"lead -> mql": 6, "subscriber -> lead": 2}},
    "durations_s": {"push": 0.4, "extract": 1.25},
    "score_counts": [1] * 101,
}


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def _all_parsers(parser: argparse.ArgumentParser, path: str = "leadflow"):
    yield path, parser
    for name, child in _subparsers(parser):
        yield from _all_parsers(child, f"{path} {name}")


def test_every_command_and_subcommand_help_shows_an_example():
    parsers = list(_all_parsers(cli.build_parser()))
    # run, report, sandbox (serve, seed, import), model (train, score, show), backtest, rollback
    assert {p for p, _ in parsers} >= {"leadflow run", "leadflow report", "leadflow sandbox serve",
                                      "leadflow sandbox import", "leadflow model train", "leadflow rollback"}
    missing = [path for path, parser in parsers
               if not (parser.epilog or "").startswith("example") or "\n  leadflow " not in parser.format_help()]
    assert missing == [], f"--help without an example (add an epilog): {missing}"


def test_help_exits_0_and_prints_the_example(capsys):
    assert cli.main(["report", "--help"]) == 0
    assert "leadflow report --crm hubspot" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["nosuch"], ["run", "--crm", "pipedrive"], ["run", "--since", "yesterday"],
                                  ["sandbox", "import", "--mapping", "x_education"]])
def test_given_bad_arguments_then_exit_2_with_one_error_line(argv, capsys):
    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("leadflow") and "error:" in line and "--help`)" in line


def test_given_no_runs_then_report_exits_0_and_says_how_to_start(env_warehouse, capsys):
    assert cli.main(["report"]) == 0
    assert "make run" in capsys.readouterr().out


def test_given_the_last_run_failed_then_report_exits_1_naming_it(env_warehouse, capsys):
    repo.start_run(env_warehouse, "hubspot", "r-failed", dry_run=False)
    repo.finish_run(env_warehouse, "hubspot", "r-failed", "failed")

    assert cli.main(["report"]) == 1
    captured = capsys.readouterr()
    assert "hubspot run r-failed: failed" in captured.out
    assert captured.err.strip().splitlines() == [
        "leadflow: error: the last run did not succeed: hubspot (failed); see its run report"]


def test_given_the_last_run_succeeded_then_report_exits_0_with_the_compact_summary(env_warehouse, capsys):
    repo.start_run(env_warehouse, "hubspot", "r-ok", dry_run=False)
    repo.record_step(env_warehouse, "hubspot", "r-ok", "extract", {"pulled": 50, "durations_s": {"extract": 1.0}})
    repo.finish_run(env_warehouse, "hubspot", "r-ok", "success")

    assert cli.main(["report", "--crm", "hubspot"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("hubspot run r-ok: success")
    assert "  pulled       50 leads" in out and "steps        extract 1.0 s" in out
    assert len(out.splitlines()) < 20


def test_report_json_keeps_the_machine_form_and_its_exit_code(env_warehouse, capsys):
    repo.start_run(env_warehouse, "hubspot", "r-failed", dry_run=False)
    repo.finish_run(env_warehouse, "hubspot", "r-failed", "failed")
    assert cli.main(["report", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["hubspot"]["status"] == "failed"


def _fake_run_all(summary=None, fail_after=None, error=None):
    def run_all(ctx, on_step=None):
        for step in STEPS:
            if step == fail_after:
                raise error
            on_step(step, {**OK_SUMMARY, "durations_s": {step: 0.5}})
        return dict(summary or OK_SUMMARY, run_id=ctx.run_id)

    return run_all


def test_run_prints_a_line_per_step_and_the_compact_summary(env_warehouse, monkeypatch, capsys):
    monkeypatch.setattr("leadflow.pipeline.run_all", _fake_run_all())
    assert cli.main(["run", "--run-id", "cli-1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["extract", "0.5", "s", "pulled", "50"]
    assert lines[3].split()[:4] == ["validate_gate", "0.5", "s", "0"]
    assert lines[5].split()[:4] == ["accounts", "0.5", "s", "accounts"]
    assert lines[8].split() == ["push", "0.5", "s", "pushed", "11,", "rejected", "1"]
    assert lines[9].split()[:4] == ["push_accounts", "0.5", "s", "companies"]
    assert lines[10] == "hubspot run cli-1: success"
    # The push's calls include its pre-write reads, not only the writes.
    assert "  API calls    4 to pull + 3 to push (1 writes); 2 answered 429, 0.5 s throttled" in lines
    assert "  steps        extract 1.2 s, push 0.4 s" in lines  # pipeline order, not alphabetical
    assert not any("score_counts" in line for line in lines)


def test_run_json_prints_the_full_summary_only(env_warehouse, monkeypatch, capsys):
    monkeypatch.setattr("leadflow.pipeline.run_all", _fake_run_all())
    assert cli.main(["run", "--json", "--run-id", "cli-1"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["score_counts"] == [1] * 101 and payload["run_id"] == "cli-1"


def test_given_a_step_fails_then_run_prints_the_step_and_error_and_exits_1(env_warehouse, monkeypatch, capsys):
    guard = ChangeGuardError("the push would change 90 of 100 scored records; re-trigger with force=true")
    monkeypatch.setattr("leadflow.pipeline.run_all", _fake_run_all(fail_after="plan_push", error=guard))
    assert cli.main(["run", "--run-id", "cli-2"]) == 1
    err = capsys.readouterr().err
    assert "FAILED in step plan_push: the push would change 90 of 100" in err
    assert "what to do: check the model and the data" in err
    assert "leadflow: error: run cli-2 failed" in err
    assert "Traceback" not in err


def test_given_verbose_then_a_failed_run_also_prints_the_traceback(env_warehouse, monkeypatch, capsys):
    monkeypatch.setattr("leadflow.pipeline.run_all",
                        _fake_run_all(fail_after="extract", error=RuntimeError("boom")))
    assert cli.main(["-v", "run"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


def test_given_no_connection_then_run_exits_2_naming_the_variable(env_warehouse, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_LEADFLOW_HUBSPOT", raising=False)
    assert cli.main(["run", "--crm", "hubspot"]) == 2
    err = capsys.readouterr().err
    assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in err and err.count("\n") == 1


def test_given_a_bad_model_file_then_run_exits_2(env_warehouse, monkeypatch, tmp_path, capsys):
    model = tmp_path / "model.yaml"
    model.write_text("version: [unclosed\n")
    monkeypatch.setattr("leadflow.pipeline.run_all", lambda ctx, on_step=None: __import__(
        "leadflow.qualify", fromlist=["load_model"]).load_model(ctx.model_path))
    assert cli.main(["run", "--model", str(model)]) == 2
    assert str(model) in capsys.readouterr().err


def test_given_an_unexpected_error_then_one_line_and_exit_1(monkeypatch, capsys):
    def broken(args):
        raise KeyError("surprise")

    monkeypatch.setattr(cli, "_cmd_report", broken)
    assert cli.main(["report"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["leadflow: error: 'surprise'", "  (run again with -v for the traceback)"]


def test_sandbox_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["sandbox", "seed", "--db", str(tmp_path / "s.db"), "--contacts", "0"]) == 2
    assert "--contacts must be at least 1, got 0" in capsys.readouterr().err
    assert cli.main(["sandbox", "import", "--csv", str(tmp_path / "missing.csv"), "--mapping", "x_education",
                     "--db", str(tmp_path / "s.db")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err


def test_sandbox_standalone_entry_point_uses_the_same_convention(tmp_path, capsys):
    from leadflow.sandbox import cli as sandbox_cli

    assert sandbox_cli.main(["sandbox", "seed", "--db", str(tmp_path / "s.db"), "--contacts", "-1"]) == 2


def test_model_and_backtest_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["model", "show", "--model", str(tmp_path / "none.joblib")]) == 2
    assert cli.main(["backtest"]) == 2
    err = capsys.readouterr().err
    assert "none.joblib" in err and "backtest: give --csv F --mapping M, or --crm CRM" in err


def test_rollback_without_a_connection_exits_2(env_warehouse, monkeypatch, capsys):
    monkeypatch.delenv("AIRFLOW_CONN_LEADFLOW_HUBSPOT", raising=False)
    assert cli.main(["rollback", "--run-id", "r1", "--dry-run"]) == 2
    assert "AIRFLOW_CONN_LEADFLOW_HUBSPOT" in capsys.readouterr().err


def test_given_the_api_budget_ran_out_then_run_exits_0_and_says_the_warning(env_warehouse, monkeypatch, capsys):
    partial = {**OK_SUMMARY, "status": "warning", "warning": "API budget exhausted after 40 leads; resumes next run"}
    monkeypatch.setattr("leadflow.pipeline.run_all", _fake_run_all(summary=partial))
    assert cli.main(["run", "--run-id", "cli-3"]) == 0
    captured = capsys.readouterr()
    assert "hubspot run cli-3: warning" in captured.out
    assert "leadflow: warning: API budget exhausted after 40 leads; resumes next run" in captured.err
