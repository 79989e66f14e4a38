"""Pipeline settings from include/config/leadflow.yaml (or `LEADFLOW_CONFIG`), validated when
loaded, with messages naming the bad key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow.enrich.settings import EnrichmentSettings
from leadflow.env import leadflow_env
from leadflow.ownership import ReclaimPolicy
from leadflow.push.diff import DiffSettings
from leadflow.push.writer import PushSettings as WriterSettings
from leadflow.shared_limit import RateLimitSettings
from leadflow.validation import ConfigError, load_yaml_model

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "leadflow.yaml"


class SettingsError(ConfigError):
    """The pipeline configuration is invalid; the message names each bad key."""


class PushPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_score_delta: float = Field(2.0, ge=0)
    max_attempts: int = Field(3, ge=1)
    max_change_share: float = Field(0.5, gt=0, le=1)
    lease_ttl_s: float = Field(300.0, gt=0)
    calls_in_flight: int = Field(4, ge=1, le=16)
    # When leadflow may take a shared field (stage, status) back from someone else's value.
    # Absent (the default): never; a person hands a field back by clearing it.
    reclaim: ReclaimPolicy | None = None

    def writer(self) -> WriterSettings:
        return WriterSettings(max_attempts=self.max_attempts, calls_in_flight=self.calls_in_flight,
                              lease_ttl_s=self.lease_ttl_s, reclaim=self.reclaim)


class AlertPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A run alerts when the CRM rejected more than this share of the records its push sent.
    max_rejected_share: float = Field(0.05, ge=0, le=1)


class PipelineSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    push: PushPolicy = Field(default_factory=PushPolicy)
    alerts: AlertPolicy = Field(default_factory=AlertPolicy)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    enrichment: EnrichmentSettings = Field(default_factory=EnrichmentSettings)

    @field_validator("enrichment", mode="before")
    @classmethod
    def _empty_enrichment(cls, value: Any) -> Any:
        return {} if value is None else value

    def diff(self) -> DiffSettings:
        return DiffSettings(min_score_delta=self.push.min_score_delta, reclaim=self.push.reclaim)


def load_pipeline_settings(path: str | Path | None = None) -> PipelineSettings:
    path = Path(path or leadflow_env().config or DEFAULT_CONFIG_PATH)
    return load_yaml_model(path, PipelineSettings, "pipeline settings", SettingsError, empty_ok=True)
