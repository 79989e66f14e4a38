"""What every `leadflow` command shares on the terminal: exit codes, error lines, run summaries.

Exit codes: 0 success, 1 the run or check failed, 2 usage or configuration error (the user has
to change a flag, a file or a setting). `run_command` is the one place that maps exceptions to
them; the summary helpers turn a run's recorded figures into a few readable lines (the same
lines for `leadflow run`, `leadflow report` and `make run`).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TextIO

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# Run statuses that are not failures: "warning" is a run that finished short of its goal on
# purpose (the API budget ran out; the pull resumes next run). It is reported, not failed.
COMPLETED_STATUSES = frozenset({"success", "warning"})

EXAMPLE_FORMATTER = argparse.RawDescriptionHelpFormatter


class UsageError(Exception):
    """The command cannot run as given: the message says which flag, file or setting to fix."""


class CommandFailed(Exception):
    """The command ran and what it checked or ran failed (exit 1); the message says what."""


# Configuration errors of the library, by module: checked only when that module is already
# imported (an exception cannot be an instance of a class that was never loaded), so the CLI
# stays fast and needs none of the heavy packages to classify an error.
_USAGE_ERRORS = (
    ("leadflow.settings", "SettingsError"),
    ("leadflow.connections", "ConnectionConfigError"),
    ("leadflow.quality.settings", "SettingsError"),
    ("leadflow.enrich.settings", "SettingsError"),
    ("leadflow.crm.mapping", "MappingConfigError"),  # both CRMs' mapping files
    ("leadflow.qualify.config", "ModelConfigError"),
    ("leadflow.predict.mapping", "MappingError"),
    ("leadflow.predict.store", "ModelFileError"),
    ("leadflow.predict.train", "InsufficientData"),
    ("leadflow.sandbox.csv_import", "ImportConfigError"),
)


def is_usage_error(exc: BaseException, extra: Sequence[type[BaseException]] = ()) -> bool:
    """Whether `exc` means "fix the input" (exit 2) rather than "the run failed" (exit 1)."""
    if isinstance(exc, (UsageError, FileNotFoundError, *extra)):
        return True
    for module_name, class_name in _USAGE_ERRORS:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module else None
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and exc.filename:
        text = f"{exc.filename}: no such file (check the path)"
    return " ".join(text.split()) if "\n" not in text else text.splitlines()[0]


def run_command(func: Callable[[argparse.Namespace], int | None], args: argparse.Namespace, *,
                verbose: bool = False, err: TextIO | None = None) -> int:
    """Run one command function and turn its outcome into the exit code.

    Expected problems print one `leadflow: error: ...` line on stderr (the traceback too with
    `-v`); `args.usage_errors` lets a command add exception types that mean bad input."""
    err = err or sys.stderr
    try:
        return int(func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print("leadflow: interrupted", file=err)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure becomes one line and an exit code
        usage = is_usage_error(exc, tuple(getattr(args, "usage_errors", ()) or ()))
        if verbose:
            traceback.print_exc(file=err)
        print(f"leadflow: error: {_message(exc)}", file=err)
        if not usage and not isinstance(exc, CommandFailed) and not verbose:
            print("  (run again with -v for the traceback)", file=err)
        return EXIT_USAGE if usage else EXIT_FAILED


# --- run summaries -------------------------------------------------------------------------------
# Display order of the steps (the run summary stores durations keyed by step, sorted by name).
_STEP_ORDER = ("extract", "enrich", "validate", "validate_gate", "qualify", "accounts", "validate_scores", "plan_push", "push",
               "push_accounts")


def _n(value: Any) -> str:
    return f"{int(value or 0):,}"


def _seconds(value: Any) -> str:
    return f"{float(value or 0):.1f} s"


def _step_counts(step: str, s: Mapping[str, Any]) -> str:
    """The one or two counts that matter for a step, from its (or the run's merged) summary."""
    if step == "extract":
        return f"pulled {_n(s.get('pulled'))}"
    if step == "enrich":
        return f"enriched {_n(s.get('enriched'))}"
    if step == "validate":
        return f"quarantined {_n(s.get('quarantined'))} of {_n(s.get('validated'))}"
    if step == "qualify":
        return f"scored {_n(s.get('scored'))}"
    if step == "accounts":
        return f"accounts {_n(s.get('accounts_scored'))}, committee waits {_n(s.get('committee_waits'))}"
    if step == "push_accounts":
        return f"companies written {_n(s.get('companies_written'))}"
    if step == "validate_gate":
        return f"{_n(s.get('dq_failed_checks'))} failed checks"
    if step == "validate_scores":
        return f"{_n(s.get('dq_failed_score_checks'))} failed checks"
    if step == "plan_push":
        return f"changed {_n(s.get('changed'))} ({s.get('change_guard', 'ok')})"
    if step == "push":
        return f"pushed {_n(s.get('pushed'))}, rejected {_n(s.get('rejected'))}"
    if step == "report":
        return str(s.get("status", ""))
    return ""


def step_line(step: str, seconds: float | None, summary: Mapping[str, Any], state: str = "success") -> str:
    """One line for a finished step: `extract      12.3 s  pulled 5,000`."""
    took = _seconds(seconds) if seconds is not None else ""
    counts = _step_counts(step.split("[")[0], summary) if state == "success" else state.upper()
    return f"  {step:<16} {took:>8}  {counts}".rstrip()


def _top(counts: Mapping[str, Any], n: int) -> str:
    pairs = sorted(((str(k), int(v or 0)) for k, v in counts.items()), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{k} {v:,}" for k, v in pairs[:n] if v) + (", ..." if len(pairs) > n else "")


def summary_lines(summary: Mapping[str, Any], *, quarantine_reasons: Sequence[Mapping[str, Any]] = (),
                  report_path: Path | str | None = None) -> list[str]:
    """The run in about a dozen lines: counts, stage moves, API use, step durations, where to look."""
    s = summary
    api = s.get("extract_api") or {}
    head = f"{s.get('crm', '?')} run {s.get('run_id', '?')}: {s.get('status', '?')}"
    if s.get("dry_run"):
        head += " (dry run)"
    started, finished = s.get("started_at"), s.get("finished_at")
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)) and finished >= started:
        head += f" in {_seconds((finished - started) / 1000)}"  # warehouse times are epoch ms
    lines = [head]
    lines.append(f"  pulled       {_n(s.get('pulled'))} leads, {_n(s.get('companies_pulled'))} companies"
                 f"{' (' + str(s['warning']) + ')' if s.get('warning') else ''}")
    lines.append(f"  enriched     {_n(s.get('enriched'))} of {_n(s.get('validated'))} open leads"
                 f" ({_n(s.get('skipped_owned'))} owned by sales, left alone)")
    reasons = ", ".join(f"{r.get('expectation')} on {r.get('column')} {_n(r.get('records'))}"
                        for r in quarantine_reasons[:3])
    lines.append(f"  quarantined  {_n(s.get('quarantined'))}" + (f" (top: {reasons})" if reasons else ""))
    lines.append(f"  scored       {_n(s.get('scored'))} ({_n(s.get('disqualified'))} disqualified)")
    moves = (s.get("preview") or {}).get("stage_transitions") or {}
    lines.append(f"  stage moves  {_top(moves, 4) or 'none'}")
    lines.append(f"  changed      {_n(s.get('changed'))}")
    lines.append(f"  pushed       {_n(s.get('pushed'))} in {_n(s.get('write_calls'))} calls, rejected "
                 f"{_n(s.get('rejected'))}, failed {_n(s.get('failed'))}")
    lines.append(f"  overrides    {_n(s.get('overrides'))} values people or other systems set, left to them")
    sla = s.get("sla") or {}
    rate = sla.get("acceptance_rate")
    lines.append(f"  sales SLA    {_n(s.get('handed_over'))} handed over now; of {_n(sla.get('handed_over'))} in all "
                 f"{_n(sla.get('accepted'))} accepted, {_n(sla.get('converted'))} converted, "
                 f"{_n(sla.get('rejected'))} rejected, {_n(sla.get('ignored'))} ignored past the SLA"
                 + (f", acceptance {rate:.0%}" if rate is not None else ""))
    lines.append(f"  API calls    {_n(api.get('requests'))} to pull + {_n(s.get('push_api_requests'))} to push "
                 f"({_n(s.get('write_calls'))} writes); "
                 f"{_n(api.get('rate_limited'))} answered 429, {_seconds(api.get('throttled_s'))} throttled")
    durations = s.get("durations_s") or {}
    ordered = sorted(durations, key=lambda k: (_STEP_ORDER.index(k) if k in _STEP_ORDER else len(_STEP_ORDER), k))
    lines.append("  steps        " + (", ".join(f"{k} {_seconds(durations[k])}" for k in ordered) or "none finished"))
    if report_path:
        lines.append(f"  run report   {report_path}")
    if s.get("data_docs"):
        lines.append(f"  data docs    {s['data_docs']}")
    return lines


def failure_lines(step: str, error: str, hint: str | None = None) -> list[str]:
    """What failed, its error, and what to do about it."""
    lines = [f"FAILED in step {step}: {error}"]
    if hint:
        lines.append(f"  what to do: {hint}")
    return lines


def hint_for(error: str) -> str | None:
    """A next step for the failures a newcomer meets first (credentials, quality gate, guard)."""
    text = error.lower()
    if any(w in text for w in ("credential", "(401)", "unauthorized", "refused the", "rejected the token")):
        return ("the CRM refused the token: check the connection AIRFLOW_CONN_LEADFLOW_<CRM> "
                "(its password is the token)")
    if "quality gate" in text or "quarantine" in text:
        return "open the Data Docs and the run report to see which checks failed"
    if "force" in text and "change" in text:
        return "check the model and the data; re-run with force to push anyway"
    return None
