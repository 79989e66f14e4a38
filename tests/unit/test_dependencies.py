"""Declared dependencies agree with the imports, and the locks with the declarations.

pyproject.toml's `dependencies` must name every third-party distribution that include/, dags/
and plugins/ import, and nothing they do not use; the `test` extra the same for tests/ and
bench/. requirements.in / requirements-test.in list what pyproject.toml declares, the production
lock carries no test tool, and the locks are compiled for every Python that requires-python
allows. Imports are read with `ast` and mapped to distributions with
`importlib.metadata.packages_distributions()` (narrowed by the installed files for namespace
packages such as `airflow`, which ten distributions share).
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import sys
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# scripts/check_production_lock.sh imports the same list of modules in a production-only venv.
third_party_imports = _load_script("third_party_imports")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PRODUCTION_ROOTS = ("include", "dags", "plugins")
TEST_ROOTS = ("tests", "bench")

# Declared but never imported: each is loaded by name at run time.
RUNTIME_ONLY = {
    "psycopg": "SQLAlchemy loads it for postgresql+psycopg:// warehouse URLs (leadflow.warehouse.db)",
    "apache-airflow-providers-http": "registers the `http` connection type of the leadflow_* connections",
    "apache-airflow-providers-celery": "the CeleryExecutor and `airflow celery worker` of docker-compose.yaml",
}
TEST_RUNTIME_ONLY = {
    "pytest-timeout": "pytest plugin behind the `timeout` marker of the e2e tests",
    "pytest-xdist": "pytest plugin behind `make test`'s parallel workers (-n)",
    "check-jsonschema": "command that tests/unit/test_deployment.py runs on docker-compose.yaml",
}
TEST_ONLY = ("pytest", "hypothesis", "time-machine", "check-jsonschema", "hubspot-api-client", "simple-salesforce")


@dataclass
class Report:
    """What a set of imports says about a set of declarations."""

    undeclared: dict[str, set[str]] = field(default_factory=dict)  # distribution -> importing files
    unknown: dict[str, set[str]] = field(default_factory=dict)  # import name no distribution provides
    unused: set[str] = field(default_factory=set)  # declared, never imported, not run-time only

    def problems(self) -> list[str]:
        out = [f"{dist} is imported by {', '.join(sorted(files))} but not declared: add it"
               for dist, files in sorted(self.undeclared.items())]
        out += [f"`import {name}` in {', '.join(sorted(files))}: no installed distribution provides it "
                "(declare and install the package, or make it first-party)"
                for name, files in sorted(self.unknown.items())]
        out += [f"{dist} is declared but nothing imports it: remove it, or list it as loaded at run "
                "time with the reason" for dist in sorted(self.unused)]
        return out


def _requirement_names(lines: Iterable[str]) -> set[str]:
    """Canonical distribution names of requirement strings (comments and -c/-r lines skipped)."""
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(canonicalize_name(Requirement(line).name))
    return names


def _in_file(path: Path) -> set[str]:
    return _requirement_names(path.read_text().splitlines())


def _lock(path: Path) -> dict[str, str]:
    """{canonical name: version} of a compiled lock."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;]+)", path.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


@cache
def _import_names() -> dict[str, list[str]]:
    return md.packages_distributions()


@cache
def _files(dist: str) -> frozenset[str]:
    return frozenset(str(f) for f in md.distribution(dist).files or ())


def _providers(module: str) -> set[str]:
    """Distributions that ship `module`: by top-level name, narrowed by the deeper module path
    where several distributions share a namespace (`airflow.sdk` is the task SDK's)."""
    parts = module.split(".")
    candidates = set(_import_names().get(parts[0], ()))
    for depth in range(2, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        narrowed = {d for d in candidates
                    if any(f == prefix + ".py" or f.startswith(prefix + "/") for f in _files(d))}
        if not narrowed:
            break
        candidates = narrowed
    return {canonicalize_name(d) for d in candidates}


def _is_meta(dist: str) -> bool:
    """A distribution with no importable module of its own (apache-airflow)."""
    return not any(f.endswith((".py", ".so")) for f in _files(dist))


def _stands_for(declared: set[str]) -> dict[str, str]:
    """{distribution: the declared one it counts as}: each declared distribution, and for a
    declared meta-package the distributions it requires."""
    out = {d: d for d in declared}
    for dist in declared:
        if _is_meta(dist):
            for text in md.requires(dist) or ():
                req = Requirement(text)
                if req.marker is None or req.marker.evaluate({"extra": ""}):
                    out.setdefault(canonicalize_name(req.name), dist)
    return out


def check(roots: Iterable[Path], declared: set[str], runtime_only: Iterable[str] = (),
          first_party: set[str] | None = None, skip_unknown: bool = False) -> Report:
    """Compare the third-party imports below `roots` with the `declared` distributions."""
    stands_for = _stands_for(declared)
    report, used = Report(), set()
    for module, files in third_party_imports.third_party(roots, first_party).items():
        top = module.split(".")[0]
        providers = _providers(module)
        if not providers:
            if not skip_unknown:
                report.unknown.setdefault(top, set()).update(files)
            continue
        hits = {stands_for[p] for p in providers if p in stands_for}
        if hits:
            used |= hits
        else:
            for dist in providers:
                report.undeclared.setdefault(dist, set()).update(files)
    report.unused = declared - used - {canonicalize_name(d) for d in runtime_only}
    return report


def _production() -> set[str]:
    return _requirement_names(PYPROJECT["project"]["dependencies"])


def _test_extra() -> set[str]:
    return _requirement_names(PYPROJECT["project"]["optional-dependencies"]["test"])


def test_package_dags_and_plugins_import_only_declared_dependencies_and_use_all_of_them():
    report = check([REPO / r for r in PRODUCTION_ROOTS], _production(), RUNTIME_ONLY)
    assert report.problems() == []


def test_tests_and_benchmarks_import_only_declared_packages_and_use_the_whole_test_extra():
    # Helpers that conftests register under their own name (qualify_helpers) are no distribution;
    # a missing third-party package fails the test run itself.
    # Production dependencies count as run-time only here: only the test extra must be used.
    report = check([REPO / r for r in TEST_ROOTS], _production() | _test_extra(),
                   _production() | set(TEST_RUNTIME_ONLY),
                   third_party_imports.first_party([REPO / r for r in PRODUCTION_ROOTS])
                   | third_party_imports.first_party([REPO / r for r in TEST_ROOTS], every_folder=True),
                   skip_unknown=True)
    assert report.problems() == []


def test_run_time_only_entries_are_declared_so_none_is_stale():
    assert {canonicalize_name(d) for d in RUNTIME_ONLY} <= _production()
    assert {canonicalize_name(d) for d in TEST_RUNTIME_ONLY} <= _test_extra()


def test_given_an_undeclared_import_and_an_unused_declaration_then_both_are_reported(tmp_path):
    pkg = tmp_path / "include"
    pkg.mkdir()
    (pkg / "mod.py").write_text("import os\nimport yaml\nfrom airflow.sdk import dag\nfrom . import sibling\n")
    report = check([pkg], {"apache-airflow", "requests", "psycopg"}, runtime_only={"psycopg"})
    assert set(report.undeclared) == {"pyyaml"}
    assert report.undeclared["pyyaml"] == {"include/mod.py"}
    assert report.unused == {"requests"}  # apache-airflow is used through airflow.sdk (the task SDK)
    assert any("pyyaml is imported by include/mod.py but not declared" in p for p in report.problems())


def test_given_an_import_no_distribution_provides_then_it_is_reported(tmp_path):
    pkg = tmp_path / "include"
    pkg.mkdir()
    (pkg / "mod.py").write_text("import leadflow_no_such_package\n")
    assert set(check([pkg], set()).unknown) == {"leadflow_no_such_package"}
    assert check([pkg], set(), skip_unknown=True).problems() == []


def test_namespace_imports_map_to_the_distribution_that_ships_the_module():
    assert _providers("airflow.sdk") == {"apache-airflow-task-sdk"}
    assert _providers("airflow.plugins_manager") == {"apache-airflow-core"}
    assert _providers("jwt") == {"pyjwt"}


def test_requirements_in_declares_what_pyproject_declares():
    assert _in_file(REPO / "requirements.in") == _production()


def test_requirements_test_in_declares_the_test_extra_and_is_constrained_by_the_production_lock():
    text = (REPO / "requirements-test.in").read_text()
    assert re.search(r"^-c requirements\.txt$", text, re.M), "requirements-test.in must start from the production lock"
    assert _in_file(REPO / "requirements-test.in") == _test_extra()


def test_production_lock_pins_every_dependency_and_no_test_tool():
    lock = _lock(REPO / "requirements.txt")
    assert _production() - set(lock) == set()
    assert {canonicalize_name(d) for d in TEST_ONLY} & set(lock) == set()
    assert _test_extra() - set(lock) <= {canonicalize_name(d) for d in TEST_ONLY} | {"pytest-timeout", "pytest-xdist"}


def test_test_lock_pins_the_test_extra_at_the_production_versions():
    prod, test = _lock(REPO / "requirements.txt"), _lock(REPO / "requirements-test.txt")
    assert _test_extra() - set(test) == set()
    assert {n: (prod[n], v) for n, v in test.items() if n in prod and prod[n] != v} == {}


def _supported_minors() -> list[str]:
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(8, 20) if f"3.{minor}.0" in spec]


@pytest.mark.parametrize("lock", ["requirements.txt", "requirements-test.txt"])
def test_locks_are_universal_from_the_lowest_supported_python(lock):
    header = (REPO / lock).read_text().splitlines()[1]
    assert "--universal" in header and f"--python-version {_supported_minors()[0]}" in header, header


def test_requires_python_covers_3_11_and_3_12_and_bootstrap_accepts_exactly_those():
    assert {"3.11", "3.12"} <= set(_supported_minors())
    bootstrap = (REPO / "scripts" / "bootstrap.sh").read_text()
    supported = re.search(r'^SUPPORTED_PYTHONS="([^"]+)"', bootstrap, re.M).group(1).split()
    assert supported == _supported_minors()


def test_makefile_lock_target_compiles_both_locks_as_their_headers_say():
    makefile = (REPO / "Makefile").read_text()
    for lock in ("requirements.txt", "requirements-test.txt"):
        command = (REPO / lock).read_text().splitlines()[1].strip("# ").replace("uv pip compile ", "")
        args = command.split()
        line = next(l for l in makefile.splitlines() if "uv pip compile" in l and f"-o {lock}" in l)
        assert all(arg in line.split() for arg in args), (line, command)


def test_import_lister_prints_deferred_third_party_imports_and_leaves_out_stdlib_and_own(tmp_path, capsys):
    pkg = tmp_path / "dags"
    pkg.mkdir()
    (pkg / "helper.py").write_text("")
    (pkg / "dag.py").write_text(
        "import json\nimport helper\nfrom leadflow import x\n\ndef run():\n    from sklearn.ensemble import A\n"
    )
    assert third_party_imports.main([str(pkg)]) == 0
    assert capsys.readouterr().out.split() == ["sklearn.ensemble"]


def test_import_lister_given_a_missing_folder_then_names_it_and_exits_2(tmp_path, capsys):
    assert third_party_imports.main([str(tmp_path / "nope")]) == 2
    assert "not a folder: " + str(tmp_path / "nope") in capsys.readouterr().err
