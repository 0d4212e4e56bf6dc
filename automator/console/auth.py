"""Who is using the console and what they may do: passwords (Argon2), roles, the signed
session cookie that carries the user's name, their CSRF token and their time zone, when a
session ends, and how long a name or an address that keeps failing to log in must wait."""

from __future__ import annotations

import bisect
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer

from automator.errors import AutomatorError
from automator.tables import User

ROLES = ("support", "admin")

# support looks things up and can stop mail (hold, suppress) and undo its own pause (release);
# admin can also do what cannot be undone or what sends mail anyway.
PERMISSIONS: dict[str, frozenset[str]] = {
    "support": frozenset({"view", "hold", "release", "suppress"}),
    "admin": frozenset(
        {
            "view",
            "hold",
            "release",
            "release any hold",
            "suppress",
            "cancel",
            "send now",
            "hold or cancel a whole selection",
            "remove a suppression",
        }
    ),
}

COOKIE = "automator_console"
# From logging in: writing the cookie again (a new time zone) does not extend it.
SESSION_LIFETIME = timedelta(hours=12)

# Password guessing: after LOCK_AFTER failed logins for one name, or from one address, within
# LOCK_WINDOW, the next try waits FIRST_WAIT; each failure after a wait doubles it, up to
# LONGEST_WAIT. FORGIVEN_AFTER without a failure once a wait is over starts the count again.
LOCK_AFTER = 5
LOCK_WINDOW = timedelta(minutes=15)
FIRST_WAIT = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
FORGIVEN_AFTER = timedelta(hours=1)
FAILURES_KEPT = timedelta(days=1)

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
    SameSite=Lax, and Secure whenever the console is reached over HTTPS. Whether a logged-in
    session still stands is `is_current`'s question, asked on every request."""

    def __init__(self, secret: str) -> None:
        self.serializer = URLSafeSerializer(session_key(secret), salt="automator.console.session")

    def read(self, request: Request) -> dict[str, Any]:
        """The session's data; empty when there is none or it is forged."""
        value = request.cookies.get(COOKIE)
        if not value:
            return {}
        try:
            data = self.serializer.loads(value)
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


def session_key(secret: str) -> bytes:
    """The key of session cookies: derived from the secret, not the secret itself, which is the
    key of unsubscribe tokens (emails.unsubscribe_token) and may stay accepted after a
    rotation. The label has capitals and a token signs a lower-cased address, so no
    unsubscribe token is ever a piece of this key."""
    return hmac.digest(secret.encode(), b"Automator console sessions", "sha256")


def logged_in(user: User, now: datetime) -> dict[str, Any]:
    """What a new session's cookie says about its login: who, under which of their session
    versions, and since when."""
    return {"user": user.name, "version": user.session_version, "since": int(now.timestamp())}


def is_current(session: dict[str, Any], user: User, now: datetime) -> bool:
    """Whether a session of `user` still stands: made under their current session version
    (logging out, a new password or role move it on) and less than 12 hours old."""
    since = session.get("since")
    if session.get("version") != user.session_version or not isinstance(since, int):
        return False
    return now < datetime.fromtimestamp(since, UTC) + SESSION_LIFETIME


@dataclass(frozen=True)
class Lockout:
    """A name or an address that may not try to log in before `until`."""

    until: datetime
    failures: int  # in the run of failures that led to it


def lockout(failures: Sequence[datetime]) -> Lockout | None:
    """The wait that failed logins at these times (oldest first) impose on the next try; None
    when there is none. Its end may be past already: the caller compares it with its clock."""
    until: datetime | None = None
    waits = first = 0
    for index, at in enumerate(failures):
        if until is not None and at >= until + FORGIVEN_AFTER:
            until, waits = None, 0
        if not waits:  # the run starts with the failures of the last LOCK_WINDOW
            first = bisect.bisect_right(failures, at - LOCK_WINDOW, 0, index + 1)
        if waits or index + 1 - first >= LOCK_AFTER:
            until = at + min(FIRST_WAIT * 2 ** min(waits, 16), LONGEST_WAIT)
            waits += 1
    return None if until is None else Lockout(until, len(failures) - first)
