"""The guard against a bad model: a push that would change more than the configured share of the
scored records stops before writing anything. A CRM's first push is exempt (everything is new),
and so is a run that writes nothing (dry run, push off) or is forced."""

from __future__ import annotations

from dataclasses import dataclass


class ChangeGuardError(RuntimeError):
    """The push would change more records than the configured share: a likely bad model."""


@dataclass(frozen=True)
class ChangeGuard:
    changed: int  # records the push would change
    scored: int
    limit: float  # the largest share allowed (`push.max_change_share`)
    first_push: bool  # no push to this CRM has finished yet
    exempt: bool = False  # forced, a dry run, or push off

    @property
    def share(self) -> float:
        return self.changed / max(1, self.scored)

    @property
    def tripped(self) -> bool:
        return self.share > self.limit and not self.first_push and not self.exempt

    @property
    def state(self) -> str:
        return "tripped" if self.tripped else ("first push" if self.first_push else "ok")

    def raise_if_tripped(self) -> None:
        if self.tripped:
            raise ChangeGuardError(
                f"the push would change {self.changed} of {max(1, self.scored)} scored records ({self.share:.0%}), "
                f"more than the configured {self.limit:.0%}: nothing was written. Check the model and the data, then "
                "re-trigger the run with the Param force=true to push anyway."
            )
