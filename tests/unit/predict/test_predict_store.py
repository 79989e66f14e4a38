"""Model files and the warehouse `models` table: champion / challenger."""

from __future__ import annotations

import copy
import json

import pytest

from leadflow.predict.store import (
    ModelFileError,
    champion_challenger,
    list_models,
    load_champion,
    load_model_file,
    model_from_bytes,
    save_model_file,
)


def _variant(model, version: str, auc: float, crm: str = "hubspot"):
    other = copy.copy(model)
    other.version, other.crm = version, crm
    other.metrics = {**model.metrics, "cv_auc_mean": auc}
    return other


def test_model_file_round_trips_and_scores_the_same(tmp_path, trained_model):
    from predict_fakes import make_leads

    path = save_model_file(trained_model, tmp_path / "sub" / "m.joblib")
    loaded = load_model_file(path)
    frame = make_leads(30, seed=8)
    assert loaded.version == trained_model.version
    assert (loaded.predict_proba(frame) == trained_model.predict_proba(frame)).all()
    assert not list(path.parent.glob(".*.tmp"))


def test_a_file_that_is_not_a_model_is_refused(tmp_path):
    import joblib

    other = tmp_path / "other.joblib"
    joblib.dump({"format": "something-else"}, other)
    with pytest.raises(ModelFileError, match="not a leadflow predictive model"):
        load_model_file(other)
    with pytest.raises(ModelFileError, match="not a leadflow model file"):
        model_from_bytes(b"plain text")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model_file(tmp_path / "absent.joblib")


def test_champion_challenger_keeps_the_better_model(warehouse, trained_model):
    first = _variant(trained_model, "v1", 0.80)
    worse = _variant(trained_model, "v2", 0.79)
    equal = _variant(trained_model, "v3", 0.80)
    better = _variant(trained_model, "v4", 0.85)
    other_crm = _variant(trained_model, "v5", 0.50, crm="salesforce")

    assert champion_challenger(warehouse, first, now_ms=1) is True
    assert champion_challenger(warehouse, worse, now_ms=2) is False
    assert load_champion(warehouse, "hubspot").version == "v1"
    assert champion_challenger(warehouse, equal, now_ms=3) is True  # "not worse" replaces
    assert champion_challenger(warehouse, better, now_ms=4) is True
    assert champion_challenger(warehouse, other_crm, now_ms=5) is True

    assert load_champion(warehouse, "hubspot").version == "v4"
    assert load_champion(warehouse, "salesforce").version == "v5"
    rows = {r["version"]: r for r in list_models(warehouse, "hubspot")}
    assert set(rows) == {"v1", "v2", "v3", "v4"}
    assert [v for v, r in rows.items() if r["is_champion"]] == ["v4"]
    assert rows["v2"]["cv_auc"] == pytest.approx(0.79)
    assert json.loads(rows["v4"]["features"]) == trained_model.features
    assert "artifact" not in rows["v4"]


def test_tolerance_lets_a_slightly_worse_model_replace_the_champion(sqlite_warehouse, trained_model):
    assert champion_challenger(sqlite_warehouse, _variant(trained_model, "a", 0.80))
    assert champion_challenger(sqlite_warehouse, _variant(trained_model, "b", 0.795), tolerance=0.01)
    assert load_champion(sqlite_warehouse, "hubspot").version == "b"


def test_no_champion_yet_is_none(sqlite_warehouse):
    assert load_champion(sqlite_warehouse, "hubspot") is None
