"""Salesforce's declarations for the shared REST session, and its HTTP session.

The request loop, the error table and the backoff are `leadflow.http_policy`'s (through
`leadflow.crm.http.RestSession`); Salesforce declares its error dialect (`[{"message","errorCode"}]`),
one row of its own (403 REQUEST_LIMIT_EXCEEDED: the concurrent-request limit is retried like a
429, the daily total stops the run), OAuth (a session id from the connection's password, or client
credentials / password grant from its extra; the token request goes through the same loop; a 401
gets one new session), and the daily API budget read from `Sforce-Limit-Info`: once the remaining
allocation is at or below `daily_reserve` the session raises `CrmBudgetExhausted` *before*
sending, so a pull stops after its last complete page and the next run resumes from that page's
watermark.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests

from leadflow.connections import Connection, env_var_name
from leadflow.crm.base import CrmAuthError, CrmBudgetExhausted, CrmError, CrmUnavailableError
from leadflow.crm.http import ERROR_POLICY, BucketFactory, RestSession, make_buckets
from leadflow.crm.ratelimit import Clock, Sleeper
from leadflow.crm.salesforce_settings import SalesforceSettings
from leadflow.http_policy import ErrorInfo, ErrorRule, Failure, RetryConfig, make_error

log = logging.getLogger(__name__)

_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")
# The bucket name of an OAuth token request (no API allocation spent, its own messages).
OAUTH_BUCKET = "oauth"
REQUEST_LIMIT_EXCEEDED = (403, "REQUEST_LIMIT_EXCEEDED")


class _VerifyingSession(requests.Session):
    """A requests session whose `verify` (a CA file such as the sandbox's certificate) is not
    overridden by REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, as plain requests does for session-level
    settings."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):  # type: ignore[no-untyped-def]
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        # REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE would otherwise override the session's own choice,
        # be it a CA file or an explicit "do not verify".
        if verify is None and (isinstance(self.verify, str) or self.verify is False):
            settings["verify"] = self.verify
        return settings


def make_http_session(verify: Any = None) -> requests.Session:
    """A session for Salesforce; `verify` may be a CA bundle path, True or False."""
    session = _VerifyingSession()
    if isinstance(verify, str) and verify.lower() in ("true", "false"):
        verify = verify.lower() == "true"
    if verify is not None:
        session.verify = verify
    return session


class SalesforceSession(RestSession):
    """REST session speaking Salesforce's error, auth and API-budget dialect."""

    api_name = "Salesforce"
    # 403 REQUEST_LIMIT_EXCEEDED is a rate limit, not a missing permission (`rate_limit_wait`).
    error_policy = {**ERROR_POLICY, REQUEST_LIMIT_EXCEEDED: ErrorRule(retry=True, error=CrmUnavailableError,
                                                                      min_wait_s=1.0, rate_limit=True)}

    def __init__(self, *args: Any, daily_reserve: int = 0, oauth: Mapping[str, str] | None = None,
                 token_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daily_reserve = daily_reserve
        self.api_used: int | None = None
        self.api_limit: int | None = None
        self._oauth = dict(oauth or {})
        self._token_url = token_url or f"{self.base_url}/services/oauth2/token"

    @property
    def api_remaining(self) -> int | None:
        if self.api_used is None or self.api_limit is None:
            return None
        return self.api_limit - self.api_used

    # --- declarations -----------------------------------------------------------------------------
    def parse_error(self, response: requests.Response) -> ErrorInfo:
        try:
            body = response.json()
        except ValueError:
            return ErrorInfo(message=(response.text or "")[:200])
        if isinstance(body, list) and body and isinstance(body[0], dict):
            first = body[0]
            return ErrorInfo(message=str(first.get("message") or "")[:500], category=first.get("errorCode"))
        if isinstance(body, dict) and "error" in body:
            return ErrorInfo(message=str(body.get("error_description") or "")[:500], category=str(body["error"]))
        return ErrorInfo()

    def auth_error_message(self, status: int, info: ErrorInfo) -> str:
        where = f"connection {self.conn_id} (environment variable {env_var_name(self.conn_id)})" if self.conn_id \
            else "the Salesforce connection"
        if status == 401:
            return (f"Salesforce rejected the session ({info.category or 401}): check the password (session id) or "
                    f"the OAuth client of {where}")
        return f"Salesforce refused the call (403 {info.category or ''}): the user behind {where} lacks a permission. " \
               f"{info.message}".strip()

    def before_request(self, bucket: str) -> None:
        if bucket == OAUTH_BUCKET:  # a token request spends none of the API allocation
            self.stats.add("oauth_requests")
            return
        remaining = self.api_remaining
        if remaining is not None and remaining <= self.daily_reserve:
            self.stats.add("budget_stops")
            raise CrmBudgetExhausted(
                f"Salesforce daily API allocation is down to {remaining} of {self.api_limit} (reserve "
                f"{self.daily_reserve}): stopping now; the next run resumes from the stored watermark")

    def observe(self, response: requests.Response) -> None:
        match = _LIMIT_INFO.search(response.headers.get("Sforce-Limit-Info") or "")
        if match:
            self.api_used, self.api_limit = int(match.group(1)), int(match.group(2))

    def rate_limit_wait(self, response: requests.Response, info: ErrorInfo) -> float | None:
        """403 REQUEST_LIMIT_EXCEEDED names the limit: the daily total stops the run at once; the
        concurrent-request limit is waited out like a 429 (the table's row: at least 1 s)."""
        if info.category == REQUEST_LIMIT_EXCEEDED[1] and "total" in info.message.lower():
            raise make_error(CrmBudgetExhausted, "Salesforce daily API allocation is spent (403 REQUEST_LIMIT_EXCEEDED): "
                             "stopping now; the next run resumes from the stored watermark", status=403, info=info)
        return None

    def final_error(self, failure: Failure) -> Exception:
        if failure.bucket == OAUTH_BUCKET:
            info = failure.info
            return make_error(CrmAuthError, f"Salesforce OAuth refused the client of connection {self.conn_id or '?'} "
                              f"({info.category or failure.key}): {info.message}", status=failure.status, info=info)
        return super().final_error(failure)

    def exhausted_error(self, failure: Failure) -> Exception:
        if failure.bucket == OAUTH_BUCKET:
            return make_error(CrmUnavailableError, "Salesforce OAuth token request still failing "
                              f"({failure.cause or failure.key}) after {failure.attempts} attempts; try the run again "
                              "later", status=failure.status, info=failure.info)
        if (failure.key, failure.info.category) == REQUEST_LIMIT_EXCEEDED:
            return make_error(CrmUnavailableError, "Salesforce concurrent request limit still exceeded after "
                              f"{failure.attempts} attempts; try the run again later", status=403, info=failure.info)
        return super().exhausted_error(failure)

    # --- auth ----------------------------------------------------------------------------------------------
    def authenticate(self) -> None:
        """Get a session id with the OAuth client of the connection (client credentials, or the
        password grant when a username is configured)."""
        if not self._oauth:
            raise CrmAuthError(self.auth_error_message(401, ErrorInfo(category="INVALID_SESSION_ID")))
        form = {"client_id": self._oauth["client_id"], "client_secret": self._oauth.get("client_secret", "")}
        if self._oauth.get("username"):
            form.update(grant_type="password", username=self._oauth["username"], password=self._oauth.get("password", ""))
        else:
            form["grant_type"] = "client_credentials"

        def send() -> requests.Response:
            return self._session.post(self._token_url, data=form, timeout=self.timeout)

        try:
            # A token request is safe to repeat (idempotent): a lost answer only costs a session.
            response = self.call(send, method="POST", path=urlsplit(self._token_url).path, idempotent=True,
                                 bucket=OAUTH_BUCKET)
        except requests.RequestException as exc:
            raise CrmError(f"Salesforce OAuth token request failed: {type(exc).__name__}") from None
        body = response.json()
        self._token = body["access_token"]
        instance = body.get("instance_url")
        if instance:
            self.base_url = str(instance).rstrip("/")
        log.info("Salesforce OAuth: new session for connection %s", self.conn_id or "?")

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self._token is None and self._oauth:
            self.authenticate()
        try:
            return super().request(method, path, **kwargs)
        except CrmAuthError as exc:
            if getattr(exc, "status", None) != 401 or not self._oauth:
                raise
        self.authenticate()  # the session expired: a new one, and the call once more
        return super().request(method, path, **kwargs)

    @classmethod
    def from_connection(cls, connection: Connection, settings: SalesforceSettings | None = None, *,
                        clock: Clock = time.monotonic, sleeper: Sleeper = time.sleep,
                        rng: random.Random | None = None, session: requests.Session | None = None,
                        rate_share: float = 1.0, limits: BucketFactory | None = None) -> "SalesforceSession":
        """host/port/schema give the instance URL; the password is a session id, or
        `extra.client_id`/`client_secret` (+ login and password for the password grant) get one
        by OAuth; `extra.verify` is a CA file (the sandbox's cert). One bucket, `general`, at
        `extra.rate_limit_per_s` (unpaced by default): shared through `limits`, else this
        process's `rate_share` of it (`make_buckets`); OAuth requests take no token."""
        settings = settings or SalesforceSettings.from_connection(connection)
        oauth: dict[str, str] = {}
        if settings.client_id:
            oauth = {"client_id": settings.client_id, "client_secret": settings.client_secret or ""}
            if connection.login:
                oauth.update(username=connection.login, password=connection.password or "")
        token = None if oauth and connection.login else connection.password
        if not token and not oauth:
            raise CrmError(f"connection {connection.conn_id!r} ({env_var_name(connection.conn_id)}) has neither a "
                           "session id (password) nor an OAuth client (extra.client_id/client_secret)")
        return cls(
            connection.base_url, token, conn_id=connection.conn_id,
            buckets=make_buckets(cls.api_name, connection.conn_id, {"general": settings.rate_limit_per_s},
                                 limits=limits, rate_share=rate_share, clock=clock, sleeper=sleeper),
            timeout=(settings.connect_timeout_s, settings.read_timeout_s),
            retry=RetryConfig(settings.max_retries, settings.backoff_base_s, settings.backoff_max_s),
            sleeper=sleeper, rng=rng, session=session or make_http_session(connection.extra.get("verify")),
            daily_reserve=settings.daily_reserve, oauth=oauth, token_url=settings.token_url,
        )
