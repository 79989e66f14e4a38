"""`leadflow sandbox serve|seed|import`: argparse wiring. `leadflow.cli` calls `register(subparsers)`;
each command sets `func(args) -> int` and raises `UsageError` for bad input (exit 2).

The servers, the world and the CSV import are imported by the command that runs them: every
`leadflow` command builds its parser through this module, and they add about 1.4 s to it
(`python -X importtime`: FastAPI, the Salesforce API, the enrichment API, the actors).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from leadflow.cli import main as leadflow_main
from leadflow.console import EXAMPLE_FORMATTER, UsageError
from leadflow.sandbox.settings import SandboxSettings, generated_principals
from leadflow.validation import error_items

log = logging.getLogger(__name__)
DEFAULT_DB = Path("leadflow-sandbox.db")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `sandbox` with its `serve`, `seed` and `import` subcommands to the top-level parser."""
    sandbox = subparsers.add_parser("sandbox", help="local HubSpot + Salesforce CRM and enrichment API with a "
                                                    "seeded world",
                                    description="A local HubSpot CRM v3, Salesforce REST (TLS, own port) and "
                                                "company-enrichment API for demos and tests (loopback only).",
                                    epilog="example:\n  leadflow sandbox serve --db var/sandbox.db --contacts 5000",
                                    formatter_class=EXAMPLE_FORMATTER)
    commands = sandbox.add_subparsers(dest="sandbox_command", metavar="COMMAND", required=True)

    serve_p = commands.add_parser(
        "serve", help="serve the sandbox (seeds the db file first if it is empty)",
        description="Serve the sandbox; prints `export AIRFLOW_CONN_LEADFLOW_HUBSPOT=...` lines to use it.",
        epilog="example:\n  leadflow sandbox serve --port 8765 --contacts 5000 --faults 429=0.1,5xx=0.05",
        formatter_class=EXAMPLE_FORMATTER)
    _world_args(serve_p)
    serve_p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")
    serve_p.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default: 0)")
    serve_p.add_argument("--token", help="HubSpot bearer token (default: random, kept in the db file)")
    serve_p.add_argument("--enrichment-key", help="enrichment API key (default: random, kept in the db file)")
    serve_p.add_argument("--rate-limit", default="100/10", help="HubSpot burst limit N/SECONDS or 'off' (default: 100/10)")
    serve_p.add_argument("--search-rate-limit", default="5/1", help="search limit N/SECONDS or 'off' (default: 5/1)")
    serve_p.add_argument("--daily-limit", type=int, default=1_000_000, help="requests per token per UTC day")
    serve_p.add_argument("--enrichment-rate-limit", default="600/60",
                         help="enrichment API limit N/SECONDS or 'off' (default: 600/60)")
    serve_p.add_argument("--enrichment-queued-share", type=float, default=0.1,
                         help="share of known domains answered 202 queued on first lookup (default: 0.1)")
    serve_p.add_argument("--faults", default="off",
                         help="fault rates, e.g. 429=0.1,5xx=0.05,partial=0.05,timeout=0.02,invalid=0.01,slow=0.05")
    serve_p.add_argument("--fault-seed", type=int, default=0, help="seed of the fault RNG (default: 0)")
    serve_p.add_argument("--enrichment-faults", default="off",
                         help="enrichment API fault rates, e.g. 429=0.05,5xx=0.05,timeout=0.02 (a timeout holds "
                              "the answer --timeout-seconds; drawn with --fault-seed)")
    serve_p.add_argument("--lifecycle-backward", choices=("ignore", "reject"), default="ignore",
                         help="what a backward lifecyclestage write does (default: ignore, as HubSpot)")
    serve_p.add_argument("--batch-validation", choices=("per-record", "whole-batch"), default="per-record",
                         help="invalid records fail alone (207) or fail the whole batch (400)")
    serve_p.add_argument("--timeout-seconds", type=float, default=30.0,
                         help="how long a 'timeout' fault holds the answer after applying the write (default: 30)")
    serve_p.add_argument("--slow-seconds", type=float, default=1.5, help="latency added by a 'slow' fault")
    serve_p.add_argument("--latency-seconds", type=float, default=0.0,
                         help="added to every HubSpot API answer, as a remote CRM's round trip (default: 0)")
    serve_p.add_argument("--salesforce-port", type=_salesforce_port, default=0, metavar="PORT",
                         help="serve the same world as a Salesforce org over TLS on this port; 0 picks a free one, "
                              "'off' or -1 disables (default: 0)")
    serve_p.add_argument("--salesforce-token", help="Salesforce session id (default: random, kept in the db file)")
    serve_p.add_argument("--salesforce-daily-limit", type=int, default=100_000,
                         help="Salesforce API requests per 24 h before 403 REQUEST_LIMIT_EXCEEDED (default: 100000)")
    serve_p.add_argument("--salesforce-users", type=int, default=3, metavar="N",
                         help="Salesforce sales reps, each with its own session id (GET /_sandbox/users; default: 3)")
    serve_p.add_argument("--salesforce-admins", type=int, default=1, metavar="N",
                         help="Salesforce system administrators with their own session id (default: 1)")
    serve_p.add_argument("--salesforce-history-fields", metavar="F1,F2",
                         help="Lead fields with field history tracking, shown in LeadHistory (default: Status, "
                              "Lifecycle_Stage__c, Rating and leadflow's Leadflow_*__c fields)")
    serve_p.add_argument("--users", type=_count("--users"), default=0, metavar="N",
                         help="also accept N people's tokens: their writes show as CRM_UI with their user id in "
                              "propertiesWithHistory (tokens derived from --token; printed; default: 0)")
    serve_p.add_argument("--workflows", type=_count("--workflows"), default=0, metavar="N",
                         help="also accept N workflow tokens (sandbox only: HubSpot workflows call no API), whose "
                              "writes show as WORKFLOW (default: 0)")
    serve_p.add_argument("--actors", metavar="SPEC",
                         help="people and workflows act on the records while serving, e.g. "
                              "'share=0.02,every=300,seed=1' (about 2%% every 5 min: rejections, worked leads, a "
                              "custom status, stages moved, merges, deletes; needs --users and --workflows >= 1)")
    serve_p.add_argument("--ready-file", type=Path, help="also write the export lines to this file once listening")
    serve_p.set_defaults(func=cmd_serve, log_level=logging.INFO)

    seed_p = commands.add_parser("seed", help="create (or re-create) the seeded world in a db file without serving",
                                 description="Create the seeded world in a db file without serving it.",
                                 epilog="example:\n  leadflow sandbox seed --db var/sandbox.db --contacts 20000 "
                                        "--reseed",
                                 formatter_class=EXAMPLE_FORMATTER)
    _world_args(seed_p)
    seed_p.set_defaults(func=cmd_seed)

    import_p = commands.add_parser(
        "import", help="load a lead export (CSV) into the db file as contacts (re-import updates them)",
        description="Upsert the rows of a CSV as sandbox contacts, keyed by a synthetic email built from the "
                    "mapping's id column; missing markers (e.g. 'Select') count as empty. A db file without a "
                    "world becomes an imported world (serve then does not seed synthetic contacts); run "
                    "`seed` first to have both.",
        epilog="example:\n  leadflow sandbox import --csv tests/data/x-education/leads_dev.csv "
               "--mapping x_education --db var/sandbox.db",
        formatter_class=EXAMPLE_FORMATTER)
    import_p.add_argument("--csv", type=Path, required=True, help="the CSV file (header row first)")
    import_p.add_argument("--mapping", required=True,
                          help="mapping file, or the name of a shipped one (e.g. x_education)")
    import_p.add_argument("--contacts-config", help="column -> contact property config (default: the shipped "
                                                    "<mapping name>_contacts.yaml)")
    import_p.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"SQLite state file (default: {DEFAULT_DB})")
    import_p.add_argument("--limit", type=int, help="import only the first N rows")
    import_p.add_argument("--show-skipped", type=int, default=3, metavar="N",
                          help="examples printed per skip reason (default: 3)")
    import_p.set_defaults(func=cmd_import)
    return sandbox


def _world_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help=f"SQLite state file (default: {DEFAULT_DB})")
    parser.add_argument("--contacts", type=int, default=5_000, help="contacts to seed (default: 5000)")
    parser.add_argument("--seed", type=int, default=42, help="world seed (default: 42)")
    parser.add_argument("--reseed", action="store_true", help="discard an existing world in --db and seed anew")
    parser.add_argument("--shared-timestamp-every", type=int, default=0, metavar="N",
                        help="make each run of N consecutive contacts share one lastmodifieddate")


def _count(flag: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number, got {text!r}") from None
        if not 0 <= value <= 100:
            raise argparse.ArgumentTypeError(f"{flag} must be between 0 and 100, got {value}")
        return value
    return parse


def _salesforce_port(text: str) -> int:
    if text.strip().lower() in ("off", "none", "-1"):
        return -1
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--salesforce-port must be a port number or 'off', got {text!r}") from None
    if not 0 <= port < 65536:
        raise argparse.ArgumentTypeError(f"--salesforce-port {port} is out of range")
    return port


def cmd_seed(args: argparse.Namespace) -> int:
    from leadflow.sandbox.serving import prepare_store  # slow: see the module docstring

    if args.contacts < 1:
        raise UsageError(f"--contacts must be at least 1, got {args.contacts}")
    store, report = prepare_store(args.db, contacts=args.contacts, seed=args.seed, reseed=args.reseed,
                                  shared_timestamp_every=args.shared_timestamp_every)
    try:
        if report is None:
            print(f"{args.db} already holds a world ({store.count('contacts')} contacts); use --reseed to replace it")
        else:
            print(f"seeded {report.contacts} contacts and {report.companies} companies into {args.db} "
                  f"in {report.generate_seconds + report.load_seconds:.1f}s")
    finally:
        store.close()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from leadflow.sandbox.csv_import import import_csv_file  # slow: see the module docstring

    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit must not be negative, got {args.limit}")
    # One INFO line per 100-row batch from the service would drown the summary.
    logging.getLogger("leadflow.sandbox.hubspot_service").setLevel(logging.WARNING)
    # A bad CSV, mapping or config raises ImportConfigError / MappingError: exit 2 (leadflow.console).
    report = import_csv_file(args.db, args.csv, args.mapping, args.contacts_config, limit=args.limit)
    where = f"{args.db}" + (" (new imported world)" if report.world_created else "")
    print(f"imported {args.csv} into {where}")
    print("\n".join(report.lines(examples=max(0, args.show_skipped))))
    # Rows were skipped but others went in: a partial import is still a success; none at all is not.
    return 1 if report.rows and not report.imported else 0


def cmd_serve(args: argparse.Namespace) -> int:
    # slow: see the module docstring
    from leadflow.sandbox.enrichment_api import parse_enrichment_faults
    from leadflow.sandbox.server import resolve_secret, serve
    from leadflow.sandbox.serving import prepare_store

    if args.contacts < 1:
        raise UsageError(f"--contacts must be at least 1, got {args.contacts}")
    store, report = prepare_store(args.db, contacts=args.contacts, seed=args.seed, reseed=args.reseed,
                                  shared_timestamp_every=args.shared_timestamp_every)
    if report is not None:
        print(f"# seeded {report.contacts} contacts into {args.db}", file=sys.stderr)
    try:
        token = resolve_secret(store, "token", args.token, "pat-sandbox-")
        settings = SandboxSettings(
            db_path=args.db,
            token=token, principals=generated_principals(args.users, args.workflows, token),
            enrichment_key=resolve_secret(store, "enrichment_key", args.enrichment_key, "ek-sandbox-"),
            rate_limit=args.rate_limit, search_rate_limit=args.search_rate_limit, daily_limit=args.daily_limit,
            enrichment_rate_limit=args.enrichment_rate_limit, enrichment_queued_share=args.enrichment_queued_share,
            faults=args.faults, fault_seed=args.fault_seed, lifecycle_backward=args.lifecycle_backward,
            batch_validation=args.batch_validation, timeout_seconds=args.timeout_seconds,
            slow_seconds=args.slow_seconds, latency_seconds=args.latency_seconds)
    except ValidationError as exc:
        store.close()
        raise UsageError(_flag_errors(exc, "--")) from None
    for principal in settings.principals:
        # Comment lines: the output stays eval-able like the export lines.
        print(f"# HubSpot {principal.kind} {principal.id} ({principal.label}) token: {principal.token}")
    sys.stdout.flush()
    try:
        parse_enrichment_faults(args.enrichment_faults)
    except ValueError as exc:
        store.close()
        raise UsageError(f"invalid --enrichment-faults: {exc}") from None
    salesforce = None
    if args.salesforce_port >= 0:
        from leadflow.sandbox.salesforce_api import SalesforceSettings  # slow: see the module docstring

        history = {} if args.salesforce_history_fields is None else {
            "history_fields": [f.strip() for f in args.salesforce_history_fields.split(",") if f.strip()]}
        try:
            salesforce = SalesforceSettings(
                token=resolve_secret(store, "salesforce_token", args.salesforce_token, "00D5g000000LfLw!sandbox."),
                client_id=resolve_secret(store, "salesforce_client_id", None, "3MVG9sandbox"),
                client_secret=resolve_secret(store, "salesforce_client_secret", None, ""),
                password=resolve_secret(store, "salesforce_password", None, ""),
                daily_limit=args.salesforce_daily_limit, faults=args.faults, fault_seed=args.fault_seed,
                users=args.salesforce_users, admins=args.salesforce_admins, **history,
                timeout_seconds=args.timeout_seconds, slow_seconds=args.slow_seconds)
        except ValidationError as exc:
            store.close()
            raise UsageError(_flag_errors(exc, "--salesforce-")) from None
    schedule = None
    if args.actors:
        from leadflow.sandbox.actors import ActorSchedule  # slow: see the module docstring

        try:
            schedule = ActorSchedule.parse(args.actors)
        except ValueError as exc:
            store.close()
            raise UsageError(f"invalid --actors: {exc}") from None
        if not args.users or not args.workflows:
            store.close()
            raise UsageError("--actors needs --users 1 and --workflows 1 (or more): the actors act with their tokens")
    serve(settings, host=args.host, port=args.port, store=store, ready_file=args.ready_file,
          salesforce=salesforce, salesforce_port=args.salesforce_port, enrichment_faults=args.enrichment_faults,
          actors=schedule)
    return 0


def _flag_errors(exc: ValidationError, prefix: str) -> str:
    """A pydantic ValidationError as `invalid --flag: message` parts, one per bad flag (a check
    of the flags together keeps its own message)."""
    return "; ".join(f"invalid {prefix}{str(loc[0]).replace('_', '-')}: {message}" if loc else message
                     for loc, message in error_items(exc))


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point (`python -m leadflow.sandbox.cli sandbox serve ...`): the same as
    `leadflow sandbox ...` (one parser, one error convention)."""
    return leadflow_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
