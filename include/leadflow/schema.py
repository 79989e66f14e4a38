"""The canonical, CRM-agnostic shape of a lead, a company and a score.

Every connector maps its CRM's records into these columns; the warehouse stores them; the
qualification engine reads them and knows no CRM. Keeping the contract in one module lets each
part be developed and tested against it alone.
"""

from __future__ import annotations

from enum import Enum

# --- lifecycle stages ---------------------------------------------------------------------
# Canonical stage names in funnel order. Connectors map their CRM's internal values to these
# (HubSpot "marketingqualifiedlead" -> "mql", ...).
STAGE_ORDER: tuple[str, ...] = (
    "subscriber",
    "lead",
    "mql",
    "sql",
    "opportunity",
    "customer",
    "evangelist",
)
# Stages that belong to sales (or later): leadflow never changes them.
SALES_OWNED_STAGES: frozenset[str] = frozenset({"opportunity", "customer", "evangelist", "other"})
# Stages leadflow may propose.
MODEL_STAGES: tuple[str, ...] = ("subscriber", "lead", "mql", "sql")
STAGE_RANK: dict[str, int] = {stage: rank for rank, stage in enumerate(STAGE_ORDER)}
# Every stage a connector may produce: the funnel, plus "other", HubSpot's catch-all stage.
CANONICAL_STAGES: tuple[str, ...] = (*STAGE_ORDER, "other")


def stage_sort_key(stage: str) -> tuple[int, str]:
    """Sort key for stage names: funnel order, then any other name alphabetically."""
    return STAGE_RANK.get(stage, len(STAGE_ORDER)), stage



class LeadStatus(str, Enum):
    NEW = "new"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    NURTURE = "nurture"
    UNQUALIFIED = "unqualified"
    ATTEMPTED_TO_CONTACT = "attempted_to_contact"
    CONNECTED = "connected"
    OPEN_DEAL = "open_deal"


# The lead-status values, in declaration order (for validation messages and Literal types).
CANONICAL_STATUSES: tuple[str, ...] = tuple(s.value for s in LeadStatus)


# --- leads ----------------------------------------------------------------------------------
# name -> kind. Kinds: "str" (text, may be None), "float" (number, NaN when missing),
# "ts" (UTC timestamp; epoch milliseconds in the warehouse, datetime64[ns, UTC] in frames),
# "bool".
LEAD_COLUMNS: dict[str, str] = {
    "crm": "str",  # "hubspot" | "salesforce" | ...
    "record_id": "str",  # the CRM's id of the contact / lead
    "email": "str",
    "first_name": "str",
    "last_name": "str",
    "job_title": "str",
    "phone": "str",
    "company_name": "str",  # as typed on the lead (free text)
    "website": "str",
    "company_id": "str",  # the CRM's id of the associated company, if any
    "country": "str",
    "industry": "str",
    "employees": "float",
    "annual_revenue": "float",  # USD
    "lifecycle_stage": "str",  # canonical stage (see STAGE_ORDER); None when empty
    "lead_status": "str",  # canonical LeadStatus value; None when empty
    # form answers (qualification survey)
    "budget_range": "str",  # e.g. "<5k", "5k-25k", "25k-100k", ">100k"
    "timeframe": "str",  # e.g. "this_quarter", "6_months", "12_months", "just_researching"
    "pain_point": "str",
    "form_comments": "str",  # free text
    # behaviour ("online body language")
    "page_views": "float",
    "visits": "float",
    "pricing_page_views": "float",
    "email_clicks": "float",
    "content_downloads": "float",
    "form_submissions": "float",
    "demo_requested_at": "ts",
    "trial_started_at": "ts",
    "webinar_attended_at": "ts",
    "last_activity_at": "ts",
    "do_not_contact": "bool",
    "created_at": "ts",
    "updated_at": "ts",  # the CRM's last-modified time (the incremental cursor)
    "is_deleted": "bool",
}

COMPANY_COLUMNS: dict[str, str] = {
    "crm": "str",
    "company_id": "str",
    "name": "str",
    "domain": "str",
    "industry": "str",
    "employees": "float",
    "annual_revenue": "float",
    "country": "str",
    "technologies": "str",  # ";"-separated
    "updated_at": "ts",
}

# --- what leadflow writes back ------------------------------------------------------------------
# Canonical names of the fields leadflow owns in the CRM; each connector maps them to its own
# property / field names. lifecycle_stage and lead_status are also pushed, under rules.
OWNED_FIELDS: tuple[str, ...] = (
    "score",
    "fit_score",
    "engagement_score",
    "grade",
    "bant_count",
    "reasons",
    "model_version",
    "disqualification_reason",
    "scored_at",
    # The handoff to sales: what sales sees of a sales-ready lead (flag, since when, why).
    "sales_ready",
    "sales_ready_since",
    "sales_ready_reason",
)
PUSHED_FIELDS: tuple[str, ...] = OWNED_FIELDS + ("lifecycle_stage", "lead_status")
# leadflow's own company fields (the account view): the company score and the buying-committee
# reason. The only company fields leadflow ever writes.
COMPANY_OWNED_FIELDS: tuple[str, ...] = ("company_score", "buying_committee")

# Current CRM values of the owned fields are kept on the lead row under this prefix
# ("crm_score", "crm_grade", ...) so the push can diff desired against current.
CRM_VALUE_PREFIX = "crm_"
CRM_OWNED_VALUE_COLUMNS: dict[str, str] = {f"{CRM_VALUE_PREFIX}{f}": "str" for f in OWNED_FIELDS}
# The same for the owned company fields, on the company row, with the time they were last known
# (read with the company or written by leadflow); None: not known, read before writing.
CRM_COMPANY_OWNED_COLUMNS: dict[str, str] = {f"{CRM_VALUE_PREFIX}{f}": "str" for f in COMPANY_OWNED_FIELDS}
COMPANY_OWNED_KNOWN_AT = "crm_owned_known_at"
# The CRM's own value of each shared field, mapped or not: a value outside the mapping has no
# canonical `lifecycle_stage` / `lead_status`, and must still be seen as someone else's.
CRM_RAW_PREFIX = "crm_raw_"
CRM_RAW_VALUE_COLUMNS: dict[str, str] = {f"{CRM_RAW_PREFIX}{f}": "str" for f in ("lifecycle_stage", "lead_status")}
# A record that replaced another. `merged_into`: on a lead merged away in the CRM (or a Salesforce
# Lead followed to the Contact it was converted into), the record that took its place; the lead is
# also is_deleted. `converted_from`: on that Contact, the converted lead: it stays scored in its
# sales-owned stage (leadflow writes only its own fields there).
LEAD_REMOVAL_COLUMNS: dict[str, str] = {"merged_into": "str", "converted_from": "str"}

# --- scores -------------------------------------------------------------------------------------
SCORE_COLUMNS: dict[str, str] = {
    "crm": "str",
    "record_id": "str",
    "model_version": "str",
    "score": "float",  # combined 0-100
    "fit_score": "float",
    "engagement_score": "float",
    "grade": "str",  # e.g. "A1"
    "bant_budget": "bool",
    "bant_authority": "bool",
    "bant_need": "bool",
    "bant_timeline": "bool",
    "bant_count": "float",
    "disqualification_reason": "str",
    "stage": "str",  # the lifecycle stage leadflow wants the record in (never backwards)
    "lead_status": "str",
    "reasons": "str",  # rendered text, "; "-separated, e.g. "+15 decider title: VP Sales"
    # The handoff to sales (qualify/handoff.py): the lead meets the model's sales-ready criteria
    # (`stages.sql`); since when (epoch ms, kept while it stays sales-ready) and why.
    "sales_ready": "bool",
    "sales_ready_since": "ts",
    "sales_ready_reason": "str",
}

# Kept with each score for the account view, which sees every shard's leads at once: the
# persona the job title matched and its decision authority (None when no persona matched).
SCORE_PERSONA_COLUMNS: dict[str, str] = {"persona": "str", "authority": "str"}

# Hard limits applied when landing data: longer text is truncated and reported.
MAX_TEXT_LENGTH = 4000
