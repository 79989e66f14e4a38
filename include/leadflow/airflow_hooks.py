"""Airflow hooks for the HubSpot and Salesforce connections (connection types `leadflow_hubspot`
and `leadflow_salesforce`, registered by `leadflow.airflow_provider`).

Like the hooks of Airflow's http and salesforce providers they only adapt an Airflow connection
into leadflow's client (`get_conn()` returns the CRM connector); what they add is
`test_connection()`, which the UI's connection "Test" button calls: one cheap authenticated
call that says whether the token works and, if not, what to fix. Connections of conn_type
`http` keep working for the pipeline (it does not look at the type); only the Test button
needs the leadflow types.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import requests
from airflow.sdk import BaseHook

from leadflow.connections import HUBSPOT_CONN_TYPE, SALESFORCE_CONN_TYPE, Connection, ConnectionConfigError
from leadflow.crm.base import CrmAuthError, CrmConnector, CrmError, CrmUnavailableError

log = logging.getLogger(__name__)

# What leadflow calls: contacts (pull, push), their companies (enrichment), and the leadflow_*
# contact properties it creates on first push.
HUBSPOT_REQUIRED_SCOPES = ("crm.objects.contacts.read", "crm.objects.contacts.write",
                           "crm.objects.companies.read", "crm.schemas.contacts.write")
# A Test button answers within seconds: no retries with backoff, short timeouts.
_FAIL_FAST = {"max_retries": 0, "connect_timeout_s": 5.0, "read_timeout_s": 20.0}


class _LeadflowCrmHook(BaseHook):
    """An Airflow connection as leadflow's `Connection` and connector."""

    crm = ""

    def __init__(self, conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id or self.default_conn_name

    def leadflow_connection(self) -> Connection:
        return Connection.from_airflow(self.get_connection(self.conn_id))

    def get_conn(self) -> CrmConnector:
        """The CRM connector configured from the connection (close it when done)."""
        from leadflow.crm.registry import get_connector

        return get_connector(self.crm, self.leadflow_connection())

    def _fail_fast(self) -> Connection:
        conn = self.leadflow_connection()
        return dataclasses.replace(conn, extra={**conn.extra, **_FAIL_FAST})

    def _failure(self, crm_name: str, exc: Exception, conn: Connection | None, verify: Any = None) -> str:
        """What went wrong, and for a network failure why: the client's error only says the
        connection failed, so one plain request finds out whether TLS or the address is at fault."""
        message = f"{crm_name} connection {self.conn_id!r} failed: {exc}"
        if not isinstance(exc, CrmUnavailableError) or conn is None:
            return message
        from leadflow.crm.salesforce_session import make_http_session

        try:
            with make_http_session(verify) as http:
                http.get(conn.base_url, timeout=_FAIL_FAST["connect_timeout_s"])
        except requests.exceptions.SSLError:
            return (f"{message}. The server's TLS certificate is not trusted: set the connection's extra "
                    "'verify' to its CA file (the sandbox writes one next to its database), or check the host")
        except requests.ConnectionError:
            return f"{message}. Nothing answers at {conn.base_url}: check the host, port and scheme"
        except requests.RequestException:
            pass
        return message


class HubSpotHook(_LeadflowCrmHook):
    """HubSpot private app: host `api.hubapi.com` (or the sandbox), the access token as password,
    leadflow's tuning (rate limits, daily reserve, ...) in extra."""

    conn_name_attr = "hubspot_conn_id"
    default_conn_name = "leadflow_hubspot"
    conn_type = HUBSPOT_CONN_TYPE
    hook_name = "HubSpot (leadflow)"
    crm = "hubspot"

    def __init__(self, hubspot_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(hubspot_conn_id, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        """Ask HubSpot's token introspection which portal and scopes the token has."""
        from leadflow.crm.hubspot_session import HubSpotSession

        conn = None
        try:
            conn = self._fail_fast()
            if not conn.token:
                return False, "no access token: put the private app's access token in the Password field"
            session = HubSpotSession.from_connection(conn)
            try:
                info = session.token_info()
            finally:
                session.close()
        except CrmAuthError:
            return False, ("HubSpot rejected the access token (401): paste the private app's current token "
                           "(HubSpot: Settings > Integrations > Private apps > Auth) into the Password field")
        except (CrmError, ConnectionConfigError) as exc:
            return False, self._failure("HubSpot", exc, conn)
        scopes = sorted(str(s) for s in (info or {}).get("scopes") or [])
        missing = [s for s in HUBSPOT_REQUIRED_SCOPES if s not in scopes]
        hub = (info or {}).get("hubId")
        log.info("HubSpot connection %s: token OK for portal %s, %d scopes, %d missing", self.conn_id, hub,
                 len(scopes), len(missing))
        if missing:
            return False, (f"token OK (portal {hub}) but it lacks the scope(s) {', '.join(missing)}: add them "
                           "to the private app's scopes and paste the new token")
        return True, f"token OK, scopes: {', '.join(scopes)} (portal {hub})"


class SalesforceHook(_LeadflowCrmHook):
    """Salesforce org: instance host, a session id as password or an OAuth client in extra
    (`client_id`, `client_secret`; login and password for the password grant), `verify` a CA file."""

    conn_name_attr = "salesforce_conn_id"
    default_conn_name = "leadflow_salesforce"
    conn_type = SALESFORCE_CONN_TYPE
    hook_name = "Salesforce (leadflow)"
    crm = "salesforce"

    def __init__(self, salesforce_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(salesforce_conn_id, **kwargs)

    def test_connection(self) -> tuple[bool, str]:
        """Get a session (the OAuth flow when an OAuth client is configured) and read the org's
        API limits with it: the cheapest authenticated call."""
        from leadflow.crm.salesforce import SalesforceConnector
        from leadflow.crm.salesforce_settings import SalesforceSettings

        conn = None
        try:
            conn = self._fail_fast()
            settings = SalesforceSettings.from_connection(conn)
            how = ("OAuth password grant" if conn.login else "OAuth client credentials") if settings.client_id \
                else "session id"
            with SalesforceConnector.from_connection(conn) as connector:
                limits = connector.session.request_json("GET", f"{connector.api_path}/limits")
        except CrmAuthError as exc:
            return False, f"Salesforce refused the credentials of connection {self.conn_id!r}: {exc}"
        except (CrmError, ConnectionConfigError) as exc:
            return False, self._failure("Salesforce", exc, conn, conn.extra.get("verify") if conn else None)
        daily = (limits or {}).get("DailyApiRequests") or {}
        log.info("Salesforce connection %s: token OK (%s), daily API requests left %s of %s", self.conn_id, how,
                 daily.get("Remaining"), daily.get("Max"))
        return True, (f"token OK ({how}), API v{settings.api_version}, daily API requests left: "
                      f"{daily.get('Remaining', '?')} of {daily.get('Max', '?')}")
