"""No test depends on the calendar: the tests whose sandbox worlds are seeded relative to today
(connectors, the sandbox's HTTP APIs and fault draws, an in-process pipeline run) pass with the
system clock moved 200 days ahead (to 23:59:30, so the run crosses midnight) and 600 days ahead,
through libfaketime (scripts/ensure_test_tools.sh; `make test` installs it). Each date runs them
in a child pytest whose every process sees that clock.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CALENDAR_SENSITIVE = [
    "tests/integration/test_hubspot_connector.py",
    "tests/integration/test_salesforce_connector.py",
    "tests/integration/test_sandbox_http.py",
    "tests/unit/sandbox/test_sandbox_world.py",
    "tests/unit/sandbox/test_sandbox_app.py",
    "tests/integration/test_pipeline_bad_input.py",
]


def _child_env() -> dict[str, str]:
    """This session's environment less what tests/conftest.py set for it: the child makes its own."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "LEADFLOW_", "PYTEST_", "GX_", "TEST_MOVE_CLOCK"))}


def _system_now() -> float:
    """The machine's clock, also when this session's own clock is moved (TEST_MOVE_CLOCK_DAYS)."""
    return float(subprocess.run(["date", "+%s"], capture_output=True, text=True, check=True).stdout)


@pytest.mark.slow
@pytest.mark.parametrize("days_ahead, at", [(200, "23:59:30"), (600, "11:00:00")])
def test_given_the_clock_moved_then_date_sensitive_tests_pass(days_ahead, at):
    faketime = shutil.which("faketime")
    assert faketime, "faketime is missing: run scripts/ensure_test_tools.sh (make test does)"
    # An offset, not a start time: every process of the child run (servers, workers) sees the same
    # moved clock whenever it starts. Forward only: libfaketime mis-handles absolute sleeps on the
    # monotonic clock under a negative offset (EINVAL), which is libfaketime's fault, not ours.
    now = _system_now()
    day = (datetime.fromtimestamp(now, timezone.utc) + timedelta(days=days_ahead)).date()
    target = datetime.fromisoformat(f"{day.isoformat()} {at}").replace(tzinfo=timezone.utc)
    offset = f"{int(target.timestamp() - now):+d}"
    env = {**_child_env(), "TZ": "UTC"}
    date = subprocess.run([faketime, "-f", offset, "date", "+%F"], capture_output=True, text=True, env=env,
                          check=True).stdout.strip()
    assert date == day.isoformat()  # the clock really moved for the child processes
    result = subprocess.run(
        [faketime, "-f", offset, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-m", "not slow", *CALENDAR_SENSITIVE],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    tail = "\n".join(result.stdout.splitlines()[-25:])
    assert result.returncode == 0, f"with the clock at {target}:\n{tail}\n{result.stderr[-2000:]}"
    assert " passed" in tail and "failed" not in tail and "skipped" not in tail, tail
