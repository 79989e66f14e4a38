"""The qualification model: a versioned YAML document validated by pydantic.

The model is the marketing-sales agreement (SLA) in machine-readable form: personas, fit and
engagement rules with points, caps and decay, red flags and positive signs, BANT, disqualifiers,
nurture, grades, stage thresholds and the predictive blend. `load_model` turns YAML into a
`QualificationModel` or raises `ModelConfigError` naming the file and each problem's key path
(``model.yaml: bant.weights.budget: Input should be greater than or equal to 0``; the format of
`leadflow.validation`).

Validation happens in two layers: pydantic checks shapes and types (unknown keys are errors),
then `_semantic_errors` checks what needs the whole document: field names and operators,
unique ids, valid regexes, ordered thresholds and thresholds the weights can actually reach.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from leadflow.qualify.fields import (
    AUTHORITIES,
    DERIVED_FIELDS,
    DERIVED_OPERATORS,
    FIELD_KINDS,
    OPERATOR_KINDS,
    SENIORITIES,
    SHOWABLE_FIELDS,
)
from leadflow.schema import CANONICAL_STATUSES, MODEL_STAGES, STAGE_ORDER
from leadflow.validation import ConfigError, format_problems, load_yaml_model, validate_document

DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "config" / "model" / "default.yaml"
JSON_SCHEMA_PATH = DEFAULT_MODEL_PATH.with_name("model.schema.json")

# Per-rule points are kept in int16 reason arrays; this bound keeps every sum far from overflow.
MAX_RULE_POINTS = 1000
BANT_CRITERIA: tuple[str, ...] = ("budget", "authority", "need", "timeline")
_ID_PATTERN = r"^[a-z][a-z0-9_]*$"
_CONDITION_OPERATORS: tuple[str, ...] = tuple(OPERATOR_KINDS)


class ModelConfigError(ConfigError):
    """The model config is invalid; `errors` lists the problems, each starting with the bad key
    path (the message is `<source>: <problem>; ...`, as every `ConfigError`)."""

    def __init__(self, errors: list[str], source: str | None = None) -> None:
        super().__init__(format_problems(source or "qualification model", errors), source=source, problems=errors)
        self.errors = errors

    @classmethod
    def of(cls, source: str, problems: Sequence[str]) -> ModelConfigError:
        return cls(list(problems), source)


class _Strict(BaseModel):
    # strict: "5" is not an int; forbid: a misspelt key is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class Condition(_Strict):
    """A test on one field, or a combination (`all` / `any`) of tests.

    Operators given together on one field are ANDed. Text comparisons (`in`) ignore case and
    surrounding blanks; `matches` are case-insensitive regular expressions searched anywhere
    in the text; blank text counts as missing. Numbers: `at_least` is inclusive, `below`
    exclusive; a missing number fails both. Timestamps: `within_days` / `older_than_days`
    compare the age (now - timestamp) with whole days; a missing timestamp fails both.
    """

    field: str | None = None
    in_: list[str] | None = Field(default=None, alias="in")
    matches: list[str] | None = None
    words_at_least: int | None = Field(default=None, ge=0)
    words_below: int | None = Field(default=None, ge=1)
    contains_any: list[str] | None = None
    at_least: float | None = None
    below: float | None = None
    is_: bool | None = Field(default=None, alias="is")
    within_days: int | None = Field(default=None, ge=0)
    older_than_days: int | None = Field(default=None, ge=0)
    missing: bool | None = None
    all: list[Condition] | None = None
    any: list[Condition] | None = None

    def operators(self) -> dict[str, Any]:
        """The field operators set on this condition, by their YAML names."""
        out = {}
        for name in _CONDITION_OPERATORS:
            attr = {"in": "in_", "is": "is_"}.get(name, name)
            value = getattr(self, attr)
            if value is not None:
                out[name] = value
        return out

    def has_test(self) -> bool:
        """True when the condition tests something (a field operator or a combination)."""
        return bool(self.operators()) or self.all is not None or self.any is not None


class Decay(_Strict):
    """Time decay of a rule's points: halve every `half_life_days`, drop after `expire_after_days`.

    The age is taken from `timestamp` (default: the rule's own field when it is a timestamp).
    When that timestamp is missing the age is unknown and the points count undecayed; future
    timestamps count as age 0.
    """

    timestamp: str | None = None
    half_life_days: float | None = Field(default=None, gt=0)
    expire_after_days: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_of(self) -> Decay:
        if self.half_life_days is None and self.expire_after_days is None:
            raise ValueError("set half_life_days and/or expire_after_days")
        return self


class ScoreRule(Condition):
    """A scoring rule: the condition on the row, and the points it adds (negative subtracts).

    With `per_unit`, `points` are multiplied by the value of the numeric `field` (a counter
    such as page views) and limited to ±`max_points`; any operators also given must hold.
    """

    id: str = Field(pattern=_ID_PATTERN)
    label: str = Field(min_length=1, max_length=80)
    points: int = Field(ge=-MAX_RULE_POINTS, le=MAX_RULE_POINTS)
    per_unit: bool = False
    max_points: int | None = Field(default=None, ge=1, le=MAX_RULE_POINTS)
    decay: Decay | None = None
    show: str | None = None


class RuleGroup(_Strict):
    """Rules whose summed points are capped at `max` (and floored at `min`) as a group."""

    id: str = Field(pattern=_ID_PATTERN)
    label: str = Field(min_length=1, max_length=80)
    max: int | None = Field(default=None, ge=0)
    min: int | None = Field(default=None, le=0)
    rules: list[ScoreRule] = Field(min_length=1)


class ScoreSection(_Strict):
    """Fit or engagement: groups of rules; `full_points` is the sum that maps to a 100 sub-score."""

    full_points: int = Field(ge=1, le=10_000)
    groups: list[RuleGroup] = Field(default_factory=list)


class SignalSection(_Strict):
    """Red flags and positive signs from form answers: added to the combined score only."""

    groups: list[RuleGroup] = Field(default_factory=list)


class Persona(_Strict):
    """A buyer (or non-buyer) persona recognised from the job title."""

    id: str = Field(pattern=_ID_PATTERN)
    label: str = Field(min_length=1, max_length=80)
    titles: list[str] = Field(min_length=1)
    seniority: Literal[SENIORITIES]  # type: ignore[valid-type]
    authority: Literal[AUTHORITIES]  # type: ignore[valid-type]


class BantCriterion(Condition):
    """One BANT criterion: met when its condition holds; `points` are added when met."""

    label: str = Field(min_length=1, max_length=80)
    points: int = Field(default=0, ge=-MAX_RULE_POINTS, le=MAX_RULE_POINTS)


class BantCriteria(_Strict):
    budget: BantCriterion
    authority: BantCriterion
    need: BantCriterion
    timeline: BantCriterion


class BantWeights(_Strict):
    budget: float = Field(default=1.0, ge=0)
    authority: float = Field(default=1.0, ge=0)
    need: float = Field(default=1.0, ge=0)
    timeline: float = Field(default=1.0, ge=0)


class Bant(_Strict):
    """Budget, authority, need, timeline; a lead advances when the met weights reach the threshold."""

    criteria: BantCriteria
    weights: BantWeights = Field(default_factory=BantWeights)
    advance_threshold: float = Field(default=3.0, gt=0)


class Disqualifier(Condition):
    """A reason to stop qualifying a lead; the first matching disqualifier's `code` is reported."""

    code: str = Field(pattern=_ID_PATTERN)
    label: str = Field(min_length=1, max_length=80)
    points: int = Field(default=0, ge=-MAX_RULE_POINTS, le=0)


class Nurture(_Strict):
    """Leads that fit but have no timeline go to nurture instead of being dropped."""

    enabled: bool = True
    min_fit_score: int = Field(default=50, ge=0, le=100)
    max_stage: Literal[MODEL_STAGES] = "mql"  # type: ignore[valid-type]


class FitGrades(_Strict):
    A: int = Field(ge=0, le=100)
    B: int = Field(ge=0, le=100)
    C: int = Field(ge=0, le=100)


class EngagementGrades(_Strict):
    # YAML keys 1..3 keep the grade names readable in the config.
    one: int = Field(alias="1", ge=0, le=100)
    two: int = Field(alias="2", ge=0, le=100)
    three: int = Field(alias="3", ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _int_keys(cls, data: Any) -> Any:
        # YAML reads an unquoted `1:` as the integer 1; accept it as the grade name "1".
        if isinstance(data, dict):
            return {str(k) if isinstance(k, int) else k: v for k, v in data.items()}
        return data


class Grades(_Strict):
    """Fit letter (A best .. D) x engagement digit (1 best .. 4): minimum sub-scores."""

    fit: FitGrades
    engagement: EngagementGrades


class StageRule(_Strict):
    """When a lead reaches a stage: score >= `min_score` OR `or_when`, AND `requires`, AND BANT."""

    min_score: int | None = Field(default=None, ge=0, le=100)
    or_when: Condition | None = None
    requires: Condition | None = None
    requires_bant: bool = False


class SqlStageRule(StageRule):
    """The sales-ready criteria. A lead meeting them is handed over to sales (leadflow's own
    `sales_ready` fields); sales accepts it as SQL. `auto: true` makes leadflow set SQL itself,
    a departure from the waterfall (marketing qualifies, sales accepts and confirms)."""

    auto: bool = False


class Stages(_Strict):
    lead: StageRule
    mql: StageRule
    sql: SqlStageRule


class LeadStatusRules(_Strict):
    """Status of qualified leads: "open" from this stage on, "new" below it; `sales_ready`, when
    set, is the status a handed-over lead gets (the one the team uses for "new for sales").
    Only "new" and "open" are allowed: the working statuses belong to sales."""

    open_from_stage: Literal[MODEL_STAGES] = "mql"  # type: ignore[valid-type]
    sales_ready: Literal["new", "open"] | None = None


class HandoffRules(_Strict):
    """What sales' answer to a handed-over lead looks like in the CRM (the SLA between marketing
    and sales): a person setting one of `accepted_statuses` or moving the lead to one of
    `accepted_stages` accepts it; a person setting one of `rejected_statuses`, or moving the stage
    back below MQL, rejects it; `converted_stages` (by anyone) mean it was won; no touch by a
    person for `sla_days` after the handoff means it was ignored. Canonical names: the CRM
    mapping turns e.g. HubSpot's BAD_TIMING into `nurture`, Salesforce's "Closed - Not Converted"
    into `unqualified`. A lead sales rejected is handed over again only once, when its score
    exceeds the score it was rejected with by more than `rehandoff_min_score_gain` (null: never).
    A run alerts when more handed-over leads sit ignored past the SLA than `alert_ignored_over`
    (null: no alert)."""

    sla_days: int = Field(default=3, ge=1, le=365)
    accepted_statuses: list[Literal[CANONICAL_STATUSES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["in_progress", "attempted_to_contact", "connected", "open_deal"])
    rejected_statuses: list[Literal[CANONICAL_STATUSES]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["unqualified", "nurture"])
    accepted_stages: list[Literal[STAGE_ORDER]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["sql", "opportunity"])
    converted_stages: list[Literal[STAGE_ORDER]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["customer", "evangelist"])
    rehandoff_min_score_gain: float | None = Field(default=15, gt=0, le=100)
    alert_ignored_over: int | None = Field(default=25, ge=0)


class Predictive(_Strict):
    """Blend of a learned 0-100 score: combined = (1 - weight) * rules + weight * predictive.
    A newly trained model is published only when, on the latest `holdout_share` of the answered
    handoffs (by handoff time), its AUC beats the champion's (or the rules', before the first
    champion) by `publish_margin`."""

    enabled: bool = False
    weight: float = Field(default=0.2, ge=0, le=1)
    publish_margin: float = Field(default=0.01, ge=0, le=0.5)
    holdout_share: float = Field(default=0.25, gt=0.05, lt=0.8)


ROLES: tuple[str, ...] = ("decider", "influencer", "user")  # buying-committee roles, in report order


class AccountRoles(_Strict):
    """Which persona `authority` values count as each buying-committee role (default: the same name)."""

    decider: list[Literal[AUTHORITIES]] = Field(default_factory=lambda: ["decider"])  # type: ignore[valid-type]
    influencer: list[Literal[AUTHORITIES]] = Field(default_factory=lambda: ["influencer"])  # type: ignore[valid-type]
    user: list[Literal[AUTHORITIES]] = Field(default_factory=lambda: ["user"])  # type: ignore[valid-type]

    def role_of(self) -> dict[str, str]:
        """authority value -> role."""
        return {authority: role for role in ROLES for authority in getattr(self, role)}


class Accounts(_Strict):
    """The account view: per company, its engaged leads, the committee roles they cover and a
    company score = best lead's score + `role_points` per role covered by an engaged lead,
    capped at 100. A lead is engaged when its engagement_score reaches `engaged_min_engagement`
    and it is not disqualified. With `handoff_waits_for_second_persona`, a lead newly found
    sales-ready is handed over only when another engaged lead with a different buyer persona
    works at the same company; until then its reason says it waits."""

    roles: AccountRoles = Field(default_factory=AccountRoles)
    engaged_min_engagement: int = Field(default=25, ge=0, le=100)
    role_points: int = Field(default=5, ge=0, le=100)
    handoff_waits_for_second_persona: bool = False


class QualificationModel(_Strict):
    """The whole qualification model (see docs/model.md for every key)."""

    version: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=4000)
    personas: list[Persona] = Field(default_factory=list)
    fit: ScoreSection
    engagement: ScoreSection
    signals: SignalSection = Field(default_factory=SignalSection)
    bant: Bant
    disqualifiers: list[Disqualifier] = Field(default_factory=list)
    nurture: Nurture = Field(default_factory=Nurture)
    grades: Grades
    stages: Stages
    lead_status: LeadStatusRules = Field(default_factory=LeadStatusRules)
    handoff: HandoffRules = Field(default_factory=HandoffRules)
    predictive: Predictive = Field(default_factory=Predictive)
    accounts: Accounts = Field(default_factory=Accounts)

    # The compiled form (regexes, slot tables) is cached on the instance by the engine.
    _compiled: Any = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _semantics(self) -> QualificationModel:
        errors = _semantic_errors(self)
        if errors:
            raise ValueError("\n".join(errors))
        return self

    def max_score(self) -> int:
        """Upper bound of the combined score the rules can reach (0-100), before blending."""
        total = sum(_group_max(g) for g in (*self.fit.groups, *self.engagement.groups))
        total += sum(_group_max(g) for g in self.signals.groups)
        total += sum(max(c.points, 0) for c in _bant_items(self))
        return max(0, min(100, total))


# --- semantic checks ---------------------------------------------------------------------------


def _rule_max(rule: ScoreRule) -> int:
    if rule.points <= 0:
        return 0
    return rule.max_points if rule.per_unit and rule.max_points is not None else rule.points


def _group_max(group: RuleGroup) -> int:
    total = sum(_rule_max(r) for r in group.rules)
    return total if group.max is None else min(total, group.max)


def _bant_items(model: QualificationModel) -> list[BantCriterion]:
    return [getattr(model.bant.criteria, name) for name in BANT_CRITERIA]


def _check_regexes(patterns: list[str], path: str, errors: list[str]) -> None:
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern, re.IGNORECASE)
        except re.error as exc:
            errors.append(f"{path}[{i}]: invalid regular expression {pattern!r}: {exc}")


def _check_condition(cond: Condition, path: str, errors: list[str], *, optional: bool = False) -> None:
    """Check field names, operator/kind fit and regexes of a condition tree."""
    ops = cond.operators()
    combos = [name for name in ("all", "any") if getattr(cond, name) is not None]
    if cond.field is None:
        if ops:
            errors.append(f"{path}.field: required when operators {sorted(ops)} are given")
        if not combos and not optional:
            errors.append(f"{path}: needs a field with an operator, or all/any")
    else:
        if combos:
            errors.append(f"{path}: use either field operators or {combos[0]}, not both")
        kind = FIELD_KINDS.get(cond.field)
        if kind is None:
            errors.append(f"{path}.field: unknown field {cond.field!r}")
        else:
            if not ops and not optional:
                errors.append(f"{path}: field {cond.field!r} needs an operator")
            for op in ops:
                if kind not in OPERATOR_KINDS[op] or (
                    cond.field in DERIVED_FIELDS and op not in DERIVED_OPERATORS
                ):
                    errors.append(f"{path}.{op}: not applicable to {kind} field {cond.field!r}")
        if cond.matches is not None:
            _check_regexes(cond.matches, f"{path}.matches", errors)
        if cond.at_least is not None and cond.below is not None and cond.at_least >= cond.below:
            errors.append(f"{path}.below: must be greater than at_least ({cond.at_least})")
        for op in ("in", "matches", "contains_any"):
            if op in ops and not ops[op]:
                errors.append(f"{path}.{op}: must not be empty")
    for name in combos:
        children = getattr(cond, name)
        if not children:
            errors.append(f"{path}.{name}: must not be empty")
        for i, child in enumerate(children):
            _check_condition(child, f"{path}.{name}[{i}]", errors)


def _check_rule(rule: ScoreRule, path: str, errors: list[str]) -> None:
    _check_condition(rule, path, errors, optional=rule.per_unit)
    if rule.per_unit:
        if rule.field is None or FIELD_KINDS.get(rule.field) != "float":
            errors.append(f"{path}.per_unit: needs a numeric field, got {rule.field!r}")
        if rule.max_points is None:
            errors.append(f"{path}.max_points: required with per_unit (bounds the points)")
    elif rule.max_points is not None:
        errors.append(f"{path}.max_points: only applies with per_unit: true")
    if rule.points == 0:
        errors.append(f"{path}.points: must not be 0 (remove the rule instead)")
    if rule.decay is not None:
        ts = rule.decay.timestamp or rule.field
        if ts is None or FIELD_KINDS.get(ts) != "ts":
            key = "timestamp" if rule.decay.timestamp else "timestamp (rule field is not a timestamp)"
            errors.append(f"{path}.decay.{key}: needs a timestamp field, got {ts!r}")
    if rule.show is not None and rule.show not in SHOWABLE_FIELDS:
        errors.append(f"{path}.show: {rule.show!r} cannot be shown (allowed: {sorted(SHOWABLE_FIELDS)})")


def _check_groups(groups: list[RuleGroup], path: str, errors: list[str], ids: dict[str, str]) -> None:
    for gi, group in enumerate(groups):
        gpath = f"{path}[{gi}]"
        _claim_id(f"cap_{group.id}", f"{gpath}.id", errors, ids)
        for ri, rule in enumerate(group.rules):
            rpath = f"{gpath}.rules[{ri}]"
            _claim_id(rule.id, f"{rpath}.id", errors, ids)
            _check_rule(rule, rpath, errors)


def _claim_id(rid: str, path: str, errors: list[str], ids: dict[str, str]) -> None:
    if rid in ids:
        errors.append(f"{path}: duplicate id {rid!r} (also at {ids[rid]})")
    else:
        ids[rid] = path


def _semantic_errors(model: QualificationModel) -> list[str]:
    """Every cross-field problem of the model, each as 'key.path: message'."""
    errors: list[str] = []
    ids: dict[str, str] = {"clamp": "(reserved)", "blend": "(reserved)"}

    persona_ids: dict[str, str] = {}
    for i, persona in enumerate(model.personas):
        _claim_id(persona.id, f"personas[{i}].id", errors, persona_ids)
        _check_regexes(persona.titles, f"personas[{i}].titles", errors)

    _check_groups(model.fit.groups, "fit.groups", errors, ids)
    _check_groups(model.engagement.groups, "engagement.groups", errors, ids)
    _check_groups(model.signals.groups, "signals.groups", errors, ids)

    for name in BANT_CRITERIA:
        _claim_id(f"bant_{name}", f"bant.criteria.{name}", errors, ids)
        _check_condition(getattr(model.bant.criteria, name), f"bant.criteria.{name}", errors)
    weights = [getattr(model.bant.weights, name) for name in BANT_CRITERIA]
    if sum(weights) < model.bant.advance_threshold:
        errors.append(
            f"bant.advance_threshold: {model.bant.advance_threshold:g} cannot be reached, "
            f"bant.weights sum to {sum(weights):g}"
        )

    for i, disq in enumerate(model.disqualifiers):
        _claim_id(disq.code, f"disqualifiers[{i}].code", errors, ids)
        _check_condition(disq, f"disqualifiers[{i}]", errors)

    _check_thresholds(model, errors)
    _check_handoff(model.handoff, errors)
    _check_accounts(model.accounts, errors)
    return errors


def _check_accounts(accounts: Accounts, errors: list[str]) -> None:
    """An authority counts as one role at most; `none` (non-buyers) as none."""
    seen: dict[str, str] = {}
    for role in ROLES:
        for authority in getattr(accounts.roles, role):
            if authority == "none":
                errors.append(f"accounts.roles.{role}: 'none' is the non-buyers' authority, not a committee role")
            elif authority in seen:
                errors.append(f"accounts.roles.{role}: {authority!r} also counts as {seen[authority]}")
            else:
                seen[authority] = role


def _check_handoff(rules: HandoffRules, errors: list[str]) -> None:
    """A status or stage must mean one verdict only; leadflow's own statuses cannot mean one."""
    both = sorted(set(rules.accepted_statuses) & set(rules.rejected_statuses))
    if both:
        errors.append(f"handoff.rejected_statuses: {both} also in handoff.accepted_statuses")
    for key in ("accepted_statuses", "rejected_statuses"):
        # A handed-over lead gets new/open from leadflow: they cannot tell sales' answer.
        own = sorted(set(getattr(rules, key)) & {"new", "open"})
        if own:
            errors.append(f"handoff.{key}: {own} are the statuses leadflow hands leads over with")
    stages = sorted(set(rules.accepted_stages) & set(rules.converted_stages))
    if stages:
        errors.append(f"handoff.converted_stages: {stages} also in handoff.accepted_stages")
    low = sorted(s for s in rules.accepted_stages if s in ("subscriber", "lead", "mql"))
    if low:
        errors.append(f"handoff.accepted_stages: {low} are not beyond MQL (moving back below MQL is a rejection)")


def _check_thresholds(model: QualificationModel, errors: list[str]) -> None:
    fit_max = _sub_score(sum(_group_max(g) for g in model.fit.groups), model.fit.full_points)
    eng_max = _sub_score(
        sum(_group_max(g) for g in model.engagement.groups), model.engagement.full_points
    )
    fg, eg = model.grades.fit, model.grades.engagement
    if not fg.A >= fg.B >= fg.C:
        errors.append("grades.fit: thresholds must satisfy A >= B >= C")
    if not eg.one >= eg.two >= eg.three:
        errors.append("grades.engagement: thresholds must satisfy 1 >= 2 >= 3")
    if fg.A > fit_max:
        errors.append(f"grades.fit.A: {fg.A} cannot be reached, the fit rules reach at most {fit_max}")
    if eg.one > eng_max:
        errors.append(
            f"grades.engagement.1: {eg.one} cannot be reached, the engagement rules reach at most {eng_max}"
        )
    if model.nurture.enabled and model.nurture.min_fit_score > fit_max:
        errors.append(
            f"nurture.min_fit_score: {model.nurture.min_fit_score} cannot be reached, "
            f"the fit rules reach at most {fit_max}"
        )

    reachable = model.max_score()
    if model.predictive.enabled:
        # A predictive score of 100 lifts the blend: (1 - w) * rules + w * 100.
        w = model.predictive.weight
        reachable = math.floor((1.0 - w) * reachable + w * 100.0 + 0.5)
    previous: tuple[str, int] | None = None
    for name in ("lead", "mql", "sql"):
        rule: StageRule = getattr(model.stages, name)
        path = f"stages.{name}"
        if rule.min_score is None and rule.or_when is None:
            errors.append(f"{path}: needs min_score and/or or_when")
        if rule.min_score is not None:
            if rule.min_score > reachable and rule.or_when is None:
                errors.append(
                    f"{path}.min_score: {rule.min_score} cannot be reached, "
                    f"the rules' points reach at most {reachable}"
                )
            if previous is not None and rule.min_score < previous[1]:
                errors.append(f"{path}.min_score: must be >= stages.{previous[0]}.min_score ({previous[1]})")
            previous = (name, rule.min_score)
        for key in ("or_when", "requires"):
            cond = getattr(rule, key)
            if cond is not None:
                _check_condition(cond, f"{path}.{key}", errors)


def _sub_score(points: int, full_points: int) -> int:
    """Points -> 0-100 sub-score, rounding half up in integers (shared with the engine)."""
    return max(0, min(100, (200 * points + full_points) // (2 * full_points)))


# --- loading -------------------------------------------------------------------------------------


def model_from_dict(data: Any, source: str | None = None) -> QualificationModel:
    """Validate a parsed config document; raise `ModelConfigError` naming each bad key."""
    return validate_document(QualificationModel, data, source or "qualification model", ModelConfigError)


def load_model(path: str | Path | None = None) -> QualificationModel:
    """Load and validate a model YAML file (None: the shipped default model)."""
    file = Path(path) if path is not None else DEFAULT_MODEL_PATH
    return load_yaml_model(file, QualificationModel, "qualification model", ModelConfigError)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the model config (for editors; `export_json_schema` writes it)."""
    schema = QualificationModel.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "leadflow qualification model"
    return schema


def export_json_schema(path: str | Path = JSON_SCHEMA_PATH) -> Path:
    """Write the model's JSON Schema to `path` (sorted keys, stable diff) and return the path."""
    import json

    out = Path(path)
    out.write_text(json.dumps(json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return out
