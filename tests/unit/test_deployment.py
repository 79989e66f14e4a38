"""docker-compose.yaml, its demo override and the Dockerfile agree with the project.

No Docker engine or compose plugin runs here, so the compose files are validated against the
Compose Specification schema (`check-jsonschema --builtin-schema vendor.compose-spec`, offline),
and each service's command, mounts and environment are checked against the checkout: paths
exist, the DAG folder and the requirements are the project's, connection ids match the DAGs.
docker-compose.yaml is read the way compose reads it: `${VAR...}` interpolated (here from a test
environment), then docker-compose.demo.yaml merged on top for the demo's checks. It holds no
secret value: the demo's sandbox tokens live in the demo file only.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yaml"
DEMO = REPO / "docker-compose.demo.yaml"
DOCKERFILE = REPO / "Dockerfile"
SECRETS_SCRIPT = REPO / "scripts" / "compose_secrets.sh"
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
# What an operator puts in .env (see .env.example); a made-up value, checked to reach every URL.
TEST_ENV = {"LEADFLOW_POSTGRES_PASSWORD": "pw-from-the-environment"}


# --- reading the files as compose does --------------------------------------------------------------
class MissingVariable(KeyError):
    """A `${VAR:?message}` whose variable is unset (compose refuses to start with the message)."""


_INTERPOLATION = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR?err}`, `$$`."""
    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name", "op", "arg")
        value = env.get(name)
        unset = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if unset else value
        if op in (":?", "?"):
            if unset:
                raise MissingVariable(f"{name}: {arg}")
            return value
        return value or ""
    return _INTERPOLATION.sub(replace, text)


def _merge(base, override):
    """Compose's merge of an override file, for what these files use: mappings merge key by key,
    anything else is replaced (a list replaced would lose entries: refused)."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    assert not (isinstance(base, list) and isinstance(override, list)), (base, override)
    return override


def load_compose(*files: Path, env: dict[str, str] | None = None) -> dict:
    env = TEST_ENV if env is None else env
    merged: dict = {}
    for path in files:
        # yaml resolves the x-airflow-common anchors and merges
        merged = _merge(merged, yaml.safe_load(interpolate(path.read_text(), env)))
    return merged


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def demo_services() -> dict:
    return load_compose(COMPOSE, DEMO)["services"]


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


def _mode(service: dict, target: str) -> str:
    """`ro` or `rw` for the short-syntax mount at `target`."""
    for vol in service.get("volumes") or []:
        parts = vol.split(":")
        if parts[1] == target:
            return "ro" if len(parts) > 2 and "ro" in parts[2].split(",") else "rw"
    raise AssertionError(f"nothing mounted at {target}")


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


def _crm_dag_crms() -> tuple[str, ...]:
    """The CRMs the DAG factory builds a DAG for, with the `LEADFLOW_CRMS` compose gives the
    DAG processor (unset: the factory's default)."""
    compose_env = _env(load_compose(COMPOSE)["services"]["airflow-dag-processor"])
    with pytest.MonkeyPatch.context() as mp:
        if "LEADFLOW_CRMS" in compose_env:
            mp.setenv("LEADFLOW_CRMS", compose_env["LEADFLOW_CRMS"])
        else:
            mp.delenv("LEADFLOW_CRMS", raising=False)
        module = runpy.run_path(str(REPO / "dags" / "leadflow_crm.py"))
    return tuple(module["CRMS"])


def _connections(env: dict[str, str]) -> dict[str, dict]:
    return {k[len(CONN_PREFIX):].lower(): json.loads(v) for k, v in env.items() if k.startswith(CONN_PREFIX)}


def test_interpolation_reads_defaults_and_refuses_a_missing_required_variable():
    text = "a: ${A:-x}\nb: ${B-y}\nc: $${HOSTNAME}\nd: ${D:?set D}\n"
    assert interpolate(text, {"A": "", "B": "", "D": "d"}) == "a: x\nb: \nc: ${HOSTNAME}\nd: d\n"
    with pytest.raises(MissingVariable, match="D: set D"):
        interpolate(text, {})


# --- the file itself --------------------------------------------------------------------------------
def _check(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("path", [COMPOSE, DEMO], ids=lambda p: p.name)
def test_compose_file_is_valid_against_the_compose_specification(path):
    result = _check(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_compose_file_that_breaks_the_specification(tmp_path):
    broken = tmp_path / "docker-compose.yaml"
    broken.write_text("services:\n  web:\n    image: nginx\n    ports: 8080\n    restart: [always]\n")
    result = _check(broken)
    assert result.returncode != 0 and "ports" in result.stdout + result.stderr


def test_every_required_service_exists_and_the_sandbox_only_in_the_demo_profile(services, demo_services):
    expected = {*AIRFLOW_SERVICES, "postgres", "redis", "airflow-init"}
    assert expected <= set(services), sorted(expected - set(services))
    assert sum(1 for name in services if name.startswith("airflow-worker")) == 2
    assert "sandbox" not in services
    assert set(demo_services) - set(services) == {"sandbox"}
    assert demo_services["sandbox"]["profiles"] == ["demo"]


def test_airflow_services_run_their_component_with_the_celery_executor(services):
    for name, component in AIRFLOW_SERVICES.items():
        assert _command(services[name]) == component.split(), name
        env = _env(services[name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        broker = urlsplit(env["AIRFLOW__CELERY__BROKER_URL"])
        assert (broker.scheme, broker.hostname) == ("redis", "redis"), name
        assert urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).hostname == "postgres", name
        # urlsplit refuses the `_` of psycopg_async in a scheme
        assert make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]).host == "postgres", name


SHARED_KEYS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")


def test_components_share_the_secrets_that_must_agree_across_containers(services):
    """Unset, each container generates its own JWT secret and workers get "Invalid auth token";
    every component reads the same generated file from the secrets volume, which only
    airflow-init may write."""
    for key in SHARED_KEYS:
        commands = {_env(services[name]).get(f"{key}_CMD") for name in (*AIRFLOW_SERVICES, "airflow-init")}
        assert len(commands) == 1 and None not in commands, (key, commands)
        path = PurePosixPath(shlex.split(commands.pop())[-1])
        for name in AIRFLOW_SERVICES:
            assert key not in _env(services[name]), f"{name}: {key} set as a value"
            assert _mode(services[name], str(path.parent)) == "ro", name
        assert _mode(services["airflow-init"], str(path.parent)) == "rw"


def test_execution_api_url_points_at_the_api_server_service(services):
    for name in AIRFLOW_SERVICES:
        url = urlsplit(_env(services[name])["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
        assert url.hostname == "airflow-apiserver" and url.path == "/execution/", name
        assert str(url.port) in {p.split(":")[-1] for p in services["airflow-apiserver"]["ports"]}


def test_every_long_running_service_has_a_healthcheck_and_dependents_wait_for_it(demo_services):
    for name, svc in demo_services.items():
        if name == "airflow-init":  # one-shot: the others wait for it to complete
            continue
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        depends = svc.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for dep, spec in depends.items():
            expected = "service_completed_successfully" if dep == "airflow-init" else "service_healthy"
            assert spec.get("condition") == expected, (name, dep, spec)
    for name in (*AIRFLOW_SERVICES, "sandbox"):
        assert "airflow-init" in demo_services[name]["depends_on"], name
    for name in WORKERS:  # tasks report to the Execution API and call the CRM
        assert {"airflow-apiserver", "sandbox"} <= set(demo_services[name]["depends_on"]), name


def test_airflow_services_run_as_airflow_uid_and_init_gives_it_the_shared_volumes():
    services = load_compose(COMPOSE, env={**TEST_ENV, "AIRFLOW_UID": "1234"})["services"]
    assert services["airflow-init"]["user"] == "0:0"
    for name in AIRFLOW_SERVICES:
        assert services[name]["user"] == "1234:0", name
    assert load_compose(COMPOSE)["services"]["airflow-worker-1"]["user"] == "50000:0"  # the image's user
    init = " ".join(_command(services["airflow-init"]))
    assert 'chown -R "1234:0" /opt/airflow/var /opt/airflow/logs' in init
    assert re.search(r"compose_secrets\.sh /opt/airflow/secrets \"1234\"", init)


def test_every_airflow_service_writes_its_logs_to_one_shared_volume(compose, services):
    sources = set()
    for name in (*AIRFLOW_SERVICES, "airflow-init"):
        by_target = {tgt: src for src, tgt in _volumes(services[name])}
        sources.add(by_target.get("/opt/airflow/logs"))
    assert len(sources) == 1 and None not in sources, sources
    assert sources.pop() in compose["volumes"]


def test_api_server_is_published_on_loopback_unless_configured_otherwise(demo_services):
    for name, svc in demo_services.items():
        for port in svc.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond loopback"
    configured = load_compose(COMPOSE, env={**TEST_ENV, "AIRFLOW_API_BIND": "0.0.0.0", "AIRFLOW_API_PORT": "9090"})
    assert configured["services"]["airflow-apiserver"]["ports"] == ["0.0.0.0:9090:8080"]


def test_compose_refuses_to_start_without_the_database_password():
    with pytest.raises(MissingVariable, match="LEADFLOW_POSTGRES_PASSWORD"):
        load_compose(COMPOSE, env={})
    with pytest.raises(MissingVariable, match="LEADFLOW_POSTGRES_PASSWORD"):
        load_compose(COMPOSE, env={"LEADFLOW_POSTGRES_PASSWORD": ""})


def test_every_database_url_carries_the_password_from_the_environment(services):
    password = TEST_ENV["LEADFLOW_POSTGRES_PASSWORD"]
    assert _env(services["postgres"])["POSTGRES_PASSWORD"] == password
    urls = {k: v for k, v in _env(services["airflow-worker-1"]).items() if "://" in v and "@" in v}
    assert {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
            "AIRFLOW__CELERY__RESULT_BACKEND", "LEADFLOW_WAREHOUSE_URL"} <= set(urls)
    for key, url in urls.items():
        assert make_url(url.removeprefix("db+")).password == password, key


# --- drivers --------------------------------------------------------------------------------------
def _lock_pins() -> set[str]:
    return {canonicalize_name(m.group(1)) for m in
            re.finditer(r"^([A-Za-z0-9._-]+)==", (REPO / "requirements.txt").read_text(), re.M)}


def test_every_database_url_names_a_driver_the_production_lock_installs(services):
    """Airflow would derive postgresql+asyncpg from a postgresql URL: asyncpg is not in the lock."""
    env = _env(services["airflow-worker-1"])
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
                "AIRFLOW__CELERY__RESULT_BACKEND", "LEADFLOW_WAREHOUSE_URL"):
        dialect = make_url(env[key].removeprefix("db+")).get_dialect()
        dbapi = dialect.import_dbapi()
        assert canonicalize_name(dbapi.__name__.split(".")[0]) in _lock_pins(), (key, dbapi.__name__)
        assert dialect.is_async == key.endswith("_ASYNC"), key
    assert {"apache-airflow-providers-celery", "celery", "redis"} <= _lock_pins()


# --- no secret in the compose file ----------------------------------------------------------------
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)|^AIRFLOW_CONN_", re.I)
_SECRET_FLAG = re.compile(r"^--[\w-]*(token|password|secret|key)$", re.I)
_REQUIRED_VAR = re.compile(r"^\$\{\w+:?\?[^}]*\}$")
_DEFAULTED_SECRET = re.compile(r"\$\{(?P<name>\w+):?-(?P<default>[^}]+)\}")
_URL_PASSWORD = re.compile(r"://[^/\s:@]*:(?P<password>\$\{[^}]*\}|[^@\s/]+)@")
_DSN_PASSWORD = re.compile(r"[\"'][^\"'\n]*\bpassword=(?!\$\{)[^\s\"']+")
_TOKEN_SHAPES = {
    "a JWT": re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}"),
    "a HubSpot private app token": re.compile(r"\bpat-[\w-]+"),
    "a Salesforce session id": re.compile(r"\b00D\w{12,15}!"),
    "a PEM key": re.compile(r"-----BEGIN"),
    "a long random-looking string": re.compile(r"(?=[\w+=-]*\d)(?=[\w+=-]*[A-Za-z])[\w+=-]{32,}"),
}


def _strings(node, where=""):
    """(place, string) of every mapping key and scalar, keys and values alike."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            yield path, str(key)
            yield from _strings(value, path)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{where}[{i}]")
    elif node is not None:
        yield where, str(node)


def secret_findings(text: str) -> list[str]:
    """Every place in a compose file's text where a secret value is written (as read before
    interpolation: a `${VAR:?...}` is the environment's, a `${VAR:-default}` is the file's)."""
    doc = yaml.safe_load(text)
    found = [f"${{{m['name']}}} defaults to a value written in the file"
             for m in _DEFAULTED_SECRET.finditer(text) if _SECRET_NAME.search(m["name"])]
    for where, value in _strings(doc):
        for m in _URL_PASSWORD.finditer(value):
            if not _REQUIRED_VAR.match(m["password"]):
                found.append(f"{where}: a URL with a password written in the file")
        if _DSN_PASSWORD.search(value):
            found.append(f"{where}: a connection string with a password written in the file")
        for kind, pattern in _TOKEN_SHAPES.items():
            if pattern.search(value):
                found.append(f"{where}: {kind}")
    for name, svc in (doc.get("services") or {}).items():
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        for key, value in env.items():
            if key.endswith("_CMD") or value is None or not _SECRET_NAME.search(key):
                continue
            if not _REQUIRED_VAR.match(str(value)):
                found.append(f"{name}: {key} has a value in the file")
        command = _command(svc)
        for flag, value in zip(command, command[1:]):
            if _SECRET_FLAG.match(flag) and not _REQUIRED_VAR.match(value):
                found.append(f"{name}: {flag} {value[:3]}... on its command line")
    return found


def test_docker_compose_yaml_contains_no_secret_value():
    assert secret_findings(COMPOSE.read_text()) == []
    assert not any(CONN_PREFIX in key for key in _env(load_compose(COMPOSE)["services"]["airflow-worker-1"]))


def test_secret_check_finds_each_way_a_secret_gets_into_a_compose_file():
    text = """
services:
  db:
    environment:
      POSTGRES_PASSWORD: airflow
      AIRFLOW__API_AUTH__JWT_SECRET: ${AIRFLOW_JWT_SECRET:-leadflow-compose-dev-jwt-secret}
      AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: postgresql://airflow:airflow@postgres/airflow
      AIRFLOW_CONN_CRM: '{"conn_type":"http","password":"tok"}'
      AIRFLOW__CORE__FERNET_KEY_CMD: cat /run/secrets/fernet
      OK_URL: postgresql://airflow:${PW:?set PW}@postgres/airflow
      HEADER: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.sig
      BROKER: redis://:@redis:6379/0
    command: ["python", "-c", "psycopg.connect('dbname=a user=a password=hunter2 host=db')"]
  crm:
    command: ["serve", "--token", "pat-na1-0000", "--port", "8765"]
    healthcheck:
      test: ["CMD", "curl", "-H", "X-Key: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
"""
    found = "\n".join(secret_findings(text))
    for expected in ("${AIRFLOW_JWT_SECRET} defaults to a value written in the file",
                     "db: POSTGRES_PASSWORD has a value in the file",
                     "db: AIRFLOW__API_AUTH__JWT_SECRET has a value in the file",
                     "services.db.environment.AIRFLOW__DATABASE__SQL_ALCHEMY_CONN: a URL with a password",
                     "db: AIRFLOW_CONN_CRM has a value in the file",
                     "services.db.environment.HEADER: a JWT",
                     "crm: --token pat... on its command line",
                     "services.crm.command[2]: a HubSpot private app token",
                     "services.crm.healthcheck.test[3]: a long random-looking string",
                     "services.db.command[2]: a connection string with a password"):
        assert expected in found, f"{expected!r} not in:\n{found}"
    assert not any(name in found for name in ("FERNET_KEY_CMD", "OK_URL", "BROKER")), found


def test_the_demo_files_only_credentials_are_the_sandboxs_own_tokens(demo_services):
    """The demo file holds the sandbox's tokens (valid against the sandbox only) and the connections
    that use them; every secret the check finds there is one the sandbox is started with."""
    text = DEMO.read_text()
    sandbox_tokens = [_flag(_command(demo_services["sandbox"]), flag)
                      for flag in ("--token", "--enrichment-key", "--salesforce-token")]
    findings = secret_findings(text)
    assert findings, "the demo file should hold the sandbox's tokens"
    # each one is in a connection to the sandbox or in the sandbox's own command line
    assert all(CONN_PREFIX in f or f.startswith(("sandbox:", "services.sandbox.command")) for f in findings), findings
    connections = yaml.safe_load(text)["x-demo-connections"]
    assert set(connections) == {f"{CONN_PREFIX}LEADFLOW_{c}" for c in ("HUBSPOT", "SALESFORCE", "ENRICHMENT")}
    for key, value in connections.items():
        conn = json.loads(value)
        assert conn["host"] == "sandbox" and conn["password"] in sandbox_tokens, key


# --- the generated keys ---------------------------------------------------------------------------
def test_init_generates_the_shared_keys_once_and_airflow_reads_them_through_the_compose_cmds(tmp_path, services):
    from cryptography.fernet import Fernet
    from airflow.configuration import conf, run_command

    env = {**os.environ, "PYTHON": sys.executable}
    first = subprocess.run(["bash", str(SECRETS_SCRIPT), str(tmp_path / "secrets")], env=env,
                           capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    keys = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    assert set(keys) == {"jwt_secret", "api_secret_key", "fernet_key"}
    assert all(len(v) >= 40 and not v.endswith("\n") for v in keys.values()), {k: len(v) for k, v in keys.items()}
    Fernet(keys["fernet_key"])  # a valid key
    for path in (tmp_path / "secrets").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o440, path
    again = subprocess.run(["bash", str(SECRETS_SCRIPT), str(tmp_path / "secrets")], env=env,
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and again.stdout.count("kept") == 3, again.stdout + again.stderr
    assert {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()} == keys

    worker = _env(services["airflow-worker-1"])
    for key in SHARED_KEYS:
        section, option = key.removeprefix("AIRFLOW__").lower().split("__")
        assert (section, option) in conf.sensitive_config_values, key  # else Airflow ignores the _CMD
        command = worker[f"{key}_CMD"].replace("/opt/airflow/secrets", str(tmp_path / "secrets"))
        assert run_command(command) == keys[PurePosixPath(shlex.split(command)[-1]).name], key


def test_init_runs_the_secrets_script_the_image_carries():
    init = " ".join(_command(load_compose(COMPOSE)["services"]["airflow-init"]))
    target = _copies()["scripts/compose_secrets.sh"]
    assert re.search(rf"(^|\s){re.escape(target)} /opt/airflow/secrets ", init), init
    assert os.access(SECRETS_SCRIPT, os.X_OK)


# --- mounts and paths -----------------------------------------------------------------------------
def test_every_bind_mount_source_exists_in_the_repo(demo_services):
    binds = [(name, src) for name, svc in demo_services.items() for src, _ in _volumes(svc) if _is_bind(src)]
    assert binds, "no bind mounts found"
    for name, source in binds:
        assert (REPO / source).resolve().exists(), f"{name}: {source} does not exist in the checkout"


def test_named_volumes_are_declared(compose, demo_services):
    declared = set(compose.get("volumes") or {})
    for name, svc in demo_services.items():
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


def test_mounted_include_folder_is_where_the_image_installed_the_package_editable(demo_services):
    target = _copies()["include"]
    for name in (*AIRFLOW_SERVICES, "sandbox"):
        mounts = {(REPO / src).resolve(): tgt for src, tgt in _volumes(demo_services[name]) if _is_bind(src)}
        assert mounts.get(REPO / "include") == target, name


def test_var_dir_is_a_volume_the_sandbox_and_workers_share_and_the_image_creates(demo_services):
    var_dir = _env(demo_services["sandbox"])["LEADFLOW_VAR_DIR"]
    sources = {}
    for name in ("sandbox", *WORKERS):
        assert _env(demo_services[name])["LEADFLOW_VAR_DIR"] == var_dir, name
        by_target = {tgt: src for src, tgt in _volumes(demo_services[name])}
        sources[name] = by_target.get(var_dir)
    assert len(set(sources.values())) == 1 and None not in sources.values(), sources
    assert any(re.search(rf"mkdir -p {re.escape(var_dir)}(\s|$)", line) for line in _dockerfile())


# --- the warehouse, pools -------------------------------------------------------------------------
def test_warehouse_url_points_at_the_postgres_service(services):
    urls = {_env(services[name])["LEADFLOW_WAREHOUSE_URL"] for name in (*AIRFLOW_SERVICES, "airflow-init")}
    assert len(urls) == 1, urls
    url = make_url(urls.pop())
    assert url.get_backend_name() == "postgresql" and url.host == "postgres" and url.database
    assert re.search(r"^psycopg==", (REPO / "requirements.txt").read_text(), re.M)  # the warehouse driver


def _init_python(services) -> str:
    """The Python program airflow-init runs (its `python - <<'PY'` block)."""
    script = services["airflow-init"]["command"][-1]  # bash -c <script>
    return textwrap.dedent(script.split("python - <<'PY'\n", 1)[1].split("\nPY", 1)[0])


@pytest.mark.postgres
def test_init_creates_the_warehouse_database_named_in_the_url_and_keeps_an_existing_one(services, pg_server_url):
    from sqlalchemy import create_engine, text

    name = f"t_init_{uuid.uuid4().hex[:10]}"
    url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
    env = {**os.environ, "LEADFLOW_WAREHOUSE_URL": url}
    for attempt in ("creates", "keeps"):
        result = subprocess.run([sys.executable, "-c", _init_python(services)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (attempt, result.stderr)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT current_database()")).scalar() == name
    finally:
        engine.dispose()


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
def test_every_crm_dag_has_its_connection_and_every_crm_connection_has_a_dag(demo_services):
    from leadflow.crm.registry import available_crms

    crms = set(_crm_dag_crms())
    assert {"hubspot", "salesforce"} <= crms
    for name in WORKERS:
        conns = _connections(_env(demo_services[name]))
        assert {f"leadflow_{crm}" for crm in crms} <= set(conns), name
        crm_conns = {cid.removeprefix("leadflow_") for cid in conns} & set(available_crms())
        assert crm_conns == crms, name


def test_every_connection_is_one_the_project_reads(demo_services):
    from leadflow.alerts import SMTP_CONN, WEBHOOK_CONN
    from leadflow.enrich.settings import EnrichmentSettings

    known = {f"leadflow_{crm}" for crm in _crm_dag_crms()}
    known |= {SMTP_CONN, WEBHOOK_CONN, EnrichmentSettings().http.connection_id}
    for name in WORKERS:
        assert set(_connections(_env(demo_services[name]))) <= known, name


def test_connections_parse_and_build_the_projects_connectors(demo_services):
    from leadflow.connections import get_connection
    from leadflow.crm.registry import get_connector

    env = _env(demo_services["airflow-worker-1"])
    for crm in _crm_dag_crms():
        connection = get_connection(f"leadflow_{crm}", environ=env)
        connector = get_connector(crm, connection)
        try:
            assert connector.name == crm
            assert type(connector).__module__ == f"leadflow.crm.{crm}", type(connector)
            assert connector.session.base_url == connection.base_url, crm
        finally:
            connector.close()


def test_connections_reach_the_sandbox_on_its_ports_with_its_tokens(demo_services):
    sandbox = _command(demo_services["sandbox"])
    conns = _connections(_env(demo_services["airflow-worker-1"]))
    expected = {
        "leadflow_hubspot": ("http", _flag(sandbox, "--port"), _flag(sandbox, "--token")),
        "leadflow_salesforce": ("https", _flag(sandbox, "--salesforce-port"), _flag(sandbox, "--salesforce-token")),
        "leadflow_enrichment": ("http", _flag(sandbox, "--port"), _flag(sandbox, "--enrichment-key")),
    }
    for cid, (scheme, port, secret) in expected.items():
        conn = conns[cid]
        assert (conn["host"], conn["schema"], str(conn["port"]), conn["password"]) == \
            ("sandbox", scheme, port, secret), cid


def test_salesforce_tls_verification_matches_what_the_sandbox_certificate_allows(demo_services):
    """The sandbox's certificate names only 127.0.0.1, ::1 and localhost, so a worker reaching it
    as `sandbox` can verify it only once it names that host; until then verify must be off (not
    silently pointing at a certificate that fails). If a path is used, it must be the sandbox's
    certificate on the volume both share."""
    verify = _connections(_env(demo_services["airflow-worker-1"]))["leadflow_salesforce"].get("extra", {}).get("verify")
    if verify is False:
        return
    db = _flag(_command(demo_services["sandbox"]), "--db")
    assert verify == f"{db}.tls/leadflow-salesforce-sandbox.pem"
    shared = {tgt for _, tgt in _volumes(demo_services["sandbox"])} & {tgt for _, tgt in _volumes(demo_services[WORKERS[0]])}
    assert any(verify.startswith(t.rstrip("/") + "/") for t in shared), verify


def test_sandbox_command_is_accepted_by_the_leadflow_cli_and_listens_inside_the_network(demo_services):
    from leadflow.cli import build_parser

    svc = demo_services["sandbox"]
    assert svc["entrypoint"] == ["leadflow"]
    args = build_parser().parse_args(_command(svc))
    assert args.host == "0.0.0.0" and args.salesforce_port >= 0
    published = {p.rsplit(":", 1)[-1] for p in svc["ports"]}
    assert {str(args.port), str(args.salesforce_port)} <= published
    for port in svc["ports"]:
        assert port.startswith("127.0.0.1:"), f"sandbox port {port} is published beyond loopback"
