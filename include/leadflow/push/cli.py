"""`leadflow rollback`: restore the values a run wrote, where nobody changed them since."""

from __future__ import annotations

import argparse
import json


def _cmd_rollback(args: argparse.Namespace) -> int:
    from leadflow.connections import get_connection
    from leadflow.crm.registry import get_connector
    from leadflow.push.rollback import rollback_run
    from leadflow.warehouse.db import ensure_schema, get_engine

    engine = get_engine()
    ensure_schema(engine)
    connector = get_connector(args.crm, get_connection(f"leadflow_{args.crm}"))
    try:
        report = rollback_run(engine, connector, args.crm, args.run_id, dry_run=args.dry_run)
    finally:
        connector.close()
    print(json.dumps(report.as_dict(), indent=2))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rollback",
        help="restore the CRM values a run wrote (skips records changed since)",
        description="Write back the before-values of every value a run confirmed, for records "
        "where the CRM still holds leadflow's value; records changed since are skipped and listed.",
    )
    parser.add_argument("--run-id", required=True, help="the run whose writes to undo")
    parser.add_argument("--crm", choices=("hubspot", "salesforce"), default="hubspot", help="which CRM")
    parser.add_argument("--dry-run", action="store_true", help="report what would be restored, write nothing")
    parser.set_defaults(func=_cmd_rollback)
