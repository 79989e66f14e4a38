"""Training: candidate learners, cross-validation, champion choice and calibration.

Candidates (all on features from `features.FeatureEncoder`, refitted inside every fold so no
fold sees its test rows' vocabulary or medians):
- `logistic`: L2-regularised logistic regression on one-hot categories and spline-expanded
  numbers, the baseline;
- `boosting`: HistGradientBoostingClassifier with native categorical support;
- `blend`: the average of the two probabilities.

The champion is the candidate with the best mean cross-validated ROC AUC (stratified k-fold
with shuffling, optionally repeated with different seeds); a stronger learner replaces the
logistic baseline only if it wins. The champion's out-of-fold predictions then fit a Platt
(sigmoid) calibrator, which is monotone and so keeps the AUC, and the champion is refitted
on all rows. For a non-linear champion a ridge regression on the champion's logit is kept as
a linear surrogate that explains each score (see `score.explain`).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from leadflow import progress
from leadflow.predict.features import FeatureEncoder
from leadflow.predict.mapping import Mapping, MappingError

log = logging.getLogger(__name__)

ALGORITHMS: tuple[str, ...] = ("logistic", "boosting", "blend")
_EPS = 1e-6


class InsufficientData(ValueError):
    """Too few labelled rows of one class to train and cross-validate a model."""


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of `train_from_frame`; the defaults are what `make bench` measures."""

    candidates: tuple[str, ...] = ALGORITHMS
    folds: int = 5
    repeats: int = 1
    seed: int = 0
    min_per_class: int = 10
    logistic_c: float = 0.1
    boosting_learning_rate: float = 0.07
    boosting_max_iter: int = 220
    boosting_max_leaf_nodes: int = 15
    boosting_min_samples_leaf: int = 20
    boosting_l2: float = 1.0
    # BLAS/OpenMP threads per fit. One is fastest for tables of this size: on a busy 2-core
    # worker more threads oversubscribe and make a fit up to 10x slower.
    threads: int = 1

    def __post_init__(self) -> None:
        unknown = [c for c in self.candidates if c not in ALGORITHMS]
        if unknown or not self.candidates:
            raise ValueError(f"candidates: unknown {unknown}; choose from {list(ALGORITHMS)}")
        if "logistic" not in self.candidates:
            # The linear model is the baseline and the explainer; it is always trained.
            raise ValueError("candidates: 'logistic' (the baseline) must be included")
        if self.folds < 2 or self.repeats < 1:
            raise ValueError("folds must be >= 2 and repeats >= 1")


@dataclass
class TrainedModel:
    """A fitted predictive model with everything needed to score, explain and audit it."""

    version: str
    crm: str
    algorithm: str
    mapping: Mapping
    label: str
    encoder: FeatureEncoder
    linear: LogisticRegression
    boosting: HistGradientBoostingClassifier | None
    # Platt calibration on the logit of the raw probability: p = sigmoid(a * logit(raw) + b).
    calibration: tuple[float, float]
    # Linear explainer in design space (coefficients, intercept) on the raw logit scale.
    explainer_coef: np.ndarray
    explainer_intercept: float
    metrics: dict[str, Any] = field(default_factory=dict)
    training_window: tuple[str | None, str | None] = (None, None)
    created_at: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """The source features the model uses (numbers, derived numbers, categories)."""
        return self.encoder.feature_names

    @property
    def cv_auc(self) -> float:
        return float(self.metrics["cv_auc_mean"])

    def raw_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Uncalibrated champion probability per row."""
        return _predict_raw(self.algorithm, self.encoder, self.linear, self.boosting, frame)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of winning per row, in [0, 1]."""
        a, b = self.calibration
        return _sigmoid(a * _logit(self.raw_proba(frame)) + b)

    def summary(self) -> dict[str, Any]:
        """Small JSON-able description (no estimators): for logs, CLI output and the table."""
        return {
            "version": self.version,
            "crm": self.crm,
            "algorithm": self.algorithm,
            "label": self.label,
            "mapping": self.mapping.name,
            "features": self.features,
            "training_window": list(self.training_window),
            "created_at": self.created_at,
            "metrics": self.metrics,
        }


# --- small numeric helpers ---------------------------------------------------------------------
def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def normalise_label_values(values: list[str]) -> set[str]:
    """Label values as compared: trimmed, case-folded, numbers in their shortest form."""
    out = set()
    for v in values:
        text = v.strip().casefold()
        try:
            text = format(float(text), "g")
        except ValueError:
            pass
        out.add(text)
    return out


def label_vector(frame: pd.DataFrame, mapping: Mapping) -> pd.Series:
    """1.0 for won, 0.0 for lost, NaN for rows the label does not decide (e.g. still open)."""
    if mapping.label is None:
        raise MappingError(f"mapping {mapping.name!r} has no label; pass --label COLUMN")
    spec = mapping.label
    if spec.column not in frame.columns:
        raise MappingError(f"table lacks the label column {spec.column!r}")
    text = frame[spec.column].astype("string").str.strip().str.casefold()
    # "1.0" and "1" are the same label.
    numeric = pd.to_numeric(text, errors="coerce")
    as_number = numeric.map(lambda v: None if pd.isna(v) else format(float(v), "g"))
    text = text.where(numeric.isna(), as_number.astype("string"))
    positive = normalise_label_values(spec.positive)
    negative = normalise_label_values(spec.negative)
    out = pd.Series(np.nan, index=frame.index, dtype="float64")
    out[text.isin(positive).fillna(False).to_numpy(bool)] = 1.0
    out[text.isin(negative).fillna(False).to_numpy(bool)] = 0.0
    return out


# --- learners ----------------------------------------------------------------------------------
def _fit_linear(x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> LogisticRegression:
    # newton-cholesky is exact and fast for a few hundred dense columns.
    return LogisticRegression(C=cfg.logistic_c, solver="newton-cholesky", max_iter=200).fit(x, y)


def _fit_boosting(
    x: np.ndarray, y: np.ndarray, categorical: np.ndarray, cfg: TrainConfig
) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        learning_rate=cfg.boosting_learning_rate,
        max_iter=cfg.boosting_max_iter,
        max_leaf_nodes=cfg.boosting_max_leaf_nodes,
        min_samples_leaf=cfg.boosting_min_samples_leaf,
        l2_regularization=cfg.boosting_l2,
        categorical_features=categorical if categorical.any() else None,
        early_stopping=False,  # fixed size: reproducible, and no inner split to tune to
        random_state=cfg.seed,
    )
    return model.fit(x, y)


def _predict_raw(
    algorithm: str,
    encoder: FeatureEncoder,
    linear: LogisticRegression,
    boosting: HistGradientBoostingClassifier | None,
    frame: pd.DataFrame,
) -> np.ndarray:
    p_lin = linear.predict_proba(encoder.design(frame))[:, 1] if algorithm != "boosting" else None
    if algorithm == "logistic":
        return p_lin  # type: ignore[return-value]
    if boosting is None:
        raise RuntimeError(f"model algorithm {algorithm!r} needs the boosting learner")
    p_gb = boosting.predict_proba(encoder.tabular(frame))[:, 1]
    if algorithm == "boosting":
        return p_gb
    return (p_lin + p_gb) / 2.0  # type: ignore[operator]


def _fit_all(
    frame: pd.DataFrame, y: np.ndarray, mapping: Mapping, cfg: TrainConfig, need_boosting: bool
) -> tuple[FeatureEncoder, LogisticRegression, HistGradientBoostingClassifier | None]:
    encoder = FeatureEncoder(mapping).fit(frame)
    linear = _fit_linear(encoder.design(frame), y, cfg)
    boosting = (
        _fit_boosting(encoder.tabular(frame), y, encoder.categorical_mask, cfg)
        if need_boosting
        else None
    )
    return encoder, linear, boosting


# --- cross-validation ----------------------------------------------------------------------------
@dataclass
class CrossValidation:
    """Per-candidate fold AUCs and the out-of-fold probabilities of the first repeat."""

    fold_auc: dict[str, list[float]]
    oof: dict[str, np.ndarray]
    seconds: float

    def mean(self, name: str) -> float:
        return float(np.mean(self.fold_auc[name]))

    def std(self, name: str) -> float:
        return float(np.std(self.fold_auc[name]))


def cross_validate(
    frame: pd.DataFrame, y: np.ndarray, mapping: Mapping, cfg: TrainConfig
) -> CrossValidation:
    """Stratified, shuffled k-fold (repeated `cfg.repeats` times with seeds seed, seed+1, ...)."""
    started = time.perf_counter()
    need_boosting = any(c in cfg.candidates for c in ("boosting", "blend"))
    fold_auc: dict[str, list[float]] = {c: [] for c in cfg.candidates}
    oof = {c: np.full(len(y), np.nan) for c in cfg.candidates}
    with progress.track("cross-validate", total=cfg.repeats * cfg.folds, unit="folds") as advance:
        for repeat in range(cfg.repeats):
            splitter = StratifiedKFold(cfg.folds, shuffle=True, random_state=cfg.seed + repeat)
            for train_idx, test_idx in splitter.split(np.zeros(len(y)), y):
                tr, te = frame.iloc[train_idx], frame.iloc[test_idx]
                encoder, linear, boosting = _fit_all(tr, y[train_idx], mapping, cfg, need_boosting)
                preds = {"logistic": linear.predict_proba(encoder.design(te))[:, 1]}
                if boosting is not None:
                    preds["boosting"] = boosting.predict_proba(encoder.tabular(te))[:, 1]
                    preds["blend"] = (preds["logistic"] + preds["boosting"]) / 2.0
                for name in cfg.candidates:
                    fold_auc[name].append(float(roc_auc_score(y[test_idx], preds[name])))
                    if repeat == 0:
                        oof[name][test_idx] = preds[name]
                advance(1)
    return CrossValidation(fold_auc, oof, time.perf_counter() - started)


def choose_champion(cv: CrossValidation) -> str:
    """Best mean CV AUC; the logistic baseline wins ties (simplest model first)."""
    best = "logistic"
    for name in ALGORITHMS:
        if name in cv.fold_auc and cv.mean(name) > cv.mean(best):
            best = name
    return best


def fit_platt(raw: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Sigmoid calibration of raw probabilities; identity if the fit is not increasing."""
    z = _logit(raw)[:, None]
    lr = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000).fit(z, y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not np.isfinite(a) or a <= 0:
        log.warning("calibration slope %.3f is not positive; keeping raw probabilities", a)
        return 1.0, 0.0
    return a, b


def _new_version(mapping: Mapping, created: datetime) -> str:
    return f"{mapping.name}-{created.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def train_from_frame(
    frame: pd.DataFrame,
    mapping: Mapping,
    label: str | None = None,
    *,
    config: TrainConfig | None = None,
    crm: str = "csv",
    training_window: tuple[str | None, str | None] = (None, None),
) -> TrainedModel:
    """Cross-validate the candidates on labelled rows, pick and calibrate the champion, refit.

    `label` overrides the mapping's label column. Rows whose label is neither a won nor a
    lost value are ignored. Raises InsufficientData when either class has fewer than
    `config.min_per_class` rows, MappingError when mapped columns are absent.
    """
    cfg = config or TrainConfig()
    if label is not None:
        mapping = mapping.with_label(label)
    mapping.check_columns(frame.columns, with_label=True, where="training table")
    labels = label_vector(frame, mapping)
    keep = labels.notna().to_numpy()
    rows = frame.loc[keep].reset_index(drop=True)
    y = labels[keep].to_numpy(dtype=int)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < max(cfg.min_per_class, cfg.folds):
        raise InsufficientData(
            f"need at least {max(cfg.min_per_class, cfg.folds)} won and lost rows each, "
            f"got {n_pos} won and {n_neg} lost"
        )
    log.info("training on %d labelled rows (%d won, %d lost, %d unlabelled ignored)",
             len(y), n_pos, n_neg, int((~keep).sum()))

    with threadpool_limits(limits=cfg.threads):
        return _train(rows, y, mapping, cfg, crm, training_window)


def _train(
    rows: pd.DataFrame,
    y: np.ndarray,
    mapping: Mapping,
    cfg: TrainConfig,
    crm: str,
    training_window: tuple[str | None, str | None],
) -> TrainedModel:
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    cv = cross_validate(rows, y, mapping, cfg)
    champion = choose_champion(cv)
    for name in cfg.candidates:
        log.info("candidate %s: CV AUC %.4f +- %.4f", name, cv.mean(name), cv.std(name))
    oof = cv.oof[champion]
    calibration = fit_platt(oof, y)
    calibrated_oof = _sigmoid(calibration[0] * _logit(oof) + calibration[1])

    started = time.perf_counter()
    encoder, linear, boosting = _fit_all(rows, y, mapping, cfg, champion != "logistic")
    fit_seconds = time.perf_counter() - started
    design = encoder.design(rows)
    if champion == "logistic":
        coef, intercept = linear.coef_[0].copy(), float(linear.intercept_[0])
        surrogate_r2 = 1.0
    else:
        # Linear surrogate of the champion's own logit: explains what the champion does.
        target = _logit(_predict_raw(champion, encoder, linear, boosting, rows))
        ridge = Ridge(alpha=1.0).fit(design, target)
        coef, intercept = ridge.coef_.copy(), float(ridge.intercept_)
        surrogate_r2 = float(ridge.score(design, target))

    created = datetime.now(timezone.utc)
    metrics: dict[str, Any] = {
        "cv_auc_mean": cv.mean(champion),
        "cv_auc_std": cv.std(champion),
        "cv_folds": cfg.folds,
        "cv_repeats": cfg.repeats,
        "candidates": {
            name: {"cv_auc_mean": cv.mean(name), "cv_auc_std": cv.std(name)}
            for name in cfg.candidates
        },
        "oof_average_precision": float(average_precision_score(y, oof)),
        "oof_brier_raw": float(brier_score_loss(y, oof)),
        "oof_brier_calibrated": float(brier_score_loss(y, calibrated_oof)),
        "oof_log_loss_calibrated": float(log_loss(y, np.clip(calibrated_oof, _EPS, 1 - _EPS))),
        "explainer_r2": surrogate_r2,
        "n_rows": int(len(y)),
        "n_won": n_pos,
        "n_lost": n_neg,
        "base_rate": float(y.mean()),
        "cv_seconds": round(cv.seconds, 3),
        "fit_seconds": round(fit_seconds, 3),
    }
    model = TrainedModel(
        version=_new_version(mapping, created),
        crm=crm,
        algorithm=champion,
        mapping=mapping,
        label=mapping.label.column if mapping.label else "",
        encoder=encoder,
        linear=linear,
        boosting=boosting,
        calibration=calibration,
        explainer_coef=coef,
        explainer_intercept=intercept,
        metrics=metrics,
        training_window=training_window,
        created_at=created.isoformat(timespec="seconds"),
        config=asdict(cfg),
    )
    log.info("trained model %s: champion %s, CV AUC %.4f", model.version, champion, model.cv_auc)
    return model
