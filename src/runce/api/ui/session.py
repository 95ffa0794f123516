"""Who is looking at the dashboard: the API token signed in with, kept in a cookie.

The session cookie holds the token text (HttpOnly, SameSite=Strict, Secure over TLS or with
``api.secure_cookies = true``, gone when the browser closes) and every request checks it as
the API checks a bearer token, so a revoked token ends its sessions at once and several
server processes need no shared state. Each action carries a CSRF token derived from the
session's token (an HMAC), which a page of another origin can neither read nor compute; the
sign-in form carries one bound to a random cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.security import HTTPAuthorizationCredentials

from runce.api.appstate import AppState, app_state
from runce.api.auth import Caller, authenticate
from runce.api.problems import ProblemError

SESSION = "runce_session"
SIGN_IN = "runce_sign_in"


class SignInNeeded(Exception):
    """No session, or its token is no longer valid: the page sends the browser to sign in."""


class Refused(Exception):
    """An action or page this session may not have (answered 403 with the reason)."""


@dataclass(frozen=True)
class Viewer:
    """A signed-in session: its caller (token, scopes, projects) and its CSRF token."""

    caller: Caller
    csrf: str

    @property
    def can_read(self) -> bool:
        return "runs:read" in self.caller.token.scopes

    @property
    def can_write(self) -> bool:
        return "runs:write" in self.caller.token.scopes

    @property
    def sees_everything(self) -> bool:
        """Bound to no project: queue-wide counts, once tasks and schedules are its to see."""
        return not self.caller.bound

    @property
    def projects(self) -> tuple[str, ...]:
        return self.caller.token.projects


def csrf_for(secret: str) -> str:
    return hmac.new(secret.encode(), b"runce-ui-csrf", hashlib.sha256).hexdigest()


def viewer(request: Request, ctx: AppState) -> Viewer:
    """The session's viewer; :class:`SignInNeeded` without a valid one."""
    return viewer_for(ctx, request.cookies.get(SESSION))


def viewer_for(ctx: AppState, text: str | None) -> Viewer:
    """The viewer of a token's text, checked as the API checks a bearer token."""
    if not text:
        raise SignInNeeded
    try:
        caller = authenticate(ctx, HTTPAuthorizationCredentials(scheme="Bearer", credentials=text))
    except ProblemError:
        raise SignInNeeded from None
    return Viewer(caller, csrf_for(text))


def reader(request: Request, ctx: AppState) -> Viewer:
    found = viewer(request, ctx)
    if not found.can_read:
        raise Refused("this token lacks the scope runs:read, which the dashboard needs")
    return found


def check_csrf(found: Viewer, sent: str | None) -> None:
    if not sent or not hmac.compare_digest(sent, found.csrf):
        raise Refused("the form's CSRF token is missing or wrong; reload the page and try again")


def writer(request: Request, ctx: AppState, sent_csrf: str | None) -> Viewer:
    """The viewer of an action: signed in, the form's CSRF token right, and ``runs:write``."""
    found = reader(request, ctx)
    check_csrf(found, sent_csrf)
    if not found.can_write:
        raise Refused("this token lacks the scope runs:write; it may look but not act")
    return found


def sign_in_nonce(request: Request) -> str:
    """The random value the sign-in form's CSRF token is bound to (kept in a cookie)."""
    return request.cookies.get(SIGN_IN) or secrets.token_urlsafe(24)


def check_sign_in_csrf(request: Request, sent: str | None) -> None:
    nonce = request.cookies.get(SIGN_IN)
    if not nonce or not sent or not hmac.compare_digest(sent, csrf_for(nonce)):
        raise Refused("the sign-in form's CSRF token is missing or wrong; reload the page")


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=secure(request),
    )


def secure(request: Request) -> bool:
    """Whether the cookies are Secure: always with ``api.secure_cookies = true``, else when
    the request came over HTTPS (as a proxy of ``api.forwarded_allow_ips`` says, behind one)."""
    return app_state(request).config.api.secure_cookies is True or request.url.scheme == "https"


def clear(response: Response) -> None:
    response.delete_cookie(SESSION, path="/ui", httponly=True, samesite="strict")
