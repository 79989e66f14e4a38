"""Published rules models and their gate: which rules a run scores with (bootstrap, the champion,
a candidate waiting), what the gate decides with too few verdicts, with `--force`, and on the
later handoffs' ranking."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import yaml
from sqlalchemy import insert

from leadflow.predict.gate import judge_rules, later_slice
from leadflow.predict.rules import list_rules, load_rules_champion, read_candidate, record_rules, rules_for_run, rules_id
from leadflow.predict.rules_gate import gate_rules
from leadflow.qualify import load_model
from leadflow.qualify.config import DEFAULT_MODEL_PATH
from leadflow.schema import LEAD_COLUMNS
from leadflow.verdicts.read import store_events
from leadflow.warehouse.tables import leads

DAY_MS = 86_400_000
T0 = 1_700_000_000_000
NOW = T0 + 400 * DAY_MS


def _yaml(tmp_path, name: str, **changes) -> str:
    """The shipped model YAML with top-level `changes` (e.g. version=...), written to a file."""
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    doc.update(changes)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return str(path)


def _answer(engine, verdict: str = "rejected", record_id: str = "1") -> None:
    store_events(engine, [{"crm": "hubspot", "record_id": record_id, "handed_over_at": T0, "verdict": verdict,
                           "decided_at": T0 + DAY_MS, "writer": "person", "run_id": "r1", "seen_at": T0}])


def _champions(engine) -> list[tuple[str, str]]:
    return sorted((r["version"], r["decision"]) for r in list_rules(engine, "hubspot") if r["is_champion"])


def test_a_rules_id_changes_with_the_content_not_with_comments_or_layout(tmp_path):
    text = DEFAULT_MODEL_PATH.read_text(encoding="utf-8")
    relaid = tmp_path / "relaid.yaml"
    relaid.write_text(yaml.safe_dump(yaml.safe_load(text), sort_keys=True, width=60), encoding="utf-8")
    shipped = read_candidate(None)
    assert shipped.version.startswith(f"{load_model().version}@") and len(shipped.version.split("@")[1]) == 12
    assert read_candidate(relaid).version == shipped.version  # no comments, other order and wrapping
    edited = read_candidate(_yaml(tmp_path, "edited", description="same version, other content"))
    assert edited.version != shipped.version and edited.version.split("@")[0] == shipped.version.split("@")[0]
    assert rules_id("v1", {"a": 1, "b": [1, 2]}) == rules_id("v1", {"b": [1, 2], "a": 1})


def test_given_no_champion_then_a_run_publishes_the_yaml_as_bootstrap_and_a_dry_run_publishes_nothing(
        sqlite_warehouse):
    shipped = read_candidate(None)
    assert rules_for_run(sqlite_warehouse, "hubspot", publish=False).version == shipped.version
    assert list_rules(sqlite_warehouse, "hubspot") == []
    assert rules_for_run(sqlite_warehouse, "hubspot", publish=True).version == shipped.version
    assert rules_for_run(sqlite_warehouse, "hubspot", publish=True).version == shipped.version  # recorded once
    assert _champions(sqlite_warehouse) == [(shipped.version, "bootstrap")]
    assert load_rules_champion(sqlite_warehouse, "salesforce") is None  # a champion per CRM


def test_given_no_answered_handoff_then_an_edited_yaml_is_published_by_the_next_run(sqlite_warehouse, tmp_path):
    rules_for_run(sqlite_warehouse, "hubspot", publish=True)
    _answer(sqlite_warehouse, verdict="ignored")  # ignored is no answer: nothing to judge by
    edited = _yaml(tmp_path, "edited", version="v2")
    assert rules_for_run(sqlite_warehouse, "hubspot", edited, publish=True).model.version == "v2"
    assert _champions(sqlite_warehouse) == [(read_candidate(edited).version, "bootstrap")]


def test_given_answered_handoffs_then_an_edited_yaml_waits_and_the_champion_scores(sqlite_warehouse, tmp_path):
    shipped = rules_for_run(sqlite_warehouse, "hubspot", publish=True)
    _answer(sqlite_warehouse)
    edited = _yaml(tmp_path, "edited", version="v2")
    used = rules_for_run(sqlite_warehouse, "hubspot", edited, publish=True)
    assert used.version == shipped.version and used.model.version == shipped.model.version
    assert [r["version"] for r in list_rules(sqlite_warehouse, "hubspot")] == [shipped.version]


def test_given_too_few_verdicts_then_the_gate_keeps_the_champion_and_force_publishes(sqlite_warehouse, tmp_path):
    shipped = rules_for_run(sqlite_warehouse, "hubspot", publish=True)
    _answer(sqlite_warehouse)
    edited = _yaml(tmp_path, "edited", version="v2")
    judged = gate_rules(sqlite_warehouse, "hubspot", model_path=edited, now_ms=NOW)
    assert (judged.decision, judged.publish, judged.champion) == ("insufficient_data", False, shipped.version)
    assert "need 10 of each" in judged.detail
    assert _champions(sqlite_warehouse) == [(shipped.version, "bootstrap")]
    waiting = {r["version"]: r for r in list_rules(sqlite_warehouse, "hubspot")}[judged.candidate]
    assert waiting["decision"] == "insufficient_data" and waiting["backtest"]["won"] == 0

    forced = gate_rules(sqlite_warehouse, "hubspot", model_path=edited, now_ms=NOW, force=True)
    assert (forced.decision, forced.publish) == ("forced", True)
    assert _champions(sqlite_warehouse) == [(judged.candidate, "forced")]
    assert gate_rules(sqlite_warehouse, "hubspot", model_path=edited, now_ms=NOW).decision == "champion"


def test_the_first_rules_model_goes_through_the_gate_as_a_bootstrap(sqlite_warehouse):
    judged = gate_rules(sqlite_warehouse, "hubspot", now_ms=NOW)
    assert (judged.decision, judged.publish, judged.detail) == ("bootstrap", True, "no champion yet")
    assert _champions(sqlite_warehouse) == [(judged.candidate, "bootstrap")]


def test_a_champion_whose_stored_yaml_was_changed_is_refused(sqlite_warehouse):
    from leadflow.predict.tables import rules_models

    record_rules(sqlite_warehouse, "hubspot", read_candidate(None), "bootstrap")
    with sqlite_warehouse.begin() as conn:
        text = conn.execute(rules_models.select()).first().yaml
        conn.execute(rules_models.update().values(yaml=text.replace("min_score: 70", "min_score: 75")))
    with pytest.raises(ValueError, match="hashes to"):
        load_rules_champion(sqlite_warehouse, "hubspot")


def _handoffs(n: int, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    """n handoffs, 20 a day; won mostly after many pricing-page views."""
    rng = np.random.default_rng(seed)
    pricing = rng.poisson(2.5, n).astype(float)
    y = (rng.random(n) < np.where(pricing >= 4, 0.85, np.where(pricing >= 2, 0.35, 0.1))).astype(int)
    frame = pd.DataFrame({"record_id": [str(i) for i in range(n)], "handed_over_at": T0 + np.arange(n) // 20 * DAY_MS,
                          "page_views": 8.0, "visits": 3.0, "pricing_page_views": pricing, "country": "DE"})
    return frame, y


def _pricing_model(points: int, cap: int, web_max: int):
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    web = next(g for g in doc["engagement"]["groups"] if g["id"] == "web")
    web["max"] = web_max
    next(r for r in web["rules"] if r["id"] == "pricing_page").update(points=points, max_points=cap)
    from leadflow.qualify import model_from_dict

    return model_from_dict(doc)


def test_judge_rules_publishes_a_candidate_only_when_it_ranks_the_later_handoffs_better_by_the_margin():
    frame, y = _handoffs(200)
    later, cutoff = later_slice(frame.assign(y=y), 0.25)
    assert len(later) == 60 and cutoff == T0 + 7 * DAY_MS  # whole days: 7, 8 and 9
    champion, better = load_model(), _pricing_model(10, 40, 45)
    cand, champ, publish = judge_rules(better, champion, later, later["y"].to_numpy(), margin=0.01)
    assert publish and cand >= champ + 0.01
    assert judge_rules(better, champion, later, later["y"].to_numpy(), margin=cand - champ + 0.001)[2] is False
    same = judge_rules(champion, champion, later, later["y"].to_numpy(), margin=0.0)
    assert same[0] == same[1] and same[2] is True  # "at least the champion's plus the margin"
    one_class = judge_rules(better, champion, later, np.ones(len(later), dtype=int), margin=0.0)
    assert one_class == (None, None, False)


def test_qualify_records_the_rules_version_and_a_dry_run_publishes_no_bootstrap(sqlite_warehouse):
    from leadflow.pipeline import RunContext, qualify
    from leadflow.warehouse import repo

    row = {c: None for c in LEAD_COLUMNS}
    row.update(crm="hubspot", record_id="1", email="a@example.com", lifecycle_stage="lead", created_at=T0,
               is_deleted=False, pulled_at=1, pull_run_id="r1")
    with sqlite_warehouse.begin() as conn:
        conn.execute(insert(leads), [row])
    ctx = dict(crm="hubspot", _engine=sqlite_warehouse, now=datetime(2026, 3, 1, tzinfo=timezone.utc))
    shipped = read_candidate(None).version
    assert qualify(RunContext(run_id="dry", dry_run=True, **ctx))["rules_version"] == shipped
    assert list_rules(sqlite_warehouse, "hubspot") == []
    qualify(RunContext(run_id="real", **ctx))
    assert repo.load_scores(sqlite_warehouse, "hubspot")["rules_version"].tolist() == [shipped]
    assert _champions(sqlite_warehouse) == [(shipped, "bootstrap")]


def test_publish_rules_on_the_command_line_exits_1_when_kept_and_0_when_forced(tmp_path, capsys):
    from leadflow.warehouse.db import ensure_schema, get_engine
    from predict_fakes import run_cli

    url = f"sqlite:///{tmp_path / 'wh.db'}"
    engine = get_engine(url)
    ensure_schema(engine)
    rules_for_run(engine, "hubspot", publish=True)
    _answer(engine)
    edited = _yaml(tmp_path, "edited", version="v2")
    assert run_cli(["model", "publish-rules", "--crm", "hubspot", "--model", edited, "--db", url]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["decision"] == "insufficient_data" and "--force" in err
    assert run_cli(["model", "publish-rules", "--crm", "hubspot", "--model", edited, "--db", url, "--force"]) == 0
    assert json.loads(capsys.readouterr().out)["decision"] == "forced"
    assert load_rules_champion(engine, "hubspot").model.version == "v2"
    engine.dispose()


def test_the_train_job_gates_the_rules_before_training_the_predictive_model(sqlite_warehouse):
    from leadflow.maintenance import run_training

    out = run_training("hubspot", now=datetime(2026, 1, 4, 3, tzinfo=timezone.utc), run_id="scheduled__t",
                       engine=sqlite_warehouse)
    assert out["status"] == "insufficient_data"  # the predictive model: no verdicts yet
    assert (out["rules"]["decision"], out["rules"]["publish"]) == ("bootstrap", True)
    assert load_rules_champion(sqlite_warehouse, "hubspot").version == out["rules"]["candidate"]


def test_force_publishes_over_a_stored_champion_that_no_longer_validates(sqlite_warehouse, tmp_path):
    from leadflow.predict.tables import rules_models
    from leadflow.qualify import ModelConfigError

    record_rules(sqlite_warehouse, "hubspot", read_candidate(None), "bootstrap")
    _answer(sqlite_warehouse)
    with sqlite_warehouse.begin() as conn:  # e.g. written by a leadflow whose model had other keys
        conn.execute(rules_models.update().values(yaml="version: old\nretired_key: 1\n"))
    edited = _yaml(tmp_path, "edited", version="v2")
    with pytest.raises(ModelConfigError, match="rules_models hubspot/"):
        rules_for_run(sqlite_warehouse, "hubspot", edited)
    assert gate_rules(sqlite_warehouse, "hubspot", model_path=edited, now_ms=NOW, force=True).decision == "forced"
    assert rules_for_run(sqlite_warehouse, "hubspot", edited).model.version == "v2"
