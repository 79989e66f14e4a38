"""leadflow as an Airflow provider: the `apache_airflow_provider` entry point (pyproject.toml)
returns this, so Airflow lists the `leadflow_hubspot` and `leadflow_salesforce` connection types
with their form fields and a working "Test" button (`leadflow.airflow_hooks`).

Kept free of imports: Airflow reads it in every component when it discovers providers. The form
is declarative (`conn-fields`, `ui-field-behaviour`), as Airflow 3.2+ wants it. Extra fields
are stored in the connection's extra under their own names, which are leadflow's setting names.
"""

from __future__ import annotations

from typing import Any

_OPTIONAL_STRING = {"type": ["string", "null"]}


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "leadflow",
        "name": "leadflow",
        "description": "leadflow's CRM connections (HubSpot, Salesforce) with a connection test.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": "leadflow_hubspot",
                "hook-class-name": "leadflow.airflow_hooks.HubSpotHook",
                "hook-name": "HubSpot (leadflow)",
                "ui-field-behaviour": {
                    "hidden-fields": ["login"],
                    "relabeling": {"password": "Private app access token", "schema": "Scheme"},
                    "placeholders": {
                        "host": "api.hubapi.com",
                        "schema": "https (http only for the local sandbox)",
                        "port": "443 (leave empty)",
                        "extra": '{"rate_limit_per_10s": 100, "daily_reserve": 0}',
                    },
                },
            },
            {
                "connection-type": "leadflow_salesforce",
                "hook-class-name": "leadflow.airflow_hooks.SalesforceHook",
                "hook-name": "Salesforce (leadflow)",
                "conn-fields": {
                    "client_id": {
                        "label": "OAuth client id",
                        "description": "Consumer key of the connected app; empty when the password is a session id.",
                        "schema": _OPTIONAL_STRING,
                    },
                    "client_secret": {
                        "label": "OAuth client secret",
                        "description": "Consumer secret of the connected app.",
                        "schema": {**_OPTIONAL_STRING, "format": "password"},
                    },
                    "verify": {
                        "label": "CA bundle",
                        "description": "Path of a CA file to trust (the sandbox's self-signed certificate); "
                                       "empty for the system's CAs.",
                        "schema": _OPTIONAL_STRING,
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {"login": "Username (password grant only)",
                                   "password": "Session id, or password + security token (password grant)",
                                   "schema": "Scheme"},
                    "placeholders": {
                        "host": "mydomain.my.salesforce.com",
                        "schema": "https",
                        "extra": '{"api_version": "59.0", "daily_reserve": 500}',
                    },
                },
            },
        ],
    }
