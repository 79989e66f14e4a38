"""The sandbox served from a process of its own (`leadflow sandbox serve`), as a CRM would be
elsewhere, for the benchmarks: served from the benchmark's process it would take its share of the
interpreter's lock from the pipeline being measured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import requests

from leadflow.connections import connection_from_env
from leadflow.devrun import start_sandbox, stop

# HubSpot Professional, as the connection tells leadflow (the sandbox's own limits are its flags).
PROFESSIONAL = {"rate_limit_per_10s": 190, "search_rate_per_s": 5}


class SandboxProcess:
    """`leadflow sandbox serve` with `serve_args`: the HubSpot connection to it (extra telling
    leadflow Professional's limits), its admin API and its db file (read it only while idle)."""

    def __init__(self, var_dir: Path, contacts: int, serve_args: list[str], timeout: float) -> None:
        self.proc, env = start_sandbox(var_dir, contacts, serve_args, timeout=timeout)
        base = connection_from_env("leadflow_hubspot", env)
        self.conn = replace(base, extra={**base.extra, **PROFESSIONAL})
        self.base_url = f"{self.conn.schema or 'http'}://{self.conn.host}:{self.conn.port}"
        self.db_path = var_dir / "sandbox.db"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {self.conn.password}"

    def admin(self, method: str, path: str, body: Any = None) -> dict:
        response = self.http.request(method, f"{self.base_url}/_sandbox/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else {}

    def close(self) -> None:
        self.http.close()
        stop(self.proc)
