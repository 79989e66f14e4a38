"""Configuration of the enrichment step, validated with pydantic.

Everything has a sensible default so `EnrichmentSettings()` works for the sandbox; a deployment
overrides keys from YAML or the environment through `load_settings`, which reports a bad key by
its dotted path ("enrichment.http.concurrency: ...") instead of a pydantic traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from leadflow.validation import ConfigError, check_known, validate_document

# Fields the enrichment resolves onto a lead, in output order. Bands are derived from
# employees / annual_revenue and inherit their source.
RESOLVED_FIELDS: tuple[str, ...] = (
    "industry",
    "employees",
    "annual_revenue",
    "country",
    "technologies",
    "founded_year",
)

Precedence = Literal["crm", "enrichment"]


class HttpSettings(BaseModel):
    """Behaviour of the HTTP enrichment provider (the sandbox's or a vendor's API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    connection_id: str = "leadflow_enrichment"
    path: str = "/v2/companies/find"
    concurrency: int = Field(4, ge=1, le=64)
    # Client-side budget; the common APIs allow 600/min. Burst lets a short run start fast.
    requests_per_second: float = Field(8.0, gt=0)
    burst: int = Field(8, ge=1)
    timeout_s: float = Field(10.0, gt=0)
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_base_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    # 202 "queued": ask again after this delay, at most this many extra rounds in one run.
    pending_rounds: int = Field(3, ge=0, le=20)
    pending_delay_s: float = Field(2.0, ge=0)
    # Upper bound on lookups per run, so a huge first run cannot exhaust a paid quota.
    max_lookups_per_run: int = Field(50_000, ge=0)


class EnrichmentSettings(BaseModel):
    """All knobs of the enrichment step.

    `reference_path=None` means the bundled `leadflow/enrich/data/companies.csv`; point it at your
    own CSV or Parquet file (same columns) to replace the reference list.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference_enabled: bool = True
    reference_path: Path | None = None
    cache_enabled: bool = True
    cache_ttl_days: float = Field(30.0, gt=0)
    # "Not found" answers expire sooner: unknown companies get enriched by vendors over time.
    negative_ttl_days: float = Field(7.0, gt=0)
    # rapidfuzz score (0-100) a company-name match must reach to count.
    fuzzy_threshold: float = Field(90.0, ge=0, le=100)
    fuzzy_enabled: bool = True
    # Per resolved field: "crm" keeps a non-empty CRM value, "enrichment" lets a found value win.
    precedence: dict[str, Precedence] = Field(default_factory=dict)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @field_validator("precedence")
    @classmethod
    def _known_fields(cls, value: dict[str, Precedence]) -> dict[str, Precedence]:
        check_known(value, RESOLVED_FIELDS, "field(s)")
        return value

    def precedence_for(self, field: str) -> Precedence:
        """The configured precedence of `field`; CRM values win by default."""
        return self.precedence.get(field, "crm")

    @property
    def cache_ttl_ms(self) -> int:
        return int(self.cache_ttl_days * 86_400_000)

    @property
    def negative_ttl_ms(self) -> int:
        return int(self.negative_ttl_days * 86_400_000)


class SettingsError(ConfigError):
    """Invalid enrichment configuration; the message names every bad key."""


def load_settings(
    mapping: Mapping[str, Any] | None = None, *, prefix: str = "enrichment", source: str = "enrichment settings"
) -> EnrichmentSettings:
    """Validate a plain mapping (e.g. the `enrichment:` section of a YAML file).

    Raises `SettingsError` listing each problem as `<source>: <prefix>.<dotted.key>: <reason>`.
    """
    return validate_document(EnrichmentSettings, mapping or {}, source, SettingsError, prefix=(prefix,))
