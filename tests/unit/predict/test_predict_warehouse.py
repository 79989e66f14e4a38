"""Training from the warehouse's canonical leads: labels, too little history, promotion."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sqlalchemy import insert

from leadflow.predict.store import list_models, load_champion
from leadflow.predict.train import TrainConfig
from leadflow.predict.warehouse import outcome_labels, read_labelled_leads, train_from_warehouse
from leadflow.schema import LEAD_COLUMNS
from leadflow.warehouse.tables import leads

FAST = TrainConfig(folds=3, boosting_max_iter=30, boosting_learning_rate=0.1)
DAY_MS = 86_400_000


def _rows(n: int, won: int, lost: int, crm: str = "hubspot", seed: int = 0) -> list[dict]:
    """n leads: the first `won` customers, the next `lost` unqualified, the rest open."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        outcome = "won" if i < won else "lost" if i < won + lost else "open"
        engaged = outcome == "won" or rng.random() < 0.2
        row = {c: None for c in LEAD_COLUMNS}
        row.update(
            crm=crm, record_id=f"{crm}-{i}", email=f"p{i}@example.com",
            lifecycle_stage="customer" if outcome == "won" else "lead",
            lead_status="unqualified" if outcome == "lost" else "open",
            page_views=float(rng.poisson(12 if engaged else 3)),
            visits=float(rng.poisson(4 if engaged else 1)),
            pricing_page_views=float(rng.poisson(2 if engaged else 0.2)),
            industry=rng.choice(["Software", "Retail", "Banking"]),
            country=rng.choice(["DE", "US", None]),
            job_title=rng.choice(["CEO", "Engineer", "Student"]),
            demo_requested_at=1_700_000_000_000 if engaged and rng.random() < 0.5 else None,
            created_at=1_700_000_000_000 + i * DAY_MS,
            is_deleted=False, pulled_at=1, pull_run_id="r1",
        )
        rows.append(row)
    return rows


def _land(engine, rows):
    with engine.begin() as conn:
        conn.execute(insert(leads), rows)


def test_outcome_labels_won_beats_lost_and_open_stays_unlabelled():
    frame = pd.DataFrame({
        "lifecycle_stage": ["customer", "lead", "Customer", "mql", None],
        "lead_status": ["unqualified", "unqualified", None, "open", None],
    })
    assert outcome_labels(frame).tolist()[:3] == ["won", "lost", "won"]
    assert outcome_labels(frame).iloc[3:].isna().all()


def test_too_little_history_returns_a_summary_instead_of_failing(sqlite_warehouse):
    _land(sqlite_warehouse, _rows(60, won=4, lost=30))
    summary = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST)
    assert summary["status"] == "insufficient_data"
    assert (summary["won"], summary["lost"]) == (4, 30)
    assert load_champion(sqlite_warehouse, "hubspot") is None


def test_training_from_the_warehouse_promotes_a_champion_with_its_window(sqlite_warehouse):
    _land(sqlite_warehouse, _rows(400, won=120, lost=200))
    _land(sqlite_warehouse, _rows(50, won=25, lost=25, crm="salesforce"))
    labelled = read_labelled_leads(sqlite_warehouse, "hubspot")
    assert len(labelled) == 320  # open leads and the other CRM are left out

    summary = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST)
    assert summary["status"] == "trained" and summary["promoted"] is True
    assert (summary["won"], summary["lost"]) == (120, 200)
    assert summary["cv_auc"] > 0.7
    assert summary["training_window"][0].startswith("2023-11-14")
    champion = load_champion(sqlite_warehouse, "hubspot")
    assert champion.version == summary["version"]
    assert "lifecycle_stage" not in champion.features and "lead_status" not in champion.features
    stored = list_models(sqlite_warehouse, "hubspot")[0]
    assert stored["training_start"] == 1_700_000_000_000
    assert stored["n_rows"] == 320


def test_window_limits_the_training_rows(sqlite_warehouse):
    _land(sqlite_warehouse, _rows(400, won=120, lost=200))
    since = 1_700_000_000_000 + 100 * DAY_MS
    frame = read_labelled_leads(sqlite_warehouse, "hubspot", since_ms=since)
    assert len(frame) == 220 and (frame["created_at"] >= since).all()


def test_backtest_of_rules_predictive_and_blend_on_warehouse_history(tmp_path, capsys):
    import json

    from leadflow.warehouse.db import ensure_schema, get_engine
    from predict_fakes import run_cli

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    _land(engine, _rows(300, won=100, lost=150))
    out = tmp_path / "bt"
    code = run_cli(["backtest", "--crm", "hubspot", "--db", url, "--scorers",
                    "rules,predictive,blend", "--blend-weight", "0.5", "--folds", "3",
                    "--out-dir", str(out)])
    assert code == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert [r["name"] for r in results] == ["rules", "predictive", "blend (50% predictive)"]
    assert all(r["n"] == 250 for r in results)
    assert sum(results[0]["stage_counts"].values()) == 250
    assert "## rules" in (out / "backtest.md").read_text(encoding="utf-8")
    engine.dispose()


def test_pipeline_blends_the_champion_and_shows_its_top_factors_in_the_reasons(sqlite_warehouse, tmp_path):
    from datetime import datetime, timezone

    import yaml

    from leadflow.pipeline import RunContext, qualify
    from leadflow.qualify import DEFAULT_MODEL_PATH
    from leadflow.warehouse import repo

    _land(sqlite_warehouse, _rows(400, won=120, lost=200))
    assert train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST)["promoted"]
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text())
    doc["predictive"] = {**doc["predictive"], "enabled": True, "weight": 0.3}
    model_path = tmp_path / "model.yaml"
    model_path.write_text(yaml.safe_dump(doc))

    ctx = RunContext(crm="hubspot", run_id="r2", model_path=str(model_path), _engine=sqlite_warehouse,
                     now=datetime(2026, 3, 1, tzinfo=timezone.utc))
    qualify(ctx)
    scores = repo.load_scores(sqlite_warehouse, "hubspot")
    blends = scores["reasons"].str.extract(r"([+-]\d+) predictive blend \(30%\): ([^;]+)")
    moved = blends[0].notna()
    assert moved.mean() > 0.5  # most open leads' scores moved with the predictive blend
    # The factors name the champion's features with the lead's own value and signed points.
    assert blends.loc[moved, 1].str.match(r"^[^=]+ = .+ [+-]\d+").all()
    for text, score in zip(scores["reasons"], scores["score"]):
        assert sum(int(p.split(" ", 1)[0]) for p in text.split("; ")) == score
