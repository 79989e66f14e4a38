"""Thresholds of the data-quality gate, validated with pydantic.

Defaults live in `include/config/quality.yaml` (and mirror the field defaults here, so
`QualitySettings()` works without a file). `load_settings` reports every bad key by its dotted
path ("quality.rows.max_text_length.email: ...") instead of a pydantic traceback.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.schema import CANONICAL_STAGES, LEAD_COLUMNS, MAX_TEXT_LENGTH
from leadflow.validation import ConfigError, check_known, load_yaml, validate_document

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[2] / "config" / "quality.yaml"

TEXT_COLUMNS: tuple[str, ...] = tuple(c for c, k in LEAD_COLUMNS.items() if k == "str")
NUMBER_COLUMNS: tuple[str, ...] = tuple(c for c, k in LEAD_COLUMNS.items() if k == "float")
TIMESTAMP_COLUMNS: tuple[str, ...] = tuple(c for c, k in LEAD_COLUMNS.items() if k == "ts")


class NumberRange(BaseModel):
    """Inclusive bounds of a numeric lead column (missing values are allowed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min: float = 0.0
    max: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> NumberRange:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


def _default_ranges() -> dict[str, NumberRange]:
    # Counters are non-negative; the upper bounds only catch corrupt values (1e300, inf).
    ranges = {name: NumberRange(min=0, max=1e9) for name in NUMBER_COLUMNS}
    ranges["employees"] = NumberRange(min=0, max=10_000_000)
    ranges["annual_revenue"] = NumberRange(min=0, max=1e13)
    return ranges


def _default_lengths() -> dict[str, int]:
    lengths = {name: MAX_TEXT_LENGTH for name in TEXT_COLUMNS}
    # record_id / crm are String(64) primary keys in the warehouse; emails are at most 254
    # octets (RFC 5321); names and titles beyond a few hundred characters are junk.
    lengths.update(crm=64, record_id=64, company_id=64, email=254, first_name=255,
                   last_name=255, job_title=255, phone=64, country=128, industry=255,
                   lifecycle_stage=64, lead_status=64, website=2048)
    return lengths


class RowSettings(BaseModel):
    """Row-level expectations: a failing row is quarantined, never scored or pushed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Columns that must be present and non-blank; crm and record_id are always required.
    required_fields: tuple[str, ...] = ("email",)
    # Accept an address only if email-validator (no DNS) does; blank emails are a
    # "required" failure when "email" is required, otherwise they pass.
    check_email_syntax: bool = True
    max_text_length: dict[str, int] = Field(default_factory=_default_lengths)
    number_ranges: dict[str, NumberRange] = Field(default_factory=_default_ranges)
    # Timestamps later than now + skew are "in the future"; earlier than this are junk.
    max_clock_skew_minutes: float = Field(10.0, ge=0)
    earliest_timestamp: datetime = datetime(1990, 1, 1, tzinfo=timezone.utc)

    @field_validator("required_fields")
    @classmethod
    def _known_required(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        check_known(value, LEAD_COLUMNS, "column(s)", expected="lead columns")
        return value

    @field_validator("max_text_length")
    @classmethod
    def _known_text(cls, value: dict[str, int]) -> dict[str, int]:
        check_known(value, TEXT_COLUMNS, "text column(s)")
        bad = sorted(k for k, v in value.items() if v < 1)
        if bad:
            raise ValueError(f"length must be at least 1 for {bad}")
        # Unlisted text columns keep their default bound.
        return {**_default_lengths(), **value}

    @field_validator("number_ranges")
    @classmethod
    def _known_numbers(cls, value: dict[str, NumberRange]) -> dict[str, NumberRange]:
        check_known(value, NUMBER_COLUMNS, "number column(s)")
        return {**_default_ranges(), **value}

    @field_validator("earliest_timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class BatchSettings(BaseModel):
    """Batch-level expectations on the validated leads: failing stops the run before the push."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Share of rows failing a row expectation above which the whole batch is suspect.
    max_quarantine_share: float = Field(0.05, ge=0, le=1)
    # The newest `updated_at` must be at most this old (a CRM quiet over a long weekend is fine).
    max_staleness_hours: float = Field(96.0, gt=0)
    # Share of leads with at least one of `enrichment_columns` filled, once enriched.
    min_enrichment_coverage: float = Field(0.5, ge=0, le=1)
    enrichment_columns: tuple[str, ...] = ("industry", "employees", "country")
    # Rows sharing a (crm, record_id) in one batch: each is quarantined; more than this many
    # points at a connector bug, so the batch fails.
    max_duplicate_ids: int = Field(0, ge=0)
    # Batches smaller than this skip the share checks: 1 bad row of 3 is not a trend.
    min_rows_for_shares: int = Field(20, ge=0)


class ScoreSettings(BaseModel):
    """Expectations on the qualification output, checked before the push."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score_columns: tuple[str, ...] = ("score", "fit_score", "engagement_score")
    min_score: float = 0.0
    max_score: float = 100.0
    allowed_stages: tuple[str, ...] = CANONICAL_STAGES
    # Population stability index of `score` against the previous run's scores.
    psi_bins: int = Field(10, ge=2, le=100)
    max_psi: float = Field(0.25, gt=0)
    # Below this many scores on either side PSI is too noisy to gate on.
    min_rows_for_psi: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> ScoreSettings:
        if self.max_score <= self.min_score:
            raise ValueError(f"max_score ({self.max_score}) must exceed min_score ({self.min_score})")
        return self


class QualitySettings(BaseModel):
    """Everything the quality gate reads from `quality.yaml`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: RowSettings = Field(default_factory=RowSettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    scores: ScoreSettings = Field(default_factory=ScoreSettings)
    # Characters of an offending value kept in the quarantine table and failure frames.
    value_max_chars: int = Field(200, ge=16, le=4000)


class SettingsError(ConfigError):
    """Invalid quality configuration; the message names every bad key."""


def load_settings(
    mapping: Mapping[str, Any] | None = None, *, prefix: str = "quality", source: str = "quality settings"
) -> QualitySettings:
    """Validate a plain mapping (the `quality:` section of the YAML file).

    Raises `SettingsError` listing each problem as `<source>: <prefix>.<dotted.key>: <reason>`.
    """
    return validate_document(QualitySettings, mapping or {}, source, SettingsError, prefix=(prefix,))


def load_settings_file(path: Path | str | None = None) -> QualitySettings:
    """Read and validate a YAML file whose top-level key is `quality:` (default: the bundled
    `include/config/quality.yaml`)."""
    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    document = load_yaml(path, "quality settings", SettingsError) or {}
    if not isinstance(document, dict):
        raise SettingsError.of(str(path), ["expected a mapping with a 'quality' key"])
    unknown = sorted(set(document) - {"quality"})
    if unknown:
        raise SettingsError.of(str(path), [f"{key}: unknown top-level key (expected only 'quality')"
                                           for key in unknown])
    return load_settings(document.get("quality") or {}, source=str(path))
