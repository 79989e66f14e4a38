"""Who is calling: the Airflow user behind the request, checked through Airflow's auth manager.

Airflow mounts a plugin's FastAPI app inside its API server but does not protect it, so the app
checks the caller itself, the way Airflow's own API does (`core_api.security.get_user`):

- the JWT comes from `Authorization: Bearer <token>` (API clients, and the all-admins mode of the
  simple auth manager, which injects that header) or else from the `_token` cookie the Airflow
  UI sets at login (browsers, including the page embedded in the Airflow UI);
- `getauth_manager().get_user_from_token(token)` verifies signature, expiry, audience and
  revocation and returns the user.

No token or a bad one: browsers (requests that accept text/html) are redirected to the auth
manager's login page with `next` pointing back here; every other request gets 401.
Airflow is imported only when a request arrives, never when the plugin module is imported.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from jwt import InvalidTokenError  # PyJWT, an Airflow dependency

from leadflow.airflow_adapter import auth_manager

log = logging.getLogger(__name__)

COOKIE_NAME = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


class NotAuthenticated(Exception):
    """Raised by `require_user`; the app turns it into a 401 or a redirect to the login page."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def request_token(request: Request) -> str | None:
    """The caller's JWT: an explicit bearer token wins over the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.cookies.get(COOKIE_NAME) or None


async def require_user(request: Request) -> Any:
    """FastAPI dependency: the authenticated Airflow user, or `NotAuthenticated`."""
    token = request_token(request)
    if not token:
        raise NotAuthenticated("not authenticated")
    try:
        return await auth_manager().get_user_from_token(token)
    except InvalidTokenError:  # includes ExpiredSignatureError and revoked tokens
        raise NotAuthenticated("invalid or expired token") from None
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise NotAuthenticated("invalid or expired token") from None
        raise


def wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept and request.method in ("GET", "HEAD")


def login_url(request: Request) -> str:
    """The auth manager's login page, coming back to the requested page afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    try:
        return auth_manager().get_url_login(next_url=target)
    except Exception:  # no auth manager initialised (not inside the API server)
        return "/auth/login?" + urlencode({"next": target})


def unauthenticated_response(request: Request, exc: NotAuthenticated):
    if wants_html(request):
        return RedirectResponse(login_url(request), status_code=307)
    return JSONResponse({"detail": exc.reason}, status_code=401,
                        headers={"WWW-Authenticate": "Bearer"})
