"""Training from the warehouse: labels from sales' verdicts and outcomes only, inputs as they
were at the handoff, too little history, promotion, the backtest."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert

from leadflow.predict.labels import handoff_labels
from leadflow.predict.mapping import load_mapping
from leadflow.predict.store import list_models, load_champion
from leadflow.predict.train import TrainConfig
from leadflow.predict.gate import rules_scores
from leadflow.predict.versions import input_columns, record_versions, versions_at
from leadflow.qualify import load_model
from leadflow.predict.warehouse import LeakError, check_no_leak, read_training_frame, train_from_warehouse
from leadflow.schema import LEAD_COLUMNS
from leadflow.verdicts.read import store_events
from leadflow.verdicts.tables import handoffs
from leadflow.warehouse.tables import leads

FAST = TrainConfig(folds=3, boosting_max_iter=30, boosting_learning_rate=0.1)
DAY_MS = 86_400_000
T0 = 1_700_000_000_000
NOW = T0 + 1_000 * DAY_MS
INPUTS = ["page_views", "visits", "pricing_page_views", "industry", "country", "job_title", "demo_requested_at"]


def _rows(n: int, won: int, lost: int, crm: str = "hubspot", seed: int = 0) -> list[dict]:
    """n leads handed over one a day, in random order: `won` bought (half converted, half moved
    to opportunity by a rep), `lost` rejected by a rep, the rest still open. leadflow's own
    status on them is `unqualified` for some of every kind: it must not matter."""
    rng = np.random.default_rng(seed)
    rank = rng.permutation(n)
    rows = []
    for i in range(n):
        outcome = "won" if rank[i] < won else "lost" if rank[i] < won + lost else "open"
        engaged = outcome == "won" or rng.random() < 0.2
        row = {c: None for c in LEAD_COLUMNS}
        row.update(
            crm=crm, record_id=f"{crm}-{i}", email=f"p{i}@example.com",
            lifecycle_stage="opportunity" if outcome == "won" and i % 2 else "mql",
            lead_status="unqualified" if i % 3 == 0 else "open",
            page_views=float(rng.poisson(12 if engaged else 3)),
            visits=float(rng.poisson(4 if engaged else 1)),
            pricing_page_views=float(rng.poisson(2 if engaged else 0.2)),
            industry=rng.choice(["Software", "Retail", "Banking"]),
            country=rng.choice(["DE", "US", None]),
            job_title=rng.choice(["CEO", "Engineer", "Student"]),
            demo_requested_at=T0 if engaged and rng.random() < 0.5 else None,
            created_at=T0 + i * DAY_MS,
            is_deleted=False, pulled_at=1, pull_run_id="r1",
        )
        row["_outcome"] = outcome
        rows.append(row)
    return rows


def _seed(engine, rows: list[dict], crm: str = "hubspot") -> None:
    """Land the leads, a version of their inputs the day before their handoff, the handoff, and
    sales' verdicts: converted (even rows of the won), rejected by a person (the lost)."""
    with engine.begin() as conn:
        conn.execute(insert(leads), [{k: v for k, v in r.items() if k != "_outcome"} for r in rows])
        conn.execute(insert(handoffs), [{"crm": crm, "record_id": r["record_id"], "handed_over_at": r["created_at"],
                                         "score": 80.0, "run_id": "r1"} for r in rows])
    for r in rows:
        frame = pd.DataFrame([{"record_id": r["record_id"], **{c: r[c] for c in INPUTS}}])
        record_versions(engine, crm, "r0", frame, INPUTS, r["created_at"] - DAY_MS)
    events = []
    for i, r in enumerate(rows):
        if r["_outcome"] == "won" and i % 2 == 0:
            events.append(("converted", "lifecycle_stage", "customer", "workflow"))
        elif r["_outcome"] == "lost":
            events.append(("rejected", "lead_status", "unqualified", "person"))
        else:
            events.append(None)
    store_events(engine, [{"crm": crm, "record_id": r["record_id"], "handed_over_at": r["created_at"],
                           "verdict": e[0], "decided_at": r["created_at"] + 2 * DAY_MS, "writer": e[3],
                           "field": e[1], "value": e[2], "run_id": "r2", "seen_at": NOW}
                          for r, e in zip(rows, events) if e is not None])


HANDOFFS = pd.DataFrame({"record_id": list("abcdefg"), "handed_over_at": [T0] * 6 + [NOW - DAY_MS]})


def _event(rid, verdict, value, days=1):
    return {"record_id": rid, "handed_over_at": T0, "verdict": verdict, "decided_at": T0 + days * DAY_MS,
            "value": value}


@pytest.mark.parametrize("case, events, stage_now, label, why", [
    ("converted", [_event("a", "converted", "customer")], {}, "won", "converted"),
    ("a rep moved it to opportunity", [_event("a", "accepted", "opportunity")], {}, "won", "won stage"),
    ("holds a won stage now", [], {"a": "customer"}, "won", "won stage"),
    ("rejected by a rep", [_event("a", "rejected", "unqualified")], {}, "lost", "rejected"),
    ("rejected, then bought after all", [_event("a", "rejected", "nurture"), _event("a", "converted", "customer", 9)],
     {}, "won", "converted"),
    ("accepted, working: still open", [_event("a", "accepted", "in_progress")], {}, None, "open (matured)"),
    ("ignored: open, not lost", [_event("a", "ignored", None)], {}, None, "open (matured)"),
    ("leadflow's own unqualified status is no label", [], {"a": "mql"}, None, "open (matured)"),
])
def test_labels_come_only_from_verdicts_and_won_stages(case, events, stage_now, label, why):
    out = handoff_labels(HANDOFFS.iloc[:1], pd.DataFrame(events), pd.Series(stage_now, dtype=object), now_ms=NOW,
                         maturation_days=60).iloc[0]
    assert (out["label"], out["why"]) == (label, why), case


def test_a_recent_open_handoff_is_immature_and_an_old_one_matured():
    out = handoff_labels(HANDOFFS, pd.DataFrame(), pd.Series(dtype=object), now_ms=NOW, maturation_days=60)
    assert out["label"].isna().all()
    assert out["why"].tolist() == ["open (matured)"] * 6 + ["immature"]


def test_a_mapping_reading_a_label_source_is_refused():
    mapping = load_mapping("warehouse_leads")
    check_no_leak(mapping)
    for leaked in ("lifecycle_stage", "lead_status", "score", "sales_ready"):
        bad = mapping.model_copy(update={"categories": [*mapping.categories, leaked],
                                         "excluded": [c for c in mapping.excluded if c != leaked]})
        with pytest.raises(LeakError, match=leaked):
            check_no_leak(bad)


def test_training_takes_the_inputs_current_at_the_handoff_not_later_ones(sqlite_warehouse):
    rows = _rows(6, won=3, lost=3)
    _seed(sqlite_warehouse, rows)
    # After the outcome the leads kept engaging: later versions must not reach the training rows.
    later = pd.DataFrame([{"record_id": r["record_id"], **{c: r[c] for c in INPUTS}, "page_views": 999.0}
                          for r in rows])
    assert record_versions(sqlite_warehouse, "hubspot", "r9", later, INPUTS, NOW) == 6
    frame, counts = read_training_frame(sqlite_warehouse, "hubspot", now_ms=NOW)
    assert counts == {"handoffs": 6, "open_matured": 0, "immature": 0, "without_version": 0, "won": 3, "lost": 3}
    assert sorted(frame["page_views"]) == sorted(r["page_views"] for r in rows)
    assert not {"lifecycle_stage", "lead_status"} & set(frame.columns)


def test_a_version_keeps_what_the_lead_is_not_which_lead_it_is(sqlite_warehouse):
    # The rules read the lead's crm and record_id (describe_fields): they are not inputs.
    assert input_columns(["crm", "record_id", "page_views", "lead_status"],
                         {"crm", "record_id", "page_views", "lead_status"}) == ["page_views"]
    # Versions stored while they were: one record_id column in the training rows, which the
    # rules score as at each handoff.
    rows = _rows(6, won=3, lost=3)
    _seed(sqlite_warehouse, rows)
    stored_with_ids = pd.DataFrame([{"crm": "hubspot", "record_id": r["record_id"], **{c: r[c] for c in INPUTS},
                                     "page_views": 50.0} for r in rows])
    record_versions(sqlite_warehouse, "hubspot", "r1", stored_with_ids, ["crm", "record_id", *INPUTS], T0 - 1)
    frame, _ = read_training_frame(sqlite_warehouse, "hubspot", now_ms=NOW)
    assert not frame.columns.duplicated().any() and sorted(frame["record_id"]) == sorted(r["record_id"] for r in rows)
    assert len(rules_scores(frame, load_model())) == 6


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_versions_times_are_epoch_ms_whatever_the_resolution_of_the_scored_frame(sqlite_warehouse, unit):
    rows = _rows(4, won=2, lost=2)
    _seed(sqlite_warehouse, rows)
    frame = pd.DataFrame({"record_id": [r["record_id"] for r in rows], "page_views": 1.0,
                          "demo_requested_at": pd.to_datetime([T0 + 1000 * i for i in range(3)] + [None], unit="ms",
                                                              utc=True).as_unit(unit)})
    record_versions(sqlite_warehouse, "hubspot", "r1", frame, ["demo_requested_at", "page_views"], T0 - 1)
    training, _ = read_training_frame(sqlite_warehouse, "hubspot", now_ms=NOW)
    first = training.set_index("record_id").loc[rows[0]["record_id"], "demo_requested_at"]
    assert first == pd.Timestamp(T0, unit="ms", tz="UTC")


def test_a_version_gives_back_each_input_exactly_as_recorded(sqlite_warehouse):
    # Non-ASCII and quoted text, numbers that need 17 digits, empties and infinities: read back
    # as recorded, an empty or infinite value as missing.
    frame = pd.DataFrame({"record_id": ["1", "2", "3"],
                          "industry": ["Énergie \"verte\" \\ 東京", None, ""],
                          "page_views": [0.1 + 0.2, np.nan, 1e300],
                          "visits": [12345678901234567.0, np.inf, -0.0]})
    assert record_versions(sqlite_warehouse, "hubspot", "r1", frame, ["industry", "page_views", "visits"], T0) == 3
    back = versions_at(sqlite_warehouse, "hubspot", pd.DataFrame({"record_id": ["1", "2", "3"], "at": T0}))
    back = back.set_index("record_id")
    assert back.loc["1", "industry"] == "Énergie \"verte\" \\ 東京" and back.loc["3", "industry"] == ""
    assert back.loc["1", "page_views"] == 0.1 + 0.2 and back.loc["3", "page_views"] == 1e300
    assert back.loc["1", "visits"] == 12345678901234567.0
    assert pd.isna(back.loc["2", "industry"]) and pd.isna(back.loc["2", "page_views"]) and pd.isna(back.loc["2", "visits"])
    # The same inputs again: nothing new is stored.
    assert record_versions(sqlite_warehouse, "hubspot", "r2", frame, ["industry", "page_views", "visits"], T0 + 1) == 0


def test_a_handoff_older_than_every_version_is_left_out_and_counted(sqlite_warehouse):
    rows = _rows(4, won=2, lost=2)
    _seed(sqlite_warehouse, rows)
    with sqlite_warehouse.begin() as conn:
        conn.execute(insert(handoffs), [{"crm": "hubspot", "record_id": rows[0]["record_id"],
                                         "handed_over_at": T0 - 30 * DAY_MS, "run_id": "r0"}])
    store_events(sqlite_warehouse, [{"crm": "hubspot", "record_id": rows[0]["record_id"],
                                     "handed_over_at": T0 - 30 * DAY_MS, "verdict": "rejected",
                                     "decided_at": T0 - 29 * DAY_MS, "writer": "person", "run_id": "r0",
                                     "seen_at": T0}])
    frame, counts = read_training_frame(sqlite_warehouse, "hubspot", now_ms=NOW)
    assert counts["without_version"] == 1 and len(frame) == 4


def test_too_little_history_returns_a_summary_instead_of_failing(sqlite_warehouse):
    _seed(sqlite_warehouse, _rows(60, won=4, lost=30))
    summary = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST, now_ms=NOW)
    assert summary["status"] == "insufficient_data"
    assert (summary["won"], summary["lost"]) == (4, 30)
    assert load_champion(sqlite_warehouse, "hubspot") is None


def test_training_from_the_warehouse_promotes_a_champion_with_its_window(sqlite_warehouse):
    _seed(sqlite_warehouse, _rows(400, won=120, lost=200))
    _seed(sqlite_warehouse, _rows(50, won=25, lost=25, crm="salesforce"), crm="salesforce")
    frame, counts = read_training_frame(sqlite_warehouse, "hubspot", now_ms=NOW)
    assert len(frame) == 320 and counts["open_matured"] == 80  # open leads and the other CRM are left out

    summary = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST, now_ms=NOW)
    assert summary["status"] == "trained" and summary["promoted"] is True
    assert (summary["won"], summary["lost"]) == (120, 200)
    assert summary["cv_auc"] > 0.7
    first = int(frame["handed_over_at"].min())
    assert summary["training_window"][0] == pd.Timestamp(first, unit="ms", tz="UTC").isoformat()
    champion = load_champion(sqlite_warehouse, "hubspot")
    assert champion.version == summary["version"]
    assert "lifecycle_stage" not in champion.features and "lead_status" not in champion.features
    stored = list_models(sqlite_warehouse, "hubspot")[0]
    assert stored["training_start"] == first
    assert stored["n_rows"] == 320  # published: refit on every answered handoff


def test_window_limits_the_training_rows_by_handoff_time(sqlite_warehouse):
    rows = _rows(400, won=120, lost=200)
    _seed(sqlite_warehouse, rows)
    since = T0 + 100 * DAY_MS
    frame, _ = read_training_frame(sqlite_warehouse, "hubspot", now_ms=NOW, since_ms=since)
    answered = [r for r in rows if r["_outcome"] != "open" and r["created_at"] >= since]
    assert len(frame) == len(answered) and (frame["handed_over_at"] >= since).all()


def test_backtest_of_rules_predictive_and_blend_on_warehouse_history(tmp_path, capsys):
    import json

    from leadflow.warehouse.db import ensure_schema, get_engine
    from predict_fakes import run_cli

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    _seed(engine, _rows(300, won=100, lost=150))
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

    _seed(sqlite_warehouse, _rows(400, won=120, lost=200))
    trained = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST, now_ms=NOW)
    assert trained["promoted"]
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
    assert set(scores["predictive_version"]) == {trained["version"]}  # which champion scored each lead


def _rules(margin: float = 0.01, holdout: float = 0.25):
    from leadflow.qualify import load_model

    model = load_model()
    return model.model_copy(update={"predictive": model.predictive.model_copy(
        update={"publish_margin": margin, "holdout_share": holdout})})


def test_the_first_model_is_published_only_when_it_beats_the_rules_on_later_handoffs(sqlite_warehouse):
    _seed(sqlite_warehouse, _rows(400, won=120, lost=200))
    summary = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST, now_ms=NOW, rules_model=_rules())
    gate = summary["backtest"]
    assert gate["incumbent"].startswith("rules ") and gate["incumbent_auc"] == gate["rules_auc"]
    assert gate["holdout"] + gate["trained_on"] == 320 and 70 <= gate["holdout"] <= 90
    assert gate["publish"] is summary["promoted"] is (gate["candidate_auc"] >= gate["rules_auc"] + 0.01)
    assert summary["promoted"]  # engagement predicts the outcome here; the shipped rules barely see it
    stored = list_models(sqlite_warehouse, "hubspot")[0]
    assert stored["is_champion"] and json.loads(stored["metrics"])["backtest"] == gate


def test_a_retrained_model_that_does_not_beat_the_champion_by_the_margin_is_kept_but_not_published(
        sqlite_warehouse):
    _seed(sqlite_warehouse, _rows(400, won=120, lost=200))
    first = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST, now_ms=NOW, rules_model=_rules())
    again = train_from_warehouse(sqlite_warehouse, "hubspot", config=FAST, now_ms=NOW,
                                 rules_model=_rules(margin=0.2))
    assert again["backtest"]["incumbent"] == f"champion {first['version']}"
    assert again["backtest"]["publish"] is False and again["promoted"] is False
    assert load_champion(sqlite_warehouse, "hubspot").version == first["version"]
    versions = {m["version"]: m["is_champion"] for m in list_models(sqlite_warehouse, "hubspot")}
    assert versions == {first["version"]: True, again["version"]: False}


def test_time_split_keeps_the_latest_handoffs_apart_and_never_splits_one_day():
    from leadflow.predict.gate import time_split
    from leadflow.predict.train import InsufficientData

    frame = pd.DataFrame({"handed_over_at": [1, 1, 2, 2, 3, 3, 4, 4], "outcome": ["won", "lost"] * 4})
    earlier, later, cutoff = time_split(frame, 0.25, "outcome")
    assert cutoff == 4 and list(later["handed_over_at"]) == [4, 4] and earlier["handed_over_at"].max() == 3
    with pytest.raises(InsufficientData, match="later"):  # the latest day only won: nothing to grade on
        time_split(frame.assign(outcome=["won", "lost"] * 3 + ["won", "won"]), 0.25, "outcome")
    with pytest.raises(ValueError, match="holdout_share"):
        time_split(frame, 1.0, "outcome")


def test_calibration_sets_the_score_at_handoff_beside_the_share_sales_converted(sqlite_warehouse):
    from leadflow.predict.labels import calibration
    from leadflow.views.queries import calibration as page_calibration

    table = calibration(pd.Series([95.0, 91.0, 55.0, 52.0, 58.0, 30.0]),
                        pd.Series(["won", "lost", "won", "lost", "lost", None]))
    assert table == [{"band": "50-60", "handoffs": 3, "predicted": 0.55, "observed": 0.3333},
                     {"band": "90-100", "handoffs": 2, "predicted": 0.93, "observed": 0.5}]
    _seed(sqlite_warehouse, _rows(40, won=10, lost=20))  # every handoff scored 80
    assert page_calibration(sqlite_warehouse, "hubspot") == [
        {"band": "80-90", "handoffs": 30, "predicted": 0.8, "observed": 0.3333}]


@pytest.mark.parametrize("dtype", [pd.StringDtype("pyarrow", na_value=np.nan), pd.StringDtype("python", na_value=np.nan),
                                   pd.StringDtype("pyarrow"), object])
def test_the_same_text_is_the_same_version_whatever_dtype_it_comes_in(sqlite_warehouse, dtype):
    text = ["Énergie \"verte\" 東京", None, "", "nan"]
    first = pd.DataFrame({"record_id": ["1", "2", "3", "4"], "industry": pd.Series(text, dtype=object)})
    assert record_versions(sqlite_warehouse, "hubspot", "r1", first, ["industry"], T0) == 4
    again = first.assign(industry=pd.Series(text, dtype=dtype))
    assert record_versions(sqlite_warehouse, "hubspot", "r2", again, ["industry"], T0 + 1) == 0
    changed = again.assign(industry=pd.Series(["x", None, "", "nan"], dtype=dtype))
    assert record_versions(sqlite_warehouse, "hubspot", "r3", changed, ["industry"], T0 + 2) == 1
