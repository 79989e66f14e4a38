"""The Leadflow page in the Airflow UI (mounted by plugins/leadflow_plugin.py).

- `create_app()` (leadflow.ui.app): the FastAPI app; requires an authenticated Airflow user;
- `leadflow.ui.auth`: who is calling, through Airflow's auth manager.

What it shows comes from `leadflow.views`, which the run report (`leadflow.report`) shares.

Importing this package does no I/O and does not import Airflow.
"""

from __future__ import annotations

from leadflow.ui.app import create_app

__all__ = ["create_app"]
