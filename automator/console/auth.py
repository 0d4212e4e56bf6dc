"""Who is using the console and what they may do: passwords (Argon2), roles, and the signed
session cookie that carries the user's name, their CSRF token and their time zone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from automator.errors import AutomatorError

ROLES = ("support", "admin")

# support looks things up and can stop mail (hold, suppress) and undo its own pause (release);
# admin can also do what cannot be undone or what sends mail anyway.
PERMISSIONS: dict[str, frozenset[str]] = {
    "support": frozenset({"view", "hold", "release", "suppress"}),
    "admin": frozenset({"view", "hold", "release", "suppress", "cancel", "send now", "bulk", "unsuppress"}),
}

COOKIE = "automator_console"
SESSION_HOURS = 12

_hasher = PasswordHasher()
# Checked when the name is unknown, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("no such user")


class LoginRequired(AutomatorError):
    """The request has no valid session."""


class Forbidden(AutomatorError):
    """The user's role does not allow this, or the request's CSRF token is wrong."""


def hash_password(password: str) -> str:
    if len(password) < 8:
        raise AutomatorError("a password needs at least 8 characters")
    return _hasher.hash(password)


def password_matches(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Viewer:
    """The logged-in user of one request."""

    name: str
    role: str
    csrf: str
    zone: ZoneInfo

    def can(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, frozenset())


class Sessions:
    """The session cookie: signed (itsdangerous) so it cannot be forged or edited, HttpOnly,
    SameSite=Lax, and Secure whenever the console is reached over HTTPS."""

    def __init__(self, secret: str) -> None:
        self.serializer = URLSafeTimedSerializer(secret, salt="automator.console.session")

    def read(self, request: Request) -> dict[str, Any]:
        """The session's data; empty when there is none or it is forged or too old."""
        value = request.cookies.get(COOKIE)
        if not value:
            return {}
        try:
            data = self.serializer.loads(value, max_age=SESSION_HOURS * 3600)
        except BadSignature:
            return {}
        return data if isinstance(data, dict) else {}

    def write(self, request: Request, response: Response, data: dict[str, Any]) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps(data),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    def clear(self, request: Request, response: Response) -> None:
        response.delete_cookie(
            COOKIE, httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/"
        )
