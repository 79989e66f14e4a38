"""Value parsing and rendering both CRMs use (no HTTP, no CRM names here).

Incoming: a CRM value (text, number or null) is parsed for a canonical column's kind in
`leadflow.schema`; a value that does not parse is cleared and reported as a `RecordIssue`, so one
bad record never stops a pull.

Outgoing: `format_owned_value` is the one rendering of an owned value as text (kinds "number",
"datetime", "date", "bool", "string"). HubSpot writes it as is; the `crm_<field>` values of both
CRMs' pulled leads and the rows of `read()` use it too, so the push diff compares
`format_owned_value(kind, desired)` with them without knowing the CRM.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timezone
from typing import Any, Callable, Mapping

from leadflow.pulled import RecordIssue
from leadflow.schema import CRM_RAW_PREFIX, MAX_TEXT_LENGTH

ISSUE_VALUE_CHARS = 200
# The longest text value rendered (HubSpot's limit for a string property).
MAX_RENDERED_STRING = 65_536
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
_PROBLEMS = {"float": "not a number", "ts": "unparseable date", "bool": "not a boolean"}


# --- parsers (raise ValueError on bad input; None for empty) ----------------------------------
def blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def parse_number(value: Any) -> float | None:
    """'12', '12.5', 12 -> float; '' / None -> None; anything else (incl. NaN/inf) -> ValueError."""
    if blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError("boolean is not a number")
    number = float(value.strip() if isinstance(value, str) else value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def parse_epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds (int or digit string), ISO 8601 datetime or date -> epoch ms (UTC).

    Naive datetimes are taken as UTC; a date alone is midnight UTC (HubSpot's date properties).
    """
    if blank(value):
        return None
    if isinstance(value, bool):
        raise ValueError("boolean is not a timestamp")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("not a finite timestamp")
        return int(value)
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        day = date.fromisoformat(text)
        return int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() * 1000)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(round(moment.timestamp() * 1000))


def parse_bool(value: Any) -> bool | None:
    if blank(value):
        return None
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("not a boolean")


def truncate_text(value: str, limit: int = MAX_TEXT_LENGTH) -> tuple[str, bool]:
    """(text cut to `limit` characters, whether it was cut)."""
    return (value[:limit], True) if len(value) > limit else (value, False)


def issue(record_id: str, column: str, problem: str, value: Any) -> RecordIssue:
    """A `RecordIssue` quoting at most `ISSUE_VALUE_CHARS` of the bad value."""
    text = None if value is None else str(value)[:ISSUE_VALUE_CHARS]
    return RecordIssue(record_id=record_id, field=column, problem=problem, value=text)


def convert(kind: str, value: Any) -> Any:
    """Parse `value` for a schema column kind ("str", "float", "ts", "bool")."""
    if kind == "float":
        return parse_number(value)
    if kind == "ts":
        return parse_epoch_ms(value)
    if kind == "bool":
        return parse_bool(value)
    return None if blank(value) else str(value).strip()


def convert_value(record_id: str, column: str, kind: str, raw: Any, issues: list[RecordIssue]) -> Any:
    """`raw` parsed for `column` of schema kind `kind`, text cut to `MAX_TEXT_LENGTH`; a value
    that does not parse becomes None, and each problem an issue in `issues`."""
    try:
        if kind == "str" and isinstance(raw, str):  # fast path: most values are text
            value = raw.strip() or None
        else:
            value = convert(kind, raw)
    except (ValueError, TypeError, OverflowError):
        issues.append(issue(record_id, column, _PROBLEMS.get(kind, "bad value"), raw))
        return None
    if isinstance(value, str):
        value, cut = truncate_text(value)
        if cut:
            issues.append(issue(record_id, column, f"text longer than {MAX_TEXT_LENGTH} characters, truncated", raw))
    return value


def convert_columns(record_id: str, get: Callable[[str], Any], columns: Mapping[str, str],
                    kinds: Mapping[str, str], issues: list[RecordIssue]) -> dict[str, Any]:
    """canonical column -> its value parsed (`convert_value`) from the CRM field `columns` names;
    `get(name)`: the record's raw value of a CRM field."""
    out: dict[str, Any] = {}
    for column, name in columns.items():
        raw = get(name)
        # Fast path: most records leave most fields empty.
        out[column] = None if raw is None else convert_value(record_id, column, kinds[column], raw, issues)
    return out


def map_shared(lead: dict[str, Any], record_id: str, column: str, raw: Any, table: Mapping[str, Any],
               issues: list[RecordIssue]) -> None:
    """Set shared `column` (lifecycle stage, lead status) of `lead` from the CRM's `raw` value
    through the mapping `table`, keeping the raw value (`crm_raw_<column>`); a value the table
    does not know is cleared and reported."""
    if blank(raw):
        return
    text = str(raw).strip()
    lead[f"{CRM_RAW_PREFIX}{column}"] = text
    found, canonical = lookup(table, text)
    if not found:
        issues.append(issue(record_id, column, "unknown value (not in the mapping)", raw))
    lead[column] = canonical


def lookup(table: Mapping[str, Any], value: str) -> tuple[bool, Any]:
    """(found, canonical value) of a CRM value in a mapping table: exact first, then ignoring case."""
    if value in table:
        return True, table[value]
    folded = value.casefold()
    for key, canonical in table.items():
        if key.casefold() == folded:
            return True, canonical
    return False, None


def normalise_technologies(value: str) -> str | None:
    """HubSpot multi-checkbox value 'A; B;;C' -> 'A;B;C' (order kept, duplicates dropped)."""
    items = [t.strip() for t in value.split(";")]
    unique = list(dict.fromkeys(t for t in items if t))
    return ";".join(unique) or None


# --- rendering -------------------------------------------------------------------------------------
def parse_kind(prop_type: str, raw: Any) -> Any:
    """`raw` parsed for a rendering kind (the inverse of `format_owned_value`)."""
    if prop_type == "number":
        return parse_number(raw)
    if prop_type in ("datetime", "date"):
        return parse_epoch_ms(raw)
    if prop_type == "bool":
        return parse_bool(raw)
    return str(raw)


def format_number(value: float) -> str:
    """Plain decimal text: 87 -> '87', 87.25 -> '87.25', never exponent notation."""
    if float(value).is_integer():
        return str(int(value))
    return f"{float(value):.6f}".rstrip("0").rstrip(".")


def format_owned_value(prop_type: str, value: Any) -> str:
    """Render a canonical value for a HubSpot property of `prop_type`; None/NaN -> '' (clears)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if prop_type == "number":
        number = parse_number(value) if isinstance(value, str) else float(value)
        return "" if number is None else format_number(number)
    if prop_type in ("datetime", "date"):
        ms = _to_epoch_ms(value)
        if ms is None:
            return ""
        moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
        if prop_type == "date":
            return moment.strftime("%Y-%m-%d")
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if prop_type == "bool":
        parsed = parse_bool(value)
        return "" if parsed is None else ("true" if parsed else "false")
    text = str(value)
    return text[:MAX_RENDERED_STRING]


def _to_epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return int(round(moment.timestamp() * 1000))
    return parse_epoch_ms(value)


def render_current(kind: str, raw: Any) -> str | None:
    """A CRM's current value of an owned field of rendering `kind`, as `format_owned_value`
    writes it (a `crm_<field>` column): None when empty, a value that does not parse verbatim."""
    if blank(raw):
        return None
    try:
        rendered = format_owned_value(kind, parse_kind(kind, raw))
    except (ValueError, TypeError, OverflowError):
        rendered = str(raw)
    rendered, _ = truncate_text(rendered)
    return rendered or None
