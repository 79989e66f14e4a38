"""Fixtures for the predictive-score tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from predict_fakes import MAPPING, make_leads


@pytest.fixture
def mapping_file(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic.yaml"
    path.write_text(yaml.safe_dump(MAPPING, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def mapping(mapping_file: Path):
    from leadflow.predict.mapping import load_mapping

    return load_mapping(mapping_file)


@pytest.fixture
def fast_config():
    """Fewer boosting rounds: the tests check behaviour, not the last point of AUC."""
    from leadflow.predict.train import TrainConfig

    return TrainConfig(folds=3, boosting_max_iter=40, boosting_learning_rate=0.1)


@pytest.fixture(scope="session")
def trained_model():
    """One model shared by read-only tests (training is the slow part)."""
    from leadflow.predict.mapping import parse_mapping
    from leadflow.predict.train import TrainConfig, train_from_frame

    cfg = TrainConfig(folds=3, boosting_max_iter=40, boosting_learning_rate=0.1)
    return train_from_frame(make_leads(900, seed=1), parse_mapping(MAPPING), config=cfg)
