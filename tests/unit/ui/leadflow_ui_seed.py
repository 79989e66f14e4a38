"""A warehouse seeded with two runs of one CRM, for the Leadflow page and report tests."""

from __future__ import annotations

import json

from leadflow.warehouse.tables import leads, push_log, runs, scores

CRM = "hubspot"
RUN_1 = "scheduled__2026-11-20T02:00:00+00:00"
RUN_2 = "manual__2026-11-21T10:00:00+00:00"  # the dry run, newest
T0 = 1_763_600_000_000  # epoch ms


def _summary_1() -> dict:
    return {
        "pulled": 120, "enriched": 100, "quarantined": 7, "scored": 110, "changed": 40,
        "pushed": 38, "rejected": 2, "total": 120, "skipped_owned": 3,
        "proposed_stages": {"subscriber": 50, "lead": 40, "mql": 15, "sql": 5},
        "durations_s": {"extract": 1.5, "qualify": 0.7, "push": 2.1},
        "preview": {"records": 40, "per_field": {"leadflow_score": 40, "lifecycle_stage": 12},
                    "stage_transitions": {"lead -> mql": 10, "mql -> sql": 2}, "samples": []},
        "model_version": "2026.11",
    }


def _summary_2() -> dict:
    return {
        "pulled": 30, "enriched": 25, "quarantined": 1, "scored": 111, "changed": 9,
        "pushed": 0, "rejected": 0, "dry_run": True,
        "proposed_stages": {"subscriber": 48, "lead": 41, "mql": 16, "sql": 6},
        "preview": {
            "records": 9,
            "per_field": {"leadflow_score": 9, "lifecycle_stage": 4},
            "stage_transitions": {"lead -> mql": 3, "subscriber -> lead": 1},
            "samples": [{"record_id": "c-42", "changes": {
                "lifecycle_stage": {"before": "lead", "after": "mql"},
                "leadflow_score": {"before": "55", "after": "71"}}}],
        },
    }


def seed(engine) -> None:
    from leadflow.quality.tables import dq_results
    from leadflow.warehouse.quarantine_store import quarantine

    with engine.begin() as conn:
        conn.execute(runs.insert(), [
            {"run_id": RUN_1, "crm": CRM, "started_at": T0, "finished_at": T0 + 65_000,
             "status": "success", "dry_run": False, "summary": json.dumps(_summary_1())},
            {"run_id": RUN_2, "crm": CRM, "started_at": T0 + 86_400_000,
             "finished_at": T0 + 86_430_000, "status": "success", "dry_run": True,
             "summary": json.dumps(_summary_2())},
        ])
        # scores: 0, 5, 10, ..., 100 -> 21 scores; grades cycle through four cells
        grades = ["A1", "B2", "C3", "D4"]
        conn.execute(scores.insert(), [
            {"crm": CRM, "record_id": f"c-{i}", "score": float(i * 5), "fit_score": 50.0,
             "engagement_score": 40.0, "grade": grades[i % 4], "stage": "lead",
             "lead_status": "open",
             "disqualification_reason": ("student" if i % 5 == 0 else
                                         "competitor" if i % 7 == 0 else None),
             "reasons": "+10 title", "model_version": "2026.11", "run_id": RUN_2,
             "scored_at": T0}
            for i in range(21)
        ])
        conn.execute(leads.insert(), [
            {"crm": CRM, "record_id": f"c-{i}", "lifecycle_stage": stage, "pulled_at": T0,
             "pull_run_id": RUN_1}
            for i, stage in enumerate(["lead"] * 6 + ["mql"] * 3 + ["customer"] + [None])
        ])
        conn.execute(push_log.insert(), [
            {"run_id": RUN_1, "crm": CRM, "record_id": "c-1", "field": "lifecycle_stage",
             "before": "lead", "after": "mql", "status": "confirmed", "attempts": 1,
             "error": None, "created_at": T0, "updated_at": T0},
            {"run_id": RUN_1, "crm": CRM, "record_id": "c-2", "field": "leadflow_score",
             "before": "1", "after": "77", "status": "rejected", "attempts": 1,
             "error": "PROPERTY_DOESNT_EXIST: leadflow_score", "created_at": T0,
             "updated_at": T0 + 1},
            {"run_id": RUN_1, "crm": CRM, "record_id": "c-3", "field": "lead_status",
             "before": None, "after": "open", "status": "failed", "attempts": 3,
             "error": "gave up after 3 attempts", "created_at": T0, "updated_at": T0 + 2},
        ])
        conn.execute(dq_results.insert(), [
            {"run_id": RUN_1, "crm": CRM, "stage": "rows", "expectation": "required:email",
             "success": True, "observed": "0 rows", "threshold": None, "unexpected_count": 0,
             "created_at": T0},
            {"run_id": RUN_1, "crm": CRM, "stage": "batch", "expectation": "quarantine_share",
             "success": False, "observed": "0.31", "threshold": "<= 0.2",
             "unexpected_count": None, "created_at": T0},
            {"run_id": RUN_2, "crm": CRM, "stage": "batch", "expectation": "freshness",
             "success": True, "observed": "2 h", "threshold": "<= 48 h",
             "unexpected_count": None, "created_at": T0},
        ])
        conn.execute(quarantine.insert(), [
            {"crm": CRM, "record_id": f"q-{i}", "expectation": exp, "column": col,
             "run_id": RUN_2, "value": "x", "first_seen": T0, "last_seen": T0,
             "released_at": released}
            for i, (exp, col, released) in enumerate([
                ("email_syntax", "email", None), ("email_syntax", "email", None),
                ("email_syntax", "email", None), ("range", "employees", None),
                ("range", "employees", T0),  # released: not counted
            ])
        ])
