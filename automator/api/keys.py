"""API keys as a request presents them, and what each may do.

A key is 256 random bits, shown once when it is made (`automator keys create`); the store
keeps only its SHA-256. For a value that cannot be guessed, a fast hash is as safe as a
slow password hash, and a request costs one indexed lookup.

A request carries its key as `Authorization: Bearer KEY`, or as the user name of HTTP Basic
(`KEY:` with no password), as Segment's HTTP API takes its write keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from automator.store import Store, api_keys
from automator.store.api_keys import Caller

SCOPES = {
    "events:write": "send events: /v1/events, and track calls of /v1/track and /v1/batch",
    "contacts:write": "upsert contacts: /v1/contacts, and identify calls of /v1/identify and /v1/batch",
    "contacts:erase": "erase a contact and its data: DELETE /v1/contacts/{email}",
}
PREFIX = "ak_"  # tells a key apart from other secrets in a config file or a leaked log
NOTE_USE_EVERY = timedelta(minutes=1)  # `keys list` shows a key's last use to the minute


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def presented_key(authorization: str | None) -> str | None:
    """The key in an Authorization header (Bearer, or Basic with the key as the user name)."""
    scheme, _, value = (authorization or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


class KeyRing:
    """Finds the key a request presents in the store, and notes its use there at most once
    a minute per key, so that a busy client does not add a write to every request."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock
        self._noted: dict[int, datetime] = {}
        self._lock = threading.Lock()

    def caller(self, authorization: str | None) -> Caller | None:
        """The key's caller, revoked ones included; None when no known key is presented."""
        key = presented_key(authorization)
        if key is None:
            return None
        with self.store.session() as session:
            found = api_keys.by_hash(session, hash_of(key))
        if found is not None and not found.revoked:
            self._note_use(found.id)
        return found

    def _note_use(self, key_id: int) -> None:
        now = self.clock()
        with self._lock:
            last = self._noted.get(key_id)
            if last is not None and now - last < NOTE_USE_EVERY:
                return
            self._noted[key_id] = now
        with self.store.transaction() as session:
            api_keys.mark_used(session, key_id, now)
