"""`leadflow model train` then `model score` on a CSV the model has never seen."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from predict_fakes import make_leads, run_cli


def test_train_then_score_an_unseen_csv_writes_the_score_columns(tmp_path, mapping_file, capsys):
    train_csv, new_csv = tmp_path / "train.csv", tmp_path / "new.csv"
    make_leads(500, seed=1).rename(columns={"Won": "Outcome"}).to_csv(train_csv, index=False)
    new = make_leads(60, seed=50).drop(columns=["Won"]).astype({"Time On Site": object})
    new.loc[new.index[:4], "Source"] = "Unheard Of"
    new.loc[new.index[4:8], "Visits"] = ""
    new.loc[new.index[8:12], "Time On Site"] = "Select"
    new.to_csv(new_csv, index=False)
    model_path, scores_path = tmp_path / "out" / "model.joblib", tmp_path / "scores.csv"

    assert run_cli(["model", "train", "--csv", str(train_csv), "--mapping", str(mapping_file),
                    "--label", "Outcome", "--out", str(model_path), "--folds", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["label"] == "Outcome" and model_path.exists()

    assert run_cli(["model", "score", "--model", str(model_path), "--csv", str(new_csv),
                    "--mapping", str(mapping_file), "--out", str(scores_path)]) == 0
    scores = pd.read_csv(scores_path, keep_default_na=False)
    assert list(scores.columns) == ["Lead ID", "probability", "score", "reasons"]
    assert scores["Lead ID"].tolist() == new["Lead ID"].tolist()
    assert scores["probability"].between(0, 1).all()
    assert np.array_equal(scores["score"], np.floor(scores["probability"] * 100 + 0.5))
    assert scores["score"].between(0, 100).all()
    assert (scores["reasons"].str.len() > 0).all()


def test_model_show_prints_the_summary(tmp_path, trained_model, capsys):
    from leadflow.predict.store import save_model_file

    path = save_model_file(trained_model, tmp_path / "m.joblib")
    assert run_cli(["model", "show", "--model", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == trained_model.version


def test_bad_mapping_is_a_one_line_error_with_exit_code_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nid_column: id\nnumbers: [a]\ncolour: red\n", encoding="utf-8")
    csv = tmp_path / "x.csv"
    csv.write_text("id,a,Won\n1,2,1\n", encoding="utf-8")
    code = run_cli(["model", "train", "--csv", str(csv), "--mapping", str(bad), "--label", "Won",
                    "--out", str(tmp_path / "m.joblib")])
    assert code == 2
    err = capsys.readouterr().err
    assert "colour" in err and err.count("\n") == 1


def test_scoring_with_a_mapping_of_other_features_is_refused(tmp_path, trained_model, capsys):
    from leadflow.predict.store import save_model_file

    path = save_model_file(trained_model, tmp_path / "m.joblib")
    csv = tmp_path / "x.csv"
    make_leads(5, seed=3).to_csv(csv, index=False)
    code = run_cli(["model", "score", "--model", str(path), "--csv", str(csv),
                    "--mapping", "x_education", "--out", str(tmp_path / "s.csv")])
    assert code == 2
    assert "does not describe the features" in capsys.readouterr().err
