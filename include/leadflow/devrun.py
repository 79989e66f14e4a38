"""Run a command beside a local CRM sandbox: `python -m leadflow.devrun [options] -- CMD ...`.

Starts `leadflow sandbox serve` in the background on a free loopback port (data kept in
var/sandbox.db so a second run sees the first run's writes), exports the connection variables it
prints, runs CMD, and stops the sandbox afterwards, also when CMD fails or on Ctrl-C.
Used by `make run` and `make airflow`.

With `--summary CRM` (for `airflow dags test`), CMD's output goes to a log file instead of the
terminal; the terminal gets one line per task as it ends (read from the `[DAG TEST]` lines, with
the counts the task recorded in the warehouse), then the run's compact summary, or the failing
task with its last error lines and what to fix.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import SQLAlchemyError

from leadflow.cli import report_payload, run_overview
from leadflow.console import COMPLETED_STATUSES, failure_lines, hint_for, step_line
from leadflow.env import leadflow_env
from leadflow.warehouse import repo
from leadflow.warehouse.db import get_engine, project_root

_EXPORT = re.compile(r"^export (AIRFLOW_CONN_[A-Z0-9_]+|LEADFLOW_[A-Z0-9_]+)=(.*)$")


def _parse_exports(text: str) -> dict[str, str]:
    env = {}
    for line in text.splitlines():
        match = _EXPORT.match(line.strip())
        if match:
            value = shlex.split(match.group(2))
            env[match.group(1)] = value[0] if value else ""
    return env


def start_sandbox(var_dir: Path, contacts: int, extra: list[str], timeout: float = 180.0):
    """Start the sandbox; return (process, env with its connection variables)."""
    var_dir.mkdir(parents=True, exist_ok=True)
    ready = Path(tempfile.mkstemp(prefix="sandbox-ready-", dir=var_dir)[1])
    ready.unlink()
    log_path = var_dir / "sandbox.log"
    cmd = [
        sys.executable, "-m", "leadflow.cli", "sandbox", "serve",
        "--port", "0", "--db", str(var_dir / "sandbox.db"),
        "--contacts", str(contacts), "--ready-file", str(ready), *extra,
    ]
    log_file = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not ready.exists():
        if proc.poll() is not None:
            raise SystemExit(f"the sandbox exited early (code {proc.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            stop(proc)
            raise SystemExit(f"the sandbox did not start within {timeout:.0f} s; see {log_path}")
        time.sleep(0.2)
    time.sleep(0.05)  # the file is written in one go, but give the writer a moment to close it
    env = _parse_exports(ready.read_text())
    ready.unlink(missing_ok=True)
    return proc, env


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _standalone_env(env: dict[str, str]) -> dict[str, str]:
    port = str(leadflow_env().airflow_port)
    return {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        # The connection form's Test button (off by default in Airflow): local sandbox tokens only.
        "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
        **env,
    }


def _print_login(airflow_home: Path, port: str) -> None:
    passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
    for _ in range(120):
        if passwords.exists():
            break
        time.sleep(1)
    login = "admin / (see %s)" % passwords
    try:
        data = json.loads(passwords.read_text())
        user, password = next(iter(data.items()))
        login = f"{user} / {password}"
    except (OSError, ValueError, StopIteration):
        pass
    print(f"\nAirflow UI: http://127.0.0.1:{port}  login: {login}\n", flush=True)


# `airflow dags test` output (Airflow 3.3, airflow.sdk.definitions.dag.test / _run_task).
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z?\s")
_TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
_TASK_RUNNING = re.compile(r"\[DAG TEST\] running task <TaskInstance: [^ .]+\.\S+ (\S+) ")
_TASK_END = re.compile(r"\[DAG TEST\] end task task_id=(\S+) map_index=(-?\d+)")
_NEW_STATE = re.compile(r"\bnew_state=(\w+)")
_LOG_LEVEL = re.compile(r"^\S+\s+\[(\w+)\s*\]")
_CARETS = re.compile(r"^\s*[\^~]+\s*$")  # Python's pointer lines under a traceback's code line
_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception|Exhausted|Busy|Interrupt|Exit)\b:?\s*(.*)$")


@dataclass
class TaskEnd:
    """One task instance that ended, as `airflow dags test` reported it."""

    task_id: str
    map_index: int
    state: str  # success, failed, up_for_retry, ... ("unknown" when no state line was seen)
    seconds: float | None
    error: str = ""  # the exception line, when the task failed
    error_lines: list[str] = field(default_factory=list)  # the end of its traceback

    @property
    def label(self) -> str:
        return self.task_id if self.map_index < 0 else f"{self.task_id}[{self.map_index}]"


class DagTestWatcher:
    """Reads `airflow dags test` output line by line; `feed` returns a `TaskEnd` when a task ends.

    Tasks run one at a time in `dags test`, so every state and error line between a task's
    start and end lines belongs to that task."""

    def __init__(self, error_tail: int = 4) -> None:
        self.run_id: str | None = None
        self.ended: list[TaskEnd] = []
        self._error_tail = error_tail
        self._started: datetime | None = None
        self._state = "unknown"
        self._error_block: list[str] | None = None
        self._errors: deque[str] = deque(maxlen=200)

    @staticmethod
    def _time(line: str) -> datetime | None:
        match = _TIMESTAMP.match(line)
        return datetime.fromisoformat(match.group(1)).replace(tzinfo=timezone.utc) if match else None

    def feed(self, line: str) -> TaskEnd | None:
        line = line.rstrip("\n")
        if match := _TASK_START.search(line):
            self._started, self._state, self._error_block = self._time(line), "unknown", None
            self._errors.clear()
            return None
        if match := _TASK_RUNNING.search(line):
            self.run_id = self.run_id or match.group(1)
            return None
        if match := _TASK_END.search(line):
            return self._end(match.group(1), int(match.group(2)), self._time(line))
        if match := _NEW_STATE.search(line):
            self._state = match.group(1)
        level = _LOG_LEVEL.match(line)
        if level:
            # A new log record: an error record opens a block, any other closes it.
            self._error_block = [] if level.group(1) in ("error", "critical") else None
            if self._error_block is not None:
                self._errors.clear()
        elif self._error_block is not None and line.strip() and not _CARETS.match(line):
            self._errors.append(line)  # traceback lines of the error record
        return None

    def _end(self, task_id: str, map_index: int, at: datetime | None) -> TaskEnd:
        seconds = (at - self._started).total_seconds() if at and self._started else None
        end = TaskEnd(task_id, map_index, self._state, seconds)
        if self._state != "success" and self._errors:
            lines = list(self._errors)
            end.error_lines = lines[-self._error_tail:]
            exceptions = [m.group(1) or line for line in lines if (m := _EXCEPTION.match(line))]
            end.error = exceptions[-1] if exceptions else lines[-1].strip()
        self.ended.append(end)
        self._started, self._error_block = None, None
        return end


class _Warehouse:
    """The run's figures as the tasks record them (read between tasks; never fails the watch)."""

    def __init__(self) -> None:
        self._engine: Any = None

    def summary(self, crm: str, run_id: str | None) -> dict[str, Any]:
        if run_id is None:
            return {}
        try:
            self._engine = self._engine or get_engine()
            return repo.get_run_summary(self._engine, crm, run_id)
        except SQLAlchemyError:  # e.g. locked by the task that just started: the line goes without counts
            return {}

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _clip(text: str, width: int = 240) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def failure_report(failed: TaskEnd, log_path: Path) -> list[str]:
    """The failing task, its error and what to fix, for the terminal."""
    if failed.state == "up_for_retry":  # the details follow once the last attempt fails
        return [f"  attempt failed, Airflow retries it after its retry delay (Ctrl-C to stop): "
                f"{_clip(failed.error or failed.state)}"]
    lines = failure_lines(failed.label, _clip(failed.error or failed.state), hint_for(failed.error))
    lines += [f"    | {_clip(line)}" for line in failed.error_lines]
    lines.append(f"  full Airflow log: {log_path}")
    return lines


def watch_dags_test(command: list[str], env: dict[str, str], crm: str, log_path: Path,
                    out: IO[str] | None = None) -> int:
    """Run `airflow dags test ...` with its output in `log_path`; print a line per task, then the
    summary or the failure. Returns the exit code: CMD's, or 1 when the run recorded no success."""
    out = out or sys.stdout
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"Airflow task logs: {log_path}", file=out, flush=True)
    watcher, warehouse = DagTestWatcher(), _Warehouse()
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, errors="replace")
            try:
                assert child.stdout is not None
                for line in child.stdout:
                    log.write(line)
                    end = watcher.feed(line)
                    if end is None:
                        continue
                    log.flush()
                    summary = warehouse.summary(crm, watcher.run_id) if end.state == "success" else {}
                    print(step_line(end.label, end.seconds, summary, end.state), file=out, flush=True)
                    if end.state != "success":
                        print("\n".join(failure_report(end, log_path)), file=out, flush=True)
                code = child.wait()
            except BaseException:
                _interrupt(child)
                raise
        return _finish(code, crm, watcher, warehouse, log_path, out)
    finally:
        warehouse.close()


def _interrupt(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()


def _finish(code: int, crm: str, watcher: DagTestWatcher, warehouse: _Warehouse, log_path: Path,
            out: IO[str]) -> int:
    failed = [t for t in watcher.ended if t.state not in ("success", "skipped", "upstream_failed")]
    if code != 0 or watcher.run_id is None:
        if not failed:  # nothing ran (e.g. the DAG did not import): show the end of the log
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            print("\n".join(["FAILED before any task ended; the end of the Airflow log:", *tail,
                             f"  full Airflow log: {log_path}"]), file=out)
        else:
            last = failed[-1]
            print(f"\nrun {watcher.run_id} FAILED in task {last.label}: {_clip(last.error or last.state)}",
                  file=out)
        return code or 1
    summary = report_payload(crm).get(crm)
    if summary is None or summary["run_id"] != watcher.run_id:
        print(f"\nrun {watcher.run_id} ended but the warehouse holds no summary of it: is "
              f"LEADFLOW_WAREHOUSE_URL the same for Airflow and this shell? Log: {log_path}", file=out)
        return 1
    print("", file=out)
    print("\n".join(run_overview(crm, summary)), file=out)
    print(f"  Airflow UI   make airflow  (then the leadflow_{crm} DAG, or the Leadflow page)", file=out)
    return 0 if summary["status"] in COMPLETED_STATUSES else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m leadflow.devrun [--contacts N] [--standalone] -- CMD ...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="leadflow.devrun")
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--standalone", action="store_true", help="CMD is `airflow standalone`")
    parser.add_argument("--sandbox-arg", action="append", default=[], help="extra sandbox flag")
    parser.add_argument("--summary", metavar="CRM",
                        help="CMD is `airflow dags test`: its output goes to var/logs/, the terminal gets "
                             "a line per task and the run summary of this CRM")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    var_dir = leadflow_env().var_path
    proc, sandbox_env = start_sandbox(var_dir, args.contacts, args.sandbox_arg)
    print(f"CRM sandbox running (pid {proc.pid}, log {var_dir / 'sandbox.log'})", flush=True)
    env = dict(os.environ)
    env.update(_standalone_env(sandbox_env) if args.standalone else sandbox_env)
    child = None
    try:
        if args.summary:
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            return watch_dags_test(command, env, args.summary, var_dir / "logs" / f"dags-test-{stamp}.log")
        child = subprocess.Popen(command, env=env)
        if args.standalone:
            _print_login(Path(env.get("AIRFLOW_HOME", project_root() / ".airflow")),
                         env["AIRFLOW__API__PORT"])
        return child.wait()
    except KeyboardInterrupt:
        if child:
            _interrupt(child)
        return 130
    finally:
        stop(proc)
        print("CRM sandbox stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
