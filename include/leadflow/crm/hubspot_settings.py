"""HubSpot's tunables, read from the connection's `extra` (all optional)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from leadflow.connections import Connection
from leadflow.crm.settings import settings_from_extra


class HubSpotSettings(BaseModel):
    """Tunables read from the connection's `extra` (all optional)."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_per_10s: int = Field(100, ge=1, description="the portal's burst limit per rolling 10 s")
    search_rate_per_s: float = Field(5, gt=0, description="search requests per rolling second")
    # HubSpot's 429s say which window is full; a rolling window frees up gradually.
    rate_limit_wait_s: float = Field(2.0, gt=0, description="least wait after a ten-secondly 429")
    search_rate_wait_s: float = Field(1.0, gt=0, description="least wait after a secondly (search) 429")
    rate_headroom: float = Field(0.04, ge=0, lt=0.5, description="fraction kept under each ceiling")
    connect_timeout_s: float = Field(5.0, gt=0)
    read_timeout_s: float = Field(30.0, gt=0)
    max_retries: int = Field(5, ge=0, le=20)
    backoff_base_s: float = Field(0.5, gt=0)
    backoff_max_s: float = Field(30.0, gt=0)
    daily_reserve: int = Field(0, ge=0, description="stop when the daily allowance left is this low")
    page_size: int = Field(200, ge=1, le=200)
    # A full pull (no watermark) lists contacts from the lowest id up (100 a call on the general
    # limit: 190 per 10 s on Professional) while it searches from the highest id down (200 a call
    # at 5 per s), until the two meet ("both"): one cursor waits for each answer, and against a
    # portal's 100-300 ms a call one list cursor reaches a third to half of its limit. "list" or
    # "search" pages through one of them only. Incremental pulls need a filter, so they search,
    # unless most contacts changed (then the full pull is faster).
    full_pull: Literal["both", "list", "search"] = "both"
    list_page_size: int = Field(100, ge=1, le=100)
    # Companies are read 100 a call once this many new ids are waiting, or once this many leads
    # wait for them: a read per page would ask for a handful of companies a call.
    company_flush_leads: int = Field(5000, ge=1)
    batch_size: int = Field(100, ge=1, le=100)
    search_body_limit: int = Field(3000, ge=500, le=3000)
    index_lag_ms: int = Field(60_000, ge=0, description="watermarks stay this far behind the pull start")
    mapping_path: str | None = None

    @classmethod
    def from_connection(cls, connection: Connection) -> "HubSpotSettings":
        return settings_from_extra(connection, cls)
