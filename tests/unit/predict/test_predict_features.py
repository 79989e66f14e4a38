"""Feature cleaning and encoding: missing tokens, case, rare and unseen categories."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadflow.predict.features import MISSING, OTHER, FeatureEncoder, normalise_text, to_number
from leadflow.predict.mapping import parse_mapping
from predict_fakes import MAPPING, make_leads


def test_select_and_blank_become_missing_and_case_is_folded():
    values = pd.Series([" Google", "google", "Select", "", None, "SELECT "])
    out = normalise_text(values, ["", "Select"], case_insensitive=True)
    assert out.tolist()[:2] == ["google", "google"]
    assert out.iloc[2:].isna().all()


def test_numbers_accept_text_and_treat_garbage_as_missing():
    out = to_number(pd.Series(["3", "2.5", "Select", "lots", None]), ["Select"])
    assert out.iloc[:2].tolist() == [3.0, 2.5]
    assert out.iloc[2:].isna().all()


def test_unseen_and_rare_categories_map_to_other_and_missing_to_missing():
    mapping = parse_mapping({**MAPPING, "min_category_count": 50})
    train = make_leads(300, seed=3)
    train.loc[train.index[:3], "Source"] = "Rare Source"
    enc = FeatureEncoder(mapping).fit(train)
    source = next(s for s in enc.categories if s.name == "Source")
    assert "rare source" not in source.levels
    assert source.levels[-2:] == [MISSING, OTHER]
    assert "google" in source.levels and "Google" not in source.levels

    new = train.head(3).copy()
    new["Source"] = ["Brand New", "Select", "GOOGLE"]
    codes = source.codes(enc.category_keys(new)["Source"])
    assert codes.tolist() == [source.levels.index(OTHER), source.levels.index(MISSING),
                              source.levels.index("google")]


def test_encodings_have_stable_shapes_and_no_nan_in_design():
    mapping = parse_mapping(MAPPING)
    train = make_leads(300, seed=4)
    enc = FeatureEncoder(mapping).fit(train)
    new = make_leads(20, seed=5)
    new["Visits"] = np.nan
    new["Time On Site"] = "Select"
    design = enc.design(new)
    assert design.shape == (20, len(enc.design_names))
    assert np.isfinite(design).all()
    tabular = enc.tabular(new)
    assert tabular.shape == (20, len(enc.feature_names))
    assert np.isnan(tabular[:, 0]).all()  # boosting sees missing numbers as missing


def test_ratio_is_missing_when_the_denominator_is_zero():
    mapping = parse_mapping(MAPPING)
    frame = pd.DataFrame({"Lead ID": ["a", "b"], "Visits": [0, 4], "Time On Site": [100, 100],
                          "Source": ["x", "y"], "Last Activity": ["a", "b"], "Country": ["c", "d"]})
    nums = FeatureEncoder(mapping).numeric_frame(frame)
    assert np.isnan(nums["Time Per Visit"].iloc[0])
    assert nums["Time Per Visit"].iloc[1] == 25.0
