"""Progress bars: drawn only for a person at a terminal; silent in CI, Airflow tasks and logs."""

from __future__ import annotations

import io

import pytest

from leadflow import progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_quiet_env(monkeypatch):
    for name in ("CI", "AIRFLOW_CTX_DAG_ID", "LEADFLOW_PROGRESS"):
        monkeypatch.delenv(name, raising=False)


def test_given_a_terminal_then_track_draws_count_total_and_rate():
    term = _Terminal()
    with progress.track("pull hubspot", total=300, unit="leads", stream=term, min_interval_s=0) as advance:
        advance(100)
        advance(200)
    drawn = term.getvalue()
    assert "pull hubspot" in drawn and "300/300" in drawn and "leads/s" in drawn


def test_given_no_total_then_track_draws_the_count_without_a_bar():
    term = _Terminal()
    with progress.track("pull hubspot", unit="leads", stream=term, min_interval_s=0) as advance:
        advance(42)
    assert "42 leads" in term.getvalue()


def test_given_output_is_not_a_terminal_then_nothing_is_drawn():
    log = io.StringIO()
    with progress.track("push", total=10, stream=log) as advance:
        advance(10)
    assert log.getvalue() == ""


@pytest.mark.parametrize("name,value", [("CI", "true"), ("AIRFLOW_CTX_DAG_ID", "leadflow_hubspot"),
                                        ("LEADFLOW_PROGRESS", "0")])
def test_given_ci_or_an_airflow_task_then_a_terminal_stays_quiet(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    term = _Terminal()
    assert not progress.enabled(term)
    with progress.track("push", total=10, stream=term) as advance:
        advance(10)
    assert term.getvalue() == ""


def test_iterate_yields_every_item_unchanged_and_counts_them():
    term = _Terminal()
    assert list(progress.iterate(iter("abc"), "import", total=3, stream=term, min_interval_s=0)) == ["a", "b", "c"]
    assert "3/3" in term.getvalue()
