"""The predictive score on the real X Education leads (tests/data/x-education, shipped with the repository)."""

from __future__ import annotations

import pandas as pd
import pytest

from leadflow.predict.mapping import load_mapping
from leadflow.predict.score import score_table
from leadflow.predict.train import TrainConfig, train_from_frame


@pytest.mark.slow
def test_x_education_cross_validated_auc_reaches_the_reference_without_leaking_fields(x_education_csv):
    frame = pd.read_csv(x_education_csv, dtype=str, keep_default_na=False)
    mapping = load_mapping("x_education")
    model = train_from_frame(frame, mapping, config=TrainConfig(seed=7))

    assert not set(model.features) & set(mapping.excluded)
    # README reference: logistic regression ~0.89, gradient boosting ~0.90 with Last Activity.
    assert model.metrics["candidates"]["logistic"]["cv_auc_mean"] > 0.88
    assert model.cv_auc >= 0.90  # issue 14: the CSV path keeps its AUC (0.903 with seed 7)
    assert 0.30 < model.metrics["base_rate"] < 0.45

    scores = score_table(model, frame.head(200))
    assert list(scores.columns) == ["Prospect ID", "probability", "score", "reasons"]
    assert scores["reasons"].str.contains("predictive: ").all()
