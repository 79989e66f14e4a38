"""The CRM search endpoint's request rules and their translation to SQL.

`parse_search_request` enforces HubSpot's limits (5 filter groups x 6 filters, 18 in all, one
sort, limit <= 200, `after` + limit <= 10,000) and `compile_search` turns the filters into a WHERE
clause over the object table. Groups are OR-ed, filters inside a group AND-ed.

Comparison rules (matching HubSpot's documented behaviour):
- number properties compare numerically; date/datetime properties as epoch milliseconds (a
  filter value may be epoch ms or ISO-8601); booleans as true/false; strings and enumerations
  case-insensitively.
- IN / NOT_IN on *string* properties compare the lower-cased stored value with the values as
  given, so upper-case values never match (HubSpot documents that IN values must be lower case).
- NEQ and NOT_IN also match records where the property is empty.
- Sorting is stable: ties are broken by hs_object_id ascending; empty values sort last. Without
  a sort, results come in hs_object_id order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from leadflow.sandbox.errors import validation_error
from leadflow.sandbox.properties import COLUMN_PROPERTIES, PropertyDef, parse_time_ms

MAX_FILTER_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_LIMIT = 200
DEFAULT_LIMIT = 10
MAX_RESULTS = 10_000
MAX_BODY_CHARS = 3_000

OPERATORS: frozenset[str] = frozenset({
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN", "HAS_PROPERTY", "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
})
_COMPARE = {"EQ": "=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}
# Free-text `query` looks in these properties.
QUERY_PROPERTIES: dict[str, tuple[str, ...]] = {
    "contacts": ("firstname", "lastname", "company", "phone"),
    "companies": ("name", "website"),
}


@dataclass(frozen=True)
class Filter:
    property_name: str
    operator: str
    value: Any = None
    high_value: Any = None
    values: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Sort:
    property_name: str
    descending: bool = False


@dataclass(frozen=True)
class SearchRequest:
    filter_groups: tuple[tuple[Filter, ...], ...]
    sort: Sort | None
    properties: tuple[str, ...] | None
    limit: int
    after: int
    query: str | None = None


@dataclass(frozen=True)
class CompiledSearch:
    where_sql: str
    params: tuple[Any, ...]
    order_sql: str


def check_body_size(raw_body: bytes) -> None:
    text_len = len(raw_body.decode("utf-8", errors="replace"))
    if text_len > MAX_BODY_CHARS:
        raise validation_error(
            f"The request body is {text_len} characters long; search requests are limited to "
            f"{MAX_BODY_CHARS} characters.")


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise validation_error(f"{name} must be an integer, got {value!r}")
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise validation_error(f"{name} must be an integer, got {str(value)[:50]!r}") from None


def parse_search_request(body: Any) -> SearchRequest:
    """Validate a search body; raises HubSpotError (400 VALIDATION_ERROR) naming what is wrong."""
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: the search body must be an object")
    groups_raw = body.get("filterGroups") or []
    if not isinstance(groups_raw, list):
        raise validation_error("filterGroups must be a list")
    if len(groups_raw) > MAX_FILTER_GROUPS:
        raise validation_error(f"Too many filter groups: {len(groups_raw)}; at most {MAX_FILTER_GROUPS} are allowed.")
    groups: list[tuple[Filter, ...]] = []
    total = 0
    for gi, group in enumerate(groups_raw):
        filters_raw = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters_raw, list):
            raise validation_error(f"filterGroups[{gi}].filters must be a list")
        if len(filters_raw) > MAX_FILTERS_PER_GROUP:
            raise validation_error(
                f"Too many filters in filterGroups[{gi}]: {len(filters_raw)}; at most {MAX_FILTERS_PER_GROUP} "
                "are allowed per group.")
        total += len(filters_raw)
        groups.append(tuple(_parse_filter(f, f"filterGroups[{gi}].filters[{fi}]") for fi, f in enumerate(filters_raw)))
    if total > MAX_FILTERS:
        raise validation_error(f"Too many filters: {total}; at most {MAX_FILTERS} are allowed in total.")

    sorts = body.get("sorts") or []
    if not isinstance(sorts, list):
        raise validation_error("sorts must be a list")
    if len(sorts) > 1:
        raise validation_error(f"Only one sort is supported, got {len(sorts)}.")
    sort = _parse_sort(sorts[0]) if sorts else None

    props = body.get("properties")
    if props is not None and not (isinstance(props, list) and all(isinstance(p, str) for p in props)):
        raise validation_error("properties must be a list of property names")

    limit = DEFAULT_LIMIT if body.get("limit") is None else _int(body.get("limit"), "limit")
    if limit < 1 or limit > MAX_LIMIT:
        raise validation_error(f"limit must be between 1 and {MAX_LIMIT}, got {limit}.")
    after = 0 if body.get("after") in (None, "") else _int(body.get("after"), "after")
    if after < 0:
        raise validation_error(f"after must not be negative, got {after}.")
    if after + limit > MAX_RESULTS:
        raise validation_error(
            f"Paging past {MAX_RESULTS} results is not supported (after={after}, limit={limit}); narrow the "
            "search instead.")
    query = body.get("query")
    return SearchRequest(filter_groups=tuple(groups), sort=sort, properties=tuple(props) if props is not None else None,
                         limit=limit, after=after, query=str(query) if query else None)


def _parse_filter(raw: Any, where: str) -> Filter:
    if not isinstance(raw, dict):
        raise validation_error(f"{where} must be an object")
    name = raw.get("propertyName")
    op = str(raw.get("operator") or "").upper()
    if not name or not isinstance(name, str):
        raise validation_error(f"{where}.propertyName is required")
    if op not in OPERATORS:
        raise validation_error(f"{where}.operator {raw.get('operator')!r} is not one of {', '.join(sorted(OPERATORS))}")
    values = raw.get("values")
    if op in ("IN", "NOT_IN"):
        if not isinstance(values, list) or not values:
            raise validation_error(f"{where}: operator {op} needs a non-empty 'values' list")
    elif op == "BETWEEN":
        if raw.get("value") is None or raw.get("highValue") is None:
            raise validation_error(f"{where}: operator BETWEEN needs 'value' and 'highValue'")
    elif op not in ("HAS_PROPERTY", "NOT_HAS_PROPERTY") and raw.get("value") is None:
        raise validation_error(f"{where}: operator {op} needs a 'value'")
    return Filter(property_name=name, operator=op, value=raw.get("value"), high_value=raw.get("highValue"),
                  values=tuple(values) if isinstance(values, list) else None)


def _parse_sort(raw: Any) -> Sort:
    # The SDK types sorts as strings ("createdate", "-createdate"); the REST docs use objects.
    if isinstance(raw, str):
        return Sort(raw[1:], True) if raw.startswith("-") else Sort(raw, False)
    if isinstance(raw, dict) and isinstance(raw.get("propertyName"), str):
        direction = str(raw.get("direction") or "ASCENDING").upper()
        if direction not in ("ASCENDING", "DESCENDING"):
            raise validation_error(f"sort direction {raw.get('direction')!r} is not ASCENDING or DESCENDING")
        return Sort(raw["propertyName"], direction == "DESCENDING")
    raise validation_error("sorts[0] must be a property name or {propertyName, direction}")


# --- SQL --------------------------------------------------------------------------------------
def _kind(object_type: str, prop: PropertyDef) -> str:
    if prop.type in ("number",):
        return "number"
    if prop.type in ("date", "datetime"):
        return "time"
    if prop.type == "bool":
        return "bool"
    return "text"


def _expr(object_type: str, name: str) -> str:
    column = COLUMN_PROPERTIES[object_type].get(name)
    if column is not None:
        return column
    return f"json_extract(props, '$.\"{name}\"')"


def _value(prop: PropertyDef, kind: str, value: Any, where: str) -> Any:
    if kind == "number":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise validation_error(f"{where}: {str(value)[:50]!r} is not a number (property {prop.name})") from None
    if kind == "time":
        try:
            return parse_time_ms(value)
        except (TypeError, ValueError):
            raise validation_error(
                f"{where}: {str(value)[:50]!r} is not epoch milliseconds or ISO-8601 (property {prop.name})") from None
    if kind == "bool":
        text = str(value).strip().lower()
        if text not in ("true", "false"):
            raise validation_error(f"{where}: {str(value)[:50]!r} is not true/false (property {prop.name})")
        return 1 if text == "true" else 0
    return str(value).lower()


def compile_search(object_type: str, request: SearchRequest, defs: dict[str, PropertyDef]) -> CompiledSearch:
    params: list[Any] = []
    group_sql: list[str] = []
    for gi, group in enumerate(request.filter_groups):
        parts = [_compile_filter(object_type, f, defs, params, f"filterGroups[{gi}].filters[{fi}]")
                 for fi, f in enumerate(group)]
        if parts:
            group_sql.append("(" + " AND ".join(parts) + ")")
    where = " OR ".join(group_sql)
    if request.query:
        where = f"({where}) AND " if where else ""
        where += _compile_query(object_type, request.query, params)
    return CompiledSearch(where_sql=where, params=tuple(params), order_sql=_compile_order(object_type, request.sort, defs))


def _compile_filter(object_type: str, flt: Filter, defs: dict[str, PropertyDef], params: list[Any], where: str) -> str:
    prop = defs.get(flt.property_name)
    if prop is None:
        raise validation_error(f"{where}: property {flt.property_name!r} does not exist",
                               sub_category="PROPERTY_DOESNT_EXIST")
    kind = _kind(object_type, prop)
    expr = _expr(object_type, prop.name)
    is_column = prop.name in COLUMN_PROPERTIES[object_type]
    cmp = expr if (kind != "text" or is_column) else f"lower({expr})"
    op = flt.operator
    if op == "HAS_PROPERTY":
        return f"({expr} IS NOT NULL AND {expr} <> '')"
    if op == "NOT_HAS_PROPERTY":
        return f"({expr} IS NULL OR {expr} = '')"
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        params.append(str(flt.value))
        test = f"contains_token({expr}, ?)"
        return test if op == "CONTAINS_TOKEN" else f"({expr} IS NULL OR NOT {test})"
    if op in ("IN", "NOT_IN"):
        assert flt.values is not None
        if kind == "text" and prop.type == "string":
            vals = [str(v) for v in flt.values]  # as given: upper-case values never match
            cmp = f"lower({expr})"
        else:
            vals = [_value(prop, kind, v, where) for v in flt.values]
        params.extend(vals)
        marks = ",".join("?" * len(vals))
        return f"{cmp} IN ({marks})" if op == "IN" else f"({expr} IS NULL OR {cmp} NOT IN ({marks}))"
    if op == "BETWEEN":
        params.extend([_value(prop, kind, flt.value, where), _value(prop, kind, flt.high_value, where)])
        return f"{cmp} BETWEEN ? AND ?"
    params.append(_value(prop, kind, flt.value, where))
    if op == "NEQ":
        return f"({expr} IS NULL OR {cmp} <> ?)"
    return f"{cmp} {_COMPARE[op]} ?"


def _compile_query(object_type: str, query: str, params: list[Any]) -> str:
    clauses = []
    for token in query.lower().split():
        like = f"%{token.replace('%', '').replace('_', '')}%"
        fields = ["unique_key"] + [f"lower({_expr(object_type, p)})" for p in QUERY_PROPERTIES[object_type]]
        clauses.append("(" + " OR ".join(f"{f} LIKE ?" for f in fields) + ")")
        params.extend([like] * len(fields))
    return "(" + " AND ".join(clauses) + ")" if clauses else "1"


def _compile_order(object_type: str, sort: Sort | None, defs: dict[str, PropertyDef]) -> str:
    if sort is None:
        return "id ASC"
    prop = defs.get(sort.property_name)
    if prop is None:
        raise validation_error(f"sort property {sort.property_name!r} does not exist",
                               sub_category="PROPERTY_DOESNT_EXIST")
    direction = "DESC" if sort.descending else "ASC"
    expr = _expr(object_type, prop.name)
    if expr == "id":
        return f"id {direction}"
    if prop.name in COLUMN_PROPERTIES[object_type] and expr != "company_id":
        return f"{expr} {direction}, id ASC"  # never null: lets SQLite walk the index
    cmp = expr if _kind(object_type, prop) != "text" else f"lower({expr})"
    return f"({expr} IS NULL) ASC, {cmp} {direction}, id ASC"


def next_after(request: SearchRequest, total: int, returned: int) -> str | None:
    """`paging.next.after` when more results exist. Like HubSpot it may point past the 10,000
    cap: following it then fails with a 400, which is what real integrations trip over."""
    nxt = request.after + returned
    return str(nxt) if returned and nxt < total else None

