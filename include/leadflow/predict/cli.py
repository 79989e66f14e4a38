"""`leadflow model train`, `leadflow model score`, `leadflow model show`, `leadflow model
publish-rules` and `leadflow backtest`.

`register(subparsers)` adds the commands to the top-level `leadflow` parser; each command sets
`func`, which returns the process exit code. Library errors (bad mapping, missing columns,
too little data, wrong model file, bad option values) are printed by `leadflow.console` as one
line and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from leadflow.console import EXAMPLE_FORMATTER, CommandFailed, UsageError
from leadflow.predict.labels import DEFAULT_MATURATION_DAYS
from leadflow.predict.mapping import WAREHOUSE_MAPPING

# Each command imports its modules when it runs: training, scoring, the store and the backtest
# load scikit-learn (~1.3 s, `python -X importtime`), and `leadflow` builds every command's parser,
# so importing them here would slow every leadflow command, `report` and `run` included.

log = logging.getLogger(__name__)

# Here a ValueError means an option or input the user gave (candidates, folds, label values).
_USAGE = {"usage_errors": (ValueError,)}


def _read_csv(path: str) -> pd.DataFrame:
    # Everything as text: the mapping decides what is a number, and ids keep leading zeros.
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])


def _train_config(args: argparse.Namespace) -> Any:
    from leadflow.predict.train import TrainConfig

    return TrainConfig(
        candidates=tuple(c.strip() for c in args.candidates.split(",") if c.strip()),
        folds=args.folds,
        repeats=args.repeats,
        seed=args.seed,
    )


def _engine(url: str | None) -> Any:
    from leadflow.warehouse.db import ensure_schema, get_engine

    engine = get_engine(url)
    ensure_schema(engine)
    return engine


# --- model train ---------------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from leadflow.predict.mapping import load_mapping
    from leadflow.predict.store import champion_challenger, save_model_file
    from leadflow.predict.train import train_from_frame
    from leadflow.predict.warehouse import train_from_warehouse

    cfg = _train_config(args)
    if args.csv is None:
        if not args.crm:
            raise UsageError("model train: give --csv F --mapping M, or --crm CRM to train from the warehouse")
        mapping = load_mapping(args.mapping) if args.mapping else None
        summary = train_from_warehouse(_engine(args.db), args.crm, mapping=mapping, config=cfg,
                                       maturation_days=args.maturation_days)
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    if not args.mapping or not args.out:
        raise UsageError("model train --csv needs --mapping M and --out MODEL")
    mapping = load_mapping(args.mapping)
    frame = _read_csv(args.csv)
    model = train_from_frame(frame, mapping, args.label, config=cfg, crm=args.crm or "csv")
    save_model_file(model, args.out)
    summary = model.summary()
    if args.register:
        summary["promoted"] = champion_challenger(_engine(args.db), model)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


# --- model score ----------------------------------------------------------------------------------
def _cmd_score(args: argparse.Namespace) -> int:
    from leadflow.predict.mapping import MappingError, load_mapping
    from leadflow.predict.score import score_table
    from leadflow.predict.store import load_model_file

    model = load_model_file(args.model)
    if args.mapping:
        mapping = load_mapping(args.mapping)
        if mapping.feature_names != model.mapping.feature_names:
            raise MappingError(
                f"mapping {mapping.name!r} does not describe the features model {model.version} "
                f"was trained on (mapping {model.mapping.name!r}); score with that mapping"
            )
        model.mapping = model.mapping.model_copy(update={"id_column": mapping.id_column})
    frame = _read_csv(args.csv)
    scores = score_table(model, frame, top_factors=args.top)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out, index=False)
    print(json.dumps({"model": model.version, "rows": len(scores), "out": str(out),
                      "mean_score": round(float(scores["score"].mean()), 2) if len(scores) else None}))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from leadflow.predict.store import load_model_file

    print(json.dumps(load_model_file(args.model).summary(), indent=2, sort_keys=True))
    return 0


# --- model publish-rules --------------------------------------------------------------------------
def _cmd_publish_rules(args: argparse.Namespace) -> int:
    from leadflow.predict.rules_gate import gate_rules

    result = gate_rules(_engine(args.db), args.crm, model_path=args.model, force=args.force,
                        maturation_days=args.maturation_days)
    print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    if result.decision in ("kept champion", "insufficient_data"):
        raise CommandFailed(f"rules {result.candidate} not published ({result.decision}); {result.champion} stays "
                            "the champion: publish anyway with --force")
    return 0


# --- backtest -------------------------------------------------------------------------------------
def _rules_model(path: str | None) -> Any:
    from leadflow.qualify import load_model

    return load_model(path)


def _thresholds(args: argparse.Namespace, rules: Any | None) -> Any:
    from leadflow.predict.backtest import Thresholds

    defaults = Thresholds()
    values = {}
    for name in ("lead", "mql", "sql"):
        flag = getattr(args, f"{name}_threshold")
        from_rules = getattr(rules.stages, name).min_score if rules is not None else None
        values[name] = flag if flag is not None else (from_rules if from_rules is not None
                                                      else getattr(defaults, name))
    return Thresholds(**values)


def _cmd_backtest(args: argparse.Namespace) -> int:
    from leadflow.predict import backtest as bt
    from leadflow.predict.mapping import load_mapping
    from leadflow.predict.store import load_champion, load_model_file
    from leadflow.predict.train import label_vector

    wanted = [s.strip() for s in args.scorers.split(",") if s.strip()]
    unknown = sorted(set(wanted) - {"rules", "predictive", "blend"})
    if unknown or not wanted:
        raise UsageError(f"--scorers: unknown {unknown}; choose from rules, predictive, blend")
    if args.csv:
        if not args.mapping:
            raise UsageError("backtest --csv needs --mapping M")
        mapping = load_mapping(args.mapping)
        if args.label:
            mapping = mapping.with_label(args.label)
        frame = _read_csv(args.csv)
        labels = label_vector(frame, mapping)
        model = load_model_file(args.model) if args.model else None
    elif args.crm:
        from leadflow.predict.warehouse import OUTCOME_COLUMN, check_no_leak, prepare_leads, read_training_frame

        engine = _engine(args.db)
        mapping = load_mapping(args.mapping or WAREHOUSE_MAPPING)
        check_no_leak(mapping)
        frame, counts = read_training_frame(engine, args.crm, now_ms=int(datetime.now(timezone.utc).timestamp() * 1000))
        log.info("backtest %s: %d answered handoffs (%d won, %d lost); %d open, %d without a version of their inputs",
                 args.crm, counts["won"] + counts["lost"], counts["won"], counts["lost"],
                 counts["open_matured"] + counts["immature"], counts["without_version"])
        frame = prepare_leads(frame, mapping)
        labels = frame[OUTCOME_COLUMN].map({"won": 1.0, "lost": 0.0}).astype("float64")
        model = load_model_file(args.model) if args.model else load_champion(engine, args.crm)
    else:
        raise UsageError("backtest: give --csv F --mapping M, or --crm CRM for the warehouse")

    needs_rules = bool({"rules", "blend"} & set(wanted))
    rules = _rules_model(args.rules_model) if needs_rules else None
    now = datetime.now(timezone.utc)
    scorers: dict[str, bt.Scorer] = {}
    predictive_name = "predictive" if model is None else f"predictive ({model.version})"
    predictive = (bt.cross_validated_scorer(mapping, config=_train_config(args)) if model is None
                  else bt.model_scorer(model))
    if rules is not None:
        rules_scorer = bt.rules_scorer(rules, now)
    if "rules" in wanted:
        scorers["rules"] = rules_scorer
    if "predictive" in wanted:
        scorers[predictive_name] = predictive
    if "blend" in wanted:
        weight = args.blend_weight if args.blend_weight is not None else rules.predictive.weight
        scorers[f"blend ({weight:.0%} predictive)"] = bt.blend_scorer(rules_scorer, predictive, weight)
    if model is not None and args.csv:
        log.warning("scoring with a fixed model: optimistic if it was trained on these rows")
    results = bt.run_backtest(frame, labels, scorers, _thresholds(args, rules))
    md, png = bt.write_report(results, args.out_dir, title=args.title)
    print(json.dumps({"report": str(md), "chart": str(png),
                      "results": [r.summary() for r in results]}, indent=2))
    return 0


# --- parser ----------------------------------------------------------------------------------------
def _add_train_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--candidates", default="logistic,boosting,blend",
                   help="learners to cross-validate (comma-separated; logistic is the baseline) "
                        "[%(default)s]")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds [%(default)s]")
    p.add_argument("--repeats", type=int, default=1,
                   help="cross-validation repeats with different shuffles [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="seed of the first shuffle [%(default)s]")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `model {train,score,show}` and `backtest` to the `leadflow` command line."""
    model = subparsers.add_parser(
        "model", help="train and apply the predictive lead score; publish rules models",
        description="Train the predictive score on won/lost history and score CSV exports.",
        epilog="example:\n  leadflow model train --csv leads.csv --mapping x_education --out model.joblib",
        formatter_class=EXAMPLE_FORMATTER)
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    train = model_sub.add_parser(
        "train", help="train a model from a labelled CSV or the warehouse",
        description="Cross-validate logistic regression, gradient boosting and their blend; "
                    "keep the best by ROC AUC, calibrate it and write the model file. With --crm "
                    "and no --csv, train from the warehouse's answered handoffs and publish the model "
                    "only if, on the latest handoffs, its AUC beats the champion's (or the rules') by "
                    "the model's predictive.publish_margin.",
        epilog="examples:\n  leadflow model train --csv tests/data/x-education/leads_dev.csv --mapping x_education "
               "--out model.joblib\n  leadflow model train --crm hubspot",
        formatter_class=EXAMPLE_FORMATTER)
    train.add_argument("--csv", help="labelled CSV export to train on")
    train.add_argument("--mapping", help="mapping YAML (or a shipped name such as x_education)")
    train.add_argument("--label", help="label column (overrides the mapping's)")
    train.add_argument("--out", help="model file to write (joblib; load only files you trust)")
    train.add_argument("--crm", help="CRM whose warehouse history to train on, or the scope "
                                     "recorded for a CSV model [csv]")
    train.add_argument("--register", action="store_true",
                       help="also record the CSV model in the warehouse (champion/challenger)")
    train.add_argument("--db", help="warehouse URL (default: $LEADFLOW_WAREHOUSE_URL)")
    train.add_argument("--maturation-days", type=int, default=DEFAULT_MATURATION_DAYS,
                       help="a handoff open longer than this counts as matured, not immature (both are left "
                            "out) [%(default)s]")
    _add_train_options(train)
    train.set_defaults(func=_cmd_train, **_USAGE)

    score = model_sub.add_parser(
        "score", help="score a CSV with a trained model",
        description="Write SCORES.csv with the mapping's id column, probability (0-1), score "
                    "(0-100) and the top reasons. Unknown categories and missing numbers are scored.",
        epilog="example:\n  leadflow model score --model model.joblib --csv leads.csv --out scores.csv",
        formatter_class=EXAMPLE_FORMATTER)
    score.add_argument("--model", required=True, help="model file from `leadflow model train`")
    score.add_argument("--csv", required=True, help="CSV export to score")
    score.add_argument("--mapping", help="mapping YAML; must match the model's features "
                                         "(default: the model's own mapping)")
    score.add_argument("--out", required=True, help="SCORES.csv to write")
    score.add_argument("--top", type=int, default=3, help="reasons per lead [%(default)s]")
    score.set_defaults(func=_cmd_score, **_USAGE)

    show = model_sub.add_parser("show", help="print a model file's version, features and metrics",
                                description="Print a model file's summary as JSON.",
                                epilog="example:\n  leadflow model show --model model.joblib",
                                formatter_class=EXAMPLE_FORMATTER)
    show.add_argument("--model", required=True, help="model file")
    show.set_defaults(func=_cmd_show, **_USAGE)

    publish = model_sub.add_parser(
        "publish-rules", help="publish the rules model (YAML) through the backtest gate, or with --force",
        description="Judge the model YAML against the CRM's published rules champion on the latest answered "
                    "handoffs (ROC AUC, sales' verdicts as labels, each lead's inputs at its handoff) and "
                    "publish it when it wins by the champion's predictive.publish_margin; qualify scores with "
                    "the published champion. --force publishes it without the gate. Exits 1 when it is not "
                    "published.",
        epilog="examples:\n  leadflow model publish-rules --crm hubspot --model include/config/model/default.yaml"
               "\n  leadflow model publish-rules --crm hubspot --force",
        formatter_class=EXAMPLE_FORMATTER)
    publish.add_argument("--crm", required=True, help="CRM whose rules champion to replace")
    publish.add_argument("--model", help="qualification model YAML (default: the shipped one)")
    publish.add_argument("--force", action="store_true", help="publish without the backtest gate")
    publish.add_argument("--db", help="warehouse URL (default: $LEADFLOW_WAREHOUSE_URL)")
    publish.add_argument("--maturation-days", type=int, default=DEFAULT_MATURATION_DAYS,
                         help="a handoff open longer than this counts as matured (open handoffs are left out) "
                              "[%(default)s]")
    publish.set_defaults(func=_cmd_publish_rules, **_USAGE)

    backtest = subparsers.add_parser(
        "backtest", help="evaluate rules, predictive or blended scores on labelled history",
        description="ROC AUC, average precision, conversion by score decile, precision/recall "
                    "at the MQL threshold and leads per stage; writes backtest.md and lift.png. "
                    "Without --model the predictive score is cross-validated (each lead scored "
                    "by a model that never saw it).",
        epilog="examples:\n  leadflow backtest --csv leads.csv --mapping x_education --scorers rules,predictive,blend"
               "\n  leadflow backtest --crm hubspot --out-dir backtest",
        formatter_class=EXAMPLE_FORMATTER)
    backtest.add_argument("--csv", help="labelled CSV")
    backtest.add_argument("--mapping", help="mapping YAML for --csv (warehouse default: warehouse_leads)")
    backtest.add_argument("--label", help="label column (overrides the mapping's)")
    backtest.add_argument("--crm", help="backtest the warehouse's closed leads of this CRM")
    backtest.add_argument("--db", help="warehouse URL (default: $LEADFLOW_WAREHOUSE_URL)")
    backtest.add_argument("--model", help="predictive model file (warehouse default: the champion)")
    backtest.add_argument("--rules-model", help="qualification model YAML (default: shipped)")
    backtest.add_argument("--scorers", default="predictive",
                          help="comma-separated: rules, predictive, blend [%(default)s]")
    backtest.add_argument("--blend-weight", type=float,
                          help="predictive weight of the blend (default: the rules model's)")
    for name in ("lead", "mql", "sql"):
        backtest.add_argument(f"--{name}-threshold", type=float,
                              help=f"minimum score for {name.upper() if name != 'lead' else name} "
                                   "(default: the rules model's, else 20/60/80)")
    backtest.add_argument("--out-dir", default="backtest", help="report folder [%(default)s]")
    backtest.add_argument("--title", default="Lead score backtest", help="report title")
    _add_train_options(backtest)
    backtest.set_defaults(func=_cmd_backtest, **_USAGE)
