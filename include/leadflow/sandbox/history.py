"""Who changed what: the source of a property change and HubSpot's `propertiesWithHistory` entries.

Every applied write is logged with its `ChangeSource` (the principal that made it) in the store's
`writes` table. A seeded (bulk-loaded) record has no logged creation: a world of 1M contacts
would otherwise cost one row per property. Its creation entry is synthesized instead: the value
as created (the first logged change's old value, else the current value), at `createdAt`, from a
per-record origin (FORM / IMPORT / API) drawn from the world seed, so the same world always
tells the same story.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from leadflow.sandbox.properties import ms_to_iso

# The ids the token-info endpoint reports for the sandbox portal and leadflow's private app.
SANDBOX_HUB_ID = 24_680_135
SANDBOX_APP_ID = 3_141_592
SANDBOX_USER_ID = 77_001

# Share of seeded records per origin (cumulative thresholds out of 100): most contacts of a real
# portal came in through a form, many through list imports, some through other apps' API calls.
_ORIGINS: tuple[tuple[int, str], ...] = ((55, "FORM"), (85, "IMPORT"), (100, "API"))
_FORMS = 3  # a portal has a few lead forms
_IMPORTS = 4  # and a few past list imports


@dataclass(frozen=True)
class ChangeSource:
    """Who made a change, in HubSpot's terms (`sourceType`, `sourceId`, `sourceLabel`,
    `updatedByUserId`)."""

    source_type: str
    source_id: str | None = None
    source_label: str | None = None
    user_id: int | None = None

    def to_api(self) -> dict[str, Any]:
        """HubSpot's keys; absent ones are omitted, as HubSpot omits them."""
        out: dict[str, Any] = {"sourceType": self.source_type}
        if self.source_id is not None:
            out["sourceId"] = self.source_id
        if self.source_label is not None:
            out["sourceLabel"] = self.source_label
        if self.user_id is not None:
            out["updatedByUserId"] = self.user_id
        return out

    def to_json(self) -> str:
        return json.dumps([self.source_type, self.source_id, self.source_label, self.user_id], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "ChangeSource":
        source_type, source_id, source_label, user_id = json.loads(text)
        return cls(source_type, source_id, source_label, user_id)


# leadflow's own token: a private app.
LEADFLOW_APP = ChangeSource("INTEGRATION", str(SANDBOX_APP_ID))
# Writes made without a principal (Python callers of the service).
API = ChangeSource("API")
IMPORT = ChangeSource("IMPORT")
# lastmodifieddate is set by HubSpot itself on every write.
CALCULATED = ChangeSource("CALCULATED")


def _fraction(seed: int, *parts: Any) -> int:
    digest = hashlib.blake2b(":".join(map(str, (seed, *parts))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def seeded_origin(seed: int, object_type: str, object_id: int) -> ChangeSource:
    """How a seeded record came into the portal, the same for a (seed, type, id) on every run."""
    draw = _fraction(seed, object_type, object_id)
    share = draw % 100
    kind = next(name for limit, name in _ORIGINS if share < limit)
    pick = (draw // 100) % 1000
    if kind == "FORM":
        n = pick % _FORMS
        guid = hashlib.blake2b(f"{seed}:form:{n}".encode(), digest_size=16).hexdigest()
        form_id = f"{guid[:8]}-{guid[8:12]}-{guid[12:16]}-{guid[16:20]}-{guid[20:]}"
        return ChangeSource("FORM", form_id, f"Lead form {n + 1}")
    if kind == "IMPORT":
        n = pick % _IMPORTS
        return ChangeSource("IMPORT", str(40_000_000 + _fraction(seed, "import", n) % 9_000_000),
                            f"List import {n + 1}")
    return API


def history_entry(value: str | None, at_ms: int, source: ChangeSource) -> dict[str, Any]:
    """One `ValueWithTimestamp`: a cleared value is the empty string, as HubSpot sends it."""
    return {"value": "" if value is None else value, "timestamp": ms_to_iso(at_ms), **source.to_api()}
