"""Row-by-row REFERENCE implementation of the qualification model (pure Python, no numpy).

It reads the validated `QualificationModel` directly and applies the rules one lead at a time,
written from the documented semantics (docs/model.md), independently of the vectorised engine
in `leadflow.qualify.engine`. The property-based tests require both to agree on every output;
bench/bench_qualify.py loads this file by path to measure the engine's speed-up.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import pandas as pd

from leadflow.qualify.config import BANT_CRITERIA, Condition, QualificationModel, RuleGroup
from leadflow.qualify.fields import FIELD_KINDS

NS_PER_DAY = 86_400 * 1_000_000_000
SALES_OWNED = {"opportunity", "customer", "evangelist", "other"}
MODEL_STAGES = ["subscriber", "lead", "mql", "sql"]
SALES_WORKING = {"in_progress", "attempted_to_contact", "connected", "open_deal"}

_regex_cache: dict[str, re.Pattern[str]] = {}


def _rx(pattern: str) -> re.Pattern[str]:
    if pattern not in _regex_cache:
        _regex_cache[pattern] = re.compile(pattern, re.IGNORECASE)
    return _regex_cache[pattern]


def _text(value: Any) -> str | None:
    """A text value, or None when missing or blank."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    value = str(value)
    return value if value.strip() else None


def _number(value: Any) -> float | None:
    if value is None or value is pd.NA:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _ts_ns(value: Any) -> int | None:
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return int(pd.Timestamp(value).value)


def _bool(value: Any) -> tuple[bool, bool]:
    """(is true, is missing)."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return False, True
    return (value is True or (type(value).__name__ == "bool_" and bool(value))), False


class _Row:
    """One lead with its derived persona fields; evaluates conditions on it."""

    def __init__(self, row: dict[str, Any], model: QualificationModel, now_ns: int) -> None:
        self.row = row
        self.now_ns = now_ns
        self.persona = None
        title = _text(row.get("job_title"))
        if title is not None:
            for persona in model.personas:
                if any(_rx(p).search(title) for p in persona.titles):
                    self.persona = persona
                    break

    def value(self, field: str) -> Any:
        if field == "persona":
            return self.persona.id if self.persona else None
        if field == "seniority":
            return self.persona.seniority if self.persona else None
        if field == "authority":
            return self.persona.authority if self.persona else None
        return self.row.get(field)

    def holds(self, cond: Condition) -> bool:
        ok = True
        if cond.field is not None and cond.operators():
            ok = self._field_holds(cond.field, cond.operators())
        if cond.all is not None:
            ok = ok and all(self.holds(c) for c in cond.all)
        if cond.any is not None:
            ok = ok and any(self.holds(c) for c in cond.any)
        return ok

    def _field_holds(self, field: str, ops: dict[str, Any]) -> bool:
        kind = FIELD_KINDS[field]
        raw = self.value(field)
        for op, arg in ops.items():
            if kind in ("str", "list"):
                text = _text(raw)
                if op == "missing":
                    passed = (text is None) == arg
                elif text is None:
                    passed = False
                elif op == "in":
                    passed = text.strip().casefold() in {a.strip().casefold() for a in arg}
                elif op == "matches":
                    passed = any(_rx(p).search(text) for p in arg)
                elif op == "words_at_least":
                    passed = len(text.split()) >= arg
                elif op == "words_below":
                    passed = len(text.split()) < arg
                elif op == "contains_any":
                    items = {t.strip().casefold() for t in text.split(";") if t.strip()}
                    passed = bool(items & {a.strip().casefold() for a in arg})
                else:
                    raise AssertionError(op)
            elif kind == "float":
                num = _number(raw)
                if op == "missing":
                    passed = (num is None) == arg
                elif num is None:
                    passed = False
                elif op == "at_least":
                    passed = num >= arg
                else:  # below
                    passed = num < arg
            elif kind == "ts":
                ts = _ts_ns(raw)
                if op == "missing":
                    passed = (ts is None) == arg
                elif ts is None:
                    passed = False
                elif op == "within_days":
                    passed = self.now_ns - ts <= arg * NS_PER_DAY
                else:  # older_than_days
                    passed = self.now_ns - ts > arg * NS_PER_DAY
            else:  # bool
                is_true, missing = _bool(raw)
                passed = missing == arg if op == "missing" else is_true == arg
            if not passed:
                return False
        return True


def _decay(lead: _Row, rule: Any) -> float:
    decay = rule.decay
    ts = _ts_ns(lead.value(decay.timestamp or rule.field))
    if ts is None:
        return 1.0  # unknown age: no decay
    age = max(lead.now_ns - ts, 0)
    factor = 1.0
    if decay.half_life_days is not None:
        raw = 2.0 ** (-(float(age) / float(NS_PER_DAY) / decay.half_life_days))
        factor = math.floor(raw * 1e9 + 0.5) / 1e9
    if decay.expire_after_days is not None and age > decay.expire_after_days * NS_PER_DAY:
        factor = 0.0
    return factor


def _rule_points(lead: _Row, rule: Any) -> int:
    holds = lead.holds(rule)
    if rule.per_unit:
        count = _number(lead.value(rule.field)) or 0.0
        limit = float(rule.max_points)
        value = min(max(max(count, 0.0) * rule.points, -limit), limit)
        value = value * (1.0 if holds else 0.0)
    else:
        if not holds:
            return 0
        if rule.decay is None:
            return rule.points
        value = float(rule.points)
    if rule.decay is not None:
        value = value * _decay(lead, rule)
    return math.floor(value + 0.5)


def _groups(lead: _Row, groups: list[RuleGroup], reasons: list[tuple[str, int]]) -> int:
    total = 0
    for group in groups:
        group_sum = 0
        for rule in group.rules:
            pts = _rule_points(lead, rule)
            if pts:
                reasons.append((rule.id, pts))
            group_sum += pts
        capped = group_sum
        if group.max is not None:
            capped = min(capped, group.max)
        if group.min is not None:
            capped = max(capped, group.min)
        if capped != group_sum:
            reasons.append((f"cap_{group.id}", capped - group_sum))
        total += capped
    return total


def _sub(points: int, full: int) -> int:
    return max(0, min(100, (200 * points + full) // (2 * full)))


def score_row(row: dict[str, Any], model: QualificationModel, now: datetime,
              predictive: float | None = None) -> dict[str, Any]:
    """Score one lead (a dict of lead columns) the slow, obvious way."""
    now_ns = int(pd.Timestamp(now).value)
    lead = _Row(row, model, now_ns)
    reasons: list[tuple[str, int]] = []
    fit = _groups(lead, model.fit.groups, reasons)
    eng = _groups(lead, model.engagement.groups, reasons)
    raw = fit + eng + _groups(lead, model.signals.groups, reasons)

    bant = {}
    weight = 0.0
    for name in BANT_CRITERIA:
        criterion = getattr(model.bant.criteria, name)
        met = lead.holds(criterion)
        bant[name] = met
        weight = weight + (float(getattr(model.bant.weights, name)) if met else 0.0)
        if met and criterion.points:
            reasons.append((f"bant_{name}", criterion.points))
            raw += criterion.points
    advanced = weight >= model.bant.advance_threshold

    reason_code = None
    for disq in model.disqualifiers:
        if lead.holds(disq):
            reason_code = reason_code or disq.code
            if disq.points:
                reasons.append((disq.code, disq.points))
                raw += disq.points

    rule_score = max(0, min(100, raw))
    if rule_score != raw:
        reasons.append(("clamp", rule_score - raw))
    score = rule_score
    if predictive is not None and model.predictive.enabled and not math.isnan(predictive):
        p = max(0.0, min(100.0, predictive))
        w = model.predictive.weight
        score = math.floor((1.0 - w) * rule_score + w * p + 0.5)
        if score != rule_score:
            reasons.append(("blend", score - rule_score))

    fit_score = _sub(fit, model.fit.full_points)
    eng_score = _sub(eng, model.engagement.full_points)
    g = model.grades
    letter = "A" if fit_score >= g.fit.A else "B" if fit_score >= g.fit.B else "C" if fit_score >= g.fit.C else "D"
    e = g.engagement
    digit = "1" if eng_score >= e.one else "2" if eng_score >= e.two else "3" if eng_score >= e.three else "4"

    disqualified = reason_code is not None
    nurture = (model.nurture.enabled and not disqualified
               and fit_score >= model.nurture.min_fit_score and not bant["timeline"])

    proposed = "subscriber"
    for name in ("lead", "mql", "sql"):
        rule = getattr(model.stages, name)
        reached = (rule.min_score is not None and score >= rule.min_score) or (
            rule.or_when is not None and lead.holds(rule.or_when))
        if rule.requires is not None and not lead.holds(rule.requires):
            reached = False
        if rule.requires_bant and not advanced:
            reached = False
        if reached:
            proposed = name
    if nurture and MODEL_STAGES.index(proposed) > MODEL_STAGES.index(model.nurture.max_stage):
        proposed = model.nurture.max_stage

    current = _text(row.get("lifecycle_stage"))
    current_key = current.strip().casefold() if current else None
    raw_status = row.get("lead_status")
    current_status = raw_status if isinstance(raw_status, str) else None  # kept as given
    keep = current_key is not None and current_key not in MODEL_STAGES  # sales-owned / unknown
    # Sales-ready leads are handed over; sales sets SQL unless the model says stages.sql.auto.
    sales_ready = proposed == "sql" and not disqualified and not keep
    written = proposed if model.stages.sql.auto or proposed != "sql" else "mql"
    if keep:
        stage = row.get("lifecycle_stage")
    elif disqualified:
        stage = MODEL_STAGES[MODEL_STAGES.index(current_key)] if current_key else None
    elif current_key is None:
        stage = written
    else:
        stage = MODEL_STAGES[max(MODEL_STAGES.index(current_key), MODEL_STAGES.index(written))]

    status_text = _text(row.get("lead_status"))
    if keep:
        status = current_status
    elif disqualified:
        status = "unqualified"
    elif nurture:
        status = "nurture"
    elif status_text is not None and status_text.strip().casefold() in SALES_WORKING:
        status = current_status
    elif sales_ready and model.lead_status.sales_ready is not None:
        status = model.lead_status.sales_ready
    elif MODEL_STAGES.index(stage) >= MODEL_STAGES.index(model.lead_status.open_from_stage):
        status = "open"
    else:
        status = "new"

    return {
        "score": score,
        "rule_score": rule_score,
        "fit_score": fit_score,
        "engagement_score": eng_score,
        "grade": letter + digit,
        "bant_budget": bant["budget"],
        "bant_authority": bant["authority"],
        "bant_need": bant["need"],
        "bant_timeline": bant["timeline"],
        "bant_count": sum(bant.values()),
        "bant_advanced": advanced,
        "disqualification_reason": reason_code,
        "stage": stage,
        "lead_status": status,
        "sales_ready": sales_ready,
        "persona": lead.persona.id if lead.persona else None,
        "reasons": reasons,
    }


def score_frame(leads: pd.DataFrame, model: QualificationModel, now: datetime,
                predictive: pd.Series | None = None) -> list[dict[str, Any]]:
    """`score_row` over every row of a frame (in row order)."""
    preds = None
    if predictive is not None:
        preds = predictive.reindex(leads.index).tolist()
    out = []
    for i, row in enumerate(leads.to_dict("records")):
        pred = None if preds is None else preds[i]
        if pred is not None:
            pred = float(pred)
        out.append(score_row(row, model, now, pred))
    return out
