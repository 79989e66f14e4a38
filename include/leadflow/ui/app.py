"""The Leadflow page: a FastAPI app that the Airflow plugin mounts under `/leadflow`.

Routes (all require an authenticated Airflow user, see `leadflow.ui.auth`):

- `GET /`            the page (server-rendered HTML, inline SVG charts); `?crm=` picks the CRM
- `GET /api/data`    the same data as JSON (`?crm=`)
- `GET /report`      a run's HTML report (`?crm=&run_id=`): the file the run wrote, or rendered
                     from the warehouse when this machine does not hold the file
- `GET /docs/{crm}/{run_folder}/{path}`  the run's Data Docs files, when present on this machine

`create_app()` does no I/O: the warehouse engine is created on the first request.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy import Engine, select

from leadflow.report import render_run_report
from leadflow.ui.auth import NotAuthenticated, require_user, unauthenticated_response
from leadflow.views import charts, queries
from leadflow.views.paths import find_data_docs, report_path, reports_dir, run_folder_name, safe_child
from leadflow.views.render import render
from leadflow.warehouse.db import get_engine
from leadflow.warehouse.tables import runs as runs_table

log = logging.getLogger(__name__)

RUNS_SHOWN = 10


def _user_name(user: Any) -> str:
    for attr in ("get_name", "get_id"):
        fn = getattr(user, attr, None)
        if callable(fn):
            try:
                return str(fn())
            except Exception:  # pragma: no cover - defensive
                continue
    return "?"


def create_app(engine_factory: Callable[[], Engine] | None = None) -> FastAPI:
    """The Leadflow FastAPI app. `engine_factory` defaults to `leadflow.warehouse.db.get_engine`."""
    app = FastAPI(title="Leadflow", docs_url=None, redoc_url=None, openapi_url=None)
    lock = threading.Lock()
    holder: dict[str, Engine] = {}

    def engine() -> Engine:
        with lock:
            if "engine" not in holder:
                holder["engine"] = (engine_factory or get_engine)()
            return holder["engine"]

    app.state.engine = engine

    @app.exception_handler(NotAuthenticated)
    async def _not_authenticated(request: Request, exc: NotAuthenticated):
        return unauthenticated_response(request, exc)

    def _base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def _pick_crm(crms: list[str], crm: str | None) -> str | None:
        if crm:
            if crm not in crms:
                raise HTTPException(404, f"no runs for CRM {crm!r}")
            return crm
        return crms[0] if crms else None

    def _links(request: Request, data: dict[str, Any]) -> dict[str, dict[str, str | None]]:
        base = _base(request)
        crm = data["crm"]
        out = {}
        for run in data["runs"]:
            docs = find_data_docs(crm, run["run_id"], run["summary"])
            out[run["run_id"]] = {
                "report": f"{base}/report?" + urlencode({"crm": crm, "run_id": run["run_id"]}),
                "docs": (f"{base}/docs/{quote(crm)}/{run_folder_name(run['run_id'])}/index.html"
                         if docs else None),
            }
        return out

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, crm: str | None = Query(None),
             runs: int = Query(RUNS_SHOWN, ge=1, le=50), overrides_page: int = Query(1, ge=1, le=1_000_000),
             overrides_field: str | None = Query(None, max_length=64), user: Any = Depends(require_user)):
        eng = engine()
        crms = queries.list_crms(eng)
        chosen = _pick_crm(crms, crm)
        data = queries.page_data(eng, chosen, runs, overrides_page, overrides_field) if chosen else None
        chart_markup = {}
        links: dict[str, Any] = {}
        if data:
            chart_markup = {
                "funnel": charts.funnel_chart(data["funnel"]),
                "histogram": charts.histogram_chart(data["histogram"]),
                "grades": charts.grade_chart(data["grades"]),
            }
            links = _links(request, data)
        body = render(
            "page.html.j2",
            base=_base(request),
            crms=crms,
            data=data,
            charts=chart_markup,
            links=links,
            count_keys=queries.RUN_COUNT_KEYS,
            user_name=_user_name(user),
            generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        log.info("leadflow page: crm %s, %d runs shown", chosen, len(data["runs"]) if data else 0)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    @app.get("/api/data")
    def api_data(crm: str | None = Query(None), runs: int = Query(RUNS_SHOWN, ge=1, le=50),
                 user: Any = Depends(require_user)):
        eng = engine()
        crms = queries.list_crms(eng)
        chosen = _pick_crm(crms, crm)
        data = queries.page_data(eng, chosen, runs) if chosen else None
        return JSONResponse({"crms": crms, "data": data})

    @app.get("/report", response_class=HTMLResponse)
    def report(crm: str = Query(...), run_id: str = Query(...), user: Any = Depends(require_user)):
        path = report_path(reports_dir(), crm, run_id)
        if path.is_file():
            return FileResponse(path, media_type="text/html")
        if not _run_exists(engine(), crm, run_id):
            raise HTTPException(404, "no such run")
        return HTMLResponse(render_run_report(engine(), crm, run_id))

    @app.get("/docs/{crm}/{run_folder}/{rest:path}")
    def docs(crm: str, run_folder: str, rest: str, user: Any = Depends(require_user)):
        run = _run_for_folder(engine(), crm, run_folder)
        index = find_data_docs(crm, run["run_id"], run["summary"]) if run else None
        if index is None:
            raise HTTPException(404, "no Data Docs for this run on this server")
        target = safe_child(index.parent, rest or "index.html")
        if target is None:
            raise HTTPException(404, "not found")
        return FileResponse(target)

    @app.get("/docs/{crm}/{run_folder}")
    def docs_root(request: Request, crm: str, run_folder: str, user: Any = Depends(require_user)):
        return RedirectResponse(f"{_base(request)}/docs/{crm}/{run_folder}/index.html", 307)

    return app


def _run_exists(engine: Engine, crm: str, run_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(
            select(runs_table.c.run_id).where(runs_table.c.crm == crm, runs_table.c.run_id == run_id)
        ).first() is not None


def _run_for_folder(engine: Engine, crm: str, folder: str) -> dict[str, Any] | None:
    """The run (among the CRM's last 500) whose file-system-safe name is `folder`."""
    for run in queries.recent_runs(engine, crm, 500):
        if run_folder_name(run["run_id"]) == folder:
            return run
    return None
