"""`leadflow` command line: sandbox, run, report, model, backtest.

`leadflow run` calls the same pipeline functions as the DAG, in-process, with the same
connection (`AIRFLOW_CONN_LEADFLOW_<CRM>`) and warehouse (`LEADFLOW_WAREHOUSE_URL`).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Sequence

log = logging.getLogger(__name__)

CRMS = ("hubspot", "salesforce")

# Packages that add their own subcommands through a `register(subparsers)` function.
_COMMAND_MODULES = ("leadflow.sandbox.cli", "leadflow.predict.cli", "leadflow.push.cli")


def _utc_datetime(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _cmd_run(args: argparse.Namespace) -> int:
    from leadflow.pipeline import RunContext, default_run_id, run_all

    ctx = RunContext(
        crm=args.crm,
        run_id=args.run_id or default_run_id(),
        dry_run=args.dry_run,
        full_refresh=args.full_refresh,
        model_path=args.model,
        push_enabled=not args.no_push,
        force=args.force,
        only_record_ids=args.only or None,
        since=args.since,
    )
    summary = run_all(ctx)
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def report_payload(crm: str | None) -> dict[str, Any]:
    """The last run's summary per CRM, with the report keys always present."""
    from leadflow.pipeline import run_summary
    from leadflow.warehouse import repo
    from leadflow.warehouse.db import ensure_schema, get_engine

    engine = get_engine()
    ensure_schema(engine)
    out: dict[str, Any] = {}
    for name in [crm] if crm else CRMS:
        runs = repo.latest_runs(engine, name, limit=1)
        if not runs:
            continue
        run = runs[0]
        summary = run_summary(name, run["run_id"], run["summary"])
        summary.update({"status": run["status"], "started_at": run["started_at"],
                        "finished_at": run["finished_at"], "dry_run": bool(run["dry_run"])})
        out[name] = summary
    return out


def _cmd_report(args: argparse.Namespace) -> int:
    payload = report_payload(args.crm)
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
        return 0
    if not payload:
        print("no runs yet: try `leadflow run --crm hubspot`")
        return 0
    for crm, summary in payload.items():
        print(f"{crm}: run {summary['run_id']} ({summary['status']})")
        for key in ("pulled", "scored", "changed", "pushed", "rejected"):
            print(f"  {key:>10}: {summary[key]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadflow",
        description="Keep a CRM's leads qualified: pull, enrich, validate, score, push back.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the whole pipeline once, in-process",
                         description="Pull, qualify and push for one CRM, like the DAG does.")
    run.add_argument("--crm", choices=CRMS, default="hubspot", help="which CRM connection to use")
    run.add_argument("--dry-run", action="store_true", help="compute the diff, write nothing to the CRM")
    run.add_argument("--full-refresh", action="store_true", help="ignore the watermark, pull every lead")
    run.add_argument("--run-id", help="run id to record (default: cli__<UTC time>)")
    run.add_argument("--model", help="qualification model YAML (default: the shipped model)")
    run.add_argument("--no-push", action="store_true", help="score, but write nothing to the CRM")
    run.add_argument("--force", action="store_true",
                     help="push even if it changes more records than the configured share")
    run.add_argument("--only", action="append", metavar="RECORD_ID",
                     help="only score and push this record (repeatable)")
    run.add_argument("--since", type=_utc_datetime, metavar="ISO_DATE",
                     help="pull leads changed since this date instead of the stored watermark")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="print the last run's summary per CRM",
                         description="The last run's counts per CRM.")
    rep.add_argument("--crm", choices=CRMS, help="only this CRM")
    rep.add_argument("--json", action="store_true", help="print JSON")
    rep.set_defaults(func=_cmd_report)

    for module_name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not module_name.startswith(exc.name):
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
