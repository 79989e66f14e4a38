"""Training, champion choice, calibration and scoring of unseen rows."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from leadflow.predict.mapping import MappingError, parse_mapping
from leadflow.predict.score import probability_to_score, score_frame, score_table
from leadflow.predict.train import (
    CrossValidation,
    InsufficientData,
    TrainConfig,
    choose_champion,
    fit_platt,
    label_vector,
    train_from_frame,
)
from predict_fakes import MAPPING, make_leads

REASON = re.compile(r"^[+-]\d+ predictive: .+ = .+$")


def test_trained_model_records_version_metrics_and_features(trained_model):
    m = trained_model
    assert m.version.startswith("synthetic-")
    assert m.algorithm in {"logistic", "boosting", "blend"}
    assert set(m.metrics["candidates"]) == {"logistic", "boosting", "blend"}
    assert m.metrics["cv_auc_mean"] == max(c["cv_auc_mean"] for c in m.metrics["candidates"].values())
    assert m.metrics["cv_auc_mean"] > 0.7  # the synthetic signal is strong
    assert m.features == ["Visits", "Time On Site", "Time Per Visit", "Source", "Last Activity", "Country"]
    assert "Sales Notes" not in m.features


def test_scoring_unseen_rows_handles_unknown_categories_missing_numbers_and_select(trained_model):
    new = make_leads(40, seed=99).drop(columns=["Won"]).astype({"Visits": object})
    new.loc[new.index[:5], "Source"] = "Never Seen Before"
    new.loc[new.index[5:10], "Time On Site"] = np.nan
    new.loc[new.index[10:15], "Visits"] = "Select"
    new.loc[new.index[15:20], "Last Activity"] = None
    scored = score_frame(trained_model, new)
    assert list(scored.columns) == ["probability", "score", "reasons", "factors"]
    assert scored.index.equals(new.index)
    assert scored["probability"].between(0, 1).all()
    assert (scored["score"] == np.floor(scored["probability"] * 100 + 0.5)).all()
    for text in scored["reasons"]:
        parts = text.split("; ")
        assert 1 <= len(parts) <= 3
        assert all(REASON.match(p) for p in parts), text


def test_reasons_show_the_leads_own_value_and_the_strongest_factor_first(trained_model):
    lead = make_leads(1, seed=7).drop(columns=["Won"])
    lead["Time On Site"] = 5000.0
    lead["Last Activity"] = "SMS Sent"
    reasons = score_frame(trained_model, lead, top_factors=6)["reasons"].iloc[0].split("; ")
    points = [abs(int(r.split(" ", 1)[0])) for r in reasons]
    assert points == sorted(points, reverse=True)
    assert reasons[0].startswith("+") and reasons[0].endswith("Last Activity = SMS Sent")
    # The same factors, in the same order, as the phrase the rules engine's blend reason shows.
    factors = score_frame(trained_model, lead, top_factors=6)["factors"].iloc[0].split(", ")
    assert [f.rsplit(" ", 1)[1] for f in factors] == [r.split(" ", 1)[0] for r in reasons]
    assert factors[0].startswith("Last Activity = SMS Sent ")
    assert any(r.endswith("Time On Site = 5,000") for r in reasons)


def test_score_table_has_the_id_column_first(trained_model):
    new = make_leads(10, seed=11)
    table = score_table(trained_model, new)
    assert list(table.columns) == ["Lead ID", "probability", "score", "reasons"]
    assert table["Lead ID"].tolist() == new["Lead ID"].tolist()


def test_scoring_a_table_without_a_feature_column_names_it(trained_model):
    new = make_leads(5, seed=12).drop(columns=["Country"])
    with pytest.raises(MappingError, match="'Country'"):
        score_frame(trained_model, new)


def test_score_frame_of_no_rows_is_empty(trained_model):
    out = score_frame(trained_model, make_leads(3, seed=1).iloc[:0])
    assert out.empty and list(out.columns) == ["probability", "score", "reasons", "factors"]


def test_calibrated_probabilities_match_observed_rates(trained_model):
    holdout = make_leads(2000, seed=21)
    p = trained_model.predict_proba(holdout)
    y = holdout["Won"].to_numpy()
    assert abs(p.mean() - y.mean()) < 0.05
    top, bottom = p >= np.quantile(p, 0.8), p <= np.quantile(p, 0.2)
    assert y[top].mean() > 2 * y[bottom].mean()


def test_labels_accept_numeric_text_and_leave_other_values_unlabelled():
    mapping = parse_mapping(MAPPING)
    frame = pd.DataFrame({"Won": ["1", "0", "1.0", " 0 ", "open", None]})
    assert label_vector(frame, mapping).tolist()[:4] == [1.0, 0.0, 1.0, 0.0]
    assert label_vector(frame, mapping).iloc[4:].isna().all()


def test_unlabelled_rows_are_ignored_in_training(fast_config):
    frame = make_leads(400, seed=2)
    frame["Won"] = frame["Won"].astype(object)
    frame.loc[frame.index[:100], "Won"] = "open"
    model = train_from_frame(frame, parse_mapping(MAPPING), config=fast_config)
    assert model.metrics["n_rows"] == 300


def test_too_few_rows_of_a_class_raises_insufficient_data(fast_config):
    frame = make_leads(200, seed=2)
    frame["Won"] = 0
    frame.loc[frame.index[:3], "Won"] = 1
    with pytest.raises(InsufficientData, match="3 won"):
        train_from_frame(frame, parse_mapping(MAPPING), config=fast_config)


def test_label_override_uses_another_column(fast_config):
    frame = make_leads(300, seed=6).rename(columns={"Won": "Converted"})
    model = train_from_frame(frame, parse_mapping(MAPPING), "Converted",
                             config=TrainConfig(candidates=("logistic",), folds=3))
    assert model.label == "Converted" and model.algorithm == "logistic"
    assert model.boosting is None


def test_stronger_learner_must_beat_the_baseline_to_become_champion():
    tie = CrossValidation({"logistic": [0.8, 0.8], "boosting": [0.8, 0.8], "blend": [0.79, 0.8]},
                          {}, 0.0)
    assert choose_champion(tie) == "logistic"
    win = CrossValidation({"logistic": [0.8], "boosting": [0.85], "blend": [0.84]}, {}, 0.0)
    assert choose_champion(win) == "boosting"


def test_platt_calibration_is_increasing_and_falls_back_to_identity():
    rng = np.random.default_rng(0)
    raw = rng.random(500)
    y = (rng.random(500) < raw**2).astype(int)
    a, _ = fit_platt(raw, y)
    assert a > 0
    assert fit_platt(raw, 1 - (raw > 0.5).astype(int)) == (1.0, 0.0)


def test_config_rejects_unknown_candidates_and_a_missing_baseline():
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig(candidates=("logistic", "forest"))
    with pytest.raises(ValueError, match="baseline"):
        TrainConfig(candidates=("boosting",))


def test_probability_to_score_rounds_half_up_and_clips():
    assert probability_to_score(np.array([0.0, 0.004, 0.005, 0.5, 0.995, 1.2])).tolist() == [
        0, 0, 1, 50, 100, 100]
