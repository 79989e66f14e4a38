"""leadflow.schema owns the canonical stages and lead statuses: no other module defines them again."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from leadflow.schema import (
    CANONICAL_STAGES,
    CANONICAL_STATUSES,
    MODEL_STAGES,
    STAGE_ORDER,
    STAGE_RANK,
    LeadStatus,
    stage_sort_key,
)

PACKAGE = Path(__file__).resolve().parents[2] / "include" / "leadflow"
CANONICAL_NAMES = {"CANONICAL_STAGES", "CANONICAL_STATUSES", "STAGE_ORDER", "STAGE_RANK", "MODEL_STAGES",
                   "SALES_OWNED_STAGES"}


def test_the_canonical_values_agree_with_each_other() -> None:
    assert CANONICAL_STAGES == (*STAGE_ORDER, "other")
    assert CANONICAL_STATUSES == tuple(s.value for s in LeadStatus)
    assert MODEL_STAGES == STAGE_ORDER[: len(MODEL_STAGES)]
    assert list(STAGE_RANK) == list(STAGE_ORDER)


@pytest.mark.parametrize(("stages", "ordered"), [
    (["sql", "lead", "mql"], ["lead", "mql", "sql"]),
    (["other", "(none)", "customer", "subscriber"], ["subscriber", "customer", "(none)", "other"]),
    ([], []),
])
def test_stage_sort_key_is_funnel_order_then_by_name(stages: list[str], ordered: list[str]) -> None:
    assert sorted(stages, key=stage_sort_key) == ordered


def test_no_module_but_schema_defines_a_canonical_constant() -> None:
    defined = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else getattr(node, "targets", [])
            defined |= {(path.name, t.id) for t in targets if isinstance(t, ast.Name) and t.id in CANONICAL_NAMES}
    assert {name for file, name in defined if file != "schema.py"} == set()
