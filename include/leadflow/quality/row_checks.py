"""Row-level expectations on leads, run through Great Expectations in one validation.

Pipeline: coerce every lead column into one plain dtype (`coerce`), derive the columns GX
cannot compute cheaply (text lengths, email syntax verdicts, a per-row "all values have the right
type" flag), validate that frame against one suite, then turn GX's failing row positions into
one failure row per (record, expectation, column). A lead with no failure passes; every other
lead has at least one failure row naming the expectation that caught it.

Check names (stable; they key the quarantine table):
    required            a required field is missing or blank (crm, record_id, configured fields)
    unique_per_crm      the record id occurs more than once in the (one CRM's) batch
    email_syntax        email-validator rejects the address (no DNS lookups)
    allowed_value       crm / lifecycle_stage / lead_status outside the allowed options
    max_length          text longer than its configured bound
    number_range        a number outside its configured [min, max] (negative counters, inf)
    valid_timestamp     a timestamp before `earliest_timestamp` or after now + clock skew
    value_type          a value of the wrong type (a list as a name, "abc" as employees, ...)
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from leadflow.quality import coerce
from leadflow.quality.emails import email_syntax_valid
from leadflow.quality.gx_runtime import ROW_RESULT_FORMAT, ExpectationSpec, validate_frame
from leadflow.quality.results import CheckResult
from leadflow.quality.settings import (
    NUMBER_COLUMNS,
    TEXT_COLUMNS,
    TIMESTAMP_COLUMNS,
    QualitySettings,
    RowSettings,
)
from leadflow.schema import CANONICAL_STAGES, CANONICAL_STATUSES, LEAD_COLUMNS

log = logging.getLogger(__name__)

FAILURE_COLUMNS: tuple[str, ...] = ("crm", "record_id", "expectation", "column", "value")
BOOL_COLUMNS: tuple[str, ...] = tuple(c for c, k in LEAD_COLUMNS.items() if k == "bool")
# Longest record id the warehouse keys hold (String(64)); longer or missing ids get a
# surrogate key so the failure can still be quarantined (see `record_keys`).
MAX_KEY_LENGTH = 64
TYPES_OK = "_value_types_ok"


@dataclass(frozen=True)
class RowCheckOptions:
    """What the row expectations accept for one CRM.

    `lifecycle_stages` / `lead_statuses` are the canonical values the CRM's options map to
    (default: every canonical value); pass the CRM's own lists to be stricter.
    """

    crm: str
    lifecycle_stages: tuple[str, ...] = CANONICAL_STAGES
    lead_statuses: tuple[str, ...] = CANONICAL_STATUSES
    settings: RowSettings = field(default_factory=RowSettings)
    value_max_chars: int = 200

    @classmethod
    def from_settings(
        cls,
        settings: QualitySettings,
        crm: str,
        *,
        lifecycle_stages: Sequence[str] | None = None,
        lead_statuses: Sequence[str] | None = None,
    ) -> RowCheckOptions:
        return cls(
            crm=crm,
            lifecycle_stages=tuple(lifecycle_stages or CANONICAL_STAGES),
            lead_statuses=tuple(lead_statuses or CANONICAL_STATUSES),
            settings=settings.rows,
            value_max_chars=settings.value_max_chars,
        )


@dataclass
class RowValidation:
    """The outcome of `validate_rows`.

    `passed_mask` and `row_keys` are aligned with the input rows; `row_keys` holds each row's
    record id, or its surrogate key when the id is missing or too long (see `record_keys`);
    `passed_ids` are the keys of the passing rows (always real record ids).
    `failures` has one row per failed expectation per record (FAILURE_COLUMNS); `results` one
    `CheckResult` per expectation (stage "rows": informational, failing rows are quarantined,
    the batch gate is `check_batch`). `frame` is the coerced frame GX validated (timestamps as
    epoch ms), reused by the batch checks; `gx_result` GX's own result, for Data Docs.
    """

    crm: str
    row_count: int
    passed_mask: np.ndarray
    passed_ids: list[str]
    failures: pd.DataFrame
    results: list[CheckResult]
    frame: pd.DataFrame
    row_keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=object))
    gx_result: Any = None

    @property
    def failed_row_count(self) -> int:
        return int(self.row_count - self.passed_mask.sum())

    @property
    def summary(self) -> pd.DataFrame:
        """Per-expectation summary: expectation, success, unexpected_count, observed."""
        return pd.DataFrame(
            [
                {"expectation": r.name, "success": r.success,
                 "unexpected_count": r.unexpected_count, "observed": r.observed}
                for r in self.results
            ],
            columns=["expectation", "success", "unexpected_count", "observed"],
        )


@dataclass
class PreparedRows:
    """Coerced lead columns: the frame GX validates plus what failure rows are built from."""

    frame: pd.DataFrame  # the GX frame, positional index
    raw: pd.DataFrame  # the input, positional index (offending values are shown as given)
    type_errors: dict[str, np.ndarray]  # column -> rows whose value had the wrong type
    crm: str  # the CRM being validated: failures are quarantined under it
    keys: np.ndarray  # record key per row (object): the record id or a surrogate


def validate_rows(leads: pd.DataFrame, options: RowCheckOptions, now: datetime) -> RowValidation:
    """Run every row expectation over `leads` in one GX validation.

    `leads` has (some of) the columns of `leadflow.schema.LEAD_COLUMNS`; missing columns count as
    empty. `now` bounds "not in the future" (plus the configured clock skew).
    """
    prepared = prepare_rows(leads, options)
    specs = row_expectations(options, now)
    n = len(prepared.frame)
    if n == 0:
        # GX cannot compute metrics of an empty frame; nothing to quarantine either.
        results = [CheckResult("rows", s.name, True, "0 of 0 rows", s.threshold, 0) for s in specs]
        return RowValidation(options.crm, 0, np.zeros(0, dtype=bool), [],
                             _empty_failures(), results, prepared.frame, prepared.keys)
    run = validate_frame(prepared.frame, specs, suite_name=f"rows-{options.crm}",
                         result_format=ROW_RESULT_FORMAT)
    failures, failed_rows = build_failures(prepared, run.outcomes, options.value_max_chars)
    passed_mask = ~failed_rows
    results = [
        CheckResult(
            stage="rows",
            name=o.spec.name,
            success=o.success,
            observed=f"{o.unexpected_count or 0} of {o.element_count if o.element_count is not None else n} rows",
            threshold=o.spec.threshold,
            unexpected_count=int(o.unexpected_count or 0),
        )
        for o in run.outcomes
    ]
    passed_ids = prepared.keys[passed_mask].tolist()
    log.info("row checks (%s): %d rows, %d passed, %d failure rows over %d expectations",
             options.crm, n, len(passed_ids), len(failures), len(specs))
    return RowValidation(options.crm, n, passed_mask, passed_ids, failures, results,
                         prepared.frame, prepared.keys, run.gx_result)


# --- preparation (pure) -----------------------------------------------------------------------


def prepare_rows(leads: pd.DataFrame, options: RowCheckOptions) -> PreparedRows:
    """Coerce `leads` into the frame the row suite runs on (pure; no GX)."""
    settings = options.settings
    raw = leads.reset_index(drop=True)
    n = len(raw)
    type_errors: dict[str, np.ndarray] = {}

    def text(name: str) -> pd.Series:
        if name not in raw.columns:  # a missing column is an all-missing column
            return _null_text(n)
        coerced = coerce.text(raw[name])
        type_errors[name] = coerced.type_error
        return coerced.values

    def numeric(name: str, convert: Any) -> np.ndarray:
        if name not in raw.columns:
            return np.full(n, np.nan)
        coerced = convert(raw[name])
        type_errors[name] = coerced.type_error
        return coerced.values.to_numpy(dtype="float64")

    # Every float column goes into one Fortran-ordered block: pandas would otherwise copy
    # ~40 separate arrays into a consolidated block (seconds at a million rows).
    float_names = ([f"{c}__length" for c in TEXT_COLUMNS] + list(NUMBER_COLUMNS)
                   + list(TIMESTAMP_COLUMNS))
    block = np.empty((n, len(float_names)), dtype="float64", order="F")
    position = {name: i for i, name in enumerate(float_names)}
    kept: dict[str, pd.Series] = {}
    for name in TEXT_COLUMNS:
        values = text(name)
        if name in _GX_TEXT_COLUMNS:
            kept[name] = values
        # float64 (NaN = missing): GX's vectorised range path only takes int64/float64.
        block[:, position[f"{name}__length"]] = values.str.len().to_numpy(
            dtype="float64", na_value=np.nan)
    for name in NUMBER_COLUMNS:
        block[:, position[name]] = numeric(name, coerce.number)
    for name in TIMESTAMP_COLUMNS:
        block[:, position[name]] = numeric(name, coerce.timestamp_ms)
    for name in BOOL_COLUMNS:
        if name in raw.columns:
            type_errors[name] = coerce.boolean(raw[name]).type_error

    frame = pd.DataFrame(block, columns=float_names, copy=False)
    # Strings GX compares directly: ids for uniqueness, small option sets as categories.
    frame["crm"] = kept["crm"].array
    frame["record_id"] = kept["record_id"].array
    frame["lifecycle_stage"] = pd.Categorical(kept["lifecycle_stage"])
    frame["lead_status"] = pd.Categorical(kept["lead_status"])
    if settings.check_email_syntax:
        frame["email__valid"] = _email_verdicts(kept["email"])
    errors = {k: v for k, v in type_errors.items() if v.any()}
    any_error = np.zeros(n, dtype=bool)
    for mask in errors.values():
        any_error |= mask
    frame[TYPES_OK] = ~any_error
    return PreparedRows(frame, raw, errors, options.crm, record_keys(kept["record_id"], raw))


# Text columns kept as strings in the GX frame (the rest only contribute their lengths).
_GX_TEXT_COLUMNS = frozenset({"crm", "record_id", "lifecycle_stage", "lead_status", "email"})


def _null_text(n: int) -> pd.Series:
    return pd.Series(pd.array(pa.nulls(n, type=pa.large_string()), dtype=coerce.STRING_DTYPE))


def _email_verdicts(emails: pd.Series) -> pd.arrays.BooleanArray:
    """Nullable booleans: the syntax verdict where an email is present, NA where missing (the
    "required" expectation reports those)."""
    present = emails.notna().to_numpy(dtype=bool)
    verdicts = np.zeros(len(emails), dtype=bool)
    if present.any():
        verdicts[present] = email_syntax_valid(emails[present])
    return pd.arrays.BooleanArray(verdicts, ~present)


def record_keys(record_ids: pd.Series, raw: pd.DataFrame) -> np.ndarray:
    """The key each row is quarantined under: its record id when present and at most
    MAX_KEY_LENGTH characters, else a stable surrogate ("~no-id:<hash of the row>",
    "~long-id:<hash of the id>") so the row can still be quarantined and deduplicated."""
    keys = record_ids.astype(object).to_numpy(copy=True)
    lengths = record_ids.str.len().to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(lengths)
    too_long = ~missing & (lengths > MAX_KEY_LENGTH)
    for i in np.flatnonzero(too_long):
        keys[i] = "~long-id:" + _digest(str(keys[i]))
    for i in np.flatnonzero(missing):
        keys[i] = "~no-id:" + _digest(_row_fingerprint(raw.iloc[i]))
    return keys


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass"), usedforsecurity=False).hexdigest()[:40]


def _row_fingerprint(row: pd.Series) -> str:
    items = sorted((str(name), _safe_str(value, 10_000) or "") for name, value in row.items())
    return "\x1f".join(f"{name}={value}" for name, value in items)


# --- the suite (pure) -----------------------------------------------------------------------


def row_expectations(options: RowCheckOptions, now: datetime) -> list[ExpectationSpec]:
    """The row suite as plain specs, in report order."""
    s = options.settings
    specs: list[ExpectationSpec] = []
    for name in ("crm", "record_id"):
        specs.append(ExpectationSpec("required", name, "ExpectColumnValuesToNotBeNull",
                                     {"column": name}, "present"))
    for name in s.required_fields:
        if name not in ("crm", "record_id"):
            specs.append(ExpectationSpec("required", name, "ExpectColumnValuesToNotBeNull",
                                         {"column": f"{name}__length"}, "present"))
    # The batch holds one CRM's leads, so ids must be unique across all its rows: a row whose
    # crm value is wrong or missing still shares the key space it is quarantined under.
    specs.append(ExpectationSpec("unique_per_crm", "record_id", "ExpectColumnValuesToBeUnique",
                                 {"column": "record_id"}, "unique"))
    if s.check_email_syntax:
        specs.append(ExpectationSpec("email_syntax", "email", "ExpectColumnValuesToBeInSet",
                                     {"column": "email__valid", "value_set": [True]},
                                     "email-validator, no DNS"))
    for name, allowed in (("crm", (options.crm,)), ("lifecycle_stage", options.lifecycle_stages),
                          ("lead_status", options.lead_statuses)):
        specs.append(ExpectationSpec("allowed_value", name, "ExpectColumnValuesToBeInSet",
                                     {"column": name, "value_set": sorted(set(allowed))},
                                     "in " + ", ".join(sorted(set(allowed)))))
    for name in TEXT_COLUMNS:
        limit = s.max_text_length[name]
        specs.append(ExpectationSpec("max_length", name, "ExpectColumnValuesToBeBetween",
                                     {"column": f"{name}__length", "max_value": limit},
                                     f"<= {limit} characters"))
    for name in NUMBER_COLUMNS:
        bounds = s.number_ranges[name]
        kwargs: dict[str, Any] = {"column": name, "min_value": bounds.min}
        if bounds.max is not None:
            kwargs["max_value"] = bounds.max
        specs.append(ExpectationSpec("number_range", name, "ExpectColumnValuesToBeBetween",
                                     kwargs, f"[{bounds.min:g}, {'' if bounds.max is None else f'{bounds.max:g}'}]"))
    earliest_ms = float(s.earliest_timestamp.timestamp() * 1000)
    latest_ms = float(now.timestamp() * 1000 + s.max_clock_skew_minutes * 60_000)
    for name in TIMESTAMP_COLUMNS:
        specs.append(ExpectationSpec(
            "valid_timestamp", name, "ExpectColumnValuesToBeBetween",
            {"column": name, "min_value": earliest_ms, "max_value": latest_ms},
            f"{s.earliest_timestamp.date().isoformat()} .. now + {s.max_clock_skew_minutes:g} min",
        ))
    specs.append(ExpectationSpec("value_type", None, "ExpectColumnValuesToBeInSet",
                                 {"column": TYPES_OK, "value_set": [True]}, "each value of its column's type"))
    return specs


# --- failures (pure) ------------------------------------------------------------------------


def build_failures(
    prepared: PreparedRows, outcomes: Sequence[Any], value_max_chars: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """One failure row per (row, failed expectation, column), and the mask of failed rows."""
    n = len(prepared.frame)
    failed = np.zeros(n, dtype=bool)
    parts: list[pd.DataFrame] = []
    for outcome in outcomes:
        rows = outcome.unexpected_rows
        if outcome.success or rows.size == 0:
            if not outcome.success and not outcome.unexpected_count:
                # A failed expectation without failing rows would let bad rows pass silently.
                raise RuntimeError(f"expectation {outcome.spec.name} failed without row ids")
            continue
        spec = outcome.spec
        failed[rows] = True
        if spec.check == "value_type":
            for column, mask in prepared.type_errors.items():
                hit = np.flatnonzero(mask)
                parts.append(_failure_part(prepared, hit, spec.check, column, value_max_chars))
        else:
            parts.append(_failure_part(prepared, rows, spec.check, spec.column or "", value_max_chars))
    if not parts:
        return _empty_failures(), failed
    failures = pd.concat(parts, ignore_index=True)
    return failures, failed


def _failure_part(prepared: PreparedRows, rows: np.ndarray, check: str, column: str,
                  value_max_chars: int) -> pd.DataFrame:
    if column and column in prepared.raw.columns:
        raw_values = prepared.raw[column].iloc[rows].tolist()
        values = [_safe_str(v, value_max_chars) for v in raw_values]
    else:
        values = [None] * len(rows)
    return pd.DataFrame({
        "crm": prepared.crm,
        "record_id": prepared.keys[rows],
        "expectation": check,
        "column": column,
        "value": pd.Series(values, dtype=object),
    }, columns=list(FAILURE_COLUMNS))


def _safe_str(value: Any, limit: int) -> str | None:
    """Text of an offending value, at most `limit` characters; None when missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and value != value:
        return None
    try:
        text = value if isinstance(value, str) else repr(value) if isinstance(value, (bytes, list, dict, tuple, set)) else str(value)
    except Exception:  # a hostile __str__ must not crash the gate
        text = f"<unprintable {type(value).__name__}>"
    return text[:limit]


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in FAILURE_COLUMNS})
