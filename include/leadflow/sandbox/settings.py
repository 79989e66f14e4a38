"""Validated settings of one sandbox server (from CLI flags or Python)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow.sandbox.faults import FaultSpec
from leadflow.sandbox.ratelimit import RateSpec


class SandboxSettings(BaseModel):
    """Everything `create_app` needs. Rate limits are "N/SECONDS" strings or "off"."""

    model_config = ConfigDict(extra="forbid")

    db_path: Path
    token: str = Field(default_factory=lambda: "pat-sandbox-" + secrets.token_hex(16), min_length=8)
    enrichment_key: str = Field(default_factory=lambda: "ek-sandbox-" + secrets.token_hex(16), min_length=8)
    # What the token-info endpoint reports: a private app with what leadflow needs.
    token_scopes: tuple[str, ...] = ("crm.objects.contacts.read", "crm.objects.contacts.write",
                                     "crm.objects.companies.read", "crm.schemas.contacts.read",
                                     "crm.schemas.contacts.write")
    rate_limit: str = "100/10"
    search_rate_limit: str = "5/1"
    daily_limit: int = Field(1_000_000, ge=1)
    enrichment_rate_limit: str = "600/60"
    enrichment_queued_share: float = Field(0.1, ge=0, le=1)
    faults: str = "off"
    fault_seed: int = 0
    lifecycle_backward: Literal["ignore", "reject"] = "ignore"
    batch_validation: Literal["per-record", "whole-batch"] = "per-record"
    timeout_seconds: float = Field(30.0, ge=0)
    slow_seconds: float = Field(1.5, ge=0)

    @field_validator("rate_limit", "search_rate_limit", "enrichment_rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        RateSpec.parse(value)  # raises ValueError with the bad text
        return value

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, value: str) -> str:
        FaultSpec.parse(value)
        return value

    def rate(self) -> RateSpec | None:
        return RateSpec.parse(self.rate_limit)

    def search_rate(self) -> RateSpec | None:
        return RateSpec.parse(self.search_rate_limit)

    def enrichment_rate(self) -> RateSpec | None:
        return RateSpec.parse(self.enrichment_rate_limit)

    def fault_spec(self) -> FaultSpec:
        return FaultSpec.parse(self.faults)
