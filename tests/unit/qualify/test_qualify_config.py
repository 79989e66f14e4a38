"""Model config: the default loads, bad configs fail at load time naming the key."""

from __future__ import annotations

import json

import pytest
import yaml
from qualify_helpers import default_dict

from leadflow.qualify import ModelConfigError, QualificationModel, load_model, model_from_dict
from leadflow.qualify.config import JSON_SCHEMA_PATH, export_json_schema, json_schema


def _load(tmp_path, doc) -> QualificationModel:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return load_model(path)


def _error(tmp_path, doc) -> str:
    with pytest.raises(ModelConfigError) as info:
        _load(tmp_path, doc)
    return str(info.value)


def test_default_model_loads_with_version_and_sections():
    model = load_model()
    assert model.version == "2025.06-b2b-saas"
    assert model.bant.advance_threshold == 3
    assert [d.code for d in model.disqualifiers][:3] == ["do_not_contact", "competitor", "disposable_email"]
    assert model.predictive.enabled is False and model.predictive.weight == 0.2


def test_model_loaded_from_a_path_round_trips(tmp_path):
    shipped = load_model()
    assert _load(tmp_path, default_dict()) == shipped
    # What the model dumps is a config that loads back to the same model.
    dumped = shipped.model_dump(mode="json", by_alias=True)
    assert _load(tmp_path, dumped) == shipped


def test_unknown_top_level_key_is_an_error_naming_it(tmp_path):
    doc = default_dict()
    doc["tresholds"] = {}
    assert "tresholds: unknown key" in _error(tmp_path, doc)


def test_unknown_nested_key_is_an_error_naming_its_path(tmp_path):
    doc = default_dict()
    doc["fit"]["groups"][0]["rules"][0]["pionts"] = 5
    assert "fit.groups[0].rules[0].pionts: unknown key" in _error(tmp_path, doc)


def test_wrong_type_is_an_error_naming_the_key(tmp_path):
    doc = default_dict()
    doc["fit"]["groups"][0]["rules"][0]["points"] = "25"
    assert "fit.groups[0].rules[0].points: Input should be a valid integer" in _error(tmp_path, doc)


def test_negative_bant_weight_is_an_error_naming_the_key(tmp_path):
    doc = default_dict()
    doc["bant"]["weights"]["budget"] = -1
    assert "bant.weights.budget: Input should be greater than or equal to 0" in _error(tmp_path, doc)


def test_bant_threshold_the_weights_cannot_reach_is_an_error(tmp_path):
    doc = default_dict()
    doc["bant"]["weights"] = {"budget": 0.5, "authority": 0.5, "need": 1, "timeline": 0.5}
    message = _error(tmp_path, doc)
    assert "bant.advance_threshold: 3 cannot be reached, bant.weights sum to 2.5" in message


def test_stage_threshold_the_points_cannot_reach_is_an_error(tmp_path):
    doc = default_dict()
    doc["stages"]["sql"]["min_score"] = 100
    for section in ("fit", "engagement"):
        for group in doc[section]["groups"]:
            group["max"] = 5 if group.get("max") is not None else None
    doc["signals"]["groups"] = []
    message = _error(tmp_path, doc)
    assert "stages.sql.min_score: 100 cannot be reached" in message


def test_grade_threshold_the_fit_rules_cannot_reach_is_an_error(tmp_path):
    doc = default_dict()
    doc["fit"]["full_points"] = 500
    message = _error(tmp_path, doc)
    assert "grades.fit.A: 75 cannot be reached" in message
    assert "nurture.min_fit_score: 50 cannot be reached" in message


def test_unknown_field_and_misapplied_operator_are_errors(tmp_path):
    doc = default_dict()
    doc["fit"]["groups"][1]["rules"][0]["field"] = "industy"
    doc["fit"]["groups"][2]["rules"][0]["field"] = "job_title"  # at_least on text
    message = _error(tmp_path, doc)
    assert "fit.groups[1].rules[0].field: unknown field 'industy'" in message
    assert "fit.groups[2].rules[0].at_least: not applicable to str field 'job_title'" in message


def test_invalid_regex_is_an_error_naming_the_pattern_index(tmp_path):
    doc = default_dict()
    doc["personas"][0]["titles"] = ["ok", "(unclosed"]
    assert "personas[0].titles[1]: invalid regular expression" in _error(tmp_path, doc)


def test_duplicate_rule_ids_are_an_error(tmp_path):
    doc = default_dict()
    doc["fit"]["groups"][1]["rules"][0]["id"] = "decider_title"
    assert "duplicate id 'decider_title'" in _error(tmp_path, doc)


def test_per_unit_rule_needs_numeric_field_and_max_points(tmp_path):
    doc = default_dict()
    rule = doc["engagement"]["groups"][0]["rules"][0]
    del rule["max_points"]
    rule["field"] = "job_title"
    message = _error(tmp_path, doc)
    assert "engagement.groups[0].rules[0].per_unit: needs a numeric field" in message
    assert "engagement.groups[0].rules[0].max_points: required with per_unit" in message


def test_showing_personal_data_in_reasons_is_rejected(tmp_path):
    doc = default_dict()
    doc["fit"]["groups"][0]["rules"][0]["show"] = "email"
    assert "fit.groups[0].rules[0].show: 'email' cannot be shown" in _error(tmp_path, doc)


def test_decay_on_a_counter_needs_a_timestamp(tmp_path):
    doc = default_dict()
    del doc["engagement"]["groups"][0]["rules"][0]["decay"]["timestamp"]
    assert "engagement.groups[0].rules[0].decay.timestamp" in _error(tmp_path, doc)


def test_disqualifier_with_positive_points_is_an_error(tmp_path):
    doc = default_dict()
    doc["disqualifiers"][0]["points"] = 10
    assert "disqualifiers[0].points: Input should be less than or equal to 0" in _error(tmp_path, doc)


def test_unordered_thresholds_are_errors(tmp_path):
    doc = default_dict()
    doc["grades"]["fit"] = {"A": 40, "B": 50, "C": 25}
    doc["stages"]["mql"]["min_score"] = 10
    message = _error(tmp_path, doc)
    assert "grades.fit: thresholds must satisfy A >= B >= C" in message
    assert "stages.mql.min_score: must be >= stages.lead.min_score (20)" in message


def test_missing_required_section_is_named():
    doc = default_dict()
    del doc["bant"]
    with pytest.raises(ModelConfigError, match="bant: required key is missing"):
        model_from_dict(doc)


def test_unreadable_and_malformed_files_raise_model_config_error(tmp_path):
    with pytest.raises(ModelConfigError, match="cannot read"):
        load_model(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: [unclosed", encoding="utf-8")
    with pytest.raises(ModelConfigError, match="bad.yaml: not valid YAML"):
        load_model(bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(ModelConfigError, match="expected a mapping"):
        load_model(bad)


def test_engagement_grade_keys_may_be_unquoted_numbers():
    doc = default_dict()
    doc["grades"]["engagement"] = {1: 70, 2: 40, 3: 10}
    model = model_from_dict(doc)
    assert (model.grades.engagement.one, model.grades.engagement.three) == (70, 10)


def test_shipped_json_schema_matches_the_model(tmp_path):
    shipped = json.loads(JSON_SCHEMA_PATH.read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(json_schema()))
    out = export_json_schema(tmp_path / "schema.json")
    assert json.loads(out.read_text()) == shipped


def test_default_yaml_validates_against_the_json_schema_and_typos_do_not():
    import jsonschema  # locked as a dependency of check-jsonschema

    schema = json_schema()
    jsonschema.validate(default_dict(), schema)
    doc = default_dict()
    doc["bant"]["treshold"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)
