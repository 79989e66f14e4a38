"""Published rules models: qualify scores with the CRM's published champion, not with whatever
the model YAML says today.

The YAML a team edits is a *candidate*. The warehouse table `rules_models` keeps every rules
model published or judged per CRM, with its text, and marks one champion:

- **bootstrap**: while a CRM has no champion, or while sales has not answered a single handoff
  (no evidence to judge by), the YAML is published as it is by the first run that reads it;
- after that, a YAML that differs from the champion waits: the `leadflow_train` DAG's backtest
  gate (`predict.rules_gate`) publishes it when it ranks the later handoffs better than the
  champion by the margin, or a person publishes it with `leadflow model publish-rules --force`.

A rules model's id is its YAML `version` plus the first 12 hex digits of a hash of the parsed
document, so an edit without a version bump is still a new candidate, and comments or layout
are not. No scikit-learn here: every qualify task imports this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select, update
from sqlalchemy.exc import IntegrityError

from leadflow.predict.tables import rules_models
from leadflow.qualify.config import DEFAULT_MODEL_PATH, ModelConfigError, QualificationModel, model_from_dict
from leadflow.verdicts.tables import handoff_verdicts
from leadflow.warehouse import repo

log = logging.getLogger(__name__)

# Why a rules model was recorded: published as the first (or before any evidence), published by
# the gate, published by a person, judged and not published, not judged for lack of verdicts.
DECISIONS = ("bootstrap", "published", "forced", "kept champion", "insufficient_data")
PUBLISHED = frozenset({"bootstrap", "published", "forced"})
# A handoff counts as answered once a person accepted, rejected or converted it.
ANSWERS = ("accepted", "rejected", "converted")


@dataclass(frozen=True)
class RulesModel:
    """A qualification model with its published id and the YAML text it came from."""

    model: QualificationModel
    version: str
    sha256: str
    text: str
    source: str | None


def rules_id(model_version: str, document: Any) -> tuple[str, str]:
    """(id, sha256) of a parsed model document: `<version>@<first 12 hex digits>`."""
    canonical = json.dumps(document, sort_keys=True, default=str, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{model_version}@{digest[:12]}", digest


@lru_cache(maxsize=16)
def _parse(text: str, source: str | None) -> RulesModel:
    """Parse and validate a model's YAML text once: each run step asks for its rules, and the
    text of a published id never changes."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelConfigError([f"not valid YAML ({exc})"], source) from None
    model = model_from_dict(document, source)
    version, digest = rules_id(model.version, document)
    return RulesModel(model=model, version=version, sha256=digest, text=text, source=source)


def read_candidate(path: str | Path | None = None) -> RulesModel:
    """The model YAML at `path` (None: the shipped default) as a candidate; raises
    `ModelConfigError` naming the file and each bad key."""
    file = Path(path) if path is not None else DEFAULT_MODEL_PATH
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelConfigError([f"cannot read qualification model ({exc.strerror})"], str(file)) from None
    return _parse(text, str(file))


def _champion_row(engine: Engine, crm: str, *columns: Any) -> Any:
    query = (select(rules_models.c.version, *columns)
             .where(rules_models.c.crm == crm, rules_models.c.is_champion.is_(True))
             .order_by(rules_models.c.published_at.desc()).limit(1))
    with engine.connect() as conn:
        return conn.execute(query).first()


def champion_version(engine: Engine, crm: str) -> str | None:
    """The id of `crm`'s published rules champion, without reading its YAML."""
    row = _champion_row(engine, crm)
    return None if row is None else row.version


def load_rules_champion(engine: Engine, crm: str) -> RulesModel | None:
    """The published rules champion of `crm`, or None before the first publication. Raises
    `ModelConfigError` when its stored YAML no longer validates (publish another one with
    `leadflow model publish-rules --force`)."""
    row = _champion_row(engine, crm, rules_models.c.yaml, rules_models.c.source)
    if row is None:
        return None
    champion = _parse(row.yaml, f"rules_models {crm}/{row.version}")
    if champion.version != row.version:  # the stored text is not what was published
        raise ValueError(f"rules_models {crm}/{row.version}: its YAML hashes to {champion.version}")
    return replace(champion, source=row.source)


def sales_answered(engine: Engine, crm: str) -> bool:
    """Whether a person has accepted, rejected or converted any handoff of `crm`."""
    query = (select(handoff_verdicts.c.id)
             .where(handoff_verdicts.c.crm == crm, handoff_verdicts.c.verdict.in_(ANSWERS)).limit(1))
    with engine.connect() as conn:
        return conn.execute(query).first() is not None


def record_rules(engine: Engine, crm: str, rules: RulesModel, decision: str, *, backtest: dict[str, Any] | None = None,
                 now_ms: int | None = None) -> bool:
    """Record `rules` for `crm` with `decision` (and the gate's figures); a publishing decision
    makes it the champion in the same transaction. Returns whether it is the champion now."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    now = now_ms if now_ms is not None else repo.now_ms()
    publish = decision in PUBLISHED
    values: dict[str, Any] = {"decision": decision}
    if backtest is not None:
        values.update(backtest=json.dumps(backtest, sort_keys=True, default=str), judged_at=now)
    if publish:
        values.update(is_champion=True, published_at=now)
    key = (rules_models.c.crm == crm) & (rules_models.c.version == rules.version)
    for attempt in (1, 2):  # a parallel qualify shard may insert the same bootstrap first
        try:
            with engine.begin() as conn:
                # PostgreSQL: two publishers of one CRM take turns on its champion row.
                conn.execute(select(rules_models.c.version).where(
                    rules_models.c.crm == crm, rules_models.c.is_champion.is_(True)).with_for_update()).all()
                if publish:
                    conn.execute(update(rules_models).where(rules_models.c.crm == crm,
                                                            rules_models.c.is_champion.is_(True),
                                                            rules_models.c.version != rules.version)
                                 .values(is_champion=False))
                if conn.execute(select(rules_models.c.version).where(key)).first() is not None:
                    conn.execute(update(rules_models).where(key).values(**values))
                else:
                    conn.execute(rules_models.insert().values(
                        crm=crm, version=rules.version, model_version=rules.model.version, sha256=rules.sha256,
                        yaml=rules.text, source=rules.source, created_at=now,
                        **{"is_champion": False, "published_at": None, **values}))
            break
        except IntegrityError:
            if attempt == 2:
                raise
    log.info("rules model %s for %s: %s%s", rules.version, crm, decision, " (champion now)" if publish else "")
    return publish


def rules_for_run(engine: Engine, crm: str, model_path: str | Path | None = None, *,
                  publish: bool = False) -> RulesModel:
    """The rules model a run of `crm` scores with: the published champion; the YAML at
    `model_path` when there is no champion yet, or no answered handoff to judge it by (published
    as a bootstrap when `publish`: qualify's real runs). A YAML that differs from the champion
    otherwise waits for the gate and is logged."""
    candidate = read_candidate(model_path)
    champion = load_rules_champion(engine, crm)
    if champion is not None and champion.version == candidate.version:
        return champion
    if champion is None or not sales_answered(engine, crm):
        if publish:
            record_rules(engine, crm, candidate, "bootstrap")
        return candidate
    log.info("rules %s for %s differ from the published %s: scoring with the champion until the backtest gate "
             "(leadflow_train) or `leadflow model publish-rules --force` publishes them", candidate.version, crm,
             champion.version)
    return champion


def list_rules(engine: Engine, crm: str) -> list[dict[str, Any]]:
    """Every recorded rules model of `crm`, newest first, without the YAML text; `backtest`
    parsed."""
    cols = [c for c in rules_models.c if c.name != "yaml"]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).where(rules_models.c.crm == crm)
                            .order_by(rules_models.c.created_at.desc(), rules_models.c.version)).mappings().all()
    return [{**r, "backtest": json.loads(r["backtest"]) if r["backtest"] else None} for r in rows]
