"""People and automation who share the sandbox CRM with leadflow.

Reproducible sales reps, workflows and admins act on the records between runs and while a push
is in flight: they reject and work leads, set a status their team added, move a stage back or on
to opportunity, edit titles, merge duplicates and delete contacts. They act through the CRM's
public API (and, for what Salesforce only does in its UI, the sandbox's admin calls) with their
own tokens, so every change lands in the CRM's own history with its real source, and a test can
judge leadflow against that record instead of against leadflow's log.

`plan_acts` is pure (what to do, drawn from a seeded RNG over the records' current state);
`HubSpotActors` and `SalesforceActors` read that state and carry the acts out.
"""

from __future__ import annotations

import logging
import math
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping as TMapping, Protocol, Sequence

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadflow.sandbox.world import CONTACT_PROPS
from leadflow.validation import problems

log = logging.getLogger(__name__)

# What the actors do, and how often relative to each other.
ACTION_WEIGHTS: dict[str, int] = {
    "reject": 5, "work": 5, "custom_status": 2, "stage_back": 2, "to_opportunity": 2, "edit_title": 2,
    "merge": 1, "delete": 1,
}
# How reps answer a handoff (see plan_acts' answer_share).
ANSWER_ACTIONS: tuple[str, ...] = ("work", "reject", "to_opportunity")
# Canonical states an action needs: a rep rejects or works what marketing handed over.
_ELIGIBLE: dict[str, tuple[str, frozenset[str]]] = {
    "reject": ("status", frozenset({"new", "open"})),
    "work": ("status", frozenset({"new", "open"})),
    "stage_back": ("stage", frozenset({"mql", "sql"})),
    "to_opportunity": ("stage", frozenset({"lead", "mql", "sql"})),
}
STAGE_BEFORE = {"mql": "lead", "sql": "mql"}
TIMEOUT_S = 30


@dataclass(frozen=True)
class Seen:
    """A record as the actors see it: canonical stage and status (None when empty or unmapped),
    and whether leadflow handed it to sales (its sales-ready flag)."""

    record_id: str
    stage: str | None
    status: str | None
    sales_ready: bool = False


@dataclass(frozen=True)
class Act:
    action: str  # a key of ACTION_WEIGHTS
    record_id: str
    other_id: str | None = None  # merge: the duplicate merged into `record_id`
    stage: str | None = None  # stage_back: the canonical stage to go back to


@dataclass(frozen=True)
class PropensityAnswers:
    """Reps who judge a handed-over lead by its hidden propensity (`world.sales_propensity`):
    they move it on to opportunity with probability sigmoid(intercept + slope * propensity) and
    reject it otherwise. A lead whose propensity they do not know is answered by weight, as
    without them."""

    propensity: TMapping[str, float]  # record id -> propensity
    intercept: float = 0.0
    slope: float = 1.0

    def won_probability(self, record_id: str) -> float | None:
        value = self.propensity.get(record_id)
        return None if value is None else 1.0 / (1.0 + math.exp(-(self.intercept + self.slope * value)))


def answer_handoffs(records: Sequence[Seen], share: float, rng: random.Random,
                    answers: PropensityAnswers | None = None) -> list[Act]:
    """Reps answer about `share` of the handed-over leads still waiting (sales-ready, status new
    or open): they work, reject or move them on, by weight; with `answers`, those not moved on
    yet (stage lead to SQL), by each lead's propensity (to opportunity or rejected)."""
    queue = sorted((r for r in records if r.sales_ready and r.status in _ELIGIBLE["work"][1]),
                   key=lambda r: r.record_id)
    if answers is not None:  # a lead sales moved on already is theirs, not waiting for an answer
        queue = [r for r in queue if r.stage in _ELIGIBLE["to_opportunity"][1]]
    rng.shuffle(queue)
    names = list(ANSWER_ACTIONS)
    weights = [ACTION_WEIGHTS[a] for a in names]
    acts = []
    for record in queue[:round(len(queue) * share)]:
        won = None if answers is None else answers.won_probability(record.record_id)
        if won is not None:
            action = "to_opportunity" if rng.random() < won else "reject"
        else:
            action = rng.choices(names, weights)[0]
        need = _ELIGIBLE[action]
        if getattr(record, need[0]) not in need[1]:
            action = "work"
        acts.append(Act(action, record.record_id))
    return acts


def plan_acts(records: Sequence[Seen], *, share: float, rng: random.Random, answer_share: float = 0.0) -> list[Act]:
    """About `share` of `records` acted on, each record at most once, actions drawn by weight
    among those the record's state allows (a merge takes two records); first, reps answer about
    `answer_share` of the handed-over leads waiting for them."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if not 0 <= answer_share <= 1:
        raise ValueError(f"answer_share must be in [0, 1], got {answer_share}")
    acts: list[Act] = answer_handoffs(records, answer_share, rng) if answer_share else []
    used: set[str] = {a.record_id for a in acts}
    pool = sorted(records, key=lambda r: r.record_id)
    rng.shuffle(pool)
    wanted = len(acts) + max(1, round(len(pool) * share))
    names, weights = list(ACTION_WEIGHTS), list(ACTION_WEIGHTS.values())
    for record in pool:
        if len(acts) >= wanted:
            break
        if record.record_id in used:
            continue
        action = rng.choices(names, weights)[0]
        need = _ELIGIBLE.get(action)
        if need is not None and getattr(record, need[0]) not in need[1]:
            action = "edit_title"
        if action == "merge":
            other = next((r for r in pool if r.record_id not in used and r.record_id != record.record_id), None)
            if other is None:
                continue
            used.add(other.record_id)
            acts.append(Act("merge", record.record_id, other_id=other.record_id))
        else:
            acts.append(Act(action, record.record_id,
                            stage=STAGE_BEFORE.get(record.stage or "") if action == "stage_back" else None))
        used.add(record.record_id)
    return acts


class CrmActors(Protocol):
    def snapshot(self) -> list[Seen]: ...

    def apply(self, act: Act) -> None: ...


def act_night(actors: CrmActors, *, share: float, seed: int, ids: Sequence[str] | None = None,
              answer_share: float = 0.0) -> list[Act]:
    """One night of other people's work: plan over the CRM's current state (only `ids` when
    given) and carry it out. Returns the acts; logs their counts."""
    seen = actors.snapshot()
    if ids is not None:
        keep = set(ids)
        seen = [s for s in seen if s.record_id in keep]
    acts = plan_acts(seen, share=share, rng=random.Random(seed), answer_share=answer_share)
    for act in acts:
        actors.apply(act)
    log.info("sandbox actors: %d acts (%s)", len(acts), ", ".join(f"{k} {v}" for k, v in
                                                              sorted(Counter(a.action for a in acts).items())))
    return acts


def _check(response: requests.Response, what: str) -> Any:
    if response.status_code >= 400:
        raise RuntimeError(f"sandbox actor {what}: {response.status_code} {response.text[:300]}")
    return response.json() if response.content else None


class HubSpotActors:
    """Acts on a HubSpot sandbox: a rep (a user token: CRM_UI) and a workflow (WORKFLOW)."""

    STATUS = {"reject": "UNQUALIFIED", "work": "IN_PROGRESS"}
    STAGES = {"lead": "lead", "mql": "marketingqualifiedlead", "sql": "salesqualifiedlead"}
    STAGE_CANONICAL = {"subscriber": "subscriber", "lead": "lead", "marketingqualifiedlead": "mql",
                       "salesqualifiedlead": "sql", "opportunity": "opportunity", "customer": "customer"}
    STATUS_CANONICAL = {"NEW": "new", "OPEN": "open", "IN_PROGRESS": "in_progress", "UNQUALIFIED": "unqualified"}
    CUSTOM_STATUS = ("PARTNER_REFERRAL", "Partner referral")

    def __init__(self, base_url: str, rep_token: str, workflow_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.rep = actor_session(rep_token)
        self.workflow = actor_session(workflow_token)
        self._custom_added = False

    def snapshot(self) -> list[Seen]:
        return [Seen(str(r["id"]), self.STAGE_CANONICAL.get((r.get("properties") or {}).get("lifecyclestage") or ""),
                     self.STATUS_CANONICAL.get((r.get("properties") or {}).get("hs_lead_status") or ""),
                     (r.get("properties") or {}).get("leadflow_sales_ready") == "true")
                for r in self._contacts()]

    def _contacts(self) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            params: dict[str, Any] = {"limit": 100, "properties": "lifecyclestage,hs_lead_status,leadflow_sales_ready"}
            if after:
                params["after"] = after
            page = _check(self.rep.get(f"{self.base_url}/crm/v3/objects/contacts", params=params, timeout=TIMEOUT_S),
                          "list contacts")
            yield from page.get("results") or []
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def _set(self, session: requests.Session, record_id: str, **properties: str) -> None:
        _check(session.patch(f"{self.base_url}/crm/v3/objects/contacts/{record_id}",
                             json={"properties": properties}, timeout=TIMEOUT_S), f"update {record_id}")

    def _add_custom_status(self) -> None:
        """An admin adds the team's own lead status (once)."""
        if self._custom_added:
            return
        url = f"{self.base_url}/crm/v3/properties/contacts/hs_lead_status"
        prop = _check(self.rep.get(url, timeout=TIMEOUT_S), "read hs_lead_status")
        options = list(prop.get("options") or [])
        value, label = self.CUSTOM_STATUS
        if value not in {o.get("value") for o in options}:
            options.append({"label": label, "value": value, "displayOrder": len(options), "hidden": False})
            _check(self.rep.patch(url, json={"options": options}, timeout=TIMEOUT_S), "add a lead status")
        self._custom_added = True

    def apply(self, act: Act) -> None:
        rid = act.record_id
        if act.action in self.STATUS:
            self._set(self.rep, rid, hs_lead_status=self.STATUS[act.action])
        elif act.action == "custom_status":
            self._add_custom_status()
            self._set(self.rep, rid, hs_lead_status=self.CUSTOM_STATUS[0])
        elif act.action == "stage_back":
            # HubSpot only moves a stage forward: a workflow clears it, then sets the earlier one.
            self._set(self.workflow, rid, lifecyclestage="")
            self._set(self.workflow, rid, lifecyclestage=self.STAGES[act.stage or "lead"])
        elif act.action == "to_opportunity":
            self._set(self.rep, rid, lifecyclestage="opportunity")
        elif act.action == "edit_title":
            self._set(self.rep, rid, jobtitle=f"Title edited by a rep ({rid})")
        elif act.action == "merge":
            _check(self.rep.post(f"{self.base_url}/crm/v3/objects/contacts/merge",
                                 json={"primaryObjectId": rid, "objectIdToMerge": act.other_id}, timeout=TIMEOUT_S),
                   f"merge {act.other_id} into {rid}")
        elif act.action == "delete":
            _check(self.rep.delete(f"{self.base_url}/crm/v3/objects/contacts/{rid}", timeout=TIMEOUT_S),
                   f"delete {rid}")
        else:
            raise ValueError(f"unknown action {act.action!r}")


class HubSpotInbound:
    """New leads entering a HubSpot sandbox through another app (a forms tool: INTEGRATION with
    its own app id), created with the CRM's batch API from rows of `world.inbound_contacts`."""

    BATCH = 100

    def __init__(self, base_url: str, app_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.app = actor_session(app_token)

    @staticmethod
    def properties(row: dict[str, Any]) -> dict[str, Any]:
        """A world row as HubSpot create properties: the CRM's fields only (no latent `_`
        columns), empty values left out, yes/no as "true"/"false", the company as its id."""
        out: dict[str, Any] = {}
        for name in CONTACT_PROPS:
            value = row.get(name)
            if value is None or (isinstance(value, float) and value != value):
                continue
            out[name] = ("true" if value else "false") if isinstance(value, bool) else value
        company = row.get("company_id")
        if company is not None and company == company:
            out["associatedcompanyid"] = int(company)
        return out

    def create(self, rows: Sequence[dict[str, Any]]) -> dict[str, str]:
        """Create the contacts; returns lower-cased email -> new record id. A row whose email is
        taken already is not created (the CRM answers a conflict for it)."""
        created: dict[str, str] = {}
        for start in range(0, len(rows), self.BATCH):
            body = {"inputs": [{"properties": self.properties(r)} for r in rows[start:start + self.BATCH]]}
            response = self.app.post(f"{self.base_url}/crm/v3/objects/contacts/batch/create", json=body,
                                     timeout=TIMEOUT_S)
            if response.status_code not in (200, 201, 207):
                _check(response, "create contacts")
            for record in (response.json().get("results") or []):
                created[str((record.get("properties") or {}).get("email") or "").lower()] = str(record["id"])
        return created


def actor_session(token: str) -> requests.Session:
    """An actor's HTTP session. A pooled connection left idle while the pipeline runs may be
    closed by the server's keep-alive timeout just as it is reused: the call then fails with no
    answer. It is sent once more on a new connection, whatever its method: a repeated create
    answers a conflict (emails are unique), a repeated update sets the same values."""
    session = requests.Session()
    retry = Retry(total=1, connect=1, read=1, status=0, other=0, allowed_methods=None, raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["Authorization"] = f"Bearer {token}"
    return session


def tls_session(cert_path: Any, token: str) -> requests.Session:
    session = actor_session(token)
    # Not from the environment: REQUESTS_CA_BUNDLE would replace the sandbox's certificate.
    session.trust_env = False
    session.verify = str(cert_path)
    return session


class SalesforceActors:
    """Acts on a Salesforce sandbox as a rep (their own session) and, for what Salesforce does
    in its UI (merge, convert, a new picklist value), through the sandbox's admin calls
    attributed to that rep."""

    STATUS = {"reject": "Closed - Not Converted", "work": "Working - Contacted"}
    STAGES = {"lead": "Lead", "mql": "MQL", "sql": "SQL"}
    STAGE_CANONICAL = {"Subscriber": "subscriber", "Lead": "lead", "MQL": "mql", "SQL": "sql",
                       "Opportunity": "opportunity", "Customer": "customer"}
    STATUS_CANONICAL = {"Open - Not Contacted": "new", "Open": "open", "Closed - Not Converted": "unqualified"}
    CUSTOM_STATUS = "Partner Referral"
    API = "/services/data/v59.0"

    def __init__(self, base_url: str, cert_path: Any, org_token: str, rep_id: str, rep_token: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.rep_id = rep_id
        self.rep = tls_session(cert_path, rep_token)
        self.admin = tls_session(cert_path, org_token)
        self._custom_added = False

    def snapshot(self) -> list[Seen]:
        out: list[Seen] = []
        url = f"{self.base_url}{self.API}/query"
        answer = _check(self.rep.get(url, params={"q": "SELECT Id, Status, Lifecycle_Stage__c, Leadflow_Sales_Ready__c "
                                                       "FROM Lead WHERE IsConverted = false"}, timeout=TIMEOUT_S), "query")
        while True:
            out.extend(Seen(str(r["Id"]), self.STAGE_CANONICAL.get(r.get("Lifecycle_Stage__c") or ""),
                            self.STATUS_CANONICAL.get(r.get("Status") or ""), r.get("Leadflow_Sales_Ready__c") is True)
                       for r in answer.get("records") or [])
            if answer.get("done", True):
                return out
            answer = _check(self.rep.get(f"{self.base_url}{answer['nextRecordsUrl']}", timeout=TIMEOUT_S), "query")

    def _set(self, record_id: str, **fields: str) -> None:
        response = self.rep.patch(f"{self.base_url}{self.API}/sobjects/Lead/{record_id}", json=fields,
                                  timeout=TIMEOUT_S)
        if response.status_code != 204:
            _check(response, f"update {record_id}")

    def _admin(self, call: str, body: dict[str, Any]) -> None:
        _check(self.admin.post(f"{self.base_url}/_sandbox/{call}", json=body, timeout=TIMEOUT_S), call)

    def apply(self, act: Act) -> None:
        rid = act.record_id
        if act.action == "work":  # a rep working a lead rates it too
            self._set(rid, Status=self.STATUS["work"], Rating="Hot")
        elif act.action in self.STATUS:
            self._set(rid, Status=self.STATUS[act.action])
        elif act.action == "custom_status":
            if not self._custom_added:
                self._admin("picklist-values", {"field": "Status", "value": self.CUSTOM_STATUS})
                self._custom_added = True
            self._set(rid, Status=self.CUSTOM_STATUS)
        elif act.action == "stage_back":
            self._set(rid, Lifecycle_Stage__c=self.STAGES[act.stage or "lead"])
        elif act.action == "to_opportunity":
            self._admin("convert", {"leadId": rid, "asUser": self.rep_id})
        elif act.action == "edit_title":
            self._set(rid, Title=f"Title edited by a rep ({rid})")
        elif act.action == "merge":
            self._admin("merge", {"masterId": rid, "mergedId": act.other_id, "asUser": self.rep_id})
        elif act.action == "delete":
            response = self.rep.delete(f"{self.base_url}{self.API}/sobjects/Lead/{rid}", timeout=TIMEOUT_S)
            if response.status_code != 204:
                _check(response, f"delete {rid}")
        else:
            raise ValueError(f"unknown action {act.action!r}")


class ActorSchedule(BaseModel):
    """`leadflow sandbox serve --actors share=0.02,every=300,seed=1`: every `every` seconds the
    actors change about `share` of the records (night n draws with seed + n)."""

    model_config = ConfigDict(extra="forbid")

    share: float = Field(0.02, gt=0, le=1)
    every: float = Field(300.0, gt=0, description="seconds between two rounds")
    seed: int = 1

    @classmethod
    def parse(cls, text: str) -> "ActorSchedule":
        """`key=value` pairs separated by commas; a bad key or value raises ValueError naming it."""
        values: dict[str, str] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"{part!r}: expected key=value (keys: share, every, seed)")
            values[key.strip()] = value.strip()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ValueError("; ".join(problems(exc))) from None


def run_actors(schedule: ActorSchedule, actors: Sequence[CrmActors], stop: threading.Event) -> None:
    """Rounds of `act_night` on each CRM until `stop` is set (a server's background thread). A
    failed round is logged and the next one runs: the actors never take the sandbox down."""
    night = 0
    while not stop.wait(schedule.every):
        for crm_actors in actors:
            try:
                act_night(crm_actors, share=schedule.share, seed=schedule.seed + night)
            except Exception:
                log.exception("sandbox actors: round %d on %s failed", night, type(crm_actors).__name__)
        night += 1
