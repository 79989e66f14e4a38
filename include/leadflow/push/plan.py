"""The push plan's figures (`pipeline.plan_push`) from the diff of one part of the records at a time.

The diff of a first push holds several KB per record (a row per field, its before and after as
text), so the whole diff of 1,000,000 records does not fit a task's memory; the parts' diffs
are computed one after the other (records split as the push shards split them) and only what
the plan reports is kept of each: the changed records, the overrides found, and the preview
(`push.writer.preview`). Records are in exactly one part, so the figures add up to those of the
whole diff, and the preview is the one of the whole diff: its samples are the smallest record
ids of all parts, its stage transitions in the order the whole diff (sorted by record id) first
shows them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leadflow.push.diff import Diff
from leadflow.push.writer import PREVIEW_SAMPLES, preview

STAGE_FIELD = "lifecycle_stage"


@dataclass
class PlanTally:
    """What the plan keeps of each part's diff (`add`), and the whole diff's figures from them."""

    changed: int = 0  # records with a change
    overrides: int = 0
    per_field: Counter = field(default_factory=Counter)
    # Stage transition -> (count, the first record id showing it).
    transitions: dict[str, tuple[int, str]] = field(default_factory=dict)
    sampled: list[pd.DataFrame] = field(default_factory=list)

    def add(self, diff: Diff) -> None:
        changes = diff.changes
        self.overrides += len(diff.overrides)
        if not len(changes):
            return
        figures = preview(changes)
        self.changed += figures["records"]
        self.per_field.update(figures["per_field"])
        # The transitions' labels are the preview's; each one's first record: the preview of the
        # first row of each (before, after) among the stage changes (sorted by record id).
        stage = changes[changes["field"] == STAGE_FIELD].drop_duplicates(["before", "after"])
        for i in range(len(stage)):
            row = stage.iloc[[i]]
            (label,) = preview(row)["stage_transitions"]
            first = str(row["record_id"].iloc[0])
            count, seen = self.transitions.get(label, (0, first))
            self.transitions[label] = (count, min(seen, first))
        for label, count in figures["stage_transitions"].items():
            self.transitions[label] = (self.transitions[label][0] + count, self.transitions[label][1])
        # The part's own samples: the whole diff's are among the parts' together.
        ids = sorted(changes["record_id"].unique())[:PREVIEW_SAMPLES]
        self.sampled.append(changes[changes["record_id"].isin(ids)])

    def preview(self) -> dict[str, Any]:
        """`push.writer.preview` of the whole diff."""
        samples = preview(pd.concat(self.sampled, ignore_index=True))["samples"] if self.sampled else []
        order = sorted(self.transitions, key=lambda label: self.transitions[label][1])
        return {
            "records": self.changed,
            "per_field": {k: int(self.per_field[k]) for k in sorted(self.per_field)},
            "stage_transitions": {label: self.transitions[label][0] for label in order},
            "samples": samples,
        }
