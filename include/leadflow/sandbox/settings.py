"""Validated settings of one sandbox server (from CLI flags or Python)."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadflow.sandbox.faults import FaultSpec
from leadflow.sandbox.history import LEADFLOW_APP, ChangeSource
from leadflow.sandbox.ratelimit import RateSpec

# Ids given to generated principals: users like HubSpot's (8 digits), workflows and apps apart.
_FIRST_ID = {"user": 77_002, "workflow": 9_001, "app": 5_000_001}


class Principal(BaseModel):
    """Another actor of the portal with its own bearer token: a person (`user`), a workflow
    (`workflow`: the sandbox's way to let a test act as HubSpot automation; real workflows call
    no API) or another installed app (`app`). Its writes are attributed as HubSpot attributes
    them: CRM_UI with `userId:<id>`, WORKFLOW with the workflow id, INTEGRATION with the app id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: str = Field(min_length=8)
    kind: Literal["app", "user", "workflow"]
    id: int = Field(ge=1)
    label: str = Field(min_length=1, max_length=200)

    def source(self) -> ChangeSource:
        if self.kind == "user":
            return ChangeSource("CRM_UI", f"userId:{self.id}", None, self.id)
        if self.kind == "workflow":
            return ChangeSource("WORKFLOW", str(self.id), self.label)
        return ChangeSource("INTEGRATION", str(self.id), self.label)


def generated_principals(users: int, workflows: int, seed: str) -> list[Principal]:
    """`users` people and `workflows` workflows with tokens derived from `seed` (e.g. leadflow's
    token), so a restarted sandbox hands out the same tokens."""
    out = []
    for kind, count in (("user", users), ("workflow", workflows)):
        for n in range(count):
            digest = hashlib.blake2b(f"{seed}:{kind}:{n}".encode(), digest_size=16).hexdigest()
            out.append(Principal(token=f"pat-sandbox-{kind}-{digest}", kind=kind, id=_FIRST_ID[kind] + n,
                                 label=f"Sandbox {kind} {n + 1}"))
    return out


class SandboxSettings(BaseModel):
    """Everything `create_app` needs. Rate limits are "N/SECONDS" strings or "off"."""

    model_config = ConfigDict(extra="forbid")

    db_path: Path
    token: str = Field(default_factory=lambda: "pat-sandbox-" + secrets.token_hex(16), min_length=8)
    enrichment_key: str = Field(default_factory=lambda: "ek-sandbox-" + secrets.token_hex(16), min_length=8)
    # What the token-info endpoint reports: a private app with what leadflow needs.
    token_scopes: tuple[str, ...] = ("crm.objects.contacts.read", "crm.objects.contacts.write",
                                     "crm.objects.companies.read", "crm.schemas.contacts.read",
                                     "crm.schemas.contacts.write")
    rate_limit: str = "100/10"
    search_rate_limit: str = "5/1"
    daily_limit: int = Field(1_000_000, ge=1)
    enrichment_rate_limit: str = "600/60"
    enrichment_queued_share: float = Field(0.1, ge=0, le=1)
    faults: str = "off"
    fault_seed: int = 0
    lifecycle_backward: Literal["ignore", "reject"] = "ignore"
    batch_validation: Literal["per-record", "whole-batch"] = "per-record"
    timeout_seconds: float = Field(30.0, ge=0)
    slow_seconds: float = Field(1.5, ge=0)
    # Added to every CRM API answer: a remote CRM's network and processing time (HubSpot answers
    # in about 100-300 ms). 0 answers at loopback speed.
    latency_seconds: float = Field(0.0, ge=0)
    # Other actors of the portal; leadflow's `token` is the private app the token-info endpoint reports.
    principals: tuple[Principal, ...] = ()

    @model_validator(mode="after")
    def _check_principals(self) -> "SandboxSettings":
        seen = {self.token: "token", self.enrichment_key: "enrichment_key"}
        ids: set[tuple[str, int]] = set()
        for n, principal in enumerate(self.principals):
            if principal.token in seen:
                raise ValueError(f"principals[{n}].token is already used by {seen[principal.token]}; give every "
                                 "principal its own token")
            seen[principal.token] = f"principals[{n}]"
            if (principal.kind, principal.id) in ids:
                raise ValueError(f"principals[{n}].id {principal.id} is used by another {principal.kind}")
            ids.add((principal.kind, principal.id))
        return self

    def sources_by_token(self) -> dict[str, ChangeSource]:
        """Every accepted HubSpot bearer token -> who its writes are attributed to."""
        return {self.token: LEADFLOW_APP, **{p.token: p.source() for p in self.principals}}

    @field_validator("rate_limit", "search_rate_limit", "enrichment_rate_limit")
    @classmethod
    def _check_rate(cls, value: str) -> str:
        RateSpec.parse(value)  # raises ValueError with the bad text
        return value

    @field_validator("faults")
    @classmethod
    def _check_faults(cls, value: str) -> str:
        FaultSpec.parse(value)
        return value

    def rate(self) -> RateSpec | None:
        return RateSpec.parse(self.rate_limit)

    def search_rate(self) -> RateSpec | None:
        return RateSpec.parse(self.search_rate_limit)

    def enrichment_rate(self) -> RateSpec | None:
        return RateSpec.parse(self.enrichment_rate_limit)

    def fault_spec(self) -> FaultSpec:
        return FaultSpec.parse(self.faults)
