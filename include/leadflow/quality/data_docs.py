"""Data Docs for one run, written to `<folder>/<run_id>/`.

- `index.html`: a self-contained page (inline CSS, no external assets, readable offline) with
  every check of the run per stage and links to the GX pages;
- `gx/<stage>.html`: GX's own validation-result page for each stage validated through GX,
  rendered with GX's Data Docs renderers from a compact copy of the result (per-row lists
  dropped). These pages load GX's CSS/JS from public CDNs, so offline they are unstyled but
  complete.

GX's site builder is not used: from an ephemeral context it renders every validation the process
ever stored, while one folder per run wants exactly this run's results.
"""

from __future__ import annotations

import html
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from leadflow.quality.gx_runtime import compact_result
from leadflow.quality.results import CheckResult

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._+\-]")


def run_folder_name(run_id: str) -> str:
    """A file-system-safe folder name for a run id (Airflow ids contain ':' and '+')."""
    name = _SAFE_NAME.sub("_", run_id).strip("._") or "run"
    return name[:200]


def render_data_docs(
    folder: Path | str,
    run_id: str,
    crm: str,
    stages: dict[str, tuple[Iterable[CheckResult], Any]],
    *,
    now: datetime,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the run's Data Docs and return the path of its `index.html`.

    `stages` maps a stage name ("rows", "batch", "scores") to (its CheckResults, the GX result
    object or None), e.g. `{"rows": (rv.results, rv.gx_result), "batch": (run.results,
    run.gx_result)}`. `extra` adds key/value lines (counts) to the page header.
    """
    target = Path(folder) / run_folder_name(run_id)
    (target / "gx").mkdir(parents=True, exist_ok=True)
    gx_pages: dict[str, str] = {}
    for stage, (_, gx_result) in stages.items():
        if gx_result is None:
            continue
        page = f"gx/{run_folder_name(stage)}.html"
        try:
            (target / page).write_text(_render_gx_page(gx_result), encoding="utf-8")
            gx_pages[stage] = page
        except Exception as exc:  # a renderer bug must not fail the run; the index remains
            log.warning("GX Data Docs page for stage %s not rendered: %s", stage, exc)
    index = target / "index.html"
    index.write_text(
        _index_html(run_id, crm, {k: list(v[0]) for k, v in stages.items()}, gx_pages, now,
                    extra or {}),
        encoding="utf-8",
    )
    log.info("data docs for run %s written to %s", run_id, index)
    return index


def _render_gx_page(gx_result: Any) -> str:
    # Great Expectations takes seconds to import (`quality.gx_runtime`); only a run with GX
    # results renders its pages.
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    document = ValidationResultsPageRenderer().render(compact_result(gx_result))
    return DefaultJinjaPageView().render(document)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}.ok{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:600}
.meta td:first-child{width:14rem;font-weight:600}
"""


def _index_html(run_id: str, crm: str, stages: dict[str, list[CheckResult]],
                gx_pages: dict[str, str], now: datetime, extra: dict[str, Any]) -> str:
    e = html.escape
    failed = sum(1 for results in stages.values() for r in results
                 if not r.success and r.stage != "rows")
    meta = {"run": run_id, "crm": crm,
            "rendered": now.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            "failed gate checks": failed, **extra}
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>leadflow data quality - {e(run_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Data quality - {e(crm)} - {e(run_id)}</h1><table class='meta'>",
        *(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in meta.items()),
        "</table>",
    ]
    for stage, results in stages.items():
        link = (f" (<a href='{e(gx_pages[stage])}'>Great Expectations page</a>)"
                if stage in gx_pages else "")
        note = (" - row expectations quarantine failing rows; they do not stop the run"
                if stage == "rows" else "")
        parts.append(f"<h2>{e(stage)}{link}{e(note)}</h2>")
        parts.append("<table><tr><th>check</th><th>result</th><th>observed</th>"
                     "<th>threshold</th></tr>")
        for r in results:
            css, word = ("ok", "passed") if r.success else ("fail", "failed")
            parts.append(f"<tr><td>{e(r.name)}</td><td class='{css}'>{word}</td>"
                         f"<td>{e(r.observed)}</td><td>{e(r.threshold or '')}</td></tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)
