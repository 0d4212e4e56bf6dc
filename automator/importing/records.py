"""What a valid contact or event record is: the pydantic models, and the checks they share
with the quicker path in `screening` (email addresses, times, control characters).

No imported text may hold a control character (C0, DEL, C1; tab, CR and LF included):
names, emails and attributes end up in subject lines, headers and the terminal, where a line
break or an ESC sequence would let a record's text pose as something else. The one
exception is the value of an event property, which may be multi-line text (an address, a
note) and so may hold tabs and line breaks, though no other control character.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from automator.display import CONTROL, escape, printable
from automator.timestamps import parse_timestamp


def normalize_email(value: Any) -> str:
    """An email address as the store keeps it (valid, lowercased), or ValueError saying why not."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("email is required")
    if not isinstance(value, str):
        raise ValueError(f"an email address is text, not {_json_kind(value)}")
    value = value.strip()
    plain = _PLAIN_ADDRESS.fullmatch(value)
    if plain and len(value) <= MAX_ADDRESS and (domain := _plain_domain(plain[2])) is not None:
        return f"{plain[1]}@{domain}".lower()
    return _normalize_email(value)


def _json_kind(value: Any) -> str:
    """What a JSON value that is not text is, in a user's words."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


# An address of printable ASCII with a dot-atom before the @ and a host name after it, as
# nearly every address is: email_validator leaves its part before the @ as it is, so only
# its domain needs checking, once per domain. Any other address is checked whole.
_ATOM = r"[A-Za-z0-9_!#$%&'*+/=?^`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9.-]+)")
MAX_ADDRESS = 254  # email_validator's limit on the whole address
MAX_EVENT_ID = 200  # the length of event.key, where an event's id is kept
# A contact's first and last name, an attribute's name, an event's type: the store indexes
# them, and PostgreSQL refuses an index entry over 2,704 bytes (a value that long would fail
# its whole batch there). Far more than any name needs, and short enough in any script.
MAX_NAME = 200


@functools.lru_cache(maxsize=4096)
def _plain_domain(domain: str) -> str | None:
    """The domain as email_validator writes it, when it takes it unchanged but for case
    (no IDNA form to decode, so the address keeps its length); None for any other."""
    try:
        checked = validate_email(f"a@{domain}", check_deliverability=False).domain
    except EmailNotValidError:
        return None
    return checked if checked == domain.lower() else None


@functools.lru_cache(maxsize=65536)  # an events file repeats the same addresses many times
def _normalize_email(value: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f'email "{value}" is not valid: {exc}') from exc
    return checked.normalized.lower()


@functools.lru_cache(maxsize=1024)
def known_zone(name: str) -> bool:
    """Whether `name` is an IANA time zone this system knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# A language tag as contacts carry one: 2 or 3 letters for the language, then subtags of 2
# to 8 letters or digits (script, region, variant) after "-" or "_": vi, en-GB, pt_BR,
# zh-Hant-TW, es-419. Kept as given: a template's language is the first subtag either way.
LANGUAGE_TAG = r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$"
_LANGUAGE_TAG = re.compile(LANGUAGE_TAG)


def is_language_tag(value: str) -> bool:
    return _LANGUAGE_TAG.fullmatch(value) is not None


_ANY_CONTROL = re.compile(f"[{CONTROL}]+")
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+")  # tab, LF and CR pass


def control_characters(value: Any, where: str = "", lines: bool = False) -> Iterator[tuple[str, str]]:
    """(field, first run of control characters, at most 8 of them) for each string in
    `value` that holds one. Nested lists and objects are searched too, and the names of
    their keys; with `lines`, strings (not names) may hold tabs and line breaks."""
    if isinstance(value, str):
        if found := (_CONTROL_BUT_LINES if lines else _ANY_CONTROL).search(value):
            yield where, found.group()[:8]
    elif isinstance(value, dict) and not all_clean_strings(value):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if found := _ANY_CONTROL.search(str(key)):
                yield f"{inner} (its name)", found.group()[:8]
            yield from control_characters(item, inner, lines)
    elif isinstance(value, list):
        for number, item in enumerate(value):
            yield from control_characters(item, f"{where}.{number}", lines)


def all_clean_strings(value: dict[Any, Any]) -> bool:
    """Whether an object's keys and values are all strings without a control character:
    one search for a whole CSV row rather than one per string."""
    try:
        return not _ANY_CONTROL.search("".join([*value, *value.values()]))
    except TypeError:  # a number, a list, an object: searched one by one
        return False


def _refuse_control_characters(found: Iterable[tuple[str, str]], rule: str) -> None:
    """Raise one ValueError naming every field that holds a control character, and the rule."""
    problems = [f"{printable(where)}: holds {_kind(run)} ({escape(run)})" for where, run in found]
    if problems:
        raise ValueError("; ".join([*problems, rule]))


def _kind(run: str) -> str:
    if not run.strip("\r\n"):
        return "a line break"
    return "a tab" if not run.strip("\t") else "a control character"


KNOWN_FIELDS = ("first_name", "last_name", "locale", "timezone", "stage")


@functools.lru_cache(maxsize=4096)  # a file's records repeat the same names
def field_key(name: str) -> str:
    """A name as it is matched against a field's: `First Name` → `first_name`."""
    return re.sub(r"[\s-]+", "_", name.strip()).lower()


_CONTACT_FIELDS = {field_key(name): name for name in ("email", *KNOWN_FIELDS)}
# How exports name the address when not `email` (Mailchimp's `Email Address`, its API's
# `email_address`), as `field_key` writes them: one of them is the email of a record or a
# CSV header that names no `email`.
EMAIL_ALIASES = frozenset({"e_mail", "email_address", "e_mail_address"})


def email_alias(names: Iterable[str]) -> str | None:
    """The one name of `names` that stands for the email, when none is `email` itself (but
    for case, spaces or hyphens) and one is an alias of it; a ValueError when two are: neither
    can be taken for the address without a guess."""
    names = list(names)
    if any(field_key(name) == "email" for name in names):
        return None
    aliases = [name for name in names if field_key(name) in EMAIL_ALIASES]
    if len(aliases) > 1:
        named = " and ".join(f'"{printable(name)}"' for name in aliases)
        raise ValueError(f"{named} could each be the email address: name one of them email")
    return aliases[0] if aliases else None


def named_as_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A contact record whose keys that name one of its fields but for case, spaces or
    hyphens (`Email`, `First Name`) are that field's, as a CSV header's columns are, and whose
    one `email_alias` is its email. A key that is empty, or two that name one field, are a
    ValueError: the one would be an attribute nobody can name, of the other two one would be
    lost."""
    named: dict[str, Any] = {}
    given: dict[str, str] = {}
    alias = email_alias(data)
    for key, value in data.items():
        if not key.strip():
            raise ValueError(f'a field with an empty name ("{printable(key)}"): every field needs a name')
        if len(key) > MAX_NAME:
            shown = f"{printable(key[:20])}…"
            raise ValueError(f'a field\'s name of {len(key)} characters ("{shown}"): at most {MAX_NAME}')
        name = "email" if key == alias else _CONTACT_FIELDS.get(field_key(key), key)
        if name in given:
            raise ValueError(f"{printable(given[name])} and {printable(key)} both name the field {name}")
        named[name], given[name] = value, key
    return named


class ContactRecord(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    email: str
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    stage: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        _refuse_control_characters(
            control_characters(data),
            "a contact's fields and attributes may not hold line breaks, tabs or other control characters",
        )
        return named_as_fields(data) if isinstance(data, dict) else data

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str:
        return normalize_email(value)

    @field_validator("first_name", "last_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value and len(value) > MAX_NAME:
            raise ValueError(f"{len(value)} characters: at most {MAX_NAME}")
        return value

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str | None) -> str | None:
        if value and not is_language_tag(value):
            raise ValueError(f'"{printable(value)}" is not a language tag (such as vi, en-GB or pt_BR)')
        return value or None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value and not known_zone(value):
            raise ValueError(f'unknown time zone "{value}" (use an IANA name such as Asia/Ho_Chi_Minh)')
        return value or None


EVENT_FIELDS = frozenset({"id", "type", "email", "at", "properties"})


class EventRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    type: str
    email: str
    at: datetime
    properties: dict[str, Any] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        """Property values may be multi-line text (an address, a note); nothing else may."""
        if isinstance(data, dict):
            fields = {key: value for key, value in data.items() if key != "properties"}
            _refuse_control_characters(
                [
                    *control_characters(fields),
                    *control_characters(data.get("properties"), "properties", lines=True),
                ],
                "an event's fields and property names may not hold control characters, "
                "its property values no others than tabs and line breaks",
            )
        return data

    @field_validator("email", mode="before")
    @classmethod
    def _email(cls, value: Any) -> str:
        return normalize_email(value)

    @field_validator("at", mode="before")
    @classmethod
    def _at(cls, value: Any) -> datetime:
        return parse_timestamp(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_EVENT_ID:
            raise ValueError(f"at most {MAX_EVENT_ID} characters")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str) -> str:
        if len(value) > MAX_NAME:
            raise ValueError(f"{len(value)} characters: at most {MAX_NAME}")
        if not is_event_type(value):
            raise ValueError(f'"{value}" is not an event type (letters, digits and _)')
        return value


def is_event_type(value: str) -> bool:
    """Letters, digits and _, at most MAX_NAME of them."""
    return len(value) <= MAX_NAME and value.replace("_", "").isalnum()


def field_errors(exc: ValidationError) -> list[tuple[str, str]]:
    """A model's errors as (field, what is wrong); the field is empty for the whole record."""
    return [
        (".".join(str(part) for part in error["loc"]), str(error["msg"]).removeprefix("Value error, "))
        for error in exc.errors()
    ]


def reason(exc: ValidationError) -> str:
    """A model's errors as one line: `field: what is wrong; …`."""
    return "; ".join(f"{where}: {message}" if where else message for where, message in field_errors(exc))
