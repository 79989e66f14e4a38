"""`make run`'s reader: `airflow dags test` output goes to a log file; the terminal gets a line per
task with its counts, then the compact run summary, or the failing task, its error and the fix."""

from __future__ import annotations

import io
import sys
import textwrap

import pytest

from leadflow import devrun
from leadflow.warehouse import repo

RUN_ID = "manual__2026-12-04T03:35:23.681359+00:00"


def _start(task: str, at: str, map_index: int = -1) -> list[str]:
    mapped = f" map_index={map_index}" if map_index >= 0 else ""
    return [
        f"2026-12-04T{at}Z [info     ] [DAG TEST] starting task_id={task} map_index={map_index} "
        "[airflow.sdk.definitions.dag] loc=dag.py:1501",
        f"2026-12-04T{at}Z [info     ] [DAG TEST] running task <TaskInstance: leadflow_hubspot.{task} "
        f"{RUN_ID}{mapped} [TaskInstanceState.SCHEDULED] ti_id=01a2> [airflow.sdk.definitions.dag] loc=dag.py:1504",
        f"2026-12-04T{at}Z [info     ] Done. Returned value was: {{'pulled': 5000, 'preview': '...'}} [task]",
    ]


def _end(task: str, at: str, state: str = "success", map_index: int = -1) -> list[str]:
    return [
        f"2026-12-04T{at}Z [info     ] Task instance state updated    [airflow.api_fastapi] "
        f"loc=task_instances.py:485 new_state={state} rows_affected=1 ti_id=01a2",
        f"2026-12-04T{at}Z [info     ] [DAG TEST] end task task_id={task} map_index={map_index} "
        "[airflow.sdk.definitions.dag] loc=dag.py:1563",
    ]


TRACEBACK = [
    "2026-12-04T03:42:23.760851Z [error    ] Task failed with exception     [task] loc=task_runner.py:1676",
    "Traceback (most recent call last):",
    '  File "/app/include/leadflow/crm/http.py", line 330, in request',
    "    raise self._final_error(rule, key, method, path, info)",
    "          ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    "leadflow.crm.base.CrmAuthError: HubSpot rejected the token (401): check the password of connection "
    "leadflow_hubspot",
]


def _feed(watcher: devrun.DagTestWatcher, lines: list[str]) -> list[devrun.TaskEnd]:
    return [end for line in lines if (end := watcher.feed(line + "\n"))]


def test_watcher_reports_each_task_end_with_its_duration_and_the_run_id():
    watcher = devrun.DagTestWatcher()
    ends = _feed(watcher, [*_start("extract", "03:35:24.0"), *_end("extract", "03:35:35.5"),
                           *_start("qualify", "03:35:36.0", 0), *_end("qualify", "03:35:36.25", map_index=0)])
    assert [(e.label, e.state, e.seconds) for e in ends] == [("extract", "success", 11.5), ("qualify[0]", "success", 0.25)]
    assert watcher.run_id == RUN_ID
    assert ends[0].error == "" and ends[0].error_lines == []


def test_watcher_keeps_the_failed_tasks_exception_and_last_traceback_lines():
    watcher = devrun.DagTestWatcher(error_tail=3)
    (end,) = _feed(watcher, [*_start("extract", "03:42:11.0"), *TRACEBACK, *_end("extract", "03:42:23.9", "up_for_retry")])
    assert end.state == "up_for_retry"
    assert end.error.startswith("HubSpot rejected the token (401)")
    assert end.error_lines == [TRACEBACK[2], TRACEBACK[3], TRACEBACK[5]]  # no caret line


def test_an_error_in_an_earlier_task_does_not_stick_to_the_next_one():
    watcher = devrun.DagTestWatcher()
    ends = _feed(watcher, [*_start("extract", "03:42:11.0"), *TRACEBACK, *_end("extract", "03:42:12.0", "failed"),
                           *_start("enrich", "03:42:13.0"), *_end("enrich", "03:42:14.0", "failed")])
    assert ends[1].error == "" and ends[1].error_lines == []


def _fake_dags_test(tmp_path, lines: list[str], exit_code: int) -> list[str]:
    """A command that prints `lines` like `airflow dags test` would, then exits with `exit_code`."""
    script = tmp_path / "fake_dags_test.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        for line in {lines!r}:
            print(line, flush=True)
        sys.exit({exit_code})
    """))
    return [sys.executable, str(script)]


def test_given_a_successful_run_then_a_line_per_task_and_the_compact_summary(env_warehouse, tmp_path):
    repo.start_run(env_warehouse, "hubspot", RUN_ID, dry_run=False)
    repo.record_step(env_warehouse, "hubspot", RUN_ID, "extract", {"pulled": 5000, "durations_s": {"extract": 5.4}})
    repo.record_step(env_warehouse, "hubspot", RUN_ID, "push", {"pushed": 4522, "rejected": 0, "write_calls": 46,
                                                      "durations_s": {"push": 7.2}}, shard=0)
    repo.finish_run(env_warehouse, "hubspot", RUN_ID, "success")
    noise = [f"2026-12-04T03:35:30.0Z [info     ] task log line {i} [task]" for i in range(500)]
    command = _fake_dags_test(tmp_path, [*_start("extract", "03:35:24.0"), *noise, *_end("extract", "03:35:35.5"),
                                         *_start("push", "03:35:44.0", 0), *_end("push", "03:35:51.5", map_index=0)], 0)
    out, log_path = io.StringIO(), tmp_path / "var" / "logs" / "dags-test.log"

    code = devrun.watch_dags_test(command, {}, "hubspot", log_path, out=out)

    lines = out.getvalue().splitlines()
    assert code == 0
    assert lines[0] == f"Airflow task logs: {log_path}"
    assert lines[1].split() == ["extract", "11.5", "s", "pulled", "5,000"]
    assert lines[2].split() == ["push[0]", "7.5", "s", "pushed", "4,522,", "rejected", "0"]
    assert lines[4].startswith(f"hubspot run {RUN_ID}: success")
    assert "  pushed       4,522 in 46 calls, rejected 0, failed 0" in lines
    assert lines[-1].startswith("  Airflow UI   make airflow")
    assert len(lines) < 25 and not any("task log line" in line for line in lines)
    assert log_path.read_text().count("task log line") == 500


def test_given_a_wrong_token_then_the_failing_task_its_error_and_the_fix_and_exit_1(env_warehouse, tmp_path):
    command = _fake_dags_test(tmp_path, [*_start("extract", "03:42:11.0"), *TRACEBACK,
                                         *_end("extract", "03:42:23.5", "failed"), "DagRun failed"], 1)
    out, log_path = io.StringIO(), tmp_path / "logs" / "dags-test.log"

    code = devrun.watch_dags_test(command, {}, "hubspot", log_path, out=out)

    text = out.getvalue()
    assert code == 1
    assert "extract" in text and "12.5 s  FAILED" in text
    assert "FAILED in step extract: HubSpot rejected the token (401)" in text
    assert "what to do: the CRM refused the token: check the connection AIRFLOW_CONN_LEADFLOW_<CRM>" in text
    assert "    | leadflow.crm.base.CrmAuthError: HubSpot rejected the token" in text
    assert f"full Airflow log: {log_path}" in text
    assert text.rstrip().splitlines()[-1].startswith(f"run {RUN_ID} FAILED in task extract: HubSpot rejected")


def test_given_airflow_fails_before_any_task_then_the_end_of_its_log_is_shown(env_warehouse, tmp_path):
    command = _fake_dags_test(tmp_path, ["airflow.exceptions.AirflowException: Dag 'leadflow_hubspot' could not "
                                         "be found"], 1)
    out = io.StringIO()
    assert devrun.watch_dags_test(command, {}, "hubspot", tmp_path / "dags-test.log", out=out) == 1
    assert "FAILED before any task ended" in out.getvalue() and "could not be found" in out.getvalue()


def test_given_a_retry_then_the_first_failure_is_shown_at_once_and_says_airflow_retries():
    failed = devrun.TaskEnd("extract", -1, "up_for_retry", 12.0, "HubSpot rejected the token (401)",
                            ["leadflow.crm.base.CrmAuthError: HubSpot rejected the token (401)"])
    lines = devrun.failure_report(failed, devrun.Path("var/logs/x.log"))
    assert lines == ["  attempt failed, Airflow retries it after its retry delay (Ctrl-C to stop): "
                     "HubSpot rejected the token (401)"]



def _labels(lines: list[str]) -> list[str]:
    """The first word of each summary line (`pulled`, `enriched`, ..., `Airflow`)."""
    start = next(n for n, line in enumerate(lines) if line.startswith("hubspot run "))
    return [line.split()[0] for line in lines[start + 1:] if line.startswith("  ")]


def test_readme_make_run_example_shows_the_summary_lines_make_run_prints(env_warehouse, tmp_path):
    from leadflow.views.paths import report_path, reports_dir

    repo.start_run(env_warehouse, "hubspot", RUN_ID, dry_run=False)
    repo.record_step(env_warehouse, "hubspot", RUN_ID, "validate", {"quarantined": 0, "data_docs": "/dd/index.html"})
    repo.finish_run(env_warehouse, "hubspot", RUN_ID, "success")
    report = report_path(reports_dir(), "hubspot", RUN_ID)
    report.parent.mkdir(parents=True)
    report.write_text("<html></html>")
    out = io.StringIO()
    command = _fake_dags_test(tmp_path, [*_start("extract", "03:35:24.0"), *_end("extract", "03:35:35.5")], 0)
    assert devrun.watch_dags_test(command, {}, "hubspot", tmp_path / "x.log", out=out) == 0

    readme = (devrun.project_root() / "README.md").read_text()
    example = readme.split("`make run` ends with the run summary, for example:", 1)[1].split("```")[1]
    assert _labels(example.splitlines()) == _labels(out.getvalue().splitlines())
