"""The vectorised qualification engine: one pass of numpy over all leads.

`evaluate` computes everything as arrays (points per reason slot, sub-scores, BANT, disqualifier,
stage, status, the handoff to sales); `to_frame` turns an `Evaluation` into the `schema.SCORE_COLUMNS` frame, rendering
reason text only when asked. `score_leads` does both. The row-by-row reference that the tests
compare against lives in tests/unit/qualify/reference.py.

Scoring, in integers so that reasons add up exactly:
1. each rule gives points: flat, or per unit of a counter (limited to ±max_points); with decay
   the points are multiplied by 0.5 ** (age_days / half_life) (factor rounded to 1e-9) and
   dropped after the expiry window; then rounded half up to an integer;
2. each group's sum is limited to [min, max]; the difference is a "cap" reason;
3. fit_score / engagement_score = points scaled so that `full_points` = 100 (0-100, half up);
4. combined = fit + engagement + signals + BANT points + disqualifier points, clamped to 0-100
   (the difference is a "clamp" reason), then optionally blended with the predictive score
   (the difference is a "blend" reason).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd

from leadflow.qualify.columns import NAT_NS, LeadColumns, TextColumn
from leadflow.qualify.conditions import (
    NS_PER_DAY,
    ConditionEvaluator,
    _combined_pattern,
    _prepared_ops,
    text_per_unique,
)
from leadflow.qualify.config import BANT_CRITERIA, QualificationModel, RuleGroup, ScoreRule
from leadflow.qualify.fields import FIELD_KINDS
from leadflow.qualify.handoff import reason_texts
from leadflow.qualify.reasons import Slot, render
from leadflow.qualify.stages import (
    KEEP,
    NONE,
    STATUS_KEEP,
    STATUS_VALUES,
    current_stage_ranks,
    final_stage_ranks,
    stage_cap,
    status_codes,
)
from leadflow.qualify.text import compile_pattern
from leadflow.schema import MODEL_STAGES, SCORE_COLUMNS, STAGE_RANK

logger = logging.getLogger(__name__)

FIT_LETTERS = ("A", "B", "C", "D")
ENGAGEMENT_DIGITS = ("1", "2", "3", "4")
GRADE_NAMES = np.array([f + e for f in FIT_LETTERS for e in ENGAGEMENT_DIGITS], dtype=object)
DECAY_QUANTUM = 1e9  # decay factors are rounded to 1e-9 so platform pow() differences vanish
# The predictive model's top factors per lead, shown after the blend reason (not a lead field).
PREDICTIVE_FACTORS = "predictive_factors"
MAX_FACTORS_SHOWN = 160


@dataclass(frozen=True)
class _GroupPlan:
    group: RuleGroup
    rule_slots: tuple[int, ...]
    cap_slot: int | None


@dataclass(frozen=True)
class CompiledModel:
    """Slot table and plan derived once per model (cached on the model instance)."""

    slots: tuple[Slot, ...]
    fit: tuple[_GroupPlan, ...]
    engagement: tuple[_GroupPlan, ...]
    signals: tuple[_GroupPlan, ...]
    bant_slots: tuple[int, ...]
    disqualifier_slots: tuple[int, ...]
    clamp_slot: int
    blend_slot: int
    shown_fields: tuple[str, ...]
    text_fields: tuple[str, ...]  # text/list lead columns read (see LeadColumns.factorize_text)


def compile_model(model: QualificationModel) -> CompiledModel:
    """Build (or fetch the cached) slot table of `model`."""
    if model._compiled is not None:
        return model._compiled
    slots: list[Slot] = []

    def plan(groups: list[RuleGroup]) -> tuple[_GroupPlan, ...]:
        plans = []
        for group in groups:
            rule_slots = []
            for rule in group.rules:
                rule_slots.append(len(slots))
                slots.append(Slot(rule.id, rule.label, "rule", rule.show))
            cap_slot = None
            if group.max is not None or group.min is not None:
                cap_slot = len(slots)
                slots.append(Slot(f"cap_{group.id}", f"cap {group.label}", "cap"))
            plans.append(_GroupPlan(group, tuple(rule_slots), cap_slot))
        return tuple(plans)

    fit = plan(model.fit.groups)
    engagement = plan(model.engagement.groups)
    signals = plan(model.signals.groups)
    bant_slots = []
    for name in BANT_CRITERIA:
        bant_slots.append(len(slots))
        slots.append(Slot(f"bant_{name}", getattr(model.bant.criteria, name).label, "bant"))
    disq_slots = []
    for disq in model.disqualifiers:
        disq_slots.append(len(slots))
        slots.append(Slot(disq.code, disq.label, "disqualifier"))
    clamp_slot = len(slots)
    slots.append(Slot("clamp", "clamp to 0-100", "clamp"))
    blend_slot = len(slots)
    slots.append(Slot("blend", f"predictive blend ({model.predictive.weight:.0%})", "blend",
                      show=PREDICTIVE_FACTORS, max_shown=MAX_FACTORS_SHOWN))
    shown = tuple(sorted({s.show for s in slots if s.show is not None}))
    compiled = CompiledModel(
        tuple(slots), fit, engagement, signals, tuple(bant_slots), tuple(disq_slots),
        clamp_slot, blend_slot, shown,
        tuple(f for f in _fields_in_order(model, shown=True) if FIELD_KINDS.get(f) in ("str", "list")),
    )
    model._compiled = compiled
    return compiled


@dataclass
class Evaluation:
    """All per-lead results as arrays (index-aligned with the input frame)."""

    model: QualificationModel
    compiled: CompiledModel
    index: pd.Index
    crm: pd.Series  # as given
    record_id: pd.Series
    points: np.ndarray  # (slots x leads) int16; column sums == score
    score: np.ndarray  # int16, combined 0-100
    rule_score: np.ndarray  # int16, before the predictive blend
    fit_score: np.ndarray
    engagement_score: np.ndarray
    grade_code: np.ndarray  # index into GRADE_NAMES
    bant: dict[str, np.ndarray]  # criterion -> bool
    bant_count: np.ndarray
    bant_weight: np.ndarray
    bant_advanced: np.ndarray
    disqualifier: np.ndarray  # index into model.disqualifiers, -1 none
    nurture: np.ndarray
    proposed_rank: np.ndarray  # proposed model stage rank (SQL: the sales-ready criteria are met)
    sales_ready: np.ndarray  # handed over to sales (not disqualified, not in a sales-owned stage)
    now_ms: int  # the scoring time: the "since" of a lead found sales-ready now
    stage_rank: np.ndarray  # final stage rank, KEEP / NONE codes
    status_code: np.ndarray  # index into STATUS_VALUES, STATUS_KEEP
    persona: TextColumn
    current_stage: TextColumn  # as given
    current_status: TextColumn
    shown: dict[str, TextColumn]

    def __len__(self) -> int:
        return len(self.index)

    def render_reasons(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Reasons text for all leads, or for the positional `rows` only."""
        return render(self.points, self.compiled.slots, self.shown, rows)


def _now_ns(now: datetime) -> int:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (UTC)")
    return int(pd.Timestamp(now).tz_convert("UTC").value)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5)


class _DecayCache:
    """Decay factors per (timestamp field, half-life, expiry), shared by rules with equal decay.

    A rule whose points land on few leads (a demo request, a webinar) asks for the factors of
    those rows only: decaying every lead would cost a pass of exp2 over a million ages for a few
    thousand non-zero points. Either way each factor is computed by the same operations.
    """

    def __init__(self, ev: ConditionEvaluator, cols: LeadColumns) -> None:
        self.ev = ev
        self.cols = cols
        self._field_ages: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # (days, ns) of every lead
        self._factors: dict[tuple[str, float | None, int | None], np.ndarray] = {}

    @staticmethod
    def _key(rule: ScoreRule) -> tuple[str, float | None, int | None]:
        decay = rule.decay
        assert decay is not None
        field = decay.timestamp or rule.field
        assert field is not None
        return field, decay.half_life_days, decay.expire_after_days

    def _ages(self, field: str, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(age in days, float64, 0 where unknown; age in ns, 0 where unknown) of `rows`.

        Future timestamps count as age 0; so does a missing one (age unknown: no decay, and
        never past an expiry window, which is > 0 days).
        """
        ts = self.cols.timestamp_ns(field)
        if rows is not None:
            ts = ts[rows]
        age = self.ev.now_ns - ts
        np.maximum(age, 0, out=age)
        age *= ts != NAT_NS  # multiplying by a mask: a masked assignment is several times slower
        days = age.astype(np.float64)
        days /= float(NS_PER_DAY)
        return days, age

    def factor(self, rule: ScoreRule, rows: np.ndarray | None = None) -> np.ndarray:
        """Decay factor of `rule` per lead, or for the positional `rows` only."""
        key = self._key(rule)
        full = self._factors.get(key)
        if full is not None:
            return full if rows is None else full[rows]
        if rows is not None:
            return self._compute(key, *self._ages(key[0], rows))
        if key[0] not in self._field_ages:  # shared by every half-life of the field
            self._field_ages[key[0]] = self._ages(key[0], None)
        full = self._factors[key] = self._compute(key, *self._field_ages[key[0]])
        return full

    @staticmethod
    def _compute(
        key: tuple[str, float | None, int | None], days: np.ndarray, age_ns: np.ndarray
    ) -> np.ndarray:
        _, half_life, expire_after = key
        if half_life is not None:
            # Same operations as floor(exp2(-(age / day / half_life)) * q + 0.5) / q.
            factor = days / half_life
            np.negative(factor, out=factor)
            np.exp2(factor, out=factor)
            factor *= DECAY_QUANTUM
            factor += 0.5
            np.floor(factor, out=factor)
            factor /= DECAY_QUANTUM
        else:
            factor = np.ones(len(days))
        if expire_after is not None:
            factor *= age_ns <= expire_after * NS_PER_DAY
        return factor


# Below this share of scoring rows, a decayed flat rule computes the factors of those rows only.
SPARSE_DECAY_SHARE = 0.25


def _text_leaf_ops(rule: ScoreRule) -> dict[str, object] | None:
    """The prepared operators when `rule` tests one text field and nothing else, else None."""
    if rule.all is not None or rule.any is not None or rule.field is None:
        return None
    if FIELD_KINDS.get(rule.field) not in ("str", "list"):
        return None
    ops = _prepared_ops(rule)
    return ops or None


def _rule_points(
    ev: ConditionEvaluator,
    cols: LeadColumns,
    decays: _DecayCache,
    rule: ScoreRule,
    out: np.ndarray,
) -> None:
    """Integer points of one rule for every lead, written into `out` (an int16 row)."""
    if not rule.per_unit and rule.decay is None:
        ops = _text_leaf_ops(rule)
        if ops is not None:
            # Points per distinct value, then one take straight into the slot row.
            col = cols.text(rule.field)  # type: ignore[arg-type]
            per_unique, missing_result = text_per_unique(col, ops)
            points = np.where(per_unique, np.int16(rule.points), np.int16(0))
            np.take(col.lut(points, rule.points if missing_result else 0), col.index, out=out)
            return
        mask = ev.mask(rule)
        np.multiply(mask.view(np.int8), np.int16(rule.points), out=out)
        return
    if rule.points == 0:
        out[...] = 0
        return
    if rule.per_unit:
        # max(nan_to_num(count), 0): fmax drops NaN (-> 0) and negatives. +inf needs no special
        # case: inf x points is +-inf, which the one-sided limit below turns into +-max_points,
        # exactly what float max x points gives.
        value = np.fmax(cols.number(rule.field), 0.0)  # type: ignore[arg-type]
        limit = float(rule.max_points)  # type: ignore[arg-type]
        np.multiply(value, rule.points, out=value)
        if rule.points > 0:  # value >= 0 here, so only one side of [-limit, limit] can bind
            np.minimum(value, limit, out=value)
        else:
            np.maximum(value, -limit, out=value)
        if rule.has_test():
            value *= ev.mask(rule)
    else:
        mask = ev.mask(rule)
        if rule.decay is not None:
            rows = np.flatnonzero(mask)
            if len(rows) < SPARSE_DECAY_SHARE * ev.n:
                value = decays.factor(rule, rows) * float(rule.points)
                value += 0.5
                np.floor(value, out=value)
                out[...] = 0
                out[rows] = value  # same truncating cast as below
                return
        value = mask * float(rule.points)
    if rule.decay is not None:
        value *= decays.factor(rule)
    value += 0.5
    np.floor(value, out=value)
    out[...] = value  # same truncating cast as astype(np.int16)


def _score_groups(
    plans: tuple[_GroupPlan, ...],
    ev: ConditionEvaluator,
    cols: LeadColumns,
    decays: _DecayCache,
    points: np.ndarray,
) -> np.ndarray:
    """Fill the rule and cap slots of `plans`; return the capped total per lead (int32)."""
    total = np.zeros(ev.n, dtype=np.int32)
    for plan in plans:
        group_sum = np.zeros(ev.n, dtype=np.int32)
        for rule, slot in zip(plan.group.rules, plan.rule_slots):
            _rule_points(ev, cols, decays, rule, points[slot])
            group_sum += points[slot]
        if plan.cap_slot is not None:
            lo = plan.group.min if plan.group.min is not None else np.iinfo(np.int32).min
            hi = plan.group.max if plan.group.max is not None else np.iinfo(np.int32).max
            capped = np.clip(group_sum, lo, hi)
            np.subtract(capped, group_sum, out=points[plan.cap_slot], casting="unsafe")
            group_sum = capped
        total += group_sum
    return total


def _sub_score(points: np.ndarray, full_points: int) -> np.ndarray:
    """0-100 scaled points rounded half up: floor((200 p + F) / 2F), clipped to 0-100.

    p is clipped to [0, F] first (outside it the result clips to 0 or 100 anyway); then the
    quotient is at most 100.5 and, when not whole, at least 1/(2F) away from the next integer,
    so float64 division floors exactly like integer division (and is several times faster).
    """
    value = np.clip(points, 0, full_points).astype(np.float64)
    value *= 200.0
    value += full_points
    value /= 2.0 * full_points
    return np.floor(value, out=value).astype(np.int16)


def _persona_column(model: QualificationModel, cols: LeadColumns) -> TextColumn:
    """Persona per lead from its job title (the first matching persona; missing when none)."""
    titles = cols.text("job_title")
    # One search per persona (its title patterns merged when safe) instead of one per pattern.
    searches = []
    for persona in model.personas:
        merged = _combined_pattern(tuple(persona.titles))
        if merged is not None:
            searches.append([merged.search])
        else:
            searches.append([compile_pattern(p).search for p in persona.titles])
    none = len(model.personas)  # the TextColumn index of "no persona"
    per_unique = np.full(len(titles.uniques), none, dtype=np.intp)
    for i, title in enumerate(titles.uniques):
        if not title.strip():
            continue
        for p, patterns in enumerate(searches):
            if any(search(title) for search in patterns):
                per_unique[i] = p
                break
    return TextColumn(titles.lookup(per_unique, none), [p.id for p in model.personas])


def _grade_codes(model: QualificationModel, fit: np.ndarray, eng: np.ndarray) -> np.ndarray:
    # Thresholds are validated as ordered (A >= B >= C), so counting the ones reached works.
    g = model.grades
    letter = 3 - (fit >= g.fit.A).view(np.int8) - (fit >= g.fit.B).view(np.int8) - (fit >= g.fit.C).view(np.int8)
    e = g.engagement
    digit = 3 - (eng >= e.one).view(np.int8) - (eng >= e.two).view(np.int8) - (eng >= e.three).view(np.int8)
    return (letter * 4 + digit).astype(np.int8)


def _id_column(name: str, leads: pd.DataFrame) -> pd.Series:
    # Passed through as given (no per-row conversion of a million ids).
    if name in leads.columns:
        return leads[name]
    return pd.Series(np.full(len(leads), None, dtype=object), index=leads.index, name=name)


def evaluate(
    leads: pd.DataFrame,
    model: QualificationModel,
    now: datetime,
    predictive: pd.Series | None = None,
    predictive_factors: pd.Series | None = None,
) -> Evaluation:
    """Score every lead of `leads` with `model` at time `now` (timezone-aware).

    `predictive` is an optional 0-100 score per lead (index-aligned); `predictive_factors` its
    top factors as text, shown after the blend reason of the leads it moved.
    """
    compiled = compile_model(model)
    n = len(leads)
    cols = LeadColumns(leads)
    if predictive_factors is not None:
        factors = predictive_factors.reindex(leads.index).astype(object)
        cols.set_text(PREDICTIVE_FACTORS, LeadColumns(pd.DataFrame({"f": factors})).text("f"))
    cols.factorize_text(list(compiled.text_fields))
    ev = ConditionEvaluator(cols, _now_ns(now))

    # Persona, seniority and authority come from the job title, matched on first use.
    cols.derive_text("persona", lambda: _persona_column(model, cols))
    cols.derive_text("seniority", lambda: cols.text("persona").relabel([p.seniority for p in model.personas]))
    cols.derive_text("authority", lambda: cols.text("persona").relabel([p.authority for p in model.personas]))

    # Every row is written below (rule, cap, BANT, disqualifier, clamp and blend slots), so the
    # ~120 MB of a million leads need no zeroing first.
    points = np.empty((len(compiled.slots), n), dtype=np.int16)
    decays = _DecayCache(ev, cols)
    eng_pts = _score_groups(compiled.engagement, ev, cols, decays, points)
    fit_pts = _score_groups(compiled.fit, ev, cols, decays, points)
    raw = fit_pts + eng_pts + _score_groups(compiled.signals, ev, cols, decays, points)
    persona = cols.text("persona")

    # BANT: flags, count, weighted sum (summed in criterion order, like the reference).
    bant: dict[str, np.ndarray] = {}
    bant_weight = np.zeros(n)
    for name, slot in zip(BANT_CRITERIA, compiled.bant_slots):
        criterion = getattr(model.bant.criteria, name)
        met = ev.mask(criterion)
        bant[name] = met
        bant_weight = bant_weight + met * float(getattr(model.bant.weights, name))
        np.multiply(met.view(np.int8), np.int16(criterion.points), out=points[slot])
        if criterion.points:
            raw += points[slot]
    bant_count = sum(m.astype(np.int8) for m in bant.values()).astype(np.int8)
    advanced = bant_weight >= model.bant.advance_threshold

    # Disqualifiers: every match costs its points; the first match names the reason.
    disq = np.full(n, -1, dtype=np.int16)
    for i, (rule, slot) in enumerate(zip(model.disqualifiers, compiled.disqualifier_slots)):
        hit = ev.mask(rule)
        disq += (hit & (disq < 0)) * np.int16(i + 1)  # -1 -> i where first hit
        np.multiply(hit.view(np.int8), np.int16(rule.points), out=points[slot])
        if rule.points:
            raw += points[slot]
    disqualified = disq >= 0

    rule_score = np.clip(raw, 0, 100)
    points[compiled.clamp_slot] = (rule_score - raw).astype(np.int16)
    score = _blend(model, rule_score, predictive, leads.index)
    points[compiled.blend_slot] = (score - rule_score).astype(np.int16)

    fit_score = _sub_score(fit_pts, model.fit.full_points).astype(np.int16)
    eng_score = _sub_score(eng_pts, model.engagement.full_points).astype(np.int16)
    nurture = (
        model.nurture.enabled
        & ~disqualified
        & (fit_score >= model.nurture.min_fit_score)
        & ~bant["timeline"]
    )

    proposed = _proposed_ranks(model, ev, score, advanced)
    proposed = np.where(nurture, np.minimum(proposed, STAGE_RANK[model.nurture.max_stage]), proposed)
    stage_col = cols.text("lifecycle_stage")
    current = current_stage_ranks(stage_col)
    sales_ready = (proposed >= STAGE_RANK["sql"]) & ~disqualified & (current != KEEP)
    written = np.minimum(proposed, np.int8(stage_cap(model.stages.sql.auto)), dtype=np.int8)
    final = final_stage_ranks(current, written, disqualified)
    status = status_codes(
        final, cols.text("lead_status"), disqualified, nurture,
        STAGE_RANK[model.lead_status.open_from_stage], sales_ready, model.lead_status.sales_ready,
    )

    result = Evaluation(
        model=model,
        compiled=compiled,
        index=leads.index,
        crm=_id_column("crm", leads),
        record_id=_id_column("record_id", leads),
        points=points,
        score=score.astype(np.int16),
        rule_score=rule_score.astype(np.int16),
        fit_score=fit_score,
        engagement_score=eng_score,
        grade_code=_grade_codes(model, fit_score, eng_score),
        bant=bant,
        bant_count=bant_count,
        bant_weight=bant_weight,
        bant_advanced=advanced,
        disqualifier=disq,
        nurture=nurture,
        proposed_rank=proposed.astype(np.int8),
        sales_ready=sales_ready,
        now_ms=ev.now_ns // 1_000_000,
        stage_rank=final,
        status_code=status,
        persona=persona,
        current_stage=stage_col,
        current_status=cols.text("lead_status"),
        shown={f: cols.text(f) for f in compiled.shown_fields},
    )
    logger.info(
        "scored %d leads with model %s: %d disqualified, %d nurture, %d sales-ready",
        n, model.version, int(disqualified.sum()), int(nurture.sum()), int(sales_ready.sum()),
    )
    return result


def _blend(
    model: QualificationModel,
    rule_score: np.ndarray,
    predictive: pd.Series | None,
    index: pd.Index,
) -> np.ndarray:
    """Combined score after the predictive blend (rows without a predictive score: unchanged)."""
    if predictive is None:
        return rule_score
    if not model.predictive.enabled:
        logger.info("predictive scores given but predictive.enabled is false: not blended")
        return rule_score
    pred = pd.to_numeric(predictive.reindex(index), errors="coerce").to_numpy(dtype=np.float64)
    pred = np.clip(pred, 0.0, 100.0)  # NaN stays NaN
    w = model.predictive.weight
    blended = _round_half_up((1.0 - w) * rule_score + w * pred)
    return np.where(np.isnan(pred), rule_score, blended).astype(np.int32)


def _proposed_ranks(
    model: QualificationModel, ev: ConditionEvaluator, score: np.ndarray, advanced: np.ndarray
) -> np.ndarray:
    """Highest model stage each lead reaches (subscriber at least)."""
    proposed = np.zeros(ev.n, dtype=np.int8)
    for name in ("lead", "mql", "sql"):  # increasing ranks: a later stage overrides
        rule = getattr(model.stages, name)
        reached = np.zeros(ev.n, dtype=bool)
        if rule.min_score is not None:
            reached |= score >= rule.min_score
        if rule.or_when is not None:
            reached |= ev.mask(rule.or_when)
        if rule.requires is not None:
            reached &= ev.mask(rule.requires)
        if rule.requires_bant:
            reached &= advanced
        # Ranks increase along the loop, so "a later stage overrides" is a maximum.
        np.maximum(proposed, reached.view(np.int8) * np.int8(STAGE_RANK[name]), out=proposed)
    return proposed


def to_frame(evaluation: Evaluation, *, render: bool = True) -> pd.DataFrame:
    """The `schema.SCORE_COLUMNS` frame (+ extra columns) of an evaluation.

    Text columns are object dtype (str or None), except crm and record_id which keep the
    input's dtype. With ``render=False`` the `reasons` column is
    None; render later with `Evaluation.render_reasons` for the rows that are written.
    Extra columns: persona, authority, proposed_stage (categoricals: a million Python references
    each cost more than the rest of those columns), bant_weight, bant_advanced, rule_score.
    """
    ev = evaluation
    model = ev.model
    n = len(ev)

    stage = _codes_to_objects(ev.stage_rank, ev.current_stage, MODEL_STAGES, KEEP, NONE)
    status = _codes_to_objects(ev.status_code, ev.current_status, STATUS_VALUES, STATUS_KEEP, None)
    codes = np.array([d.code for d in model.disqualifiers] + [None], dtype=object)
    disq = _take(codes, ev.disqualifier)  # -1 -> last element (None)
    persona_codes = ev.persona.codes  # -1: no persona
    authority_names = sorted({p.authority for p in model.personas})
    authority_of = np.array([authority_names.index(p.authority) for p in model.personas], dtype=np.int32)

    data = {
        "crm": ev.crm,
        "record_id": ev.record_id,
        "model_version": np.repeat(np.array([model.version], dtype=object), n),
        "score": ev.score.astype(np.float64),
        "fit_score": ev.fit_score.astype(np.float64),
        "engagement_score": ev.engagement_score.astype(np.float64),
        "grade": _take(GRADE_NAMES, ev.grade_code),
        "bant_budget": ev.bant["budget"],
        "bant_authority": ev.bant["authority"],
        "bant_need": ev.bant["need"],
        "bant_timeline": ev.bant["timeline"],
        "bant_count": ev.bant_count.astype(np.float64),
        "disqualification_reason": disq,
        "stage": stage,
        "lead_status": status,
        "reasons": ev.render_reasons() if render else np.full(n, None, dtype=object),
        "sales_ready": ev.sales_ready,
        "sales_ready_since": np.where(ev.sales_ready, float(ev.now_ms), np.nan),
        "sales_ready_reason": reason_texts(model, ev.sales_ready, ev.score, ev.bant, ev.persona.codes),
        "persona": _categorical([p.id for p in model.personas], persona_codes),
        "authority": _categorical(authority_names, ev.persona.lookup(authority_of, -1)),
        "bant_weight": ev.bant_weight,
        "bant_advanced": ev.bant_advanced,
        "rule_score": ev.rule_score.astype(np.float64),
        "proposed_stage": _categorical(list(MODEL_STAGES), ev.proposed_rank),
    }
    frame = pd.DataFrame({k: _column(k, v, ev.index) for k, v in data.items()}, copy=False)
    assert list(frame.columns[: len(SCORE_COLUMNS)]) == list(SCORE_COLUMNS)
    return frame


def _categorical(categories: list[str], codes: np.ndarray) -> pd.Categorical:
    """A categorical from codes into distinct `categories` (-1: missing), without a value check."""
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(categories), validate=False)


def _take(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``values[codes]`` (negative codes count from the end) with intp indices: numpy's fancy
    indexing and `take` cast small-int indices element by element, several times slower."""
    idx = codes.astype(np.intp)
    idx += (idx < 0) * len(values)
    return np.take(values, idx)


def _codes_to_objects(
    codes: np.ndarray, current: TextColumn, names: tuple[str, ...], keep: int, empty: int | None
) -> np.ndarray:
    """Object array from decision codes: >= 0 picks `names`, `keep` keeps the record's own value,
    `empty` gives None; one take from a small vocabulary instead of object-array `where`s."""
    vocab = np.array([*names, *current.slot_values, None], dtype=object)
    # current.index + len(names): the record's own value (None when missing).
    idx = current.index + len(names)
    idx = np.where(codes == keep, idx, codes.astype(np.intp))
    if empty is not None:
        idx[codes == empty] = len(vocab) - 1
    return np.take(vocab, idx)


def _column(name: str, values: pd.Series | pd.Categorical | np.ndarray, index: pd.Index) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, pd.Categorical):
        return pd.Series(values, index=index, copy=False)
    kind = SCORE_COLUMNS.get(name)
    if kind == "str" or values.dtype == object:
        dtype: object = object  # explicit: no inference to the pyarrow-backed str dtype
    elif kind == "bool":
        dtype = bool
    else:
        dtype = values.dtype
    return pd.Series(values, index=index, dtype=dtype, copy=False)


def score_leads(
    leads: pd.DataFrame,
    model: QualificationModel,
    now: datetime,
    predictive: pd.Series | None = None,
    *,
    predictive_factors: pd.Series | None = None,
    render: bool = True,
) -> pd.DataFrame:
    """Score `leads` (columns of `schema.LEAD_COLUMNS` + enrichment) with `model` at `now`.

    Returns the `schema.SCORE_COLUMNS` columns (plus a few extras, see `to_frame`), indexed
    like `leads`. `predictive` is an optional 0-100 score per lead (index-aligned) blended with
    `model.predictive.weight` when `model.predictive.enabled`; `predictive_factors` (text per
    lead) is shown after the blend reason.
    """
    return to_frame(evaluate(leads, model, now, predictive, predictive_factors), render=render)


def _fields_in_order(model: QualificationModel, *, shown: bool = False) -> list[str]:
    """Lead fields the model reads, in the order the engine first reads them (no duplicates)."""
    fields: dict[str, None] = dict.fromkeys(["crm", "record_id"])

    def walk(cond: object) -> None:
        field = getattr(cond, "field", None)
        if field is not None and field in FIELD_KINDS:
            fields[field] = None
        for child in (getattr(cond, "all", None) or []) + (getattr(cond, "any", None) or []):
            walk(child)
        decay = getattr(cond, "decay", None)
        if decay is not None and decay.timestamp:
            fields[decay.timestamp] = None

    for section in (model.engagement, model.fit, model.signals):  # the engine's order
        for group in section.groups:
            for rule in group.rules:
                if section is model.fit and "job_title" not in fields:
                    fields["job_title"] = None  # personas are matched when fit needs them
                walk(rule)
    fields["job_title"] = None
    for name in BANT_CRITERIA:
        walk(getattr(model.bant.criteria, name))
    for disq in model.disqualifiers:
        walk(disq)
    for name in ("lead", "mql", "sql"):
        rule = getattr(model.stages, name)
        for cond in (rule.or_when, rule.requires):
            if cond is not None:
                walk(cond)
    fields.update(dict.fromkeys(["lifecycle_stage", "lead_status"]))
    for section in (model.fit, model.engagement, model.signals) if shown else ():
        for group in section.groups:
            for rule in group.rules:
                if rule.show is not None:
                    fields[rule.show] = None
    return [f for f in fields if f not in ("persona", "seniority", "authority")]


def describe_fields(model: QualificationModel) -> set[str]:
    """Lead fields the model reads (for callers that want to load only those columns)."""
    return set(_fields_in_order(model)) - {"persona", "seniority", "authority"}
