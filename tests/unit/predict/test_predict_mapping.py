"""Mapping files: shipped mappings load; every validation error names the offending key."""

from __future__ import annotations

import copy

import pytest

from leadflow.predict.mapping import MappingError, load_mapping, parse_mapping
from predict_fakes import MAPPING


def _with(**changes):
    data = copy.deepcopy(MAPPING)
    data.update(changes)
    return data


@pytest.mark.parametrize("name", ["x_education", "warehouse_leads"])
def test_shipped_mappings_load_by_bare_name(name):
    mapping = load_mapping(name)
    assert mapping.name == name
    assert mapping.feature_names
    assert not set(mapping.feature_names) & set(mapping.excluded)


def test_x_education_mapping_uses_no_leaking_column():
    leaking = {"Tags", "Lead Quality", "Lead Profile", "Asymmetrique Activity Index",
               "Asymmetrique Profile Index", "Asymmetrique Activity Score",
               "Asymmetrique Profile Score", "Last Notable Activity"}
    mapping = load_mapping("x_education")
    assert not leaking & set(mapping.source_columns())
    assert leaking <= set(mapping.excluded)
    assert "Select" in mapping.missing_values


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (_with(numbers=["Visits", "Source"]), "numbers/categories"),
        (_with(excluded=["Source"]), "excluded"),
        (_with(colour="red"), "colour"),
        (_with(min_category_count=0), "min_category_count"),
        (_with(numbers=["Visits", "Visits"]), "numbers"),
        (_with(id_column="Visits"), "id_column"),
        (_with(derived=[{"name": "x", "op": "ratio", "columns": ["Visits"]}]), "derived[0]"),
        (_with(derived=[{"name": "x", "op": "sum", "columns": ["Visits"]}]), "derived[0].op"),
        (_with(derived=[{"name": "x", "op": "product", "columns": ["Visits", "Nope"]}]),
         "derived[0].columns"),
        (_with(label={"column": "Won", "positive": ["1"], "negative": ["1"]}), "label"),
        (_with(label={"column": "Source"}), "label.column"),
    ],
)
def test_invalid_mapping_error_names_the_key(data, key):
    with pytest.raises(MappingError) as exc:
        parse_mapping(data, "m.yaml")
    message = str(exc.value)
    assert message.startswith("m.yaml: ")
    assert key in message


def test_missing_file_and_bad_yaml_are_mapping_errors(tmp_path):
    with pytest.raises(MappingError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed", encoding="utf-8")
    with pytest.raises(MappingError, match="not valid YAML"):
        load_mapping(bad)


def test_check_columns_names_every_missing_column():
    mapping = parse_mapping(MAPPING)
    with pytest.raises(MappingError) as exc:
        mapping.check_columns(["Lead ID", "Visits", "Source"], where="x.csv")
    message = str(exc.value)
    for column in ("Time On Site", "Last Activity", "Country"):
        assert repr(column) in message
    assert "'Visits'" not in message


def test_with_label_refuses_a_feature_column():
    mapping = parse_mapping(MAPPING)
    assert mapping.with_label("Outcome").label.column == "Outcome"
    assert mapping.with_label("Outcome").label.positive == ["1"]
    with pytest.raises(MappingError, match="Source"):
        mapping.with_label("Source")
