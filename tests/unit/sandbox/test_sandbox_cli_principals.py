"""`leadflow sandbox serve --users N --workflows N`: principals with reproducible, printed tokens."""

from __future__ import annotations

import re

import pytest

from leadflow.cli import main
from leadflow.sandbox import server


@pytest.fixture
def served(monkeypatch):
    """Run `sandbox serve` up to the point of serving; collect the settings it would serve."""
    seen = []

    def fake_serve(settings, **kwargs):
        seen.append(settings)
        kwargs["store"].close()

    monkeypatch.setattr(server, "serve", fake_serve)
    return seen


def _serve(db, *extra: str) -> int:
    return main(["sandbox", "serve", "--db", str(db), "--contacts", "20", "--salesforce-port", "off", *extra])


def test_given_users_and_workflows_then_their_tokens_are_printed_and_accepted(tmp_path, served, capsys):
    assert _serve(tmp_path / "crm.db", "--users", "2", "--workflows", "1") == 0
    settings = served[-1]
    printed = re.findall(r"^# HubSpot (\w+) (\d+) \(.*\) token: (\S+)$", capsys.readouterr().out, re.M)
    assert printed == [(p.kind, str(p.id), p.token) for p in settings.principals]
    assert [p.kind for p in settings.principals] == ["user", "user", "workflow"]
    assert set(settings.sources_by_token()) == {settings.token, *(p.token for p in settings.principals)}


def test_given_a_restart_on_the_same_db_then_the_principal_tokens_are_the_same(tmp_path, served):
    _serve(tmp_path / "crm.db", "--users", "1")
    _serve(tmp_path / "crm.db", "--users", "1")
    assert served[0].principals == served[1].principals
    _serve(tmp_path / "other.db", "--users", "1")
    assert served[2].principals[0].token != served[0].principals[0].token


def test_given_no_principal_flags_then_only_leadflows_token_is_accepted(tmp_path, served, capsys):
    _serve(tmp_path / "crm.db")
    assert served[-1].principals == () and "# HubSpot" not in capsys.readouterr().out


def test_given_a_negative_user_count_then_usage_error_names_the_flag(tmp_path, served, capsys):
    assert _serve(tmp_path / "crm.db", "--users", "-1") == 2
    assert "--users must be between 0 and 100, got -1" in capsys.readouterr().err and served == []
