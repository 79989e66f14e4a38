"""The sandbox org's objects: Lead, LeadHistory and Contact field definitions (what `describe` returns),
18-character ids, and conversion of values between the wire (JSON as Salesforce sends it) and the
store (typed: numbers, booleans, epoch milliseconds for datetimes, 'YYYY-MM-DD' for dates)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

SOBJECT = "Lead"
ID_PREFIX = "00Q"
USER_PREFIX = "005"
HISTORY_PREFIX = "017"
CONTACT_PREFIX = "003"
ACCOUNT_PREFIX = "001"
OPPORTUNITY_PREFIX = "006"
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # ASCII order
_SUFFIX_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

STATUS_VALUES: tuple[str, ...] = (
    "Open - Not Contacted", "Open", "Attempted to Contact", "Working - Contacted", "In Progress", "Nurturing",
    "Open Deal", "Closed - Converted", "Closed - Not Converted",
)
RATING_VALUES: tuple[str, ...] = ("Hot", "Warm", "Cold")
STAGE_VALUES: tuple[str, ...] = ("Subscriber", "Lead", "MQL", "SQL", "Opportunity", "Customer", "Evangelist", "Other")
LEAD_SOURCES: tuple[str, ...] = ("Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other")
INDUSTRY_VALUES: tuple[str, ...] = (
    "Software", "IT Services", "Financial Services", "Marketing & Advertising", "Healthcare", "Manufacturing",
    "Retail", "Logistics", "Education", "Telecommunications", "Energy", "Real Estate", "Government", "Non-profit",
    "Media", "Other",
)
BUDGET_VALUES: tuple[str, ...] = ("<5k", "5k-25k", "25k-100k", ">100k")
TIMEFRAME_VALUES: tuple[str, ...] = ("this_quarter", "6_months", "12_months", "just_researching")


# Types whose values are record ids: compared exactly (ids are case-sensitive), never NOCASE.
ID_TYPES = ("id", "reference")


@dataclass(frozen=True)
class FieldDef:
    name: str
    type: str  # id reference string email phone url picklist double currency int boolean datetime date textarea anyType
    label: str
    length: int = 0
    updateable: bool = True
    nillable: bool = True
    custom: bool = False
    picklist: tuple[str, ...] = ()
    restricted: bool = False
    default_value: Any = None
    reference_to: tuple[str, ...] = ()
    # anyType (LeadHistory's OldValue/NewValue) can be neither filtered nor sorted in Salesforce
    filterable: bool = True

    @property
    def sortable(self) -> bool:
        return self.filterable and self.type != "textarea"

    def describe(self) -> dict[str, Any]:
        number = self.type in ("double", "currency", "int", "percent")
        reference = self.type == "reference"
        return {
            "name": self.name, "label": self.label, "type": self.type, "length": self.length,
            "custom": self.custom, "updateable": self.updateable, "createable": self.updateable,
            "nillable": self.nillable, "filterable": self.filterable, "sortable": self.sortable,
            "precision": 18 if number else 0, "scale": 2 if number and self.type != "int" else 0,
            "digits": 9 if self.type == "int" else 0, "defaultValue": self.default_value,
            "restrictedPicklist": self.restricted, "calculated": False, "unique": False,
            "referenceTo": list(self.reference_to),
            "relationshipName": self.name[:-2] if reference and self.name.endswith("Id") else None,
            "soapType": _SOAP.get(self.type, "xsd:string"),
            "picklistValues": [
                {"active": True, "defaultValue": False, "label": v, "validFor": None, "value": v}
                for v in self.picklist
            ],
        }


_SOAP = {"id": "tns:ID", "reference": "tns:ID", "date": "xsd:date", "anyType": "xsd:anyType", "double": "xsd:double", "currency": "xsd:double", "int": "xsd:int",
         "boolean": "xsd:boolean", "datetime": "xsd:dateTime"}


def _f(name: str, type_: str, label: str, length: int = 0, **kw: Any) -> FieldDef:
    return FieldDef(name, type_, label, length, custom=name.endswith("__c"), **kw)


LEAD_FIELDS: tuple[FieldDef, ...] = (
    _f("Id", "id", "Lead ID", 18, updateable=False, nillable=False),
    _f("IsDeleted", "boolean", "Deleted", updateable=False, nillable=False, default_value=False),
    _f("FirstName", "string", "First Name", 40),
    _f("LastName", "string", "Last Name", 80),
    _f("Company", "string", "Company", 255),
    _f("Title", "string", "Title", 128),
    _f("Email", "email", "Email", 80),
    _f("Phone", "phone", "Phone", 40),
    _f("Website", "url", "Website", 255),
    _f("Country", "string", "Country", 80),
    _f("Industry", "picklist", "Industry", 255, picklist=INDUSTRY_VALUES),
    _f("NumberOfEmployees", "int", "Employees"),
    _f("AnnualRevenue", "currency", "Annual Revenue"),
    _f("LeadSource", "picklist", "Lead Source", 255, picklist=LEAD_SOURCES),
    _f("Status", "picklist", "Status", 255, picklist=STATUS_VALUES, restricted=True),
    _f("Rating", "picklist", "Rating", 255, picklist=RATING_VALUES, restricted=True),
    _f("Description", "textarea", "Description", 32000),
    _f("HasOptedOutOfEmail", "boolean", "Email Opt Out", nillable=False, default_value=False),
    _f("IsConverted", "boolean", "Converted", updateable=False, nillable=False, default_value=False),
    _f("ConvertedDate", "date", "Converted Date", updateable=False),
    _f("ConvertedContactId", "reference", "Converted Contact ID", 18, updateable=False, reference_to=("Contact",)),
    _f("ConvertedAccountId", "reference", "Converted Account ID", 18, updateable=False, reference_to=("Account",)),
    _f("ConvertedOpportunityId", "reference", "Converted Opportunity ID", 18, updateable=False,
       reference_to=("Opportunity",)),
    _f("MasterRecordId", "reference", "Master Record ID", 18, updateable=False, reference_to=("Lead",)),
    _f("CreatedDate", "datetime", "Created Date", updateable=False, nillable=False),
    _f("CreatedById", "reference", "Created By ID", 18, updateable=False, nillable=False, reference_to=("User",)),
    _f("LastModifiedDate", "datetime", "Last Modified Date", updateable=False, nillable=False),
    _f("LastModifiedById", "reference", "Last Modified By ID", 18, updateable=False, nillable=False,
       reference_to=("User",)),
    _f("SystemModstamp", "datetime", "System Modstamp", updateable=False, nillable=False),
    # custom fields of the org: form answers, behaviour, firmographics from enrichment
    _f("Lifecycle_Stage__c", "picklist", "Lifecycle Stage", 255, picklist=STAGE_VALUES, restricted=True),
    _f("Budget_Range__c", "picklist", "Budget Range", 255, picklist=BUDGET_VALUES),
    _f("Purchase_Timeframe__c", "picklist", "Purchase Timeframe", 255, picklist=TIMEFRAME_VALUES),
    _f("Pain_Point__c", "textarea", "Pain Point", 32768),
    _f("Page_Views__c", "double", "Page Views"),
    _f("Visits__c", "double", "Visits"),
    _f("Pricing_Page_Views__c", "double", "Pricing Page Views"),
    _f("Email_Clicks__c", "double", "Email Clicks"),
    _f("Content_Downloads__c", "double", "Content Downloads"),
    _f("Form_Submissions__c", "double", "Form Submissions"),
    _f("Demo_Requested_At__c", "datetime", "Demo Requested At"),
    _f("Trial_Started_At__c", "datetime", "Trial Started At"),
    _f("Webinar_Attended_At__c", "datetime", "Webinar Attended At"),
    _f("Last_Activity_At__c", "datetime", "Last Activity At"),
    _f("Technologies__c", "textarea", "Technologies", 4000),
    _f("Company_Domain__c", "string", "Company Domain", 255),
    # fields an admin creates for leadflow (Salesforce fields cannot be created through REST)
    _f("Leadflow_Score__c", "double", "leadflow Score"),
    _f("Leadflow_Fit_Score__c", "double", "leadflow Fit Score"),
    _f("Leadflow_Engagement_Score__c", "double", "leadflow Engagement Score"),
    _f("Leadflow_Grade__c", "string", "leadflow Grade", 10),
    _f("Leadflow_BANT_Count__c", "double", "leadflow BANT Count"),
    _f("Leadflow_Reasons__c", "textarea", "leadflow Reasons", 32768),
    _f("Leadflow_Model_Version__c", "string", "leadflow Model Version", 64),
    _f("Leadflow_Disqualification_Reason__c", "string", "leadflow Disqualification Reason", 255),
    _f("Leadflow_Scored_At__c", "datetime", "leadflow Scored At"),
    _f("Leadflow_Sales_Ready__c", "boolean", "leadflow Sales Ready", nillable=False, default_value=False),
    _f("Leadflow_Sales_Ready_Since__c", "datetime", "leadflow Sales Ready Since"),
    _f("Leadflow_Sales_Ready_Reason__c", "string", "leadflow Sales Ready Reason", 255),
)
FIELDS_BY_NAME: dict[str, FieldDef] = {f.name: f for f in LEAD_FIELDS}
FIELDS_BY_LOWER: dict[str, FieldDef] = {f.name.lower(): f for f in LEAD_FIELDS}
# Fields kept in real, indexed columns of `sf_lead` (everything else is in the JSON document).
COLUMN_FIELDS: dict[str, str] = {
    "Id": "id", "SystemModstamp": "modstamp_ms", "LastModifiedDate": "modstamp_ms", "CreatedDate": "created_ms",
    "IsDeleted": "is_deleted", "IsConverted": "is_converted",
}


def lookup_field(name: str) -> FieldDef | None:
    """Field names are case-insensitive in SOQL and in writes."""
    return FIELDS_BY_LOWER.get(name.lower())


# What Salesforce writes in LeadHistory.Field besides the API names of tracked fields.
HISTORY_EVENTS: tuple[str, ...] = ("created", "leadConverted", "leadMerged")
HISTORY_FIELDS: tuple[FieldDef, ...] = (
    _f("Id", "id", "Lead History ID", 18, updateable=False, nillable=False),
    _f("IsDeleted", "boolean", "Deleted", updateable=False, nillable=False, default_value=False),
    _f("LeadId", "reference", "Lead ID", 18, updateable=False, nillable=False, reference_to=("Lead",)),
    _f("CreatedById", "reference", "Created By ID", 18, updateable=False, nillable=False, reference_to=("User",)),
    _f("CreatedDate", "datetime", "Created Date", updateable=False, nillable=False),
    _f("Field", "picklist", "Changed Field", 255, updateable=False, nillable=False,
       picklist=HISTORY_EVENTS + tuple(f.name for f in LEAD_FIELDS if f.updateable)),
    _f("OldValue", "anyType", "Old Value", updateable=False, filterable=False),
    _f("NewValue", "anyType", "New Value", updateable=False, filterable=False),
)


@dataclass(frozen=True, eq=False)
class SObjectType:
    """One queryable object of the sandbox org: its fields and where the store keeps them
    (`columns`: field -> SQL column; any other field is in the row's `fields` JSON document)."""

    name: str
    key_prefix: str
    label: str
    fields: tuple[FieldDef, ...]
    table: str
    columns: dict[str, str]
    _by_lower: dict[str, FieldDef] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_lower.update({f.name.lower(): f for f in self.fields})

    def lookup(self, name: str) -> FieldDef | None:
        return self._by_lower.get(name.lower())

    def column_sql(self, fdef: FieldDef) -> str:
        column = self.columns.get(fdef.name)
        return column if column else f"json_extract(fields, '$.{fdef.name}')"


# What a converted lead becomes. The org maps the lead's custom fields onto Contact fields of the same
# names (Setup > Map Lead Fields), and its firmographics, which a Contact keeps on its Account,
# onto custom fields of the Contact; leadflow's fields exist on Contact too.
CONTACT_FROM_LEAD: dict[str, str] = {
    "FirstName": "FirstName", "LastName": "LastName", "Email": "Email", "Title": "Title", "Phone": "Phone",
    "Country": "MailingCountry", "Description": "Description", "HasOptedOutOfEmail": "HasOptedOutOfEmail",
    "LeadSource": "LeadSource", "Company": "Company__c", "Website": "Website__c", "Industry": "Industry__c",
    "NumberOfEmployees": "NumberOfEmployees__c", "AnnualRevenue": "AnnualRevenue__c",
    **{f.name: f.name for f in LEAD_FIELDS if f.custom and f.name != "Lifecycle_Stage__c"},
}
_LEAD_COPIED = {f.name: f for f in LEAD_FIELDS}
CONTACT_FIELDS: tuple[FieldDef, ...] = (
    _f("Id", "id", "Contact ID", 18, updateable=False, nillable=False),
    _f("IsDeleted", "boolean", "Deleted", updateable=False, nillable=False, default_value=False),
    _f("MasterRecordId", "reference", "Master Record ID", 18, updateable=False, reference_to=("Contact",)),
    _f("AccountId", "reference", "Account ID", 18, reference_to=("Account",)),
    _f("MailingCountry", "string", "Mailing Country", 80),
    _f("Company__c", "string", "Company", 255),
    _f("Website__c", "url", "Website", 255),
    _f("Industry__c", "string", "Industry", 255),
    _f("NumberOfEmployees__c", "double", "Employees"),
    _f("AnnualRevenue__c", "currency", "Annual Revenue"),
    *(_LEAD_COPIED[lead] for lead, contact in CONTACT_FROM_LEAD.items() if lead == contact),
    *(_LEAD_COPIED[name] for name in ("CreatedDate", "CreatedById", "LastModifiedDate", "LastModifiedById",
                                      "SystemModstamp")),
)

LEAD = SObjectType(SOBJECT, ID_PREFIX, "Lead", LEAD_FIELDS, "sf_lead", COLUMN_FIELDS)
LEAD_HISTORY = SObjectType(
    "LeadHistory", HISTORY_PREFIX, "Lead History", HISTORY_FIELDS, "sf_lead_history",
    {"Id": "id", "IsDeleted": "is_deleted", "LeadId": "lead_id", "CreatedById": "created_by",
     "CreatedDate": "created_ms", "Field": "field", "OldValue": "old_value", "NewValue": "new_value"})
CONTACT = SObjectType(
    "Contact", CONTACT_PREFIX, "Contact", CONTACT_FIELDS, "sf_contact",
    {"Id": "id", "SystemModstamp": "modstamp_ms", "LastModifiedDate": "modstamp_ms", "CreatedDate": "created_ms",
     "IsDeleted": "is_deleted"})
SOBJECTS: dict[str, SObjectType] = {o.name.lower(): o for o in (LEAD, LEAD_HISTORY, CONTACT)}
# The writable objects by the key prefix of their ids (a collection write may mix them).
SOBJECTS_BY_PREFIX: dict[str, SObjectType] = {o.key_prefix: o for o in (LEAD, CONTACT)}


# --- ids ----------------------------------------------------------------------------------------
def _suffix(id15: str) -> str:
    """The 3-character case-safety suffix of an 18-character id: one character per 5-character
    chunk, encoding which of its characters are upper-case letters."""
    out = []
    for chunk in range(3):
        bits = 0
        for pos, ch in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= ch <= "Z":
                bits |= 1 << pos
        out.append(_SUFFIX_CHARS[bits])
    return "".join(out)


def record_id(prefix: str, number: int) -> str:
    """The reproducible 18-character id `number` of the object with key prefix `prefix` (`00Q`
    Lead, `005` User, `003` Contact, ...); ids of one prefix sort (as strings) in number order."""
    if number < 0:
        raise ValueError("id number must be >= 0")
    digits = []
    n = number
    for _ in range(9):
        n, r = divmod(n, 62)
        digits.append(_BASE62[r])
    if n:
        raise ValueError("id number too large")
    id15 = prefix + "5g0" + "".join(reversed(digits))
    return id15 + _suffix(id15)


def lead_id(number: int) -> str:
    """The Lead id of the world's contact `number`; ids sort (as strings) in number order."""
    return record_id(ID_PREFIX, number)


def id_number(value: str) -> int:
    """The number `record_id` encoded in an id (ValueError if it is not one of the sandbox's)."""
    text = to_18(value)
    if text[3:6] != "5g0":
        raise ValueError(f"not a sandbox record id: {value}")
    n = 0
    for ch in text[6:15]:
        n = n * 62 + _BASE62.index(ch)
    return n


def to_18(value: str) -> str:
    """A 15- or 18-character id as its 18-character form (ValueError if malformed)."""
    text = value.strip()
    if len(text) == 18 and text[:15].isalnum() and _suffix(text[:15]) == text[15:].upper():
        return text[:15] + _suffix(text[:15])
    if len(text) == 15 and text.isalnum():
        return text + _suffix(text)
    raise ValueError(f"invalid id: {value}")


# --- values -------------------------------------------------------------------------------------
def format_datetime(ms: int | None) -> str | None:
    """Epoch ms -> '2024-01-15T10:23:45.123+0000' (Salesforce's wire format)."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}+0000"


def parse_datetime(text: str) -> int:
    """'2024-01-15T10:23:45.000+0000' / '...Z' / '...+01:00' / '2024-01-15' -> epoch ms (UTC)."""
    raw = text.strip()
    if len(raw) == 10:
        moment = datetime.fromisoformat(raw).replace(tzinfo=timezone.utc)
    else:
        norm = raw.replace("Z", "+00:00").replace("z", "+00:00")
        if len(norm) >= 5 and norm[-5] in "+-" and norm[-4:].isdigit():
            norm = norm[:-2] + ":" + norm[-2:]
        moment = datetime.fromisoformat(norm)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
    return int(round(moment.timestamp() * 1000))


def format_date(ms: int) -> str:
    """Epoch ms -> its UTC day, 'YYYY-MM-DD' (Salesforce's date fields)."""
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def to_wire(fdef: FieldDef, value: Any) -> Any:
    if value is None:
        return None if fdef.type != "boolean" else False
    if fdef.type == "datetime":
        return format_datetime(value)
    if fdef.type == "boolean":
        return bool(value)
    if fdef.type == "int":
        return int(value)
    if fdef.type in ("double", "currency"):
        return float(value)
    return value


class WriteProblem(Exception):
    """A value a write may not set; becomes one per-record error."""

    def __init__(self, code: str, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields


class DeserializeProblem(Exception):
    """A value of the wrong JSON type: Salesforce fails the whole request (400 JSON_PARSER_ERROR)."""


def from_wire(fdef: FieldDef, value: Any) -> Any:
    """Validate and convert one written value to its stored form."""
    if value is None:
        if not fdef.nillable:
            raise WriteProblem("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{fdef.name}]", [fdef.name])
        return None
    t = fdef.type
    if t in ("double", "currency", "int"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise DeserializeProblem(f"Cannot deserialize instance of {t} from {type(value).__name__} value "
                                     f"for field {fdef.name}")
        try:
            number = float(value)
        except ValueError:
            raise DeserializeProblem(f"Cannot deserialize instance of {t} from VALUE_STRING value {value!r} "
                                     f"or request may be missing a required field") from None
        if not math.isfinite(number):
            raise DeserializeProblem(f"Cannot deserialize non-finite number for field {fdef.name}")
        return int(number) if t == "int" else number
    if t == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise DeserializeProblem(f"Cannot deserialize instance of boolean from {value!r}")
    if t == "datetime":
        if not isinstance(value, str):
            raise DeserializeProblem(f"Cannot deserialize instance of datetime from {type(value).__name__}")
        try:
            return parse_datetime(value)
        except ValueError:
            raise DeserializeProblem(f"Cannot deserialize instance of datetime from VALUE_STRING value {value!r}") from None
    if not isinstance(value, str):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        else:
            raise DeserializeProblem(f"Cannot deserialize instance of string from {type(value).__name__}")
    if value == "":
        return None
    if fdef.length and len(value) > fdef.length:
        raise WriteProblem("STRING_TOO_LONG", f"{fdef.label}: data value too large: {value[:40]}... "
                           f"(max length={fdef.length})", [fdef.name])
    if t == "picklist" and fdef.restricted and value not in fdef.picklist:
        raise WriteProblem("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                           f"{fdef.label}: bad value for restricted picklist field: {value}", [fdef.name])
    if t == "email" and ("@" not in value or " " in value):
        raise WriteProblem("INVALID_EMAIL_ADDRESS", f"Email: invalid email address: {value}", [fdef.name])
    return value
