"""leadflow.env: the one object that reads LEADFLOW_* variables, and the doc generated from it."""

from __future__ import annotations

import logging
import re
import tokenize
from pathlib import Path

import pytest

from leadflow import env as env_module
from leadflow.env import LeadflowEnv, LeadflowEnvError, configuration_markdown, leadflow_env, variables

REPO = Path(__file__).resolve().parents[2]


def test_given_no_variables_then_every_default_applies(tmp_path: Path) -> None:
    env = leadflow_env({})
    assert env.crms == ("hubspot", "salesforce")
    assert (env.schedule, env.timezone) == ("0 2 * * *", "UTC")
    assert (env.keep_freed_memory_mb, env.factorize_threads, env.warehouse_url) == (0, 0, None)
    assert env.var_path == REPO / "var"
    assert env.reports_path == REPO / "var" / "reports" and env.data_docs_path == REPO / "var" / "data_docs"


def test_given_var_dir_then_reports_and_data_docs_follow_unless_set_themselves(tmp_path: Path) -> None:
    env = leadflow_env({"LEADFLOW_VAR_DIR": str(tmp_path), "LEADFLOW_DATA_DOCS_DIR": "/docs"})
    assert env.reports_path == tmp_path / "reports"
    assert env.data_docs_path == Path("/docs")


def test_given_empty_values_then_they_count_as_unset() -> None:
    env = leadflow_env({"LEADFLOW_TIMEZONE": "", "LEADFLOW_CRMS": "  ", "LEADFLOW_WAREHOUSE_URL": ""})
    assert (env.timezone, env.crms, env.warehouse_url) == ("UTC", ("hubspot", "salesforce"), None)


def test_given_crm_list_with_spaces_and_trailing_comma_then_names_are_trimmed() -> None:
    assert leadflow_env({"LEADFLOW_CRMS": " hubspot , salesforce ,"}).crms == ("hubspot", "salesforce")


@pytest.mark.parametrize(("name", "value", "says"), [
    ("LEADFLOW_KEEP_FREED_MEMORY_MB", "lots", "valid integer"),
    ("LEADFLOW_KEEP_FREED_MEMORY_MB", "-1", "greater than or equal to 0"),
    ("LEADFLOW_FACTORIZE_THREADS", "two", "valid integer"),
    ("LEADFLOW_TIMEZONE", "Mars/Olympus", "IANA time zone"),
    ("LEADFLOW_SCHEDULE", "every night", "cron expression"),
    ("LEADFLOW_CRMS", "HubSpot", "lower-case"),
    ("LEADFLOW_CRMS", "hubspot,hubspot", "listed twice"),
    ("LEADFLOW_WAREHOUSE_URL", "warehouse.db", "SQLAlchemy URL"),
    ("LEADFLOW_AIRFLOW_PORT", "70000", "less than or equal to 65535"),
])
def test_given_a_bad_value_then_the_error_names_the_variable_and_the_rule(name: str, value: str, says: str) -> None:
    with pytest.raises(LeadflowEnvError) as info:
        leadflow_env({name: value})
    assert f"{name}:" in str(info.value) and says in str(info.value)


def test_given_a_bad_warehouse_url_then_the_error_does_not_echo_it() -> None:
    with pytest.raises(LeadflowEnvError) as info:
        leadflow_env({"LEADFLOW_WAREHOUSE_URL": "user:s3cret@db"})
    assert "s3cret" not in str(info.value)


def test_given_presets_and_cron_then_schedules_are_accepted() -> None:
    assert leadflow_env({"LEADFLOW_SCHEDULE": "@daily"}).schedule == "@daily"
    assert leadflow_env({"LEADFLOW_SCHEDULE": "*/15 6-18 * * 1-5"}).schedule == "*/15 6-18 * * 1-5"


def test_given_an_unknown_leadflow_variable_then_it_is_named_in_one_warning(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(env_module, "_warned_unknown", set())
    with caplog.at_level(logging.WARNING, logger="leadflow.env"):
        leadflow_env({"LEADFLOW_WAREHOUSE_ULR": "sqlite://"})
        leadflow_env({"LEADFLOW_WAREHOUSE_ULR": "sqlite://"})
    assert caplog.text.count("LEADFLOW_WAREHOUSE_ULR") == 1


def test_variables_table_lists_every_field_with_a_description() -> None:
    rows = variables()
    assert [name for name, _, _ in rows] == [str(f.alias) for f in LeadflowEnv.model_fields.values()]
    assert all(name.startswith("LEADFLOW_") and default and len(description) > 10 for name, default, description in rows)
    assert ("LEADFLOW_CRMS", "hubspot,salesforce") in [(n, d) for n, d, _ in rows]
    # Machine-dependent defaults are shown as placeholders, never as this machine's path.
    assert str(REPO) not in configuration_markdown()


def test_configuration_doc_matches_the_settings_object() -> None:
    doc = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc == configuration_markdown(), "regenerate it: python -m leadflow.env > docs/configuration.md"


_READ = re.compile(r"""(?:environ(?:\.get)?|getenv)\s*[(\[]\s*["'](LEADFLOW_[A-Z0-9_]+)""")
_QUOTED = re.compile(r"""["'](LEADFLOW_[A-Z0-9_]+)["']""")
_MENTIONED = re.compile(r"(?<![A-Z0-9_])(LEADFLOW_[A-Z0-9_]*[A-Z0-9])")


def _sources() -> list[Path]:
    return [p for folder in ("include", "dags", "plugins") for p in (REPO / folder).rglob("*.py")]


def test_no_module_but_env_reads_a_leadflow_variable_itself() -> None:
    readers = {str(p.relative_to(REPO)) for p in _sources() if _READ.search(p.read_text(encoding="utf-8"))}
    assert readers == set()


def _named_in_text(path: Path) -> set[str]:
    """`LEADFLOW_*` names in the strings (messages, docstrings) and comments of a source file;
    `AIRFLOW_CONN_LEADFLOW_*` are connections, not variables."""
    names = set()
    with path.open(encoding="utf-8") as source:
        for token in tokenize.generate_tokens(source.readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT):
                names.update(_MENTIONED.findall(token.string))
    return names


def test_every_leadflow_variable_named_in_the_code_is_in_the_settings_object() -> None:
    named = {m for p in _sources() for m in _QUOTED.findall(p.read_text(encoding="utf-8"))}
    named |= {m for p in _sources() for m in _named_in_text(p)}
    assert named - {name for name, _, _ in variables()} == set()


def test_the_scan_sees_a_variable_in_a_message_or_comment(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text('# set LEADFLOW_A\nx = f"use LEADFLOW_B or AIRFLOW_CONN_LEADFLOW_HUBSPOT"\nLEADFLOW_C = 1\n')
    assert _named_in_text(path) == {"LEADFLOW_A", "LEADFLOW_B"}
