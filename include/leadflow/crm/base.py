"""The protocol every CRM connector implements, and the small value types it exchanges (those a
page of a pull carries to the warehouse are in `leadflow.pulled`).

The pipeline only talks to a `CrmConnector`; it never sees a CRM's property names. Records cross
this boundary in the canonical shape of `leadflow.schema` (plain dicts keyed by its column names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Protocol, Sequence, runtime_checkable

from leadflow.pulled import RecordIssue, RemovedRecord, Watermark

if TYPE_CHECKING:
    from leadflow.ownership import Observed


class CrmError(Exception):
    """A CRM call failed in a way retries cannot fix; the message says what to do."""


class CrmAuthError(CrmError):
    """401/403: the token is missing, expired or lacks a scope."""


class CrmRequestError(CrmError):
    """400 and other permanent client errors: the request itself is wrong."""


class CrmUnavailableError(CrmError):
    """Retries were exhausted on 429/5xx/timeouts; the run may be retried later."""


class CrmBudgetExhausted(CrmError):
    """The CRM's daily API allocation is (nearly) spent: stop cleanly, resume next run."""


@dataclass
class LeadPage:
    """One page of an incremental pull: canonical leads, their companies, and the watermark that
    becomes safe to store once this page (and every page before it) is committed."""

    leads: list[dict[str, Any]]
    companies: list[dict[str, Any]]
    watermark: Watermark | None
    issues: list[RecordIssue] = field(default_factory=list)
    removed: list[RemovedRecord] = field(default_factory=list)


@dataclass(frozen=True)
class RecordUpdate:
    """Desired values for one record, keyed by canonical field name (schema.PUSHED_FIELDS), and
    what the connector needs to apply the stage rule (`leadflow.stage_rule`).

    `values` holds only fields to write; the control data are typed fields. `current_stage`: the
    record's canonical lifecycle stage as last read (None: empty or not read), against which a
    backward move, or one that leaves or enters a sales-owned stage, is refused.
    `allow_backward`: permit a backward stage move (a rollback restoring an earlier stage).
    """

    record_id: str
    values: dict[str, Any]
    current_stage: str | None = None
    allow_backward: bool = False


@dataclass(frozen=True)
class RecordResult:
    """The CRM's answer for one record of a batch write.

    status: "confirmed" (written), "retryable" (transient: locked, rate limited, conflict),
    "rejected" (permanent: validation), "unknown" (the call timed out; read back to decide).
    """

    record_id: str
    status: str
    error: str | None = None
    category: str | None = None
    # Fields the connector wrote beyond the update's own, as (field, before, after): e.g. the
    # Salesforce Rating set with the stage. The push log records them so rollback restores them.
    side_writes: tuple[tuple[str, Any, Any], ...] = ()


@runtime_checkable
class CrmConnector(Protocol):
    name: str  # "hubspot", "salesforce": the `crm` column value
    max_batch_size: int  # records per write call (HubSpot 100, Salesforce 200)

    def pull(self, since: Watermark | None) -> Iterator[LeadPage]:
        """Yield pages of leads modified at or after `since` (all live leads when None),
        in cursor order, so that each page's watermark is safe to store after committing it."""
        ...

    def ensure_schema(self) -> None:
        """Create the fields leadflow owns if missing; raise CrmError if one has a wrong type."""
        ...

    def push(self, updates: Sequence[RecordUpdate]) -> list[RecordResult]:
        """Write one batch (len <= max_batch_size); one result per update, in order."""
        ...

    def read(self, record_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Current values of the pushed fields (canonical names, plus record_id)."""
        ...

    def observe(self, record_ids: Sequence[str]) -> dict[str, dict[str, "Observed"]]:
        """record_id -> shared field (`ownership.SHARED_FIELDS`) -> its value now and who last
        wrote it, from the CRM's own history; records that no longer exist are left out. Called
        right before a write batch, so it reads only what the ownership rule needs."""
        ...

    def close(self) -> None: ...
