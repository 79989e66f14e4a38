"""The fields a qualification rule may test, and which operators fit each kind of field.

The engine reads `leadflow.schema.LEAD_COLUMNS` plus a few columns the pipeline adds after
enrichment, plus three fields derived from the job title by the model's personas. Keeping the
vocabulary in one place lets the config validator reject a misspelt field or an operator that
cannot apply (``at_least`` on a text field) with a message naming the key.
"""

from __future__ import annotations

from leadflow.schema import LEAD_COLUMNS

# Columns the pipeline adds after enrichment; missing columns are treated as all-missing.
ENRICHED_COLUMNS: dict[str, str] = {
    "email_domain": "str",
    "company_domain": "str",
    "is_free_email": "bool",
    "is_disposable_email": "bool",
    "technologies": "list",  # ";"-separated names
}

# Derived from the job title by the first matching persona (None when no persona matches).
DERIVED_FIELDS: dict[str, str] = {
    "persona": "str",
    "seniority": "str",
    "authority": "str",
}

FIELD_KINDS: dict[str, str] = {**LEAD_COLUMNS, **ENRICHED_COLUMNS, **DERIVED_FIELDS}

# Operator -> the field kinds it applies to. "missing" applies to every kind.
OPERATOR_KINDS: dict[str, frozenset[str]] = {
    "in": frozenset({"str"}),
    "matches": frozenset({"str", "list"}),
    "words_at_least": frozenset({"str"}),
    "words_below": frozenset({"str"}),
    "contains_any": frozenset({"list"}),
    "at_least": frozenset({"float"}),
    "below": frozenset({"float"}),
    "is": frozenset({"bool"}),
    "within_days": frozenset({"ts"}),
    "older_than_days": frozenset({"ts"}),
    "missing": frozenset({"str", "list", "float", "ts", "bool"}),
}

# Derived fields only hold persona vocabulary: regex and word counts make no sense on them.
DERIVED_OPERATORS: frozenset[str] = frozenset({"in", "missing"})

# Fields whose value may be appended to a reason text ("decider title: VP Sales"). Names,
# emails and phone numbers are deliberately absent: reasons are pushed to the CRM and logged.
SHOWABLE_FIELDS: frozenset[str] = frozenset(
    {
        "job_title",
        "industry",
        "country",
        "budget_range",
        "timeframe",
        "persona",
        "seniority",
        "authority",
        "email_domain",
        "company_domain",
        "lifecycle_stage",
    }
)

SENIORITIES: tuple[str, ...] = ("executive", "director", "manager", "individual", "student", "other")
AUTHORITIES: tuple[str, ...] = ("decider", "influencer", "user", "none")
