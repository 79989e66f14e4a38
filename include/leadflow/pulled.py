"""What a CRM pull hands the warehouse besides the canonical rows (`leadflow.schema`): the problems
found in single records, the records removed since the last pull, and the watermark up to which
the warehouse holds every change. Connectors produce them; the warehouse stores them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Watermark:
    """Where the incremental pull stopped: every record modified before `modified_ms` is in the
    warehouse. Stored in the warehouse in the same transaction as the records it covers."""

    modified_ms: int
    last_id: str | None = None


@dataclass
class RecordIssue:
    """Something wrong with one incoming record (unparseable date, oversized text, unknown
    stage). The record is still landed with the bad value cleared; the issue is reported."""

    record_id: str
    field: str
    problem: str
    value: str | None = None  # truncated to 200 characters by the connector


@dataclass(frozen=True)
class RemovedRecord:
    """A lead the CRM archived, deleted or merged into another (`merged_into`) since the last
    pull: an incremental pull does not return it, so the connector reports it."""

    record_id: str
    merged_into: str | None = None
