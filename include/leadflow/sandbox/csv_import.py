"""`leadflow sandbox import`: load a lead export (CSV) into the sandbox as HubSpot contacts.

Two files drive an import:

- the *mapping* (include/leadflow/predict/mapping.py, e.g. include/config/mappings/x_education.yaml):
  which column is the id and which values mean "missing" (`Select`, `NA`, ...);
- the *contacts config* (e.g. include/config/mappings/x_education_contacts.yaml, validated by
  `ContactImportConfig` below): how columns become contact properties::

      name: x_education_contacts
      mapping: x_education                      # optional: the mapping this config goes with
      email: "prospect-{id}@xeducation.example.com"   # synthetic unique email, {id} = the id column
      external_id_property: xeducation_prospect_id    # optional: keep the raw id on the contact
      custom_properties:                        # created in the sandbox schema if missing
        xeducation_prospect_id: {label: X Education prospect id}
        lead_source: {label: Lead source}
      properties:                               # contact property -> where its value comes from
        country: {column: Country}
        hs_analytics_num_visits: {column: TotalVisits, round: true}
        hs_analytics_num_page_views: {op: product, columns: [TotalVisits, Page Views Per Visit], round: true}
        hs_email_optout: {column: Do Not Email, values: {"yes": "true", "no": "false"}}
        lifecyclestage: {column: Converted, values: {"1": customer}, default: lead}
        lastname: {template: "Lead {Lead Number}"}

Value rules: a cell equal to one of the mapping's missing markers counts as empty. `values` maps
source values (compared trimmed and case-folded) to property values; `default` is used when the
source is empty or not in `values`; a value not in `values` without a `default` skips the row. An
empty result clears the property (so a re-import mirrors the file).

The import is idempotent: contacts are keyed by the synthetic email built from the id column, so
importing the same file again updates the same contacts (upsert). Every written contact gets a new
lastmodifieddate, so the next incremental pull sees it. Writes go through the sandbox's own
HubSpot service, so values are validated exactly as an API write would be; a bad row never stops
the import, it is counted and reported (`ImportReport.skipped`).

Importing into a db file without a world marks it as holding one (an empty, imported world), so
`leadflow sandbox serve` serves the imported contacts instead of seeding 5,000 synthetic ones.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import string
import sys
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow import progress
from leadflow.predict.mapping import SHIPPED_MAPPINGS, Mapping, MappingError, load_mapping
from leadflow.quality.emails import FAST_EMAIL_PATTERN, is_valid_email
from leadflow.sandbox.errors import HubSpotError
from leadflow.sandbox.history import IMPORT
from leadflow.sandbox.hubspot_service import MAX_BATCH_INPUTS, HubSpotService
from leadflow.sandbox.properties import COLUMN_PROPERTIES, READ_ONLY, PropertyDef, parse_time_ms
from leadflow.sandbox.store import SandboxStore
from leadflow.validation import ConfigError, load_yaml_model, validate_document

log = logging.getLogger(__name__)

OBJECT_TYPE = "contacts"
# Cells longer than this are unusual in a lead export; the csv module refuses them by default.
MAX_CELL = 1_000_000


class ImportConfigError(ConfigError):
    """The contacts config (or the CSV checked against it) is invalid; the message names the key."""


# --- the contacts config --------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _template_fields(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise ValueError(f"not a valid template ({exc})") from None


class PropertySource(_Strict):
    """Where one contact property's value comes from (exactly one of column, op+columns, template)."""

    column: str | None = Field(default=None, min_length=1)
    op: Literal["product", "sum"] | None = None
    columns: list[str] | None = Field(default=None, min_length=2, max_length=2)
    template: str | None = Field(default=None, min_length=1)
    values: dict[str, str] | None = None
    default: str | None = None
    round: bool = False

    @field_validator("values")
    @classmethod
    def _distinct_keys(cls, values: dict[str, str] | None) -> dict[str, str] | None:
        if values is None:
            return None
        folded = Counter(k.strip().casefold() for k in values)
        same = sorted(k for k, n in folded.items() if n > 1)
        if same:
            raise ValueError(f"keys {same} are the same value once trimmed and case-folded")
        return values

    @field_validator("template")
    @classmethod
    def _template_ok(cls, template: str | None) -> str | None:
        if template is not None:
            names = _template_fields(template)
            if any(n == "" or n.isdigit() for n in names):
                raise ValueError("a template names its columns in braces, e.g. 'Lead {Lead Number}' (no {} or {0})")
        return template

    @model_validator(mode="after")
    def _one_source(self) -> PropertySource:
        given = [k for k, v in (("column", self.column), ("columns", self.columns), ("template", self.template))
                 if v is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of column, op+columns or template (got {given or 'none'})")
        if (self.op is None) != (self.columns is None):
            raise ValueError("op and columns go together")
        if self.round and self.template is not None:
            raise ValueError("round applies to numbers, not to a template")
        if self.values is not None and self.op is not None:
            raise ValueError("values maps text values; it cannot follow an op")
        return self

    def source_columns(self) -> list[str]:
        if self.column is not None:
            return [self.column]
        if self.columns is not None:
            return list(self.columns)
        return _template_fields(self.template or "")


class CustomProperty(_Strict):
    """A contact property the import creates in the sandbox schema when it is missing."""

    label: str = Field(min_length=1, max_length=200)
    type: Literal["string", "number"] = "string"
    group: str = Field(default="contactinformation", min_length=1)


class ContactImportConfig(_Strict):
    """How the rows of one kind of CSV become sandbox contacts; see the module docstring."""

    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=4000)
    mapping: str | None = None
    email: str = Field(min_length=3)
    external_id_property: str | None = None
    custom_properties: dict[str, CustomProperty] = Field(default_factory=dict)
    properties: dict[str, PropertySource] = Field(default_factory=dict)

    @field_validator("email")
    @classmethod
    def _email_template(cls, email: str) -> str:
        names = _template_fields(email)
        if names != ["id"]:
            raise ValueError("must contain {id} once and no other field, e.g. 'prospect-{id}@leads.example.com'")
        if not is_valid_email(email.format(id="prospect-0a1b")):
            raise ValueError(f"{email!r} does not make a valid address (use a real domain such as "
                             "a subdomain of example.com; .invalid and .test fail email checks)")
        return email

    @model_validator(mode="after")
    def _consistent(self) -> ContactImportConfig:
        errors = []
        for name in self.properties:
            if name == "email":
                errors.append("properties.email: the email is built from the `email` template; do not map it")
            elif name in READ_ONLY or name in COLUMN_PROPERTIES[OBJECT_TYPE]:
                errors.append(f"properties.{name}: is set by the sandbox itself and cannot be imported")
        ext = self.external_id_property
        if ext is not None and ext in self.properties:
            errors.append(f"external_id_property: {ext!r} is also listed under properties")
        if ext is not None and (ext == "email" or ext in COLUMN_PROPERTIES[OBJECT_TYPE]):
            errors.append(f"external_id_property: {ext!r} is a built-in property")
        for name in self.custom_properties:
            if not re.fullmatch(r"[a-z][a-z0-9_]{0,99}", name):
                errors.append(f"custom_properties.{name}: names are lower case letters, digits and _")
            elif name.startswith("leadflow_"):
                errors.append(f"custom_properties.{name}: leadflow_* properties belong to leadflow itself")
        if not self.properties:
            errors.append("properties: the config maps no property at all")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    def source_columns(self) -> dict[str, list[str]]:
        """Config key -> the CSV columns it reads."""
        return {f"properties.{name}": src.source_columns() for name, src in self.properties.items()}


def parse_import_config(data: Any, source: str = "contacts config") -> ContactImportConfig:
    """Validate a parsed YAML document; ImportConfigError messages start with the offending key."""
    return validate_document(ContactImportConfig, data, source, ImportConfigError)


def load_import_config(path: str | Path) -> ContactImportConfig:
    """Read and validate a contacts config. A bare name (`x_education_contacts`) resolves to the
    shipped include/config/mappings/<name>.yaml."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = SHIPPED_MAPPINGS / f"{p.name}.yaml"
    return load_yaml_model(p, ContactImportConfig, "contacts config", ImportConfigError)


def default_config_path(mapping: Mapping) -> Path:
    """The contacts config shipped next to a mapping: <mapping name>_contacts.yaml."""
    return SHIPPED_MAPPINGS / f"{mapping.name}_contacts.yaml"


# --- the report --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkippedRow:
    row: int  # 1-based data row (the header is row 0)
    record_id: str | None
    reason: str  # short code: missing_id, duplicate_id, malformed_row, invalid_value, rejected
    message: str


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    skipped: list[SkippedRow] = field(default_factory=list)
    world_created: bool = False
    modified_ms: int | None = None  # lastmodifieddate given to the written contacts

    @property
    def imported(self) -> int:
        return self.created + self.updated

    def skipped_by_reason(self) -> dict[str, int]:
        return dict(Counter(s.reason for s in self.skipped).most_common())

    def lines(self, examples: int = 3) -> list[str]:
        """Human-readable summary: counts, then each skip reason with a few examples."""
        out = [f"{self.rows} rows: created {self.created}, updated {self.updated}, skipped {len(self.skipped)}"]
        for reason, count in self.skipped_by_reason().items():
            out.append(f"  skipped {count} ({reason}):")
            for s in [s for s in self.skipped if s.reason == reason][:examples]:
                who = f" {s.record_id!r}" if s.record_id else ""
                out.append(f"    row {s.row}{who}: {s.message}")
        return out


# --- reading the CSV ---------------------------------------------------------------------------------
@dataclass
class _Record:
    row: int
    cells: dict[str, str]


def _read_csv(path: Path, report: ImportReport, limit: int | None) -> tuple[list[str], Iterator[_Record]]:
    handle = path.open("r", encoding="utf-8-sig", errors="replace", newline="")
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        handle.close()
        raise ImportConfigError(f"{path}: the file is empty (no header row)") from None
    except csv.Error as exc:
        handle.close()
        raise ImportConfigError(f"{path}: the header row is not valid CSV ({exc})") from None
    header = [h.strip() for h in header]
    dupes = sorted(h for h, n in Counter(header).items() if n > 1)
    if dupes:
        handle.close()
        raise ImportConfigError(f"{path}: the header names columns more than once: {dupes}")

    def records() -> Iterator[_Record]:
        row = 0
        try:
            while limit is None or row < limit:
                try:
                    fields = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    row += 1
                    report.rows += 1
                    report.skipped.append(SkippedRow(row, None, "malformed_row", f"not valid CSV ({exc})"))
                    continue
                if not fields or all(not f.strip() for f in fields):
                    continue  # blank lines are not rows
                row += 1
                report.rows += 1
                if len(fields) != len(header):
                    report.skipped.append(SkippedRow(row, fields[0].strip() or None, "malformed_row",
                                                     f"{len(fields)} fields, the header has {len(header)}"))
                    continue
                yield _Record(row, dict(zip(header, fields)))
        finally:
            handle.close()

    return header, records()


# --- turning a row into properties ---------------------------------------------------------------------
class _RowError(ValueError):
    pass


_SLUG = re.compile(r"[^a-z0-9]+")
_PLAIN_EMAIL = re.compile(FAST_EMAIL_PATTERN)


def email_ok(email: str) -> bool:
    """Passes leadflow's email syntax check (plain addresses by regex, the rest by email-validator)."""
    local, _, _ = email.partition("@")
    if (_PLAIN_EMAIL.fullmatch(email) and len(email) <= 254 and len(local) <= 64 and "--" not in email):
        return True
    return is_valid_email(email)


def id_slug(value: str) -> str:
    """The id as it appears in the synthetic email: lower case letters and digits joined by '-'."""
    return _SLUG.sub("-", value.strip().lower()).strip("-")


def _number(column: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise _RowError(f"{column}: {text[:60]!r} is not a number") from None
    if not math.isfinite(number):
        raise _RowError(f"{column}: {text[:60]!r} is not a finite number")
    return number


def _render_number(number: float, rounded: bool) -> str:
    if rounded:
        number = float(round(number))
    return str(int(number)) if number.is_integer() and abs(number) < 2**53 else repr(number)


class RowConverter:
    """Turns one CSV row into (email, contact properties) under a mapping and a contacts config."""

    def __init__(self, mapping: Mapping, config: ContactImportConfig) -> None:
        self.mapping = mapping
        self.config = config
        fold = (lambda v: v.strip().casefold()) if mapping.case_insensitive else (lambda v: v.strip())
        self._fold = fold
        self._missing = {fold(v) for v in mapping.missing_values} | {""}
        self._values = {name: {k.strip().casefold(): v for k, v in (src.values or {}).items()}
                        for name, src in config.properties.items()}

    def cell(self, cells: dict[str, str], column: str) -> str | None:
        """The trimmed cell, or None when it holds one of the mapping's missing markers."""
        value = cells.get(column)
        if value is None or self._fold(value) in self._missing:
            return None
        return value.strip()

    def email_for(self, record_id: str) -> str:
        return self.config.email.format(id=id_slug(record_id))

    def properties(self, cells: dict[str, str]) -> dict[str, str]:
        """Property name -> wire value ("" clears). Raises _RowError naming the column."""
        out: dict[str, str] = {}
        for name, src in self.config.properties.items():
            value = self._value(name, src, cells)
            out[name] = "" if value is None else value
        return out

    def _value(self, name: str, src: PropertySource, cells: dict[str, str]) -> str | None:
        if src.template is not None:
            parts = {c: self.cell(cells, c) for c in src.source_columns()}
            if any(v is None for v in parts.values()):
                return src.default
            return src.template.format_map(parts)
        if src.op is not None and src.columns is not None:
            texts = [self.cell(cells, c) for c in src.columns]
            if any(t is None for t in texts):
                return src.default
            a, b = (_number(c, t) for c, t in zip(src.columns, texts))  # type: ignore[arg-type]
            result = a * b if src.op == "product" else a + b
            return _render_number(result, src.round)
        assert src.column is not None
        text = self.cell(cells, src.column)
        if text is None:
            return src.default
        mapped = self._values[name]
        if mapped:
            key = text.casefold()
            if key in mapped:
                return mapped[key]
            if src.default is not None:
                return src.default
            allowed = ", ".join(repr(k) for k in (src.values or {}))
            raise _RowError(f"{src.column}: {text[:60]!r} is not one of the mapped values ({allowed})")
        if src.round:
            return _render_number(_number(src.column, text), True)
        return text


# --- the import ----------------------------------------------------------------------------------------
def check_against_store(config: ContactImportConfig, store: SandboxStore) -> None:
    """Target properties must exist (or be declared under custom_properties), and mapped values
    must be options of enumeration properties. Raises ImportConfigError naming the key."""
    defs = store.properties(OBJECT_TYPE)
    errors = []
    for name, spec in config.custom_properties.items():
        have = defs.get(name)
        if have is not None and have.type != spec.type:
            errors.append(f"custom_properties.{name}: the sandbox already has it as type {have.type!r}")
    known = set(defs) | set(config.custom_properties)
    ext = config.external_id_property
    if ext is not None and ext not in known:
        errors.append(f"external_id_property: {ext!r} is no contact property; declare it under custom_properties")
    for name, src in config.properties.items():
        if name not in known:
            errors.append(f"properties.{name}: no such contact property in the sandbox; declare it under "
                          "custom_properties to create it")
            continue
        prop = defs.get(name)
        if prop is not None and prop.type == "enumeration":
            options = set(prop.option_values())
            for key, value in [*(("values." + k, v) for k, v in (src.values or {}).items()),
                               ("default", src.default)]:
                if value not in (None, "") and value not in options:
                    errors.append(f"properties.{name}.{key}: {value!r} is not an option of {name} "
                                  f"({', '.join(sorted(options))})")
    if errors:
        raise ImportConfigError("; ".join(errors))


def check_against_header(mapping: Mapping, config: ContactImportConfig, header: list[str], where: str) -> None:
    present = set(header)
    errors = []
    if mapping.id_column not in present:
        errors.append(f"id_column: {mapping.id_column!r} (from mapping {mapping.name!r}) is not a column")
    for key, columns in config.source_columns().items():
        missing = [c for c in columns if c not in present]
        if missing:
            errors.append(f"{key}: column(s) {', '.join(repr(c) for c in missing)} not in the file")
    if errors:
        raise ImportConfigError(f"{where}: " + "; ".join(errors))


def _ensure_custom_properties(config: ContactImportConfig, store: SandboxStore) -> None:
    defs = store.properties(OBJECT_TYPE)
    groups = {g["name"] for g in store.groups(OBJECT_TYPE)}
    for name, spec in config.custom_properties.items():
        if name in defs:
            continue
        if spec.group not in groups:
            store.add_group(OBJECT_TYPE, spec.group, spec.group.replace("_", " ").capitalize())
            groups.add(spec.group)
        store.add_property(OBJECT_TYPE, PropertyDef(
            name=name, label=spec.label, type=spec.type, field_type="number" if spec.type == "number" else "text",
            group_name=spec.group, hubspot_defined=False, description=f"Imported by {config.name}"))


def _ensure_world(store: SandboxStore, source: Path) -> bool:
    """Mark a db without a world as holding an (empty, imported) one, so serve does not seed it."""
    if store.has_world():
        return False
    now = datetime.fromtimestamp(store.now_ms() / 1000, tz=timezone.utc)
    anchor = int(datetime(now.year, now.month, now.day, tzinfo=timezone.utc).timestamp() * 1000)
    store.set_meta("world", json.dumps({"seed": 0, "contacts": 0, "companies": 0, "anchor_ms": anchor,
                                        "shared_timestamp_every": 0, "imported_from": source.name}))
    return True


def import_csv(store: SandboxStore, csv_path: str | Path, mapping: Mapping | str | Path,
               config: ContactImportConfig | str | Path | None = None, *, limit: int | None = None,
               batch_size: int = MAX_BATCH_INPUTS) -> ImportReport:
    """Upsert the rows of `csv_path` as contacts of `store`; see the module docstring.

    Raises ImportConfigError / MappingError for problems of the files as a whole (nothing is
    written then); row problems are counted in the report instead.
    """
    path = Path(csv_path)
    if not isinstance(mapping, Mapping):
        mapping = load_mapping(mapping)
    if config is None:
        config = load_import_config(default_config_path(mapping))
    elif not isinstance(config, ContactImportConfig):
        config = load_import_config(config)
    if config.mapping is not None and config.mapping != mapping.name:
        raise ImportConfigError(f"mapping: the contacts config {config.name!r} goes with mapping "
                                f"{config.mapping!r}, not {mapping.name!r}")
    if not 1 <= batch_size <= MAX_BATCH_INPUTS:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_INPUTS}")
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    check_against_store(config, store)
    if not path.is_file():
        raise ImportConfigError(f"{path}: no such file")

    report = ImportReport()
    csv.field_size_limit(min(MAX_CELL, sys.maxsize))
    header, records = _read_csv(path, report, limit)
    try:
        check_against_header(mapping, config, header, str(path))
    except ImportConfigError:
        records.close()  # type: ignore[attr-defined]
        raise
    _ensure_custom_properties(config, store)
    report.world_created = _ensure_world(store, path)

    converter = RowConverter(mapping, config)
    service = HubSpotService(store, default_source=IMPORT)  # the history shows these values as imported
    seen: dict[str, int] = {}  # email -> first row
    batch: list[tuple[int, str, dict[str, Any]]] = []
    for rec in progress.iterate(records, f"import {path.name}", total=limit, unit="rows"):
        record_id = converter.cell(rec.cells, mapping.id_column)
        if record_id is None or not id_slug(record_id):
            report.skipped.append(SkippedRow(rec.row, None, "missing_id", f"no {mapping.id_column}"))
            continue
        email = converter.email_for(record_id)
        if email in seen:
            report.skipped.append(SkippedRow(rec.row, record_id, "duplicate_id",
                                             f"same {mapping.id_column} as row {seen[email]}"))
            continue
        if not email_ok(email):
            report.skipped.append(SkippedRow(rec.row, record_id, "invalid_id",
                                             f"{mapping.id_column} makes no valid email ({email[:80]!r})"))
            continue
        try:
            props = converter.properties(rec.cells)
        except _RowError as exc:
            report.skipped.append(SkippedRow(rec.row, record_id, "invalid_value", str(exc)))
            continue
        seen[email] = rec.row
        if config.external_id_property:
            props[config.external_id_property] = record_id
        batch.append((rec.row, record_id, {"id": email, "idProperty": "email", "properties": props}))
        if len(batch) >= batch_size:
            _write(service, batch, report)
            batch = []
    if batch:
        _write(service, batch, report)
    log.info("imported %s: %s", path.name, report.lines()[0])
    return report


def _write(service: HubSpotService, batch: list[tuple[int, str, dict[str, Any]]], report: ImportReport) -> None:
    by_email = {item["id"]: (row, record_id) for row, record_id, item in batch}
    try:
        answer = service.batch_upsert(OBJECT_TYPE, {"inputs": [item for _, _, item in batch]})
    except HubSpotError as exc:  # the whole batch refused: every row of it is reported
        for row, record_id, _ in batch:
            report.skipped.append(SkippedRow(row, record_id, "rejected", exc.message))
        return
    for result in answer.body.get("results", []):
        if result.get("new"):
            report.created += 1
        else:
            report.updated += 1
        modified = parse_time_ms(result["updatedAt"])
        report.modified_ms = max(modified, report.modified_ms or modified)
    for error in answer.body.get("errors", []):
        details = [f"{(d.get('context') or {}).get('propertyName', ['?'])[0]}: {d.get('message')}"
                   for d in error.get("errors") or []]
        message = "; ".join(details) or str(error.get("message", "rejected"))
        for key in (error.get("context") or {}).get("ids") or []:
            row, record_id = by_email.get(key, (0, None))
            report.skipped.append(SkippedRow(row, record_id, "rejected", message))


def import_csv_file(db_path: str | Path, csv_path: str | Path, mapping: str | Path,
                    config: str | Path | None = None, *, limit: int | None = None) -> ImportReport:
    """Open (or create) a sandbox db file, import, close: what the CLI runs."""
    store = SandboxStore(db_path)
    try:
        return import_csv(store, csv_path, mapping, config, limit=limit)
    finally:
        store.close()


__all__ = [
    "ContactImportConfig", "CustomProperty", "ImportConfigError", "ImportReport", "MappingError",
    "PropertySource", "RowConverter", "SkippedRow", "check_against_header", "check_against_store",
    "default_config_path", "id_slug", "import_csv", "import_csv_file", "load_import_config",
    "parse_import_config",
]
