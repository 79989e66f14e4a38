"""Predictive lead score: learned from won/lost history, calibrated, explained, backtested.

Modules:
- `mapping`   CSV / frame mapping files (which columns are ids, numbers, categories, missing);
- `features`  cleaning and the feature encoders fitted on training data (pure, no I/O);
- `train`     candidate learners, cross-validation, champion choice, calibration;
- `score`     probabilities, 0-100 scores and per-lead reasons;
- `store`     model files and the warehouse `models` table (champion / challenger);
- `backtest`  evaluation of any scorer (rules, predictive, blend) on labelled history;
- `warehouse` labels and training from the warehouse's canonical `leads` table;
- `rules`     published rules models: which one a run scores with (bootstrap, champion);
- `rules_gate` the backtest gate of an edited rules model against the published one;
- `cli`       `leadflow model train`, `leadflow model score`, `leadflow model publish-rules`,
  `leadflow backtest`.
"""
