"""Process helpers shared by the end-to-end tests that start Airflow components."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def airflow_env(home: Path, base: dict[str, str] | None = None, **overrides: str) -> dict[str, str]:
    """`base` (default: this process's environment) pointed at an Airflow home with this
    checkout's dags/ and plugins/, no example DAGs, and the venv's `airflow` on PATH."""
    env = dict(os.environ if base is None else base)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PATH=f"{BIN}:{os.environ.get('PATH', '')}",
    )
    env.update(overrides)
    return env


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop a process started with start_new_session=True and every child in its group (the
    scheduler's executor workers, task processes and api-server outlive a stopped parent)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
