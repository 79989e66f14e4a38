"""Mapping files: how a table's columns feed the predictive model.

A mapping names the id column, the numeric and categorical feature columns, the values that
mean "missing" (exports write `Select` for a form field left at its default), the label and
its won/lost values, and columns that must never be features because they leak the outcome.
The same file is used to train and to score, so a model always sees its columns the same way.

Example (see include/config/mappings/x_education.yaml)::

    name: x_education
    id_column: Prospect ID
    label: {column: Converted, positive: ["1"], negative: ["0"]}
    missing_values: ["", "Select"]
    numbers: [TotalVisits, Total Time Spent on Website]
    categories: [Lead Origin, Lead Source, Last Activity]
    derived:
      - {name: pages_viewed, op: product, columns: [TotalVisits, Page Views Per Visit]}
    excluded: [Tags, Lead Quality]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.validation import ConfigError, load_yaml_model, validate_document

# The shipped mapping of the warehouse's handed-over leads (training, backtests, input versions).
WAREHOUSE_MAPPING = "warehouse_leads"

SHIPPED_MAPPINGS = Path(__file__).resolve().parents[2] / "config" / "mappings"


class MappingError(ConfigError):
    """A mapping file (or a table checked against it) is invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelSpec(_Strict):
    """The outcome column and which of its values mean won (1) and lost (0).

    Values are compared as trimmed, case-folded text; any other value leaves the row unlabelled
    (ignored for training, e.g. leads still open).
    """

    column: str = Field(min_length=1)
    positive: list[str] = Field(default_factory=lambda: ["1", "true", "yes", "won", "converted"])
    negative: list[str] = Field(default_factory=lambda: ["0", "false", "no", "lost"])

    @model_validator(mode="after")
    def _disjoint(self) -> LabelSpec:
        both = {v.strip().casefold() for v in self.positive} & {
            v.strip().casefold() for v in self.negative
        }
        if both:
            raise ValueError(f"values {sorted(both)} are both positive and negative")
        if not self.positive or not self.negative:
            raise ValueError("positive and negative need at least one value each")
        return self


class DerivedFeature(_Strict):
    """A numeric feature computed from other columns of the same row.

    - `ratio`: columns[0] / columns[1] (missing when the denominator is 0 or missing);
    - `product`: columns[0] * columns[1];
    - `present`: 1 when columns[0] has a value, else 0 (e.g. "a demo was requested").
    """

    name: str = Field(min_length=1, max_length=120)
    op: Literal["ratio", "product", "present"]
    columns: list[str] = Field(min_length=1, max_length=2)

    @model_validator(mode="after")
    def _arity(self) -> DerivedFeature:
        need = 1 if self.op == "present" else 2
        if len(self.columns) != need:
            raise ValueError(f"op {self.op!r} takes {need} column(s), got {len(self.columns)}")
        return self


class Mapping(_Strict):
    """Which columns are ids, numbers, categories and label; see the module docstring."""

    name: str = Field(min_length=1, max_length=120)
    description: str = Field(default="", max_length=4000)
    id_column: str = Field(min_length=1)
    label: LabelSpec | None = None
    numbers: list[str] = Field(default_factory=list)
    categories: list[str] = Field(default_factory=list)
    derived: list[DerivedFeature] = Field(default_factory=list)
    missing_values: list[str] = Field(default_factory=lambda: [""])
    # Columns known to leak the outcome (filled in after sales contact): never features.
    excluded: list[str] = Field(default_factory=list)
    # `google` and `Google` are the same source in real exports.
    case_insensitive: bool = True
    # Category values seen fewer times than this in training are pooled into one "other" level.
    min_category_count: int = Field(default=10, ge=1)
    # Counts and durations are heavy-tailed: log1p keeps a few huge values from dominating.
    log_numbers: bool = True

    @field_validator("numbers", "categories", "excluded", "missing_values")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        seen: set[str] = set()
        dupes = [v for v in values if v in seen or seen.add(v)]  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"listed more than once: {sorted(set(dupes))}")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> Mapping:
        errors: list[str] = []
        both = set(self.numbers) & set(self.categories)
        if both:
            errors.append(f"numbers/categories: {sorted(both)} are listed as both")
        features = set(self.numbers) | set(self.categories)
        leaking = features & set(self.excluded)
        if leaking:
            errors.append(f"excluded: {sorted(leaking)} are excluded but also listed as features")
        if self.id_column in features:
            errors.append(f"id_column: {self.id_column!r} must not be a feature")
        if self.label is not None and self.label.column in features:
            errors.append(f"label.column: {self.label.column!r} must not be a feature")
        names = set(self.numbers) | set(self.categories)
        for i, d in enumerate(self.derived):
            if d.name in names:
                errors.append(f"derived[{i}].name: {d.name!r} clashes with another feature")
            names.add(d.name)
            unknown = [c for c in d.columns if c not in set(self.numbers) | set(self.categories)]
            if d.op != "present" and unknown:
                errors.append(f"derived[{i}].columns: {unknown} are not listed under numbers")
            non_numeric = [c for c in d.columns if c in set(self.categories)]
            if d.op != "present" and non_numeric:
                errors.append(f"derived[{i}].columns: {non_numeric} are categories, need numbers")
            bad = [c for c in d.columns if c in set(self.excluded)]
            if bad:
                errors.append(f"derived[{i}].columns: {bad} are excluded (they leak the outcome)")
        if not self.numbers and not self.categories and not self.derived:
            errors.append("numbers/categories: the mapping lists no feature at all")
        if errors:
            raise ValueError("; ".join(errors))
        return self

    @property
    def feature_names(self) -> list[str]:
        """Model input names in a fixed order: numbers, derived, categories."""
        return [*self.numbers, *(d.name for d in self.derived), *self.categories]

    def source_columns(self, with_label: bool = False, with_id: bool = True) -> list[str]:
        """The columns a table must carry to be used with this mapping."""
        cols = [self.id_column] if with_id else []
        cols += [*self.numbers, *self.categories]
        cols += [c for d in self.derived for c in d.columns]
        if with_label and self.label is not None:
            cols.append(self.label.column)
        return list(dict.fromkeys(cols))

    def check_columns(
        self,
        columns: Iterable[str],
        with_label: bool = False,
        where: str = "table",
        with_id: bool = True,
    ) -> None:
        """Raise MappingError naming every mapped column the table lacks."""
        present = set(columns)
        missing = [c for c in self.source_columns(with_label, with_id) if c not in present]
        if missing:
            raise MappingError(
                f"{where} lacks column(s) named in mapping {self.name!r}: "
                + ", ".join(repr(c) for c in missing)
            )

    def with_label(self, column: str) -> Mapping:
        """A copy whose label column is `column` (keeping the won/lost values if set)."""
        if column in set(self.numbers) | set(self.categories):
            raise MappingError(f"label {column!r} is a feature in mapping {self.name!r}")
        label = (self.label.model_copy(update={"column": column}) if self.label is not None
                 else LabelSpec(column=column))
        return self.model_copy(update={"label": label})


def parse_mapping(data: Any, source: str = "mapping") -> Mapping:
    """Validate a parsed YAML document; MappingError messages start with the offending key."""
    return validate_document(Mapping, data, source, MappingError)


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping YAML file.

    A bare name without a suffix (`x_education`) resolves to the shipped
    include/config/mappings/<name>.yaml.
    """
    p = Path(path)
    if not p.suffix and not p.exists():
        p = SHIPPED_MAPPINGS / f"{p.name}.yaml"
    return load_yaml_model(p, Mapping, "mapping file", MappingError)
