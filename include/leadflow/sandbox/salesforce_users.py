"""The users of the sandbox org: who a session belongs to, so every write can say who made it.

- the integration user: leadflow's, the owner of the org session (`SalesforceSettings.token`) that
  the OAuth token endpoint hands out (client-credentials and password flows);
- the data-import user: created the seeded leads; it has no session (nobody logs in as it);
- `reps` sales reps and `admins` system administrators, each with its own session id.

Ids are fixed (`005...`, numbered per role) and the people's session ids are derived from the
org session with HMAC, so the same settings always give the same users and tokens: a test or a
restarted sandbox can address them without storing anything.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from leadflow.sandbox.salesforce_schema import USER_PREFIX, record_id

INTEGRATION_USER_ID = "0055g00000ALfWnAAL"
IMPORT_USER_ID = record_id(USER_PREFIX, 1)
_REP_BASE = 1_000
_ADMIN_BASE = 2_000
_TOKEN_PREFIX = "00D5g000000LfLw!"  # session ids start with the org id, as Salesforce's do

INTEGRATION = "Integration User"
IMPORT = "Data Import"
REP = "Sales Rep"
ADMIN = "System Administrator"


@dataclass(frozen=True)
class SalesforceUser:
    id: str
    username: str
    name: str
    profile: str  # INTEGRATION, IMPORT, REP or ADMIN
    token: str | None  # session id for `Authorization: Bearer`; None: cannot call the API

    def describe(self, *, with_token: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "username": self.username, "name": self.name, "profile": self.profile}
        if with_token:
            out["token"] = self.token
        return out


def person_token(org_token: str, user_id: str) -> str:
    """The session id of a person of the org, derived from the org (integration) session."""
    digest = hmac.new(org_token.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    return _TOKEN_PREFIX + "user." + digest[:40]


class UserDirectory:
    """All users of the org, addressable by id, username or session id."""

    def __init__(self, org_token: str, *, reps: int, admins: int, username: str = "leadflow@sandbox.example") -> None:
        self.integration = SalesforceUser(INTEGRATION_USER_ID, username, "leadflow Integration", INTEGRATION,
                                          org_token)
        self.importer = SalesforceUser(IMPORT_USER_ID, "import@sandbox.example", "Data Import", IMPORT, None)
        people = []
        for n in range(1, reps + 1):
            uid = record_id(USER_PREFIX, _REP_BASE + n)
            people.append(SalesforceUser(uid, f"rep{n}@sandbox.example", f"Sales Rep {n}", REP,
                                         person_token(org_token, uid)))
        for n in range(1, admins + 1):
            uid = record_id(USER_PREFIX, _ADMIN_BASE + n)
            people.append(SalesforceUser(uid, f"admin{n}@sandbox.example", f"Admin {n}", ADMIN,
                                         person_token(org_token, uid)))
        self.people: tuple[SalesforceUser, ...] = tuple(people)
        self.all: tuple[SalesforceUser, ...] = (self.integration, self.importer, *self.people)
        self._by_token = {u.token: u for u in self.all if u.token}
        self._by_key = {u.id: u for u in self.all} | {u.id[:15]: u for u in self.all} | {
            u.username.lower(): u for u in self.all}

    @property
    def reps(self) -> list[SalesforceUser]:
        return [u for u in self.people if u.profile == REP]

    @property
    def admins(self) -> list[SalesforceUser]:
        return [u for u in self.people if u.profile == ADMIN]

    def by_token(self, token: str | None) -> SalesforceUser | None:
        return self._by_token.get(token) if token else None

    def find(self, key: str) -> SalesforceUser | None:
        """A user by 18- or 15-character id or by username (case-insensitive)."""
        return self._by_key.get(key) or self._by_key.get(key.lower())

    def acting(self, key: Any) -> SalesforceUser:
        """The user an admin call acts as (`asUser`): the integration user when not given; a user
        without a session (the import user) cannot act. ValueError names what is wrong."""
        if key is None:
            return self.integration
        user = self.find(str(key))
        if user is None:
            known = ", ".join(u.username for u in self.all if u.token)
            raise ValueError(f"asUser {str(key)[:40]!r} is no user of the sandbox org (known: {known}; "
                             "more with --salesforce-users / --salesforce-admins)")
        if user.token is None:
            raise ValueError(f"asUser {user.username} cannot act: it only created the seeded leads")
        return user
