"""Run the sandbox: `serve()` for the CLI (foreground, signals, export lines) and
`running_sandbox()` for tests (uvicorn in a background thread on a free loopback port)."""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

import uvicorn

from leadflow.connections import HUBSPOT_CONN_TYPE
from leadflow.sandbox.actors import HubSpotActors, SalesforceActors, run_actors
from leadflow.sandbox.app import SandboxContext, create_app
from leadflow.sandbox.enrichment_api import parse_enrichment_faults
from leadflow.sandbox.salesforce_api import SalesforceSettings
from leadflow.sandbox.salesforce_server import export_line, start_salesforce
from leadflow.sandbox.serving import bind_socket, prepare_store
from leadflow.sandbox.settings import SandboxSettings
from leadflow.sandbox.store import SandboxStore

log = logging.getLogger(__name__)


def resolve_secret(store: SandboxStore, key: str, given: str | None, prefix: str) -> str:
    """The given token, else the one this db file used last time, else a new random one (kept in
    the file so a restarted sandbox keeps working with the same Airflow connection)."""
    if given:
        return given
    stored = store.get_meta(key)
    if stored:
        return stored
    value = prefix + secrets.token_hex(16)
    store.set_meta(key, value)
    return value


def connection_lines(host: str, port: int, token: str, enrichment_key: str) -> list[str]:
    """Shell lines defining the Airflow connections to this sandbox (eval-able)."""
    def conn(conn_type: str, password: str) -> str:
        return json.dumps({"conn_type": conn_type, "host": host, "port": port, "schema": "http", "password": password},
                          separators=(",", ":"))

    # The HubSpot one has the hook's type, so the Airflow UI's Test button checks it.
    return [f"export AIRFLOW_CONN_LEADFLOW_HUBSPOT='{conn(HUBSPOT_CONN_TYPE, token)}'",
            f"export AIRFLOW_CONN_LEADFLOW_ENRICHMENT='{conn('http', enrichment_key)}'"]


def _server(app: Any) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2,
                            access_log=False)
    return uvicorn.Server(config)


def serve(settings: SandboxSettings, *, host: str = "127.0.0.1", port: int = 0, store: SandboxStore,
          ready_file: Path | None = None, out: TextIO = sys.stdout, salesforce: Any = None,
          salesforce_port: int | None = None, enrichment_faults: str | None = None,
          actors: Any = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn installs the handlers and shuts down gracefully).

    Once listening, prints the `export AIRFLOW_CONN_...` lines (and writes them to `ready_file`,
    atomically, if given). With `salesforce` (`SalesforceSettings`) and a `salesforce_port`
    (0 = a free one), the Salesforce part is served over TLS beside it (certificate next to the
    db file) and its `AIRFLOW_CONN_LEADFLOW_SALESFORCE` line is printed too.
    `enrichment_faults` ("5xx=0.05,timeout=0.02") are injected into the enrichment API.
    `actors` (`sandbox.actors.ActorSchedule`): people and workflows act on the records in rounds
    while it serves, with the first user and workflow principal's tokens (and the first
    Salesforce rep's).
    """
    enrichment_spec = parse_enrichment_faults(enrichment_faults)
    app = create_app(settings, store=store)
    app.state.sandbox.enrichment.configure_faults(enrichment_spec, settings.fault_seed)
    sf_handle = None
    if salesforce is not None and salesforce_port is not None and salesforce_port >= 0:
        sf_handle = start_salesforce(settings.db_path, store, salesforce, host=host, port=salesforce_port,
                                     cert_dir=Path(str(settings.db_path) + ".tls"))
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    server = _server(app)
    lines = connection_lines(host, bound_port, settings.token, settings.enrichment_key)
    if sf_handle is not None:
        lines.append(export_line(sf_handle))

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.02)
        if not server.started:
            return
        out.write("\n".join(lines) + "\n")
        out.flush()
        if ready_file is not None:
            tmp = Path(str(ready_file) + ".tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.replace(ready_file)
        log.info("sandbox listening on http://%s:%d (%d contacts)", host, bound_port, store.count("contacts"))

    threading.Thread(target=announce, name="sandbox-announce", daemon=True).start()
    stop_actors = threading.Event()
    if actors is not None:
        crm_actors = _actors(settings, f"http://{host}:{bound_port}", sf_handle)
        threading.Thread(target=_run_actors_when_up, args=(server, actors, crm_actors, stop_actors),
                         name="sandbox-actors", daemon=True).start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then re-raises the signal to the handler
    # that was installed before it; ours just notes it, so a requested stop exits with status 0.
    received: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run(sockets=[sock])
    finally:
        stop_actors.set()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if sf_handle is not None:
            sf_handle.stop()
        store.close()
    if received:
        log.info("sandbox stopped on %s", signal.Signals(received[0]).name)


def _actors(settings: SandboxSettings, base_url: str, sf_handle: Any) -> list[Any]:
    users = [p for p in settings.principals if p.kind == "user"]
    workflows = [p for p in settings.principals if p.kind == "workflow"]
    if not users or not workflows:
        raise ValueError("actors need a user and a workflow token: serve with --users 1 --workflows 1 or more")
    out: list[Any] = [HubSpotActors(base_url, users[0].token, workflows[0].token)]
    if sf_handle is not None and sf_handle.users.reps:
        rep = sf_handle.users.reps[0]
        out.append(SalesforceActors(sf_handle.base_url, sf_handle.cert_path, sf_handle.token, rep.id, rep.token))
    return out


def _run_actors_when_up(server: Any, schedule: Any, crm_actors: list[Any], stop: threading.Event) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        log.info("sandbox actors: %d CRM(s), %.0f%% of the records every %.0f s", len(crm_actors),
                 schedule.share * 100, schedule.every)
        run_actors(schedule, crm_actors, stop)


@dataclass
class SandboxHandle:
    """A running sandbox (see `running_sandbox`)."""

    base_url: str
    host: str
    port: int
    token: str
    enrichment_key: str
    db_path: Path
    store: SandboxStore
    context: SandboxContext
    _server: uvicorn.Server
    _thread: threading.Thread
    salesforce: Any = None  # SalesforceHandle when started with salesforce=True

    @property
    def sf_base_url(self) -> str:
        return self._sf().base_url

    @property
    def sf_token(self) -> str:
        return self._sf().token

    @property
    def sf_cert_path(self) -> Path:
        return self._sf().cert_path

    @property
    def sf_port(self) -> int:
        return self._sf().port

    def _sf(self) -> Any:
        if self.salesforce is None:
            raise RuntimeError("this sandbox runs without the Salesforce part (pass salesforce=True)")
        return self.salesforce

    def connection_lines(self) -> list[str]:
        lines = connection_lines(self.host, self.port, self.token, self.enrichment_key)
        if self.salesforce is not None:
            lines.append(export_line(self.salesforce))
        return lines

    def stop(self) -> None:
        if self.salesforce is not None:
            self.salesforce.stop()
            self.salesforce = None
        if self._thread.is_alive():
            self._server.should_exit = True
            self._thread.join(timeout=10)


@contextlib.contextmanager
def running_sandbox(*, contacts: int = 500, seed: int = 1, db_path: Path | str | None = None,
                    shared_timestamp_every: int = 0, clock: Callable[[], float] = time.time,
                    sleep: Any = None, salesforce: bool | dict[str, Any] = False,
                    enrichment_faults: str | None = None, **settings: Any) -> Iterator[SandboxHandle]:
    """Start a seeded sandbox on a free loopback port in a background thread; stop it on exit.

    `settings` are `SandboxSettings` fields (rate_limit="off", faults="5xx=1", token=...);
    `enrichment_faults` ("5xx=0.05,timeout=0.02") are injected into the enrichment API, drawn
    with `fault_seed`, a timeout holding the answer `timeout_seconds`. Without
    `db_path` the world lives in a temporary directory removed afterwards. `salesforce=True` (or a
    dict of `SalesforceSettings` fields) also serves the same world as a Salesforce org over TLS:
    `.sf_base_url`, `.sf_token`, `.sf_cert_path` on the handle.
    """
    enrichment_spec = parse_enrichment_faults(enrichment_faults)  # a bad spec fails before anything opens
    with contextlib.ExitStack() as stack:
        if db_path is None:
            db_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="leadflow-sandbox-"))) / "crm.db"
        db_path = Path(db_path)
        store, _ = prepare_store(db_path, contacts=contacts, seed=seed, shared_timestamp_every=shared_timestamp_every,
                                 clock=clock)
        settings.setdefault("token", resolve_secret(store, "token", None, "pat-sandbox-"))
        settings.setdefault("enrichment_key", resolve_secret(store, "enrichment_key", None, "ek-sandbox-"))
        config = SandboxSettings(db_path=db_path, **settings)
        extra = {"sleep": sleep} if sleep is not None else {}
        app = create_app(config, store=store, clock=clock, **extra)
        app.state.sandbox.enrichment.configure_faults(enrichment_spec, config.fault_seed)
        sock = bind_socket("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = _server(app)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="sandbox-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + 15
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the sandbox server did not start")
            time.sleep(0.01)
        handle = SandboxHandle(base_url=f"http://127.0.0.1:{port}", host="127.0.0.1", port=port, token=config.token,
                               enrichment_key=config.enrichment_key, db_path=db_path, store=store,
                               context=app.state.sandbox, _server=server, _thread=thread)
        if salesforce:
            sf_options = {"faults": config.faults, "fault_seed": config.fault_seed,
                          **(salesforce if isinstance(salesforce, dict) else {})}
            try:
                handle.salesforce = start_salesforce(db_path, store, SalesforceSettings(**sf_options),
                                                     cert_dir=Path(str(db_path) + ".tls"), clock=clock, sleep=sleep)
            except BaseException:
                handle.stop()
                sock.close()
                store.close()
                raise
        try:
            yield handle
        finally:
            handle.stop()
            sock.close()
            store.close()
