"""`leadflow` command line: run, report, sandbox, model, backtest, rollback.

`leadflow run` calls the same pipeline functions as the DAG, in-process, with the same
connection (`AIRFLOW_CONN_LEADFLOW_<CRM>`) and warehouse (`LEADFLOW_WAREHOUSE_URL`).
Every command goes through `main`: exit 0 on success, 1 when the run or check failed, 2 on a
usage or configuration error (see `leadflow.console`).

`leadflow.pipeline` and `leadflow.maintenance` are imported by the commands that run them: every
command builds the whole parser through this module, and those two add about 0.9 s to it
(`python -X importtime`: every step's package, Jinja2, requests).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, NoReturn, Sequence

from leadflow.connections import get_connection
from leadflow.console import (
    COMPLETED_STATUSES, EXAMPLE_FORMATTER, EXIT_OK, CommandFailed, failure_lines, hint_for, is_usage_error, run_command,
    step_line, summary_lines,
)
from leadflow.crm.registry import available_crms
from leadflow.quality.quarantine import top_quarantine_reasons
from leadflow.views.paths import report_path, reports_dir
from leadflow.warehouse import repo
from leadflow.warehouse.db import ensure_schema, get_engine

log = logging.getLogger(__name__)

CRMS = ("hubspot", "salesforce")

# Packages that add their own subcommands through a `register(subparsers)` function.
_COMMAND_MODULES = ("leadflow.sandbox.cli", "leadflow.predict.cli")


def _utc_datetime(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r} (e.g. 2026-01-31)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str))


def _cmd_run(args: argparse.Namespace) -> int:
    from leadflow.pipeline import STEPS, RunContext, default_run_id, run_all  # slow: see the module docstring

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
    done: list[str] = []

    def on_step(step: str, summary: dict[str, Any]) -> None:
        done.append(step)
        if not args.json:
            print(step_line(step, (summary.get("durations_s") or {}).get(step), summary), flush=True)

    try:
        summary = run_all(ctx, on_step=on_step)
    except Exception as exc:
        if is_usage_error(exc):
            raise
        step = STEPS[len(done)] if len(done) < len(STEPS) else "report"
        error = " ".join(str(exc).split()) or type(exc).__name__
        print("\n".join(failure_lines(step, error, hint_for(error))), file=sys.stderr)
        raise CommandFailed(f"run {ctx.run_id} failed; `leadflow report --crm {ctx.crm}` shows what it "
                            "recorded") from exc
    if args.json:
        _print_json(summary)
    else:
        stored = report_payload(ctx.crm).get(ctx.crm) or {}  # adds the run's start and end times
        print("\n".join(run_overview(ctx.crm, stored if stored.get("run_id") == ctx.run_id else summary)))
    if summary.get("status") not in COMPLETED_STATUSES:
        raise CommandFailed(f"run {ctx.run_id} ended with status {summary.get('status')}: see its run report")
    if summary.get("warning"):
        print(f"leadflow: warning: {summary['warning']}", file=sys.stderr)
    return EXIT_OK


def run_overview(crm: str, summary: dict[str, Any]) -> list[str]:
    """The compact human summary of one run: its counts, top quarantine reasons and report path."""
    reasons = top_quarantine_reasons(get_engine(), crm, n=3) if summary.get("quarantined") else []
    path = report_path(reports_dir(), crm, str(summary.get("run_id")))
    return summary_lines(summary, quarantine_reasons=reasons, report_path=path if path.exists() else None)


def report_payload(crm: str | None) -> dict[str, Any]:
    """The last run's summary per CRM, with the report keys always present."""
    from leadflow.pipeline import run_summary  # slow: see the module docstring

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
        _print_json(payload)
    elif not payload:
        print("no runs yet: try `leadflow run --crm hubspot` or `make run`")
    else:
        for crm, summary in payload.items():
            print("\n".join(run_overview(crm, summary)))
    # Failed, or stopped while running; a warning (partial pull) is shown above, not a failure.
    failed = [f"{crm} ({s['status']})" for crm, s in payload.items() if s["status"] not in COMPLETED_STATUSES]
    if failed:
        raise CommandFailed(f"the last run did not succeed: {', '.join(failed)}; see its run report")
    return EXIT_OK


def _cmd_rollback(args: argparse.Namespace) -> int:
    from leadflow.maintenance import run_rollback  # slow: see the module docstring

    report = run_rollback(args.crm, args.run_id, dry_run=args.dry_run,
                          connection=get_connection(f"leadflow_{args.crm}"))
    _print_json(report)
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that names the fix's place (subparsers inherit the class)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="leadflow",
        description="Keep a CRM's leads qualified: pull, enrich, validate, score, push back.",
        epilog="example:\n  leadflow run --crm hubspot --dry-run\n\n"
               "exit codes: 0 success, 1 the run or check failed, 2 usage or configuration error",
        formatter_class=EXAMPLE_FORMATTER,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages, show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the whole pipeline once, in-process",
                         description="Pull, qualify and push for one CRM, like the DAG does; prints one "
                                     "line per step and a summary.",
                         epilog="example:\n  leadflow run --crm hubspot --dry-run\n"
                                "  leadflow run --crm hubspot --json > run.json",
                         formatter_class=EXAMPLE_FORMATTER)
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
    run.add_argument("--json", action="store_true", help="print the full summary as JSON instead")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="print the last run's summary per CRM",
                         description="The last run's counts per CRM; exits 1 when that run did not succeed.",
                         epilog="example:\n  leadflow report --crm hubspot\n  leadflow report --json",
                         formatter_class=EXAMPLE_FORMATTER)
    rep.add_argument("--crm", choices=CRMS, help="only this CRM")
    rep.add_argument("--json", action="store_true", help="print JSON")
    rep.set_defaults(func=_cmd_report)

    rollback = sub.add_parser(
        "rollback",
        help="restore the CRM values a run wrote (skips records changed since)",
        description="Write back the before-values of every value a run confirmed, for records "
        "where the CRM still holds leadflow's value; records changed since are skipped and listed.",
        epilog="example:\n  leadflow rollback --crm hubspot --run-id manual__2026-11-24T03:50:12+00:00 --dry-run",
        formatter_class=EXAMPLE_FORMATTER,
    )
    rollback.add_argument("--run-id", required=True, help="the run whose writes to undo")
    rollback.add_argument("--crm", choices=available_crms(), default="hubspot", help="which CRM")
    rollback.add_argument("--dry-run", action="store_true", help="report what would be restored, write nothing")
    rollback.set_defaults(func=_cmd_rollback)

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
    """Parse, set up logging, run the command; return the exit code (never raise)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 after --help, 2 after a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else 2
    level = logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING)
    # The level on the handler too: some libraries (Great Expectations) set INFO on their own loggers.
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    return run_command(args.func, args, verbose=args.verbose)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
