"""`leadflow rollback`: restore the values a run wrote, where nobody changed them since."""

from __future__ import annotations

import argparse
import json

from leadflow.console import EXAMPLE_FORMATTER


def _cmd_rollback(args: argparse.Namespace) -> int:
    from leadflow.connections import get_connection
    from leadflow.maintenance import run_rollback

    report = run_rollback(args.crm, args.run_id, dry_run=args.dry_run,
                          connection=get_connection(f"leadflow_{args.crm}"))
    print(json.dumps(report, indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="restore the CRM values a run wrote (skips records changed since)",
        description="Write back the before-values of every value a run confirmed, for records "
        "where the CRM still holds leadflow's value; records changed since are skipped and listed.",
        epilog="example:\n  leadflow rollback --crm hubspot --run-id manual__2026-11-24T03:50:12+00:00 --dry-run",
        formatter_class=EXAMPLE_FORMATTER,
    )
    parser.add_argument("--run-id", required=True, help="the run whose writes to undo")
    from leadflow.crm.registry import available_crms

    parser.add_argument("--crm", choices=available_crms(), default="hubspot", help="which CRM")
    parser.add_argument("--dry-run", action="store_true", help="report what would be restored, write nothing")
    parser.set_defaults(func=_cmd_rollback)
