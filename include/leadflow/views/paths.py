"""Where run reports and Data Docs live on disk, and how the page finds a run's files.

- run reports: `<reports folder>/<crm>/<run folder>.html`, reports folder `LEADFLOW_REPORTS_DIR`
  or `<LEADFLOW_VAR_DIR>/reports`;
- Data Docs: `<docs folder>/<run folder>/index.html` (`leadflow.quality.data_docs`), docs folder
  `LEADFLOW_DATA_DOCS_DIR` or `<LEADFLOW_VAR_DIR>/data_docs`; a per-CRM sub-folder
  `<docs folder>/<crm>/<run folder>/` is found too, and a run summary key `data_docs` (the path of
  the run's index.html) wins over both.

`<run folder>` is `run_folder_name(run_id)` (file-system safe). Nothing here creates folders.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from leadflow.env import leadflow_env

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+\-]")



def run_folder_name(run_id: str) -> str:
    """Same rule as `leadflow.quality.data_docs.run_folder_name` (kept import-light here)."""
    name = _SAFE_NAME.sub("_", run_id).strip("._") or "run"
    return name[:200]


def reports_dir() -> Path:
    return leadflow_env().reports_path


def data_docs_dir() -> Path:
    return leadflow_env().data_docs_path


def report_path(folder: Path | str, crm: str, run_id: str) -> Path:
    return Path(folder) / run_folder_name(crm) / f"{run_folder_name(run_id)}.html"


def find_data_docs(crm: str, run_id: str, summary: dict[str, Any] | None = None,
                   folder: Path | None = None) -> Path | None:
    """The run's Data Docs index.html if it exists on this machine."""
    candidates: list[Path] = []
    recorded = (summary or {}).get("data_docs")
    if isinstance(recorded, str) and recorded:
        path = Path(recorded)
        candidates.append(path if path.suffix == ".html" else path / "index.html")
    base = folder or data_docs_dir()
    name = run_folder_name(run_id)
    candidates += [base / name / "index.html", base / run_folder_name(crm) / name / "index.html"]
    for path in candidates:
        if path.is_file():
            return path
    return None


def safe_child(root: Path, relative: str) -> Path | None:
    """`root/relative` if it stays inside `root` and is a file; None otherwise (no traversal)."""
    try:
        root_resolved = root.resolve()
        target = (root_resolved / relative).resolve()
    except (OSError, RuntimeError):
        return None
    if target != root_resolved and root_resolved not in target.parents:
        return None
    return target if target.is_file() else None
