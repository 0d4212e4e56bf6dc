"""The quick way past the models for a record that is plainly valid.

Building a pydantic model per record, and searching each of its strings for control
characters one by one, cost more than storing it. A record whose every part is of the
plain kind (strings where strings go, a known event field set, an address of ASCII, nothing
to strip) is turned into what the models would make of it here, directly; anything else,
and anything this finds wrong, goes through the models, whose answer (the values, or the
error and its wording) stays the reference. tests/test_import_screening.py holds the two to
the same results.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from automator.importing.records import (
    EVENT_FIELDS,
    KNOWN_FIELDS,
    MAX_EVENT_ID,
    MAX_NAME,
    field_key,
    is_event_type,
    is_language_tag,
    known_zone,
    normalize_email,
    parse_timestamp,
)

_REQUIRED_EVENT_FIELDS = frozenset({"type", "email", "at"})
_KNOWN = frozenset(KNOWN_FIELDS)
_NAMES = frozenset(field_key(name) for name in ("email", *KNOWN_FIELDS))

# A file names the same few event types again and again: each is checked once.
_event_type = functools.lru_cache(maxsize=1024)(is_event_type)


def event(raw: dict[str, Any]) -> tuple[str | None, str, str, datetime, dict[str, Any]] | None:
    """(id, type, email, at, properties) of a plainly valid event record without a control
    character; None: let the model judge it."""
    keys = raw.keys()
    if not (_REQUIRED_EVENT_FIELDS <= keys <= EVENT_FIELDS):
        return None
    id_, type_, email, at = raw.get("id"), raw["type"], raw["email"], raw["at"]
    properties = raw.get("properties", {})
    if (
        not (id_ is None or (type(id_) is str and len(id_) <= MAX_EVENT_ID))
        or type(type_) is not str
        or type(email) is not str
        or type(at) is not str
        or type(properties) is not dict
        or not _event_type(type_)
    ):
        return None
    try:
        return id_, type_, normalize_email(email), parse_timestamp(at), properties
    except ValueError:
        return None


def contact(raw: dict[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]] | None:
    """(email, known fields that are set, attributes) of a plainly valid contact record
    without a control character; None: let the model judge it."""
    email = raw.get("email")
    names = _names(tuple(raw))
    if type(email) is not str or names is None:
        return None
    known, others = names
    fields: dict[str, str] = {}
    for name in known:
        value = raw[name]
        if value is None:
            continue
        # The model strips known fields: one with space around it takes its way.
        if type(value) is not str or value != value.strip() or len(value) > MAX_NAME:
            return None
        if value:
            fields[name] = value
    if "timezone" in fields and not known_zone(fields["timezone"]):
        return None
    if "locale" in fields and not _language_tag(fields["locale"]):
        return None
    try:
        return normalize_email(email), fields, {name: raw[name] for name in others}
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)  # a file's records name the same few sets of fields
def _names(names: tuple[str, ...]) -> tuple[list[str], list[str]] | None:
    """A record's known fields but its email, and its attributes; None when a name is the
    model's to rename or refuse (`First Name`, an empty name)."""
    known = [name for name in names if name in _KNOWN]
    others = [name for name in names if name not in _KNOWN and name != "email"]
    if any(not name.strip() or len(name) > MAX_NAME or field_key(name) in _NAMES for name in others):
        return None
    return known, others


_language_tag = functools.lru_cache(maxsize=1024)(is_language_tag)
