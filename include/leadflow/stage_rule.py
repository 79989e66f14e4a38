"""The lifecycle-stage rule, one for the engine, the push diff and every connector's write.

The CRM must never see a stage move backwards by accident: leadflow moves a record's stage only
forward through its own stages (`schema.MODEL_STAGES`), never out of a sales-owned stage (or one
it does not know) and never into one. A backward move, clearing a stage included, needs an
explicit permission (a rollback restoring an earlier stage).

Stages are compared as rank codes: a model stage's rank (0..3), `NONE` for no stage, `KEEP` for a
stage leadflow never changes. The same expressions work on numpy arrays (the engine, the diff)
and on plain ints (one update at a push). Pure; no I/O.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Iterable, TypeVar

import numpy as np

from leadflow.schema import MODEL_STAGES, SALES_OWNED_STAGES, STAGE_RANK

KEEP = -2  # sales-owned or unknown stage: never changed
NONE = -1  # no stage yet
MODEL_RANK: dict[str, int] = {stage: STAGE_RANK[stage] for stage in MODEL_STAGES}
R = TypeVar("R", int, np.ndarray)


def rank_code(stage: Any) -> int:
    """A canonical stage's rank code: its rank for a model stage, `NONE` when empty, else `KEEP`."""
    if not isinstance(stage, str) or not stage.strip():
        return NONE
    return MODEL_RANK.get(stage, KEEP)


def rank_codes(stages: Iterable[Any]) -> np.ndarray:
    return np.fromiter((rank_code(s) for s in stages), dtype=np.int8)


def moves_forward(current: R, wanted: R) -> R:
    """Whether leadflow may move a stage from `current` to `wanted` (rank codes) on its own:
    to one of its stages, from no stage or an earlier one of its own."""
    return (wanted >= 0) & (current != KEEP) & (wanted > current)  # type: ignore[return-value]


def forward_stage(current: np.ndarray, proposed: np.ndarray) -> np.ndarray:
    """The stage code to hold when leadflow proposes `proposed`: the later of the two, the
    proposal on a record without one, and a `KEEP` stage kept."""
    # int8 throughout (np.int8 scalars keep np.where from widening to int64).
    out = np.maximum(current, proposed, dtype=np.int8)
    out = np.where(current == NONE, proposed, out)
    return np.where(current == KEEP, np.int8(KEEP), out)


class StageVerdict(str, Enum):
    """The rule's answer for one desired stage against the record's current one."""

    UNCHANGED = "unchanged"  # nothing to write (never re-send a stage: it may be sales-owned)
    FORWARD = "forward"
    BACKWARD = "backward"  # allowed: the caller gave the permission
    REFUSED_BACKWARD = "refused_backward"
    LEAVES_SALES_OWNED = "leaves_sales_owned"
    ENTERS_SALES_OWNED = "enters_sales_owned"
    UNKNOWN = "unknown"  # not one of leadflow's stages


def stage_verdict(desired: str | None, current: str | None, allow_backward: bool = False) -> StageVerdict:
    """The rule for one record: may leadflow set canonical stage `desired` (None: clear it) over
    `current` (None: empty)?"""
    desired, current = desired or None, current or None
    if desired == current:
        return StageVerdict.UNCHANGED
    want, have = rank_code(desired), rank_code(current)
    if have == KEEP:
        return StageVerdict.LEAVES_SALES_OWNED
    if desired in SALES_OWNED_STAGES:
        return StageVerdict.ENTERS_SALES_OWNED
    if want == KEEP:
        return StageVerdict.UNKNOWN
    if desired is None or (have >= 0 and want < have):
        return StageVerdict.BACKWARD if allow_backward else StageVerdict.REFUSED_BACKWARD
    return StageVerdict.FORWARD
