"""Reasons: rule ids + integer points per lead, rendered to text only where they are needed.

The engine keeps one int16 row of points per *reason slot* (every rule, every group cap, each
BANT criterion and disqualifier, the clamp and the predictive blend), so the reasons of a lead
always add up exactly to its combined score. Rendering turns the non-zero slots of a lead into
"+15 decider title: VP Sales; -30 competitor domain"; the blend shows the predictive model's
top factors ("+6 predictive blend (30%): Last Activity = SMS Sent +12, ..."). Only distinct (rule, points, shown value)
pieces are formatted in Python; the per-lead joining runs in Arrow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadflow.qualify.columns import TextColumn

REASON_SEPARATOR = "; "
MAX_SHOWN_VALUE = 40  # characters of a shown field value ("decider title: VP Sales")


@dataclass(frozen=True)
class Slot:
    """One reason slot: its id (rule id, cap_<group>, bant_<criterion>, code, clamp, blend)."""

    id: str
    label: str
    kind: str  # rule | cap | bant | disqualifier | clamp | blend
    show: str | None = None  # field whose value is appended to the text
    max_shown: int = MAX_SHOWN_VALUE  # characters of that value


def reason_text(slot: Slot, points: int, shown: str | None) -> str:
    """'+15 decider title: VP Sales' for one slot of one lead."""
    text = f"{points:+d} {slot.label}"
    if shown:
        value = " ".join(shown.split())
        if len(value) > slot.max_shown:
            value = value[: slot.max_shown - 1] + "…"
        text += f": {value}"
    return text


def render(
    points: np.ndarray,
    slots: tuple[Slot, ...],
    shown: dict[str, TextColumn],
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Reasons text per lead (object array of str, "" when a lead has no reasons).

    `points` is the (slots x leads) int16 matrix; `rows` optionally selects the leads to render
    (e.g. only those that will be written). Each distinct (slot, points, shown value) piece is
    formatted once in Python; joining the pieces per lead happens in Arrow.
    """
    if rows is not None:
        points = points[:, rows]
    n = points.shape[1]
    if n == 0:
        return np.empty(0, dtype=object)

    # (lead, slot) of every non-zero reason, lead-major so each lead's pieces are contiguous
    # and in slot (= config) order.
    lead_idx, slot_idx = np.nonzero(points.T)
    pts = points[slot_idx, lead_idx].astype(np.int64)
    shown_code = np.full(len(lead_idx), -1, dtype=np.int64)
    for j, slot in enumerate(slots):
        if slot.show is None:
            continue
        at = slot_idx == j
        index = shown[slot.show].index  # the value's slot (see TextColumn.slot_values)
        shown_code[at] = (index if rows is None else index[rows])[lead_idx[at]]

    # One key per distinct piece: slot, points (int16 range) and shown value code.
    key = (slot_idx.astype(np.int64) << 40) | ((pts + 2**15) << 24) | (shown_code + 1)
    piece_id, distinct = pd.factorize(key)
    texts = []
    for k in distinct.tolist():
        slot = slots[k >> 40]
        code = (k & (2**24 - 1)) - 1
        value = shown[slot.show].slot_values[code] if slot.show is not None and code >= 0 else None
        texts.append(reason_text(slot, ((k >> 24) & (2**16 - 1)) - 2**15, value))

    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(np.bincount(lead_idx, minlength=n), out=offsets[1:])
    pieces = pa.array(texts, type=pa.string()).take(pa.array(piece_id.astype(np.int32)))
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), pieces), REASON_SEPARATOR)
    return joined.to_numpy(zero_copy_only=False).astype(object, copy=False)


def reason_pairs(points: np.ndarray, slots: tuple[Slot, ...], lead: int) -> list[tuple[str, int]]:
    """[(reason id, points), ...] of one lead, in slot order (non-zero entries only)."""
    column = points[:, lead]
    return [(slots[j].id, int(column[j])) for j in np.flatnonzero(column)]
