"""Helpers of the integration tests that read the sandbox CRMs' own records to judge leadflow."""

from __future__ import annotations

from typing import Any

from leadflow.sandbox.actors import tls_session


def salesforce_query_all(sf: Any, soql: str, token: str | None = None) -> list[dict[str, Any]]:
    """Every row of `soql` (deleted and merged records' rows too: queryAll), all pages, read with
    the org's token unless another is given."""
    session = tls_session(sf.cert_path, token or sf.token)
    rows: list[dict[str, Any]] = []
    answer = session.get(f"{sf.base_url}/services/data/v59.0/queryAll", params={"q": soql}, timeout=60).json()
    while True:
        rows.extend(answer.get("records") or [])
        if answer.get("done", True):
            return rows
        answer = session.get(f"{sf.base_url}{answer['nextRecordsUrl']}", timeout=60).json()
