"""Where the shared real-data sets live (read-only; never downloaded at run time)."""

from __future__ import annotations

import os
from pathlib import Path

DATASETS_ENV = "LEADFLOW_DATASETS"


def datasets_root() -> Path:
    """`$LEADFLOW_DATASETS`, else `<repo root>/../shared/datasets` (CI clones shared/ beside)."""
    env = os.environ.get(DATASETS_ENV)
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[3]
    return repo_root.parent / "shared" / "datasets"


def x_education_dev() -> Path:
    """The X Education development split; FileNotFoundError says where it was looked for."""
    path = datasets_root() / "x-education" / "leads_dev.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"X Education data set not found at {path}; set ${DATASETS_ENV} to the folder "
            "holding x-education/leads_dev.csv"
        )
    return path
