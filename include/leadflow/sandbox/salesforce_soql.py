"""The part of SOQL the sandbox understands, compiled to SQLite over `sf_lead` (Lead) or
`sf_lead_history` (LeadHistory).

Supported: `SELECT f1, f2 FROM Lead|LeadHistory [WHERE cond] [ORDER BY f [ASC|DESC] [NULLS FIRST|LAST], ...]
[LIMIT n] [OFFSET n]`, and on Lead the parent-to-child sub-query `(SELECT ... FROM Histories [WHERE ...]
[ORDER BY ...] [LIMIT n])` in the select list; conditions are comparisons (= != <> < <= > >= LIKE), `IN (...)`,
`NOT IN (...)`, AND / OR / NOT and parentheses (AND and OR may not be mixed without parentheses,
as in Salesforce). Literals: 'strings' (backslash escapes), numbers, true/false, null, datetime
(`2025-01-01T00:00:00Z`, unquoted, optional fraction and offset) and date (`2025-01-01`).
LeadHistory's OldValue and NewValue can be selected but neither filtered nor sorted, as in
Salesforce.

Anything else raises `SoqlError` with Salesforce's error code (MALFORMED_QUERY, INVALID_FIELD,
INVALID_TYPE) so the API answers 400 the way Salesforce does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from leadflow.sandbox.salesforce_schema import ID_TYPES, LEAD, LEAD_HISTORY, SOBJECTS, FieldDef, SObjectType, parse_datetime, to_18


class SoqlError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<dt>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<num>-?\d+(?:\.\d+)?)
  | (?P<str>'(?:\\.|[^'\\])*')
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),])
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
""", re.VERBOSE)
_KEYWORDS = {"select", "from", "where", "order", "by", "limit", "offset", "and", "or", "not", "in", "asc", "desc",
             "nulls", "first", "last", "like", "true", "false", "null"}


@dataclass
class Token:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{text[pos:pos + 20]}' at column {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            value = m.group()
            if kind == "word" and value.lower() in _KEYWORDS:
                kind = "kw"
            tokens.append(Token(kind, value, pos))
        pos = m.end()
    return tokens


@dataclass
class Query:
    fields: list[FieldDef]
    where_sql: str = ""
    params: list[Any] = field(default_factory=list)
    order_sql: str = ""
    limit: int | None = None
    offset: int = 0
    sobject: SObjectType = LEAD
    # Parent-to-child sub-queries in the select list: relationship name -> its query.
    children: dict[str, "Query"] = field(default_factory=dict)
    # In a sub-query: the child's column holding the parent's id.
    parent_sql: str = ""


# Child relationships a sub-query may name: (parent, relationship) -> child object and the child's
# field that points at the parent.
CHILD_RELATIONSHIPS: dict[tuple[str, str], tuple[SObjectType, str]] = {("lead", "histories"): (LEAD_HISTORY, "LeadId")}


def column_sql(fdef: FieldDef, sobject: SObjectType = LEAD) -> str:
    return sobject.column_sql(fdef)


_ESCAPED = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def _unescape(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPED.get(m.group(1), m.group(1)), body)


class _Parser:
    def __init__(self, text: str, tokens: list[Token] | None = None) -> None:
        self.text = text
        self.tokens = tokenize(text) if tokens is None else tokens
        self.i = 0
        self.params: list[Any] = []
        self.obj: SObjectType = LEAD  # set by FROM, which comes after the select list

    # helpers
    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def at_kw(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and tok.kind == "kw" and tok.text.lower() in words

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise SoqlError("MALFORMED_QUERY", "unexpected end of query")
        self.i += 1
        return tok

    def expect_kw(self, word: str) -> None:
        tok = self.take()
        if tok.kind != "kw" or tok.text.lower() != word:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}' (expected {word.upper()})")

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}' (expected '{text}')")

    def field_token(self) -> Token:
        tok = self.take()
        if tok.kind != "word":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")
        if self.peek() is not None and self.peek().text == "(":  # type: ignore[union-attr]
            raise SoqlError("MALFORMED_QUERY", f"the sandbox does not support the function {tok.text}()")
        return tok

    def resolve(self, tok: Token) -> FieldDef:
        fdef = self.obj.lookup(tok.text)
        if fdef is None:
            raise SoqlError("INVALID_FIELD", f"No such column '{tok.text}' on entity '{self.obj.name}'. If you are "
                            "attempting to use a custom field, be sure to append the '__c' after the custom "
                            "field name.")
        return fdef

    def field(self) -> FieldDef:
        return self.resolve(self.field_token())

    def filter_field(self) -> FieldDef:
        fdef = self.field()
        if not fdef.filterable:
            raise SoqlError("INVALID_FIELD", f"field '{fdef.name}' can not be filtered in a query call")
        return fdef

    # grammar
    def query(self) -> Query:
        self.expect_kw("select")
        names: list[Token] = []
        subqueries: list[tuple[int, int]] = []  # token spans of "(SELECT ...)", parsed once FROM is known
        while True:
            if self.peek() is not None and self.peek().text == "(":  # type: ignore[union-attr]
                start = self.i
                self._skip_parenthesised()
                subqueries.append((start, self.i))
            else:
                names.append(self.field_token())
            if self.peek() is None or self.peek().text != ",":  # type: ignore[union-attr]
                break
            self.take()
        self.expect_kw("from")
        obj = self.take()
        sobject = SOBJECTS.get(obj.text.lower()) if obj.kind == "word" else None
        if sobject is None:
            raise SoqlError("INVALID_TYPE", f"sObject type '{obj.text}' is not supported.")
        self.obj = sobject
        q = Query(fields=list(dict.fromkeys(self.resolve(t) for t in names)), sobject=sobject)
        resume = self.i
        for start, end in subqueries:
            name, child = self._subquery(start, end, sobject)
            q.children[name] = child
        self.i, self.obj = resume, sobject
        if self.at_kw("where"):
            self.take()
            q.where_sql = self.condition()
        if self.at_kw("order"):
            self.take()
            self.expect_kw("by")
            q.order_sql = self.order_by()
        if self.at_kw("limit"):
            self.take()
            q.limit = self.integer("LIMIT")
        if self.at_kw("offset"):
            self.take()
            q.offset = self.integer("OFFSET")
            if q.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is 2000")
        if self.peek() is not None:
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{self.peek().text}'")  # type: ignore[union-attr]
        q.params = self.params
        return q

    def _skip_parenthesised(self) -> None:
        depth = 0
        while True:
            tok = self.take()
            depth += {"(": 1, ")": -1}.get(tok.text, 0)
            if depth == 0:
                return

    def _subquery(self, start: int, end: int, parent: SObjectType) -> tuple[str, Query]:
        """`(SELECT f, ... FROM <relationship> [WHERE ...] [ORDER BY ...] [LIMIT n])` of `parent`."""
        tokens = self.tokens[start + 1:end - 1]
        at_from = next((k for k, t in enumerate(tokens) if t.kind == "kw" and t.text.lower() == "from"), None)
        if at_from is None or at_from + 1 >= len(tokens):
            raise SoqlError("MALFORMED_QUERY", "a sub-query needs FROM and a child relationship")
        relationship = tokens[at_from + 1].text
        found = CHILD_RELATIONSHIPS.get((parent.name.lower(), relationship.lower()))
        if found is None:
            raise SoqlError("INVALID_TYPE", f"Didn't understand relationship '{relationship}' in FROM part of query "
                            "call. If you are attempting to use a custom relationship, be sure to append the '__r' "
                            "after the custom relationship name.")
        child_type, parent_field = found
        # The relationship stands where the child object's name would: parse it as that object.
        child = _Parser(self.text, [*tokens[:at_from + 1], Token("word", child_type.name, tokens[at_from + 1].pos),
                                    *tokens[at_from + 2:]]).query()
        child.parent_sql = child_type.columns[parent_field]
        if child.children:
            raise SoqlError("MALFORMED_QUERY", "sub-queries cannot be nested")
        if child.offset:
            raise SoqlError("MALFORMED_QUERY", "OFFSET is not allowed in a sub-query")
        return relationship, child

    def integer(self, what: str) -> int:
        tok = self.take()
        if tok.kind != "num" or not tok.text.isdigit():
            raise SoqlError("MALFORMED_QUERY", f"{what} must be a non-negative integer, got '{tok.text}'")
        return int(tok.text)

    def order_by(self) -> str:
        parts = []
        while True:
            fdef = self.field()
            if not fdef.sortable:
                raise SoqlError("INVALID_FIELD", f"field '{fdef.name}' can not be sorted in a query call")
            direction = "ASC"
            if self.at_kw("asc", "desc"):
                direction = self.take().text.upper()
            nulls = "FIRST" if direction == "ASC" else "LAST"
            if self.at_kw("nulls"):
                self.take()
                if not self.at_kw("first", "last"):
                    raise SoqlError("MALFORMED_QUERY", "NULLS must be followed by FIRST or LAST")
                nulls = self.take().text.upper()
            expr = self.obj.column_sql(fdef)
            collate = " COLLATE NOCASE" if fdef.type not in (*ID_TYPES, "double", "currency", "int", "boolean",
                                                               "datetime") else ""
            parts.append(f"({expr} IS NULL) {'DESC' if nulls == 'FIRST' else 'ASC'}, {expr}{collate} {direction}")
            if self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
                self.take()
                continue
            return ", ".join(parts)

    def condition(self) -> str:
        first = self.unary()
        joiner: str | None = None
        parts = [first]
        while self.at_kw("and", "or"):
            word = self.take().text.upper()
            if joiner is not None and word != joiner:
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{word}' (use parentheses when mixing "
                                "AND and OR)")
            joiner = word
            parts.append(self.unary())
        if len(parts) == 1:
            return first
        return "(" + f" {joiner} ".join(parts) + ")"

    def unary(self) -> str:
        if self.at_kw("not"):
            self.take()
            return f"(NOT {self.unary()})"
        tok = self.peek()
        if tok is not None and tok.text == "(":
            self.take()
            inner = self.condition()
            self.expect(")")
            return inner
        return self.comparison()

    def comparison(self) -> str:
        fdef = self.filter_field()
        expr = self.obj.column_sql(fdef)
        if self.at_kw("not"):
            self.take()
            self.expect_kw("in")
            return f"({expr} IS NULL OR {expr} NOT IN ({self.value_list(fdef)}))"
        if self.at_kw("in"):
            self.take()
            return f"{expr} IN ({self.value_list(fdef)})"
        if self.at_kw("like"):
            self.take()
            tok = self.take()
            if tok.kind != "str":
                raise SoqlError("MALFORMED_QUERY", "LIKE needs a string literal")
            self.params.append(_unescape(tok.text))
            return f"{expr} LIKE ?"
        op_tok = self.take()
        if op_tok.kind != "op":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{op_tok.text}'")
        op = "!=" if op_tok.text == "<>" else op_tok.text
        value = self.value(fdef)
        if value is None:
            if op == "=":
                return f"{expr} IS NULL"
            if op == "!=":
                return f"{expr} IS NOT NULL"
            raise SoqlError("MALFORMED_QUERY", f"null can only be compared with = or !=")
        self.params.append(value)
        collate = " COLLATE NOCASE" if isinstance(value, str) and fdef.type not in ID_TYPES else ""
        if op == "!=":
            return f"({expr} IS NULL OR {expr} != ?{collate})"
        return f"{expr} {op} ?{collate}"

    def value_list(self, fdef: FieldDef) -> str:
        self.expect("(")
        marks = []
        while True:
            value = self.value(fdef)
            self.params.append(value)
            marks.append("?")
            tok = self.take()
            if tok.text == ")":
                return ", ".join(marks)
            if tok.text != ",":
                raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}'")

    def value(self, fdef: FieldDef) -> Any:
        tok = self.take()
        t = fdef.type
        if tok.kind == "kw" and tok.text.lower() == "null":
            return None
        if t == "datetime":
            if tok.kind == "dt":
                return parse_datetime(tok.text)
            if tok.kind == "str":
                raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fdef.name}' must be of "
                                "type dateTime and should not be enclosed in quotes")
            raise SoqlError("MALFORMED_QUERY", f"value of filter criterion for field '{fdef.name}' must be of type "
                            f"dateTime, got '{tok.text}'")
        if t == "boolean":
            if tok.kind == "kw" and tok.text.lower() in ("true", "false"):
                return 1 if tok.text.lower() == "true" else 0
            raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fdef.name}' must be of type "
                            "boolean and should not be enclosed in quotes")
        if t == "date":
            if tok.kind == "date":
                return tok.text
            raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fdef.name}' must be of type "
                            "date (YYYY-MM-DD) and should not be enclosed in quotes")
        if t in ("double", "currency", "int"):
            if tok.kind == "num":
                return float(tok.text)
            raise SoqlError("INVALID_FIELD", f"value of filter criterion for field '{fdef.name}' must be of type "
                            f"{t} and should not be enclosed in quotes")
        if tok.kind != "str":
            raise SoqlError("MALFORMED_QUERY", f"unexpected token: '{tok.text}' (string fields take 'quoted' values)")
        text = _unescape(tok.text)
        if t in ID_TYPES:
            try:
                return to_18(text)
            except ValueError:
                raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {text}") from None
        return text


def parse(text: str) -> Query:
    """Parse and compile one SOQL statement (raises SoqlError)."""
    if not text or not text.strip():
        raise SoqlError("MALFORMED_QUERY", "empty query")
    return _Parser(text).query()
