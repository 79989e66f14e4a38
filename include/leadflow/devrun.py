"""Run a command beside a local CRM sandbox: `python -m leadflow.devrun [options] -- CMD ...`.

Starts `leadflow sandbox serve` in the background on a free loopback port (data kept in
var/sandbox.db so a second run sees the first run's writes), exports the connection variables it
prints, runs CMD, and stops the sandbox afterwards, also when CMD fails or on Ctrl-C.
Used by `make run` and `make airflow`.
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
from pathlib import Path

from leadflow.warehouse.db import project_root

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
    port = os.environ.get("LEADFLOW_AIRFLOW_PORT", "8080")
    return {
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": port,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
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
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    var_dir = Path(os.environ.get("LEADFLOW_VAR_DIR", project_root() / "var"))
    proc, sandbox_env = start_sandbox(var_dir, args.contacts, args.sandbox_arg)
    print(f"CRM sandbox running (pid {proc.pid}, log {var_dir / 'sandbox.log'})", flush=True)
    env = dict(os.environ)
    env.update(_standalone_env(sandbox_env) if args.standalone else sandbox_env)
    child = None
    try:
        child = subprocess.Popen(command, env=env)
        if args.standalone:
            _print_login(Path(env.get("AIRFLOW_HOME", project_root() / ".airflow")),
                         env["AIRFLOW__API__PORT"])
        return child.wait()
    except KeyboardInterrupt:
        if child and child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        return 130
    finally:
        stop(proc)
        print("CRM sandbox stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
