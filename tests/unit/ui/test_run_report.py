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
