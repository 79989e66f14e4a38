"""Property definitions of the sandbox portal, and conversion of values to and from the wire.

HubSpot sends every property value as a string (numbers "12", datetimes
"2024-01-15T10:00:00.123Z", booleans "true"/"false") or null. Internally the sandbox keeps typed
values (numbers, epoch milliseconds, booleans) so that search can compare them in SQL; this module
converts both ways and validates writes the way HubSpot does.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from leadflow.sandbox.errors import PropertyProblem

OBJECT_TYPES: tuple[str, ...] = ("contacts", "companies")
PROPERTY_TYPES: frozenset[str] = frozenset(
    {"bool", "date", "datetime", "enumeration", "number", "phone_number", "string"}
)
FIELD_TYPES: frozenset[str] = frozenset(
    {"textarea", "text", "date", "file", "number", "select", "radio", "checkbox", "booleancheckbox",
     "calculation_equation", "phonenumber", "html"}
)
LIFECYCLE_STAGES: tuple[str, ...] = (
    "subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer",
    "evangelist", "other",
)
LEAD_STATUSES: tuple[str, ...] = (
    "NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED",
    "BAD_TIMING",
)
BUDGET_RANGES: tuple[str, ...] = ("<5k", "5k-25k", "25k-100k", ">100k")
TIMEFRAMES: tuple[str, ...] = ("this_quarter", "6_months", "12_months", "just_researching")
TECHNOLOGIES: tuple[str, ...] = (
    "Salesforce", "HubSpot", "Marketo", "Google Analytics", "Segment", "Snowflake", "AWS", "Azure",
    "Google Cloud", "Shopify", "WordPress", "Zendesk", "Intercom", "Slack", "Stripe", "Kubernetes",
    "React", "Tableau", "SAP", "Workday",
)

# Columns of the object tables that stand for a property (kept out of the JSON document so
# they can be indexed): property name -> column, per object type.
COLUMN_PROPERTIES: dict[str, dict[str, str]] = {
    "contacts": {
        "hs_object_id": "id",
        "createdate": "created_ms",
        "lastmodifieddate": "modified_ms",
        "associatedcompanyid": "company_id",
    },
    "companies": {
        "hs_object_id": "id",
        "createdate": "created_ms",
        "hs_lastmodifieddate": "modified_ms",
    },
}
# The property stored lower-cased in the indexed `unique_key` column (idProperty lookups, dedupe).
UNIQUE_PROPERTY: dict[str, str] = {"contacts": "email", "companies": "domain"}
DEFAULT_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
}
# HubSpot always returns these, whatever `properties` asked for.
ALWAYS_RETURNED: dict[str, tuple[str, ...]] = {
    "contacts": ("createdate", "hs_object_id", "lastmodifieddate"),
    "companies": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
}
READ_ONLY: frozenset[str] = frozenset({"hs_object_id", "lastmodifieddate", "hs_lastmodifieddate",
                                       "hs_merged_object_ids"})
OBJECT_LABEL: dict[str, str] = {"contacts": "CONTACT", "companies": "COMPANY"}


@dataclass
class PropertyDef:
    """One property of one object type, as the properties API describes it."""

    name: str
    label: str
    type: str
    field_type: str
    group_name: str
    options: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    hubspot_defined: bool = True
    display_order: int = -1
    has_unique_value: bool = False
    created_ms: int = 0
    updated_ms: int = 0  # 0: never changed since created

    def option_values(self) -> list[str]:
        return [str(o["value"]) for o in self.options]

    def to_api(self) -> dict[str, Any]:
        created = ms_to_iso(self.created_ms)
        return {
            "name": self.name,
            "label": self.label,
            "type": self.type,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "description": self.description,
            "options": self.options,
            "displayOrder": self.display_order,
            "hasUniqueValue": self.has_unique_value,
            "hidden": False,
            "formField": not self.hubspot_defined,
            "hubspotDefined": self.hubspot_defined,
            "calculated": False,
            "externalOptions": False,
            "archived": False,
            "createdAt": created,
            "updatedAt": ms_to_iso(self.updated_ms) if self.updated_ms else created,
            "modificationMetadata": {
                "archivable": not self.hubspot_defined,
                "readOnlyDefinition": self.hubspot_defined,
                "readOnlyValue": self.name in READ_ONLY,
            },
        }

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> "PropertyDef":
        return cls(
            name=data["name"],
            label=data["label"],
            type=data["type"],
            field_type=data["fieldType"],
            group_name=data["groupName"],
            options=list(data.get("options") or []),
            description=data.get("description") or "",
            hubspot_defined=bool(data.get("hubspotDefined", False)),
            display_order=int(data.get("displayOrder", -1)),
            has_unique_value=bool(data.get("hasUniqueValue", False)),
            created_ms=int(data.get("created_ms", 0)),
            updated_ms=int(data.get("updated_ms", 0)),
        )


def make_options(values: tuple[str, ...] | list[str], labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    labels = labels or {}
    return [
        {"label": labels.get(v, v), "value": v, "displayOrder": i, "hidden": False}
        for i, v in enumerate(values)
    ]


def _p(name: str, label: str, type_: str, field_type: str, group: str, options: tuple[str, ...] = (), *,
       custom: bool = False) -> PropertyDef:
    return PropertyDef(name=name, label=label, type=type_, field_type=field_type, group_name=group,
                       options=make_options(options), hubspot_defined=not custom)


BOOL_OPTIONS = ({"label": "True", "value": "true", "displayOrder": 0, "hidden": False},
                {"label": "False", "value": "false", "displayOrder": 1, "hidden": False})


def _bool(name: str, label: str, group: str) -> PropertyDef:
    prop = _p(name, label, "bool", "booleancheckbox", group)
    prop.options = [dict(o) for o in BOOL_OPTIONS]
    return prop


def seeded_groups() -> dict[str, list[dict[str, str]]]:
    """Property groups that exist in a fresh portal (no `leadflow` group: leadflow creates it)."""
    return {
        "contacts": [
            {"name": "contactinformation", "label": "Contact information"},
            {"name": "analyticsinformation", "label": "Web analytics history"},
            {"name": "emailinformation", "label": "Email information"},
            {"name": "conversioninformation", "label": "Conversion information"},
            {"name": "sales_properties", "label": "Sales properties"},
            {"name": "lead_qualification", "label": "Lead qualification (custom)"},
        ],
        "companies": [
            {"name": "companyinformation", "label": "Company information"},
            {"name": "analyticsinformation", "label": "Web analytics history"},
        ],
    }


def seeded_properties() -> dict[str, list[PropertyDef]]:
    """The properties schema of a fresh sandbox portal: HubSpot defaults plus the custom form and
    behaviour fields the world fills in. The `leadflow_*` properties are deliberately absent."""
    lifecycle = _p("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", "contactinformation",
                   LIFECYCLE_STAGES)
    lifecycle.options = make_options(LIFECYCLE_STAGES, {
        "subscriber": "Subscriber", "lead": "Lead", "marketingqualifiedlead": "Marketing Qualified Lead",
        "salesqualifiedlead": "Sales Qualified Lead", "opportunity": "Opportunity", "customer": "Customer",
        "evangelist": "Evangelist", "other": "Other"})
    contacts = [
        _p("hs_object_id", "Record ID", "number", "number", "contactinformation"),
        _p("createdate", "Create Date", "datetime", "date", "contactinformation"),
        _p("lastmodifieddate", "Last Modified Date", "datetime", "date", "contactinformation"),
        _p("email", "Email", "string", "text", "contactinformation"),
        _p("firstname", "First Name", "string", "text", "contactinformation"),
        _p("lastname", "Last Name", "string", "text", "contactinformation"),
        _p("jobtitle", "Job Title", "string", "text", "contactinformation"),
        _p("phone", "Phone Number", "string", "text", "contactinformation"),
        _p("company", "Company Name", "string", "text", "contactinformation"),
        _p("website", "Website URL", "string", "text", "contactinformation"),
        _p("country", "Country/Region", "string", "text", "contactinformation"),
        _p("industry", "Industry", "string", "text", "contactinformation"),
        _p("annualrevenue", "Annual Revenue", "string", "text", "contactinformation"),
        _p("associatedcompanyid", "Primary Associated Company ID", "number", "number", "contactinformation"),
        lifecycle,
        _p("hs_lead_status", "Lead Status", "enumeration", "radio", "sales_properties", LEAD_STATUSES),
        _p("message", "Message", "string", "textarea", "contactinformation"),
        _p("hs_analytics_num_page_views", "Number of Pageviews", "number", "number", "analyticsinformation"),
        _p("hs_analytics_num_visits", "Number of Sessions", "number", "number", "analyticsinformation"),
        _p("hs_analytics_last_timestamp", "Time Last Seen", "datetime", "date", "analyticsinformation"),
        _p("hs_email_click", "Marketing emails clicked", "number", "number", "emailinformation"),
        _bool("hs_email_optout", "Unsubscribed from all email", "emailinformation"),
        _p("num_conversion_events", "Number of Form Submissions", "number", "number", "conversioninformation"),
        _p("budget_range", "Budget range", "enumeration", "select", "lead_qualification", BUDGET_RANGES,
           custom=True),
        _p("purchase_timeframe", "Purchase timeframe", "enumeration", "select", "lead_qualification",
           TIMEFRAMES, custom=True),
        _p("pain_point", "Pain point", "string", "textarea", "lead_qualification", custom=True),
        _p("pricing_page_views", "Pricing page views", "number", "number", "analyticsinformation", custom=True),
        _p("content_downloads", "Content downloads", "number", "number", "conversioninformation", custom=True),
        _p("demo_requested_at", "Demo requested at", "datetime", "date", "conversioninformation", custom=True),
        _p("trial_started_at", "Trial started at", "datetime", "date", "conversioninformation", custom=True),
        _p("webinar_attended_at", "Webinar attended at", "datetime", "date", "conversioninformation",
           custom=True),
        _p("hs_merged_object_ids", "Merged Contact IDs", "enumeration", "checkbox", "contactinformation"),
    ]
    companies = [
        _p("hs_object_id", "Record ID", "number", "number", "companyinformation"),
        _p("createdate", "Create Date", "datetime", "date", "companyinformation"),
        _p("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", "companyinformation"),
        _p("name", "Company name", "string", "text", "companyinformation"),
        _p("domain", "Company Domain Name", "string", "text", "companyinformation"),
        _p("industry", "Industry", "string", "text", "companyinformation"),
        _p("numberofemployees", "Number of Employees", "number", "number", "companyinformation"),
        _p("annualrevenue", "Annual Revenue", "number", "number", "companyinformation"),
        _p("country", "Country/Region", "string", "text", "companyinformation"),
        _p("city", "City", "string", "text", "companyinformation"),
        _p("founded_year", "Year Founded", "string", "text", "companyinformation"),
        _p("web_technologies", "Web Technologies", "enumeration", "checkbox", "companyinformation",
           TECHNOLOGIES, custom=True),
        _p("hs_merged_object_ids", "Merged Company IDs", "enumeration", "checkbox", "companyinformation"),
    ]
    for props in (contacts, companies):
        for order, prop in enumerate(props):
            prop.display_order = order
    return {"contacts": contacts, "companies": companies}


# --- time ---------------------------------------------------------------------------------------
_ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?)?(Z|[+-]\d{2}:?\d{2})?$")


def ms_to_iso(ms: int | float) -> str:
    """Epoch milliseconds -> HubSpot's `2024-01-15T10:00:00.123Z`.

    Hot path (every datetime of every rendered record): the date part is cached per day and the
    time of day is plain arithmetic, about ten times faster than datetime.strftime.
    """
    day, rest = divmod(int(ms), DAY_MS)
    seconds, milli = divmod(rest, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_day_prefix(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{milli:03d}Z"


DAY_MS = 86_400_000


@functools.lru_cache(maxsize=4096)
def _day_prefix(day: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(days=day)).strftime("%Y-%m-%d")


def ms_to_date(ms: int | float) -> str:
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def parse_time_ms(value: Any) -> int:
    """Epoch ms (number or digit string) or ISO-8601 (date or datetime, UTC unless an offset is
    given) -> epoch ms. Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError(value)
        return int(value)
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if not _ISO_RE.match(text):
        raise ValueError(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(round(dt.timestamp() * 1000))


# --- values -------------------------------------------------------------------------------------
def render_value(prop: PropertyDef | None, value: Any) -> str | None:
    """Internal value -> the string HubSpot would send."""
    if value is None:
        return None
    kind = prop.type if prop is not None else "string"
    if kind == "datetime":
        return ms_to_iso(value)
    if kind == "date":
        return ms_to_date(value)
    if kind == "bool":
        if isinstance(value, str):
            return "true" if value.lower() == "true" else "false"
        return "true" if value else "false"
    if kind == "number":
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return str(value)


MAX_STRING_LENGTH = 65536


def coerce_value(prop: PropertyDef, raw: Any) -> Any:
    """A written value -> the internal value, or raise PropertyProblem (as ValueError payload).

    `None` and "" clear the property (HubSpot's way of unsetting a value).
    """
    if raw is None or (isinstance(raw, str) and raw == ""):
        return None
    kind = prop.type
    if kind == "number":
        if isinstance(raw, bool):
            raise _problem(prop, "INVALID_LONG", f"{raw} was not a valid number.")
        try:
            number = float(raw)
        except (TypeError, ValueError):
            raise _problem(prop, "INVALID_LONG", f"{str(raw)[:100]} was not a valid number.") from None
        if not math.isfinite(number):
            raise _problem(prop, "INVALID_LONG", f"{raw} was not a valid number.")
        return int(number) if number.is_integer() and abs(number) < 2**53 else number
    if kind in ("datetime", "date"):
        try:
            ms = parse_time_ms(raw)
        except (TypeError, ValueError):
            raise _problem(prop, "INVALID_DATE", f"{str(raw)[:100]} is not a valid {kind} value.") from None
        if kind == "date" and ms % 86_400_000 != 0:
            raise _problem(prop, "INVALID_DATE",
                           f"{raw} is at {ms_to_iso(ms)}, which is not midnight UTC.")
        return ms
    if kind == "bool":
        text = str(raw).strip().lower() if not isinstance(raw, bool) else ("true" if raw else "false")
        if text not in ("true", "false"):
            raise _problem(prop, "INVALID_BOOLEAN", f"{str(raw)[:100]} is not a valid boolean value.")
        return text == "true"
    if kind == "enumeration":
        text = str(raw)
        allowed = prop.option_values()
        # Multi-checkbox enumerations take several options separated by ";".
        parts = text.split(";") if prop.field_type == "checkbox" else [text]
        for part in parts:
            if part not in allowed:
                raise _problem(prop, "INVALID_OPTION",
                               f"{part[:100]} was not one of the allowed options: [{', '.join(allowed)}]")
        return text
    text = raw if isinstance(raw, str) else _stringify(raw)
    if len(text) > MAX_STRING_LENGTH:
        raise _problem(prop, "INVALID_STRING", f"value is {len(text)} characters long; the maximum is "
                                               f"{MAX_STRING_LENGTH}.")
    return text


def _stringify(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


class InvalidValue(ValueError):
    def __init__(self, problem: PropertyProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _problem(prop: PropertyDef, code: str, message: str) -> InvalidValue:
    return InvalidValue(PropertyProblem(name=prop.name, code=code, message=message))


def unknown_property(name: str) -> PropertyProblem:
    return PropertyProblem(name=name, code="PROPERTY_DOESNT_EXIST", message=f'Property "{name}" does not exist')


# --- lifecycle stage ----------------------------------------------------------------------------
@dataclass(frozen=True)
class StageDecision:
    apply: bool
    problem: PropertyProblem | None = None


def lifecycle_decision(options: list[str], old: str | None, new: str | None, backward: str) -> StageDecision:
    """HubSpot's forward-only rule for `lifecyclestage`.

    Clearing ("" / None) is always allowed; so is any value when the stage is empty. Moving to an
    earlier option (by the portal's option order) is ignored (`backward="ignore"`, the default:
    200 and the value stays) or refused (`backward="reject"`).
    """
    if new is None or old is None or old not in options or new not in options:
        return StageDecision(apply=True)
    if options.index(new) >= options.index(old):
        return StageDecision(apply=True)
    if backward == "reject":
        return StageDecision(apply=False, problem=PropertyProblem(
            name="lifecyclestage", code="INVALID_LIFECYCLE_STAGE",
            message=f"lifecyclestage cannot move backwards from {old} to {new}; clear it first."))
    return StageDecision(apply=False)
