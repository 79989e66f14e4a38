"""Serve the Salesforce part of the sandbox over TLS beside the HubSpot part.

`start_salesforce(...)` seeds the `sf_lead` table from the HubSpot store's world (same seed, size
and anchor: the same people), generates a self-signed certificate, and runs uvicorn with TLS in a
background thread. `running_salesforce_sandbox(...)` is the test helper: a seeded HubSpot store
plus the Salesforce server, both on free loopback ports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import uvicorn

from leadflow.connections import SALESFORCE_CONN_TYPE
from leadflow.sandbox.salesforce_api import SalesforceContext, SalesforceSettings, create_salesforce_app
from leadflow.sandbox.salesforce_store import SalesforceStore
from leadflow.sandbox.salesforce_tls import make_self_signed
from leadflow.sandbox.salesforce_users import UserDirectory
from leadflow.sandbox.serving import bind_socket, prepare_store

log = logging.getLogger(__name__)


@dataclass
class SalesforceHandle:
    """A running Salesforce sandbox."""

    base_url: str  # https://127.0.0.1:PORT (the instance URL)
    host: str
    port: int
    token: str  # session id accepted as `Authorization: Bearer`
    cert_path: Path  # PEM to pass as `verify=`
    settings: SalesforceSettings
    store: SalesforceStore
    context: SalesforceContext
    _server: uvicorn.Server
    _thread: threading.Thread
    _sock: Any

    @property
    def users(self) -> UserDirectory:
        """The org's users (integration, import, reps, admins) with their session ids."""
        return self.context.users

    @property
    def client_id(self) -> str:
        return self.settings.client_id

    @property
    def client_secret(self) -> str:
        return self.settings.client_secret

    def connection_json(self, **extra: Any) -> str:
        return connection_json(self.host, self.port, self.token, self.cert_path, **extra)

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._sock.close()
        self.store.close()


def connection_json(host: str, port: int, token: str, cert_path: Path, **extra: Any) -> str:
    """The Airflow connection (JSON form) for leadflow_salesforce."""
    return json.dumps({"conn_type": SALESFORCE_CONN_TYPE, "host": host, "port": port, "schema": "https", "password": token,
                       "extra": {"verify": str(cert_path), **extra}}, separators=(",", ":"))


def export_line(handle: SalesforceHandle) -> str:
    return f"export AIRFLOW_CONN_LEADFLOW_SALESFORCE='{handle.connection_json()}'"


def ensure_seeded(sf_store: SalesforceStore, hubspot_store: Any) -> int | None:
    """Seed the Leads from the HubSpot store's world unless already there; count when seeded."""
    if sf_store.has_world():
        return None
    meta = hubspot_store.get_meta("world")
    if meta is None:
        raise RuntimeError("the sandbox db holds no world yet: seed it first")
    return sf_store.seed_from_world(json.loads(meta))


def start_salesforce(db_path: Path, hubspot_store: Any, settings: SalesforceSettings, *, host: str = "127.0.0.1",
                     port: int = 0, cert_dir: Path | None = None, clock: Callable[[], float] = time.time,
                     sleep: Any = None) -> SalesforceHandle:
    store = SalesforceStore(db_path, clock=clock)
    try:
        ensure_seeded(store, hubspot_store)
        certs = make_self_signed(cert_dir or Path(tempfile.mkdtemp(prefix="leadflow-sf-tls-")))
        extra = {"sleep": sleep} if sleep is not None else {}
        app = create_salesforce_app(settings, store, clock=clock, **extra)
        sock = bind_socket(host, port)
    except BaseException:
        store.close()
        raise
    bound = sock.getsockname()[1]
    ctx: SalesforceContext = app.state.salesforce
    ctx.instance_url = f"https://{host}:{bound}"
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2, access_log=False,
                            ssl_certfile=str(certs.cert_path), ssl_keyfile=str(certs.key_path))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sandbox-salesforce", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            store.close()
            raise RuntimeError("the Salesforce sandbox server did not start")
        time.sleep(0.01)
    log.info("Salesforce sandbox listening on https://%s:%d (%d leads)", host, bound, store.count())
    return SalesforceHandle(base_url=ctx.instance_url, host=host, port=bound, token=settings.token,
                            cert_path=certs.cert_path, settings=settings, store=store, context=ctx,
                            _server=server, _thread=thread, _sock=sock)


@contextlib.contextmanager
def running_salesforce_sandbox(*, contacts: int = 500, seed: int = 1, db_path: Path | str | None = None,
                               shared_timestamp_every: int = 0, clock: Callable[[], float] = time.time,
                               sleep: Any = None, **settings: Any) -> Iterator[SalesforceHandle]:
    """A seeded world (the same one `running_sandbox` would build with these arguments) served as
    a Salesforce org over TLS. `settings` are `SalesforceSettings` fields (daily_limit=, faults=)."""
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="leadflow-sf-sandbox-")))
        db = Path(db_path) if db_path is not None else tmp / "crm.db"
        hubspot_store, _ = prepare_store(db, contacts=contacts, seed=seed,
                                         shared_timestamp_every=shared_timestamp_every, clock=clock)
        stack.callback(hubspot_store.close)
        handle = start_salesforce(db, hubspot_store, SalesforceSettings(**settings), cert_dir=tmp / "tls",
                                  clock=clock, sleep=sleep)
        try:
            yield handle
        finally:
            handle.stop()
