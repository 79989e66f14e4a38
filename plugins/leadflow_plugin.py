"""Airflow plugin: the Leadflow page (funnel, scores, data quality, runs) in the Airflow UI.

Mounts the FastAPI app of `leadflow.ui` under `/leadflow` in the API server and adds a
"Leadflow" entry to the navigation that shows the page inside the Airflow UI. The app checks the
caller's Airflow token itself (Airflow does not protect plugin apps). Every Airflow process
imports this module: it does no I/O here (the warehouse is opened on the first request).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from leadflow.ui.app import create_app

URL_PREFIX = "/leadflow"

# A small funnel icon as an inline data URI (no external asset).
_ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' "
    "fill='none' stroke='%23555' stroke-width='2'><path d='M3 4h18l-7 8v6l-4 2v-8z'/></svg>"
)


class LeadflowPlugin(AirflowPlugin):
    name = "leadflow"
    fastapi_apps = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "Leadflow"},
    ]
    external_views = [
        {
            "name": "Leadflow",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "leadflow",
            "icon": _ICON,
        },
    ]
