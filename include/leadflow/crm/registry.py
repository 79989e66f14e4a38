"""Find the connector for a CRM name: `get_connector("hubspot", connection)`.

Factories are referenced as "module:attribute" strings and imported on first use, so asking
for HubSpot never imports Salesforce's client library (and a broken optional connector does
not break the others).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from leadflow.connections import Connection
from leadflow.crm.base import CrmConnector

Factory = Callable[..., CrmConnector]

# crm name -> "module:callable taking (connection, **options)"
_FACTORIES: dict[str, str | Factory] = {
    "hubspot": "leadflow.crm.hubspot:HubSpotConnector.from_connection",
    "salesforce": "leadflow.crm.salesforce:SalesforceConnector.from_connection",
}


def register_connector(crm: str, factory: str | Factory) -> None:
    """Add or replace the factory for `crm` (plugins, tests)."""
    _FACTORIES[crm.lower()] = factory


def available_crms() -> list[str]:
    return sorted(_FACTORIES)


def _resolve(spec: str | Factory) -> Factory:
    if callable(spec):
        return spec
    module_name, _, attr_path = spec.partition(":")
    target: Any = importlib.import_module(module_name)
    for attr in attr_path.split("."):
        target = getattr(target, attr)
    return target


def get_connector(crm: str, connection: Connection, **options: Any) -> CrmConnector:
    """A ready connector for `crm` configured from `connection` (options go to the factory,
    e.g. `sleeper=` in tests)."""
    key = crm.lower().strip()
    if key not in _FACTORIES:
        raise ValueError(f"unknown CRM {crm!r}; available: {', '.join(available_crms())}")
    try:
        factory = _resolve(_FACTORIES[key])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"the {key} connector is not available ({exc})") from exc
    connector = factory(connection, **options)
    if not isinstance(connector, CrmConnector):
        raise TypeError(f"{key} factory returned {type(connector).__name__}, not a CrmConnector")
    return connector
