"""SOQL text: literals and the keyset condition of an incremental pull (no HTTP here).

Quoted strings use SOQL's escape sequences, the same that `simple_salesforce.format_soql` writes
(a test compares them); simple_salesforce itself is not a runtime dependency.
"""

from __future__ import annotations

from datetime import datetime, timezone

from leadflow.pulled import Watermark


def soql_datetime(ms: int) -> str:
    """Epoch ms -> an unquoted SOQL datetime literal in UTC. Whole seconds (what Salesforce's own
    SystemModstamp values are) are written without a fraction; milliseconds only when present."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    if ms % 1000 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# SOQL's escape sequences in a quoted string (what simple_salesforce.format_soql writes too).
_SOQL_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t",
                               "\b": "\\b", "\f": "\\f"})


def soql_string(value: str) -> str:
    return "'" + value.translate(_SOQL_ESCAPES) + "'"


def watermark_condition(since: Watermark | None, cursor_field: str) -> str:
    """The keyset condition of an incremental pull: after (modstamp, last Id), or at/after modstamp."""
    if since is None:
        return ""
    at = soql_datetime(since.modified_ms)
    if since.last_id:
        return (f"({cursor_field} > {at} OR ({cursor_field} = {at} AND Id > {soql_string(since.last_id)}))")
    return f"{cursor_field} >= {at}"
