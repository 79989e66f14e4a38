"""Salesforce's tunables, read from the connection's `extra` (all optional)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from leadflow.connections import Connection
from leadflow.crm.settings import settings_from_extra


class SalesforceSettings(BaseModel):
    """Tunables read from the connection's `extra` (all optional)."""

    model_config = ConfigDict(extra="forbid")

    api_version: str = Field("59.0", pattern=r"^\d{2,3}\.\d$")
    client_id: str | None = None
    client_secret: str | None = None
    token_url: str | None = Field(None, description="OAuth token endpoint (default: <instance>/services/oauth2/token)")
    daily_reserve: int = Field(500, ge=0, description="stop when the daily API allocation left is this low")
    # Salesforce's limits are the daily total and the concurrent long-running requests, not a
    # rate: unpaced by default; the bucket still shares a pause and a budget stop between workers.
    rate_limit_per_s: float | None = Field(None, gt=0, description="requests per second (default: not paced)")
    query_batch_size: int = Field(2000, ge=200, le=2000)
    batch_size: int = Field(200, ge=1, le=200)
    modstamp_lag_ms: int = Field(60_000, ge=0, description="watermarks stay this far behind the pull start")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    mapping_path: str | None = None

    @classmethod
    def from_connection(cls, connection: Connection) -> "SalesforceSettings":
        return settings_from_extra(connection, cls)
