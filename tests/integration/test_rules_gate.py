"""The backtest gate for rules models on SQLite and PostgreSQL: qualify scores with the published
rules champion and records it on every score; an edited model YAML that ranks sales' later
verdicts worse than the champion is not published, one that ranks them better by the margin is.

The seeded world: 320 answered handoffs, one a day; sales bought the leads that looked at the
pricing page (the labels are verdict events, never a value leadflow wrote)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import yaml
from sqlalchemy import insert

from leadflow.pipeline import RunContext, qualify
from leadflow.predict.rules import list_rules, load_rules_champion, read_candidate
from leadflow.predict.rules_gate import gate_rules
from leadflow.predict.versions import record_versions
from leadflow.qualify.config import DEFAULT_MODEL_PATH
from leadflow.schema import LEAD_COLUMNS
from leadflow.verdicts.read import store_events
from leadflow.verdicts.tables import handoffs
from leadflow.warehouse import repo
from leadflow.warehouse.tables import leads

DAY_MS = 86_400_000
T0 = 1_700_000_000_000
NOW = T0 + 1_000 * DAY_MS
INPUTS = ["page_views", "visits", "pricing_page_views", "industry", "country", "job_title"]


def _seed(engine, n: int = 320, seed: int = 7) -> None:
    """n leads handed over one a day; won (converted) when they looked at the pricing page often,
    else rejected by a rep; their inputs versioned before the handoff."""
    rng = np.random.default_rng(seed)
    rows, events = [], []
    for i in range(n):
        pricing = float(rng.poisson(2.5))
        won = rng.random() < (0.85 if pricing >= 4 else 0.35 if pricing >= 2 else 0.1)
        row = {c: None for c in LEAD_COLUMNS}
        row.update(crm="hubspot", record_id=f"h{i}", email=f"p{i}@example.com", lifecycle_stage="mql",
                   lead_status="open", page_views=float(rng.poisson(8)), visits=float(rng.poisson(3)),
                   pricing_page_views=pricing, industry=str(rng.choice(["Software", "Retail"])),
                   country="DE", job_title=str(rng.choice(["CEO", "Marketing Manager", "Engineer"])),
                   created_at=T0 + i * DAY_MS, is_deleted=False, pulled_at=1, pull_run_id="r1")
        rows.append(row)
        events.append({"crm": "hubspot", "record_id": row["record_id"], "handed_over_at": row["created_at"],
                       "verdict": "converted" if won else "rejected", "decided_at": row["created_at"] + DAY_MS,
                       "writer": "person", "field": "lifecycle_stage" if won else "lead_status",
                       "value": "customer" if won else "unqualified", "run_id": "r2", "seen_at": NOW})
    with engine.begin() as conn:
        conn.execute(insert(leads), rows)
        conn.execute(insert(handoffs), [{"crm": "hubspot", "record_id": r["record_id"],
                                         "handed_over_at": r["created_at"], "score": 80.0, "run_id": "r1"}
                                        for r in rows])
    record_versions(engine, "hubspot", "r0", pd.DataFrame([{"record_id": r["record_id"], **{c: r[c] for c in INPUTS}}
                                                           for r in rows]), INPUTS, T0 - DAY_MS)
    store_events(engine, events)


def _model(tmp_path, name: str, pricing_points: int, pricing_cap: int, web_max: int):
    """The shipped model with the pricing-page rule changed."""
    doc = yaml.safe_load(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"))
    web = next(g for g in doc["engagement"]["groups"] if g["id"] == "web")
    web["max"] = web_max
    rule = next(r for r in web["rules"] if r["id"] == "pricing_page")
    rule.update(points=pricing_points, max_points=pricing_cap)
    doc["version"] = f"{doc['version']}-{name}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _qualify(engine, model_path, run_id: str) -> set[str]:
    qualify(RunContext(crm="hubspot", run_id=run_id, model_path=str(model_path), _engine=engine,
                       now=datetime(2026, 3, 1, tzinfo=timezone.utc)))
    return set(repo.load_scores(engine, "hubspot")["rules_version"])


def test_an_edited_rules_model_is_published_only_when_it_ranks_later_verdicts_better_by_the_margin(
        warehouse, tmp_path):
    _seed(warehouse)
    shipped = tmp_path / "shipped.yaml"
    shipped.write_text(DEFAULT_MODEL_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    champion = read_candidate(shipped).version

    # The first rules model is published as it is (bootstrap) and scores every lead.
    assert _qualify(warehouse, shipped, "r3") == {champion}
    assert [(r["version"], r["decision"], r["is_champion"]) for r in list_rules(warehouse, "hubspot")] == [
        (champion, "bootstrap", True)]

    # Points taken away for pricing-page views: worse on the later handoffs, not published.
    worse = _model(tmp_path, "worse", pricing_points=-4, pricing_cap=8, web_max=15)
    judged = gate_rules(warehouse, "hubspot", model_path=worse, now_ms=NOW)
    assert judged.decision == "kept champion" and judged.publish is False
    assert judged.candidate_auc < judged.champion_auc and judged.holdout == 80
    assert judged.won >= 10 and judged.lost >= 10
    assert load_rules_champion(warehouse, "hubspot").version == champion
    assert _qualify(warehouse, worse, "r4") == {champion}  # the YAML waits: qualify keeps the champion

    # More points for more pricing-page views: better by the margin, published, and it scores.
    better = _model(tmp_path, "better", pricing_points=10, pricing_cap=40, web_max=45)
    judged = gate_rules(warehouse, "hubspot", model_path=better, now_ms=NOW)
    assert judged.decision == "published" and judged.publish is True
    assert judged.candidate_auc >= judged.champion_auc + judged.margin
    assert _qualify(warehouse, better, "r5") == {read_candidate(better).version}
    recorded = {r["version"]: (r["decision"], r["is_champion"]) for r in list_rules(warehouse, "hubspot")}
    assert recorded == {champion: ("bootstrap", False), read_candidate(worse).version: ("kept champion", False),
                        read_candidate(better).version: ("published", True)}
    assert repo.get_run_summary(warehouse, "hubspot", "r5")["rules_version"] == read_candidate(better).version
