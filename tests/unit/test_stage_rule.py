"""The stage rule is one rule: the verdict a connector applies to one update and the vectorised
form the engine and the push diff apply agree on every pair of stages."""

from __future__ import annotations

import numpy as np
import pytest

from leadflow.schema import CANONICAL_STAGES
from leadflow.stage_rule import KEEP, NONE, StageVerdict, forward_stage, moves_forward, rank_code, rank_codes, stage_verdict

STAGES = [None, "", *CANONICAL_STAGES, "not-a-stage"]


def test_a_connector_moves_a_stage_exactly_where_the_diff_would():
    pairs = [(current, desired) for current in STAGES for desired in STAGES]
    vectorised = moves_forward(rank_codes(c for c, _ in pairs), rank_codes(d for _, d in pairs))
    for (current, desired), moves in zip(pairs, vectorised):
        assert (stage_verdict(desired, current) is StageVerdict.FORWARD) == bool(moves), (current, desired)


@pytest.mark.parametrize(("current", "desired", "verdict"), [
    ("mql", "lead", StageVerdict.REFUSED_BACKWARD),
    ("mql", None, StageVerdict.REFUSED_BACKWARD),
    ("opportunity", "sql", StageVerdict.LEAVES_SALES_OWNED),
    ("sql", "customer", StageVerdict.ENTERS_SALES_OWNED),
    ("lead", "lead", StageVerdict.UNCHANGED),
])
def test_only_a_permission_turns_a_backward_move_into_a_write(current, desired, verdict):
    assert stage_verdict(desired, current) is verdict
    allowed = stage_verdict(desired, current, allow_backward=True)
    assert allowed is (StageVerdict.BACKWARD if verdict is StageVerdict.REFUSED_BACKWARD else verdict)


def test_the_engine_keeps_the_later_stage_and_never_touches_a_kept_one():
    current = np.array([NONE, rank_code("mql"), rank_code("sql"), KEEP], dtype=np.int8)
    proposed = np.array([rank_code("lead")] * 4, dtype=np.int8)
    assert forward_stage(current, proposed).tolist() == [rank_code("lead"), rank_code("mql"), rank_code("sql"), KEEP]
