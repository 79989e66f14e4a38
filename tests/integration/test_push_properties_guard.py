"""leadflow writes only its own properties (the `leadflow` group), `lifecyclestage` and
`hs_lead_status`: checked on every request body that left the process and on every write the
sandbox applied. And a second run with no CRM change makes no write call at all."""

from __future__ import annotations

import json

import pytest
import requests

from leadflow.connections import Connection
from leadflow.crm.hubspot import HubSpotConnector
from leadflow.pipeline import RunContext, run_all
from leadflow.sandbox.server import running_sandbox

pytestmark = pytest.mark.slow

ALWAYS_ALLOWED = {"lifecyclestage", "hs_lead_status"}


def _bodies_of_writes(sent: list[tuple[str, str, bytes | None]]) -> list[dict]:
    """The `properties` objects of every contact write request (batch or single)."""
    out = []
    for method, url, body in sent:
        path = url.split("?", 1)[0]
        if "/crm/v3/objects/contacts" not in path or path.endswith(("/search", "/batch/read")):
            continue
        if method == "GET":
            continue
        data = json.loads(body or b"{}")
        out.extend(i.get("properties") or {} for i in data.get("inputs", []))
        if "properties" in data:
            out.append(data["properties"])
    return out


def test_given_full_pipeline_push_then_no_request_or_applied_write_touches_another_property(tmp_path, monkeypatch):
    sent: list[tuple[str, str, bytes | None]] = []
    real_send = requests.adapters.HTTPAdapter.send

    def spy(self, request, *args, **kwargs):
        sent.append((request.method, request.url, request.body))
        return real_send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", spy)
    url = f"sqlite:///{tmp_path / 'wh.db'}"
    with running_sandbox(contacts=600, seed=41, rate_limit="off", search_rate_limit="off") as sb:
        conn = Connection(conn_id="leadflow_hubspot", host="127.0.0.1", port=sb.port, schema="http",
                          password=sb.token, extra={"rate_limit_per_10s": 2_000, "search_rate_per_s": 50})
        first = run_all(RunContext(crm="hubspot", run_id="guard-1", warehouse_url=url, connection=conn))
        first_sent = len(sent)
        with HubSpotConnector.from_connection(conn) as connector:
            group = connector.mapping.property_group.name
        owned = {p.name for p in sb.store.properties("contacts").values() if p.group_name == group}
        writes_after_first = sb.store.writes(object_type="contacts", limit=10_000_000)

        sb.context.stats.reset()
        second = run_all(RunContext(crm="hubspot", run_id="guard-2", warehouse_url=url, connection=conn))
        stats = sb.context.stats.snapshot()
        writes_after_second = sb.store.writes(object_type="contacts", limit=10_000_000)

    allowed = owned | ALWAYS_ALLOWED
    assert owned and all(name.startswith("leadflow_") for name in owned)
    bodies = _bodies_of_writes(sent[:first_sent])
    assert len(bodies) >= first["pushed"] > 0
    sent_props = set().union(*bodies)
    assert sent_props <= allowed, sorted(sent_props - allowed)
    assert {"lifecyclestage"} <= sent_props  # the stage really travelled (the check is not vacuous)
    applied = {e.property for e in writes_after_first}
    assert applied and applied <= allowed, sorted(applied - allowed)

    # Second run, nothing changed in the CRM: zero write calls, zero applied writes.
    assert second["pulled"] > 0 and second["scored"] > 0
    write_calls = {k: v for k, v in stats["byEndpoint"].items()
                   if k.startswith(("PATCH", "PUT", "DELETE")) or k.endswith(("/batch/update", "/batch/upsert",
                                                                               "/batch/create", "/batch/archive"))}
    assert write_calls == {}
    assert second["write_calls"] == 0 and second["pushed"] == 0
    assert len(writes_after_second) == len(writes_after_first)
    assert _bodies_of_writes(sent[first_sent:]) == []
