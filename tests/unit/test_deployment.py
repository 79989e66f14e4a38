"""docker-compose.yaml and the Dockerfile agree with the project.

No Docker engine or compose plugin runs here, so the compose file is validated against the
Compose Specification schema (`check-jsonschema --builtin-schema vendor.compose-spec`, offline),
and each service's command, mounts and environment are checked against the checkout: paths
exist, the DAG folder and the requirements are the project's, connection ids match the DAGs.
"""

from __future__ import annotations

import json
import re
import runpy
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

AIRFLOW_SERVICES = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker-1": "celery worker",
    "airflow-worker-2": "celery worker",
}
WORKERS = ("airflow-worker-1", "airflow-worker-2")
CONN_PREFIX = "AIRFLOW_CONN_"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())  # resolves the x-airflow-common anchors and merges


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def _command(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _volumes(service: dict) -> list[tuple[str, str]]:
    """(source, target) of each mount, short or long syntax."""
    out = []
    for vol in service.get("volumes") or []:
        if isinstance(vol, str):
            source, target = vol.split(":")[:2]
        else:
            source, target = vol.get("source", ""), vol["target"]
        out.append((source, target))
    return out


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def _crm_dag_crms() -> tuple[str, ...]:
    """The CRMs the DAG factory builds a DAG for, with the `LEADFLOW_CRMS` compose gives the
    DAG processor (unset: the factory's default)."""
    compose_env = _env(yaml.safe_load(COMPOSE.read_text())["services"]["airflow-dag-processor"])
    with pytest.MonkeyPatch.context() as mp:
        if "LEADFLOW_CRMS" in compose_env:
            mp.setenv("LEADFLOW_CRMS", compose_env["LEADFLOW_CRMS"])
        else:
            mp.delenv("LEADFLOW_CRMS", raising=False)
        module = runpy.run_path(str(REPO / "dags" / "leadflow_crm.py"))
    return tuple(module["CRMS"])


def _connections(env: dict[str, str]) -> dict[str, dict]:
    return {k[len(CONN_PREFIX):].lower(): json.loads(v) for k, v in env.items() if k.startswith(CONN_PREFIX)}


# --- the file itself --------------------------------------------------------------------------------
def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_is_valid_against_the_compose_specification():
    result = _check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_compose_file_that_breaks_the_specification(tmp_path):
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text("services:\n  web:\n    image: nginx\n    ports: 8080\n    restart: [always]\n")
    result = _check(broken)
    assert result.returncode != 0 and "ports" in result.stdout + result.stderr


def test_every_required_service_exists(services):
    expected = {*AIRFLOW_SERVICES, "postgres", "redis", "airflow-init", "sandbox"}
    assert expected <= set(services), sorted(expected - set(services))
    assert sum(1 for name in services if name.startswith("airflow-worker")) == 2


def test_airflow_services_run_their_component_with_the_celery_executor(services):
    for name, component in AIRFLOW_SERVICES.items():
        assert _command(services[name]) == component.split(), name
        env = _env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", "redis"), name
        assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres", name


def test_components_share_the_secrets_that_must_agree_across_containers(services):
    """Unset, each container generates its own JWT secret and workers get "Invalid auth token"."""
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
        values = {_env(services[name]).get(key) for name in AIRFLOW_SERVICES}
        assert len(values) == 1 and None not in values and "" not in values, (key, values)


def test_execution_api_url_points_at_the_api_server_service(services):
    for name in AIRFLOW_SERVICES:
        url = urlsplit(_env(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == "airflow-apiserver" and url.path == "/execution/", name
        assert str(url.port) in {p.split(":")[-1] for p in services["airflow-apiserver"]["ports"]}


# --- mounts and paths -----------------------------------------------------------------------------
def test_every_bind_mount_source_exists_in_the_repo(services):
    binds = [(name, src) for name, svc in services.items() for src, _ in _volumes(svc) if _is_bind(src)]
    assert binds, "no bind mounts found"
    for name, source in binds:
        assert (REPO / source).resolve().exists(), f"{name}: {source} does not exist in the checkout"


def test_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for source, _ in _volumes(svc):
            if source and not _is_bind(source):
                assert source in declared, f"{name}: volume {source} is not declared"


def test_the_mounted_dag_and_plugin_folders_are_the_projects_and_airflow_reads_them(services):
    for name in AIRFLOW_SERVICES:
        mounts = {(REPO / src).resolve(): tgt for src, tgt in _volumes(services[name]) if _is_bind(src)}
        env = _env(services[name])
        assert mounts.get(REPO / "dags") == env["AIRFLOW__CORE__DAGS_FOLDER"], name
        assert mounts.get(REPO / "plugins") == env["AIRFLOW__CORE__PLUGINS_FOLDER"], name


def _dockerfile() -> list[str]:
    """Instructions, with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _copies() -> dict[str, str]:
    """Source (repo path) -> destination of every COPY."""
    out = {}
    for line in _dockerfile():
        if line.upper().startswith("COPY "):
            parts = [p for p in line.split()[1:] if not p.startswith("--")]
            for src in parts[:-1]:
                dest = parts[-1]
                out[src] = dest.rstrip("/") + "/" + Path(src).name if dest.endswith("/") else dest
    return out


def test_dockerfile_installs_the_locked_requirements_and_the_package():
    copies = _copies()
    runs = " ".join(line for line in _dockerfile() if line.upper().startswith("RUN "))
    assert "requirements.txt" in copies
    assert re.search(rf"pip install [^&;]*-r {re.escape(copies['requirements.txt'])}", runs), runs
    package_dir = str(PurePosixPath(copies["pyproject.toml"]).parent)
    assert copies["include"] == f"{package_dir}/include"
    assert re.search(rf"pip install [^&;]*-e {re.escape(package_dir)}(\s|$)", runs), runs
    for src in copies:
        assert (REPO / src).exists(), f"COPY {src}: not in the checkout"


def test_dockerfile_installs_no_test_tools_and_no_package_dependencies_beyond_the_lock():
    runs = [line for line in _dockerfile() if line.upper().startswith("RUN ")]
    assert "requirements-test.txt" not in _copies()
    assert not any("requirements-test" in run or "[test]" in run for run in runs), runs
    # The package goes in with --no-deps: its dependencies are exactly the production lock's.
    editable = [run for run in runs if re.search(r"pip install [^&;]*-e ", run)]
    assert editable and all("--no-deps" in run for run in editable), editable


def test_dockerfile_base_image_python_is_one_the_project_supports():
    base = next(line.split()[1] for line in _dockerfile() if line.upper().startswith("FROM "))
    python = re.search(r"-python(3\.\d+)$", base).group(1)
    requires = re.search(r'^requires-python = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert SpecifierSet(requires).contains(python + ".0"), (base, requires)


def test_dockerfile_base_image_is_the_locked_airflow_version():
    base = next(line.split()[1] for line in _dockerfile() if line.upper().startswith("FROM "))
    pinned = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements.txt").read_text(), re.M).group(1)
    assert base.startswith(f"apache/airflow:{pinned}-"), (base, pinned)


def test_mounted_include_folder_is_where_the_image_installed_the_package_editable(services):
    target = _copies()["include"]
    for name in (*AIRFLOW_SERVICES, "sandbox"):
        mounts = {(REPO / src).resolve(): tgt for src, tgt in _volumes(services[name]) if _is_bind(src)}
        assert mounts.get(REPO / "include") == target, name


def test_var_dir_is_a_volume_the_sandbox_and_workers_share_and_the_image_creates(services):
    var_dir = _env(services["sandbox"])["LEADFLOW_VAR_DIR"]
    sources = {}
    for name in ("sandbox", *WORKERS):
        assert _env(services[name])["LEADFLOW_VAR_DIR"] == var_dir, name
        by_target = {tgt: src for src, tgt in _volumes(services[name])}
        sources[name] = by_target.get(var_dir)
    assert len(set(sources.values())) == 1 and None not in sources.values(), sources
    assert any(re.search(rf"mkdir -p {re.escape(var_dir)}(\s|$)", line) for line in _dockerfile())


# --- the warehouse, pools -------------------------------------------------------------------------
def test_warehouse_url_points_at_the_postgres_service_and_init_creates_its_database(services):
    init = " ".join(_command(services["airflow-init"]))
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        url = urlsplit(_env(services[name])["LEADFLOW_WAREHOUSE_URL"])
        assert url.scheme.startswith("postgresql") and url.hostname == "postgres", name
        database = url.path.lstrip("/")
        assert f"CREATE DATABASE {database}" in init, name
    assert re.search(r"^psycopg==", (REPO / "requirements.txt").read_text(), re.M)  # the warehouse driver


def test_every_pool_a_dag_task_uses_is_created_by_init(services):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    pools = {t.pool for dag in bag.dags.values() for t in dag.tasks if t.pool != "default_pool"}
    assert pools, "expected the CRM DAGs' push pools"
    init = " ".join(_command(services["airflow-init"]))
    for pool in pools:
        assert re.search(rf"airflow pools set {pool}\s", init), pool


# --- connections ------------------------------------------------------------------------------------
def test_every_crm_dag_has_its_connection_and_every_crm_connection_has_a_dag(services):
    from leadflow.crm.registry import available_crms

    crms = set(_crm_dag_crms())
    assert {"hubspot", "salesforce"} <= crms
    for name in WORKERS:
        conns = _connections(_env(services[name]))
        assert {f"leadflow_{crm}" for crm in crms} <= set(conns), name
        crm_conns = {cid.removeprefix("leadflow_") for cid in conns} & set(available_crms())
        assert crm_conns == crms, name


def test_every_connection_is_one_the_project_reads(services):
    from leadflow.alerts import SMTP_CONN, WEBHOOK_CONN
    from leadflow.enrich.settings import EnrichmentSettings

    known = {f"leadflow_{crm}" for crm in _crm_dag_crms()}
    known |= {SMTP_CONN, WEBHOOK_CONN, EnrichmentSettings().http.connection_id}
    for name in WORKERS:
        assert set(_connections(_env(services[name]))) <= known, name


def test_connections_parse_and_build_the_projects_connectors(services):
    from leadflow.connections import get_connection
    from leadflow.crm.registry import get_connector

    env = _env(services["airflow-worker-1"])
    for crm in _crm_dag_crms():
        connection = get_connection(f"leadflow_{crm}", environ=env)
        connector = get_connector(crm, connection)
        try:
            assert connector.name == crm
            assert type(connector).__module__ == f"leadflow.crm.{crm}", type(connector)
            assert connector.session.base_url == connection.base_url, crm
        finally:
            connector.close()


def test_connections_reach_the_sandbox_on_its_ports_with_its_tokens(services):
    sandbox = _command(services["sandbox"])
    conns = _connections(_env(services["airflow-worker-1"]))
    expected = {
        "leadflow_hubspot": ("http", _flag(sandbox, "--port"), _flag(sandbox, "--token")),
        "leadflow_salesforce": ("https", _flag(sandbox, "--salesforce-port"), _flag(sandbox, "--salesforce-token")),
        "leadflow_enrichment": ("http", _flag(sandbox, "--port"), _flag(sandbox, "--enrichment-key")),
    }
    for cid, (scheme, port, secret) in expected.items():
        conn = conns[cid]
        assert (conn["host"], conn["schema"], str(conn["port"]), conn["password"]) == \
            ("sandbox", scheme, port, secret), cid


def test_salesforce_tls_verification_matches_what_the_sandbox_certificate_allows(services):
    """The sandbox's certificate names only 127.0.0.1, ::1 and localhost, so a worker reaching it
    as `sandbox` can verify it only once it names that host; until then verify must be off (not
    silently pointing at a certificate that fails). If a path is used, it must be the sandbox's
    certificate on the volume both share."""
    verify = _connections(_env(services["airflow-worker-1"]))["leadflow_salesforce"].get("extra", {}).get("verify")
    if verify is False:
        return
    db = _flag(_command(services["sandbox"]), "--db")
    assert verify == f"{db}.tls/leadflow-salesforce-sandbox.pem"
    shared = {tgt for _, tgt in _volumes(services["sandbox"])} & {tgt for _, tgt in _volumes(services[WORKERS[0]])}
    assert any(verify.startswith(t.rstrip("/") + "/") for t in shared), verify


def test_sandbox_command_is_accepted_by_the_leadflow_cli_and_listens_inside_the_network(services):
    from leadflow.cli import build_parser

    svc = services["sandbox"]
    assert svc["entrypoint"] == ["leadflow"]
    args = build_parser().parse_args(_command(svc))
    assert args.host == "0.0.0.0" and args.salesforce_port >= 0
    published = {p.rsplit(":", 1)[-1] for p in svc["ports"]}
    assert {str(args.port), str(args.salesforce_port)} <= published
    for port in svc["ports"]:
        assert port.startswith("127.0.0.1:"), f"sandbox port {port} is published beyond loopback"
