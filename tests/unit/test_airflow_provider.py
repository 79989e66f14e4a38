"""leadflow's provider registration: Airflow discovers the HubSpot and Salesforce connection types
through pyproject's entry point, with their form and hook, and they clash with no other provider."""

from __future__ import annotations

import json
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema

from leadflow.airflow_provider import get_provider_info

TYPES = {"leadflow_hubspot": "leadflow.airflow_hooks.HubSpotHook",
         "leadflow_salesforce": "leadflow.airflow_hooks.SalesforceHook"}


def test_provider_info_is_valid_for_airflows_runtime_schema() -> None:
    import airflow

    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_the_installed_package_declares_the_entry_point() -> None:
    found = [ep for ep in entry_points(group="apache_airflow_provider") if ep.dist and ep.dist.name == "leadflow"]
    assert [ep.value for ep in found] == ["leadflow.airflow_provider:get_provider_info"], \
        "reinstall leadflow (make setup) so that pyproject's entry point is registered"


def test_airflow_registers_both_connection_types_with_their_hooks_and_no_other_provider_claims_them() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hooks = manager.hooks
    for conn_type, hook_class in TYPES.items():
        info = hooks[conn_type]
        assert info is not None and info.package_name == "leadflow"
        assert f"{info.hook_class_name}" == hook_class
    others = {c["connection-type"] for name, p in manager.providers.items() if name != "leadflow"
              for c in p.data.get("connection-types", [])}
    assert not others & set(TYPES)
    assert manager.field_behaviours["leadflow_hubspot"]["relabeling"]["password"] == "Private app access token"
    assert {"client_id", "client_secret", "verify"} <= {
        w.field_name for w in manager.connection_form_widgets.values() if w.hook_class_name == TYPES["leadflow_salesforce"]}
