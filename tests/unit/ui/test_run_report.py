"""The self-contained HTML run report."""

from __future__ import annotations

import re

import pytest
from leadflow_ui_seed import CRM, RUN_1, RUN_2

from leadflow.report import render_run_report, write_run_report
from leadflow.views.paths import run_folder_name


def test_write_run_report_writes_one_file_per_crm_and_run(seeded, tmp_path):
    path = write_run_report(seeded, CRM, RUN_1, tmp_path)
    assert path == tmp_path / CRM / f"{run_folder_name(RUN_1)}.html"
    html = path.read_text()
    assert RUN_1 in html and "success" in html
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_report_has_summary_dq_transitions_and_charts(seeded):
    html = render_run_report(seeded, CRM, RUN_1)
    cards = dict(re.findall(r'data-key="(\w+)">([\d,—]+)<', html))
    assert cards == {"pulled": "120", "enriched": "100", "quarantined": "7", "scored": "110",
                     "changed": "40", "pushed": "38", "rejected": "2", "overrides": "—"}
    assert "quarantine_share" in html and "required:email" in html and "1 failed" in html
    assert "lead -&gt; mql" in html  # stage transitions
    assert html.count("<svg") >= 4  # stages, transitions, histogram, grades
    assert "confirmed" in html and "rejected" in html  # audit log of the run
    assert "model_version" in html  # other figures


def test_dry_run_report_shows_the_preview(seeded):
    html = render_run_report(seeded, CRM, RUN_2)
    assert "dry run: nothing was written to the CRM" in html
    assert "Push preview" in html and "c-42" in html
    assert "nothing was sent to the CRM in this run" in html


def test_report_is_self_contained(seeded):
    html = render_run_report(seeded, CRM, RUN_1)
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"(src|href)=['\"]https?://", html)


def test_report_of_unknown_run_raises(seeded):
    with pytest.raises(LookupError):
        render_run_report(seeded, CRM, "no-such-run")


def test_report_shows_the_sla_as_measured_by_its_run_and_its_alert(seeded):
    from leadflow.verdicts.sla import measure
    from leadflow.warehouse import repo

    import pandas as pd

    handed = pd.DataFrame([{"record_id": "c-1", "handed_over_at": 1_000, "score": 81.0, "grade": "A1",
                            "persona": "director", "run_id": RUN_1}])
    events = pd.DataFrame([{"record_id": "c-1", "handed_over_at": 1_000, "verdict": "rejected", "decided_at": 7_201_000,
                            "writer": "person", "field": "lead_status", "value": "unqualified", "run_id": RUN_1}])
    figures = measure(handed, events, now_ms=10_000_000, run_id=RUN_1)
    repo.record_step(seeded, CRM, RUN_1, "sla", {"sla": figures, "sla_alert": "9 sales-ready leads ignored"})
    repo.refresh_run_summary(seeded, CRM, RUN_1)
    html = render_run_report(seeded, CRM, RUN_1)
    cards = dict(re.findall(r'data-sla="(\w+)">([^<]*)<', html))
    assert cards["handed_over"] == "1" and cards["rejected"] == "1" and cards["acceptance_rate"] == "0%"
    assert cards["median_hours_to_first_touch"] == "2.0"
    assert dict(re.findall(r'data-sla-run="(\w+)">([^<]*)<', html))["rejected"] == "1"
    assert "9 sales-ready leads ignored" in html and "status unqualified" in html


def _view():
    import pandas as pd

    return pd.DataFrame([
        {"company_id": "c-1", "leads": 1, "engaged": 0, "roles": None, "personas": None, "best_record_id": "7",
         "best_score": 40.0, "company_score": 40, "committee": "0 engaged of 1 lead; best lead 40"},
        {"company_id": "c-9", "leads": 5, "engaged": 3, "roles": "decider;influencer", "personas": "executive;manager",
         "best_record_id": "42", "best_score": 88.0, "company_score": 98, "committee": "3 engaged of 5 leads"},
        {"company_id": "c-5", "leads": 2, "engaged": 1, "roles": "user", "personas": "practitioner",
         "best_record_id": "51", "best_score": 19.5, "company_score": 25, "committee": "1 engaged of 2 leads"},
    ])


def test_account_figures_count_the_view_and_name_no_company_or_lead():
    import json

    from leadflow.qualify.accounts import account_figures

    figures = account_figures(_view(), committee_waits=4)
    assert figures == {
        "companies": 3, "with_engaged_leads": 2, "committees": 1, "engaged_leads": 4,
        "roles": {"decider": 1, "influencer": 1, "user": 1},
        "personas": {"executive": 1, "manager": 1, "practitioner": 1},
        "company_score": {"0-19": 0, "20-39": 1, "40-59": 1, "60-79": 0, "80-100": 1},
        "best_lead_score": {"0-19": 1, "20-39": 0, "40-59": 1, "60-79": 0, "80-100": 1},
        "committee_waits": 4,
    }
    assert not {"c-1", "c-9", "42", "51"} & set(json.dumps(figures).replace('"', " ").split())
    empty = account_figures(_view().iloc[:0])
    assert empty["companies"] == 0 and sum(empty["company_score"].values()) == 0 and empty["personas"] == {}


def test_report_shows_the_account_view_of_its_run_in_counts_and_report_json_has_it(seeded, monkeypatch, capsys):
    import json

    from leadflow import cli
    from leadflow.qualify.accounts import account_figures
    from leadflow.warehouse import repo

    repo.record_step(seeded, CRM, RUN_2, "accounts", {"accounts_scored": 3, "committee_waits": 4,
                                                      "accounts": account_figures(_view(), committee_waits=4)})
    repo.refresh_run_summary(seeded, CRM, RUN_2)
    html = render_run_report(seeded, CRM, RUN_2)
    section = html[html.index('<section id="accounts">'):html.index('<section id="disqualification">')]
    assert dict(re.findall(r'data-accounts="(\w+)">([^<]*)<', section)) == {
        "companies": "3", "with_engaged_leads": "2", "committees": "1", "engaged_leads": "4", "committee_waits": "4"}
    assert dict(re.findall(r'data-accounts-persona="(\w+)">([^<]*)<', section)) == {
        "executive": "1", "manager": "1", "practitioner": "1"}
    assert dict(re.findall(r'data-accounts-role="(\w+)">([^<]*)<', section))["user"] == "1"
    assert re.findall(r'data-accounts-company-score="80-100">(\d+)<', section) == ["1"]
    assert re.findall(r'data-accounts-best-score="0-19">(\d+)<', section) == ["1"]
    assert not re.search(r"c-\d|best lead \d", section)  # counts only: no company, no lead
    assert "this run did not compute the account view" in render_run_report(seeded, CRM, RUN_1)

    monkeypatch.setenv("LEADFLOW_WAREHOUSE_URL", str(seeded.url))
    assert cli.main(["report", "--json", "--crm", CRM]) == 0
    assert json.loads(capsys.readouterr().out)[CRM]["accounts"] == account_figures(_view(), committee_waits=4)
