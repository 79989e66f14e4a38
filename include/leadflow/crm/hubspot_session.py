"""HubSpot's declarations for the shared REST session (settings: `hubspot_settings`).

The request loop, the error table and the backoff are `leadflow.http_policy`'s (through
`leadflow.crm.http.RestSession`); this module only says how HubSpot words its errors and its 429s,
and which limits its two buckets keep under.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any

import requests

from leadflow.connections import Connection, env_var_name
from leadflow.crm.base import CrmBudgetExhausted
from leadflow.crm.http import BucketFactory, RestSession, Stats, make_buckets
from leadflow.crm.hubspot_settings import HubSpotSettings
from leadflow.crm.ratelimit import Clock, Sleeper
from leadflow.http_policy import ErrorInfo, RetryConfig, make_error

GENERAL_BUCKET = "general"
SEARCH_BUCKET = "search"
_SCOPE = re.compile(r"\b(?:crm|oauth|content|automation)\.[a-z0-9_.-]+\b")
TOKEN_INFO_PATH = "/oauth/v2/private-apps/get/access-token-info"


class HubSpotSession(RestSession):
    """REST session speaking HubSpot's error and rate-limit dialect."""

    api_name = "HubSpot"

    def __init__(self, *args: Any, daily_reserve: int = 0, rate_limit_wait_s: float = 2.0,
                 search_rate_wait_s: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.daily_reserve = daily_reserve
        self.rate_limit_wait_s = rate_limit_wait_s
        self.search_rate_wait_s = search_rate_wait_s
        self.daily_remaining: int | None = None

    @classmethod
    def from_connection(
        cls,
        connection: Connection,
        settings: HubSpotSettings | None = None,
        *,
        clock: Clock = time.monotonic,
        sleeper: Sleeper = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
        stats: Stats | None = None,
        rate_share: float = 1.0,
        limits: BucketFactory | None = None,
    ) -> "HubSpotSession":
        """`limits`: buckets shared by every process calling the portal (`make_buckets`); without
        them, `rate_share` (0-1] is the fraction of the portal's limits this process may use when
        several workers (e.g. mapped push tasks) call the same portal at once."""
        settings = settings or HubSpotSettings.from_connection(connection)
        keep = 1 - settings.rate_headroom
        # Capacity 1 (no burst) and a rate a little under the ceiling: no rolling window, of
        # 1 s or of 10 s, ever sees more than the limit. A search request takes a token from the
        # search bucket only: HubSpot counts searches against their own per-second limit
        # (charging them to both held the search rate ~15% under its ceiling, bench/bench_pull.py).
        buckets = make_buckets(
            cls.api_name, connection.conn_id,
            {GENERAL_BUCKET: settings.rate_limit_per_10s / 10.0 * keep, SEARCH_BUCKET: settings.search_rate_per_s * keep},
            limits=limits, rate_share=rate_share, clock=clock, sleeper=sleeper,
        )
        return cls(
            connection.base_url,
            connection.token,
            conn_id=connection.conn_id,
            buckets=buckets,
            timeout=(settings.connect_timeout_s, settings.read_timeout_s),
            retry=RetryConfig(settings.max_retries, settings.backoff_base_s, settings.backoff_max_s),
            sleeper=sleeper,
            rng=rng,
            session=session,
            stats=stats,
            daily_reserve=settings.daily_reserve,
            rate_limit_wait_s=settings.rate_limit_wait_s,
            search_rate_wait_s=settings.search_rate_wait_s,
        )

    def token_info(self) -> dict[str, Any]:
        """HubSpot's introspection of this session's private-app token: portal (`hubId`), `appId`,
        `userId`, `scopes`. The token travels in the body, as HubSpot asks."""
        return self.request_json("POST", TOKEN_INFO_PATH, json={"tokenKey": self._token}, idempotent=True) or {}

    # --- declarations ------------------------------------------------------------------------------
    def parse_error(self, response: requests.Response) -> ErrorInfo:
        try:
            body = response.json()
        except ValueError:
            return ErrorInfo(message=(response.text or "")[:200])
        if not isinstance(body, dict):
            return ErrorInfo()
        scopes: list[str] = []
        for err in body.get("errors") or []:
            context = err.get("context") if isinstance(err, dict) else None
            if isinstance(context, dict):
                for key in ("requiredGranularScopes", "requiredScopes", "scopes"):
                    value = context.get(key)
                    if isinstance(value, list):
                        scopes.extend(str(s) for s in value)
        message = str(body.get("message") or "")
        if not scopes and response.status_code == 403:
            scopes = _SCOPE.findall(message)
        return ErrorInfo(
            message=message[:500],
            category=body.get("category") or body.get("errorType"),
            correlation_id=body.get("correlationId"),
            policy_name=body.get("policyName"),
            scopes=tuple(dict.fromkeys(scopes)),
        )

    def rate_limit_wait(self, response: requests.Response, info: ErrorInfo) -> float:
        policy = (info.policy_name or "").upper()
        if not policy:
            text = info.message.lower()
            policy = "DAILY" if "daily" in text else "SECONDLY" if "secondly" in text and "ten" not in text else ""
        if policy == "DAILY":
            raise make_error(
                CrmBudgetExhausted,
                "HubSpot's daily API limit is spent (429 DAILY): stopping now; the next run resumes "
                "from the stored watermark",
                status=429,
                info=info,
            )
        if policy == "SECONDLY":
            return self.search_rate_wait_s
        return self.rate_limit_wait_s  # TEN_SECONDLY_ROLLING (or unknown)

    def auth_error_message(self, status: int, info: ErrorInfo) -> str:
        where = f"connection {self.conn_id}" if self.conn_id else "the HubSpot connection"
        env = f" (environment variable {env_var_name(self.conn_id)})" if self.conn_id else ""
        if status == 401:
            return (
                f"HubSpot rejected the token (401): check the password of {where}{env}; it must be "
                "a current private-app access token"
            )
        scope = (
            f" lacks the scope(s) {', '.join(info.scopes)}"
            if info.scopes
            else " lacks a required scope"
        )
        return (
            f"HubSpot refused the call (403): the private app behind {where}{scope}; grant "
            f"it in HubSpot (Settings > Integrations > Private apps). {info.message}"
        ).strip()

    def before_request(self, bucket: str) -> None:
        remaining = self.daily_remaining
        if remaining is not None and remaining <= self.daily_reserve:
            raise CrmBudgetExhausted(
                f"HubSpot's daily API allowance is down to {remaining} (reserve {self.daily_reserve}): "
                "stopping now; the next run resumes from the stored watermark"
            )

    def observe(self, response: requests.Response) -> None:
        value = response.headers.get("X-HubSpot-RateLimit-Daily-Remaining")
        if value is not None:
            try:
                self.daily_remaining = int(value)
            except ValueError:
                pass
