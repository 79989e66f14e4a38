"""Backtest metrics and the markdown + PNG report."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from leadflow.predict import backtest as bt
from predict_fakes import make_leads, run_cli


def test_decile_table_puts_the_highest_scores_in_decile_one():
    scores = np.arange(100, dtype=float)
    y = (scores >= 90).astype(int)
    table = bt.decile_table(y, scores)
    assert table["leads"].tolist() == [10] * 10
    assert table.loc[0, "conversion_rate"] == 1.0 and table.loc[0, "min_score"] == 90
    assert table.loc[1:, "won"].sum() == 0
    assert table.loc[0, "lift"] == pytest.approx(10.0)
    assert table["cumulative_won_share"].iloc[-1] == 1.0


def test_precision_recall_and_stage_counts_at_the_thresholds():
    scores = np.array([90, 85, 70, 65, 40, 30, 10, 5], dtype=float)
    y = np.array([1, 1, 0, 1, 0, 1, 0, 0])
    result = bt.evaluate("x", y, scores, bt.Thresholds(lead=20, mql=60, sql=80))
    assert result.precision_at_mql == pytest.approx(3 / 4)
    assert result.recall_at_mql == pytest.approx(3 / 4)
    assert result.summary()["stage_counts"] == {"subscriber": 2, "lead": 2, "mql": 2, "sql": 2}
    assert result.roc_auc == pytest.approx(0.8125)


def test_stages_proposed_by_the_scorer_are_counted_as_given():
    frame = pd.DataFrame({"a": range(4)})
    labels = pd.Series([1.0, 0.0, np.nan, 1.0])
    out = pd.DataFrame({"score": [80, 10, 50, 70], "stage": ["sql", "lead", "mql", "mql"]})
    [result] = bt.run_backtest(frame, labels, {"rules": lambda f: out.loc[f.index]})
    assert result.n == 3
    assert result.summary()["stage_counts"] == {"subscriber": 0, "lead": 1, "mql": 1, "sql": 1}


def test_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="lead <= mql <= sql"):
        bt.Thresholds(lead=50, mql=40, sql=80)


def test_blend_weighs_rules_and_predictive():
    frame = pd.DataFrame({"a": [0, 1]})
    blend = bt.blend_scorer(lambda f: pd.Series([100, 0], index=f.index),
                            lambda f: pd.Series([0, 100], index=f.index), 0.25)
    assert blend(frame).tolist() == [75, 25]
    with pytest.raises(ValueError, match="weight"):
        bt.blend_scorer(lambda f: f, lambda f: f, 1.5)


def test_report_has_deciles_stage_counts_and_a_png_chart(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    good = np.clip(y * 40 + rng.normal(40, 15, 300), 0, 100)
    noise = rng.uniform(0, 100, 300)
    results = [bt.evaluate("good", y, good, bt.Thresholds()),
               bt.evaluate("noise", y, noise, bt.Thresholds())]
    md, png = bt.write_report(results, tmp_path / "report", title="Q3 thresholds")
    text = md.read_text(encoding="utf-8")
    assert text.startswith("# Q3 thresholds")
    assert "![lift chart](lift.png)" in text
    assert "## good" in text and "## noise" in text
    assert text.count("| decile | leads |") == 2
    assert "| sql |" in text and "| subscriber |" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert results[0].roc_auc > 0.85 > results[1].roc_auc


def test_cross_validated_scorer_scores_every_row_without_seeing_it(mapping, fast_config):
    frame = make_leads(400, seed=5)
    scores = bt.cross_validated_scorer(mapping, config=fast_config)(frame)
    assert scores.index.equals(frame.index)
    assert scores.between(0, 100).all()
    [result] = bt.run_backtest(frame, frame["Won"].astype(float), {"p": lambda f: scores})
    assert 0.7 < result.roc_auc < 0.99


def test_backtest_cli_on_a_csv_writes_the_report(tmp_path, mapping_file, capsys):
    csv = tmp_path / "history.csv"
    make_leads(300, seed=9).to_csv(csv, index=False)
    out = tmp_path / "bt"
    code = run_cli(["backtest", "--csv", str(csv), "--mapping", str(mapping_file),
                    "--out-dir", str(out), "--folds", "3", "--mql-threshold", "50"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["results"][0]["mql_threshold"] == 50
    assert (out / "backtest.md").exists() and (out / "lift.png").exists()


def test_rules_scorer_sees_closed_leads_as_open(monkeypatch):
    seen = {}

    def fake_score_leads(leads, model, now, predictive=None, render=True):
        seen["frame"] = leads
        return pd.DataFrame({"score": [50] * len(leads), "stage": ["keep"] * len(leads),
                             "proposed_stage": ["mql"] * len(leads)}, index=leads.index)

    monkeypatch.setattr(bt, "score_leads", fake_score_leads)
    frame = pd.DataFrame({"lifecycle_stage": ["customer"], "lead_status": ["unqualified"],
                          "created_at": [1_700_000_000_000]})
    out = bt.rules_scorer(object(), datetime(2025, 1, 1, tzinfo=timezone.utc))(frame)
    assert out["stage"].tolist() == ["mql"]
    assert seen["frame"]["lifecycle_stage"].isna().all()
    assert str(seen["frame"]["created_at"].dtype).startswith("datetime64")
