"""leadflow.validation: one loader and one error format for every configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from leadflow.validation import (
    ConfigError,
    check_known,
    format_validation_error,
    key_path,
    load_yaml_model,
    problems,
    validate_document,
)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    points: int = Field(ge=0)
    field: str = "title"

    @field_validator("field")
    @classmethod
    def _known(cls, value: str) -> str:
        if value == "nope":
            raise ValueError(f"unknown field {value!r}")
        return value


class _Handoff(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sla_days: int = Field(3, ge=1)
    rules: list[_Rule] = []
    labels: dict[str, int] = {}

    @model_validator(mode="after")
    def _whole(self) -> _Handoff:
        if self.sla_days == 7:
            raise ValueError("sla_days: a week is not allowed\nrules: neither is this line")
        return self


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handoff: _Handoff
    name: str = "x"


class _Error(ConfigError):
    pass


def _problems(data: dict, prefix: tuple[str, ...] = ()) -> list[str]:
    with pytest.raises(ValidationError) as info:
        _Doc.model_validate(data)
    return problems(info.value, prefix)


@pytest.mark.parametrize(("loc", "path"), [
    ((), ""),
    (("handoff",), "handoff"),
    (("handoff", "sla_days"), "handoff.sla_days"),
    (("fit", "groups", 1, "rules", 0, "field"), "fit.groups[1].rules[0].field"),
    (("personas", 0, "titles", 1), "personas[0].titles[1]"),
    ((0, "x"), "[0].x"),
    (("values", "1"), "values.1"),  # a string key that looks like a number stays dotted
])
def test_key_path_dots_names_and_brackets_list_indexes(loc: tuple, path: str) -> None:
    assert key_path(loc) == path


@pytest.mark.parametrize(("data", "prefix", "expected"), [
    ({"handoff": {"sla_days": 0}}, (), ["handoff.sla_days: Input should be greater than or equal to 1"]),
    ({"handoff": {"sla_days": "three"}}, (),
     ["handoff.sla_days: Input should be a valid integer, unable to parse string as an integer"]),
    ({"handoff": {"sla_dayz": 3}}, (), ["handoff.sla_dayz: unknown key"]),
    ({}, (), ["handoff: required key is missing"]),
    ({"handoff": {"rules": [{"points": 1}, {"points": 1, "field": "nope"}]}}, (),
     ["handoff.rules[1].field: unknown field 'nope'"]),  # "Value error, " is dropped
    ({"handoff": {"rules": [{}]}}, (), ["handoff.rules[0].points: required key is missing"]),
    ({"handoff": {"labels": {"a": "x"}}}, (),
     ["handoff.labels.a: Input should be a valid integer, unable to parse string as an integer"]),
    # A check of a whole section names its keys itself, one line each: each line is a problem.
    ({"handoff": {"sla_days": 7}}, (),
     ["handoff: sla_days: a week is not allowed", "handoff: rules: neither is this line"]),
    ({"handoff": {"sla_days": 0}, "nam": 1}, ("quality",),
     ["quality.handoff.sla_days: Input should be greater than or equal to 1", "quality.nam: unknown key"]),
])
def test_problems_name_each_key_path_in_one_wording(data: dict, prefix: tuple, expected: list[str]) -> None:
    assert _problems(data, prefix) == expected


def test_an_error_on_the_whole_document_keeps_its_own_lines() -> None:
    class Whole(BaseModel):
        a: int = 0

        @model_validator(mode="after")
        def _check(self) -> Whole:
            raise ValueError("a: too small\nb: missing")

    with pytest.raises(ValidationError) as info:
        Whole.model_validate({})
    assert problems(info.value) == ["a: too small", "b: missing"]
    assert problems(info.value, ("section",)) == ["section: a: too small", "section: b: missing"]


def test_format_names_the_source_then_every_problem() -> None:
    with pytest.raises(ValidationError) as info:
        _Doc.model_validate({"handoff": {"sla_days": 0, "x": 1}})
    assert format_validation_error(info.value, "model.yaml") == (
        "model.yaml: handoff.sla_days: Input should be greater than or equal to 1; handoff.x: unknown key")


@pytest.mark.parametrize(("data", "message"), [
    ({"handoff": {"sla_days": 0}}, "m.yaml: handoff.sla_days: Input should be greater than or equal to 1"),
    (["a", "list"], "m.yaml: expected a mapping of keys, got list"),
    (None, "m.yaml: expected a mapping of keys, got NoneType"),
])
def test_validate_document_raises_the_given_config_error(data: object, message: str) -> None:
    with pytest.raises(_Error) as info:
        validate_document(_Doc, data, "m.yaml", _Error)
    assert str(info.value) == message
    assert info.value.source == "m.yaml" and info.value.problems == [message.removeprefix("m.yaml: ")]


@pytest.mark.parametrize(("text", "message"), [
    (None, "cannot read settings (No such file or directory)"),
    ("handoff: [unclosed", "not valid YAML ("),
    ("handoff:\n  sla_days: 0\n", "handoff.sla_days: Input should be greater than or equal to 1"),
    ("", "expected a mapping of keys, got NoneType"),
])
def test_load_yaml_model_names_the_file_in_every_problem(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "m.yaml"
    if text is not None:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(_Error) as info:
        load_yaml_model(path, _Doc, "settings", _Error)
    assert str(info.value).startswith(f"{path}: {message}")


def test_an_empty_file_may_mean_all_defaults(tmp_path: Path) -> None:
    class Defaults(BaseModel):
        a: int = 1

    path = tmp_path / "empty.yaml"
    path.write_text("", encoding="utf-8")
    assert load_yaml_model(path, Defaults, "settings", _Error, empty_ok=True).a == 1


def test_no_module_but_validation_formats_a_pydantic_error_itself() -> None:
    import re

    package = Path(__file__).resolve().parents[2] / "include" / "leadflow"
    # The sandbox's HTTP app answers like the CRM API it emulates, not like a configuration file.
    allowed = {"validation.py", "sandbox/app.py"}
    pattern = re.compile(r"\.errors\(\)|yaml\.(?:safe_)?load\(")
    formatting = {str(p.relative_to(package)) for p in package.rglob("*.py")
                  if pattern.search(p.read_text(encoding="utf-8"))}
    assert formatting - allowed == set()


def test_check_known_names_the_unknown_names_and_what_is_expected() -> None:
    check_known({"a": 1}, ("a", "b"), "column(s)")  # all known: no error
    with pytest.raises(ValueError, match=r"^unknown column\(s\) \['x', 'y'\]; expected some of \['a', 'b'\]$"):
        check_known(["y", "a", "x"], ("a", "b"), "column(s)")
    with pytest.raises(ValueError, match=r"^unknown field\(s\) \['x'\]; expected lead columns$"):
        check_known(["x"], {"a": "str"}, "field(s)", expected="lead columns")
