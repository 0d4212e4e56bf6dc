"""The quick path past the models (automator/importing/screening.py) gives what the models
give: the same stored values for a good record, the same error for a bad one. The models
are the reference; each record here goes through the import's own reading and checking and
through the model alone, and the two must agree."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from automator.errors import ImportRecordError
from automator.importing import (
    ContactRecord,
    EventRecord,
    contact_data,
    event_key,
    normalize_email,
    screening,
)
from automator.importing import contacts as contact_import
from automator.importing import events as event_import
from automator.importing.files import RecordFile
from automator.importing.records import _normalize_email, reason
from automator.journey import Journey
from automator.staged import ContactData, EventData
from tests.importing import cart_event, write_csv

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
JOURNEY = Journey()


def read_back(path: Path, record: dict[str, Any] | str) -> tuple[int, Any, bool]:
    """The one record of a file holding `record`, as the import reads it."""
    path.write_text((record if isinstance(record, str) else json.dumps(record)) + "\n", encoding="utf-8")
    with RecordFile(path) as records:
        (found,) = list(records)
    return found


def imported_event(tmp_path: Path, record: dict[str, Any] | str) -> EventData | str:
    line, raw, clean = read_back(tmp_path / "e.jsonl", record)
    found = event_import._event(raw, clean, tmp_path / "e.jsonl", line)
    return found.message if isinstance(found, ImportRecordError) else found


def modelled_event(record: dict[str, Any]) -> EventData | str:
    try:
        model = EventRecord.model_validate(record)
    except ValidationError as exc:
        return reason(exc)
    return EventData(event_key(model), model.type, model.email, model.at, model.properties)


def without(record: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != name}


EVENTS = {
    "a cart update": cart_event(),
    "no id": without(cart_event(), "id"),
    "an empty id": cart_event(id=""),
    "no properties": without(cart_event(), "properties"),
    "empty properties": cart_event(properties={}),
    "a time in UTC": cart_event(at="2026-11-20T03:00:00Z"),
    "a time with fractions": cart_event(at="2026-11-20T03:00:00.123456+00:00"),
    "a capitalised address": cart_event(email="Lan.Nguyen@Example.COM"),
    "an address with space around": cart_event(email="  lan@example.com "),
    "an address with a tag": cart_event(email="lan+shop@example.com"),
    "an international domain": cart_event(email="lan@bücher.de"),
    "an address in Punycode": cart_event(email="lan@xn--bcher-kva.de"),
    "a quoted address": cart_event(email='"lan nguyen"@example.com'),
    "a multi-line note": cart_event(properties={"note": "Ring twice.\r\nThanks\t!"}),
    "no type": without(cart_event(), "type"),
    "no email": without(cart_event(), "email"),
    "no time": without(cart_event(), "at"),
    "an unknown field": cart_event(total=5),
    "an id that is a number": cart_event(id=5),
    "a type that is a number": cart_event(type=7),
    "a type with a dash": cart_event(type="cart-updated"),
    "a type of 200 characters": cart_event(type="t" * 200),
    "a type over 200 characters": cart_event(type="t" * 201),
    "an address without @": cart_event(email="lan"),
    "an empty address": cart_event(email=""),
    "no address at all": cart_event(email=None),
    "an address at localhost": cart_event(email="lan@localhost"),
    "a special-use domain": cart_event(email="lan@shop.invalid"),
    "two dots in a row": cart_event(email="lan..nguyen@example.com"),
    "a domain with two dots": cart_event(email="lan@example..com"),
    "a domain label starting with a dash": cart_event(email="lan@-example.com"),
    "a numeric top-level domain": cart_event(email="lan@example.123"),
    "a long part before the @": cart_event(email="l" * 70 + "@example.com"),
    "a long domain label": cart_event(email="lan@" + "e" * 64 + ".com"),
    "an address over 254 characters": cart_event(email="l" * 60 + "@" + ("e" * 60 + ".") * 4 + "com"),
    "a day-first time": cart_event(at="20/11/2026 10:00"),
    "a time without offset": cart_event(at="2026-11-20T10:00:00"),
    "a time as a number": cart_event(at=1763600000),
    "properties that are null": cart_event(properties=None),
    "properties that are a list": cart_event(properties=["a"]),
    "a line break in the id": cart_event(id="evt-1\n"),
    "an escape in a property": cart_event(properties={"note": "a\x1b[31mred"}),
    "DEL in the address": cart_event(email="lan@example.com\x7f"),
    "a C1 character in the type": cart_event(type="cart\x9bupdated"),
    "a line break in a property's name": cart_event(properties={"note\n": "x"}),
    "an escaped backslash before an n": cart_event(properties={"path": "C:\\new"}),
}


@pytest.mark.parametrize("record", EVENTS.values(), ids=EVENTS.keys())
def test_an_event_is_read_as_its_model_reads_it(tmp_path, record):
    assert imported_event(tmp_path, record) == modelled_event(record)


def test_an_event_written_with_ascii_escapes_is_read_as_its_model_reads_it(tmp_path):
    record = cart_event(properties={"name": "Áo dài lụa", "note": "a\x9bb"})
    assert imported_event(tmp_path, json.dumps(record, ensure_ascii=True)) == modelled_event(record)


@pytest.mark.parametrize(
    "name", ["a cart update", "no id", "a capitalised address", "an address with a tag", "a time in UTC"]
)
def test_a_plain_event_takes_the_quick_path(name):
    assert screening.event(EVENTS[name]) is not None


def imported_contact(tmp_path: Path, header: str, row: str) -> ContactData | str:
    path = write_csv(tmp_path / "c.csv", header, row)
    with RecordFile(path) as records:
        ((line, raw, clean),) = list(records)
    found = contact_import._contact(raw, clean, path, line, JOURNEY, ZONE)
    return found.message if isinstance(found, ImportRecordError) else found


def imported_json_contact(tmp_path: Path, record: dict[str, Any]) -> ContactData | str:
    line, raw, clean = read_back(tmp_path / "c.jsonl", record)
    found = contact_import._contact(raw, clean, tmp_path / "c.jsonl", line, JOURNEY, ZONE)
    return found.message if isinstance(found, ImportRecordError) else found


def modelled_contact(record: dict[str, Any]) -> ContactData | str:
    try:
        return contact_data(ContactRecord.model_validate(record), JOURNEY, ZONE)
    except ValidationError as exc:
        return reason(exc)
    except ValueError as exc:
        return str(exc)


CSV_CONTACTS = {
    "every field": (
        "email,first_name,last_name,locale,timezone,stage,plan",
        "lan@example.com,Lan,Nguyen,vi,Asia/Ho_Chi_Minh,consideration,pro",
    ),
    "dates and a boolean": (
        "email,timezone,trial_ends_at,renews_at,vip",
        "lan@example.com,America/New_York,2026-12-01,2026-12-20T09:30:00,TRUE",
    ),
    "empty cells": ("email,first_name,last_name,plan", "lan@example.com,,Nguyen,"),
    "a name with space around": ("email,first_name", "lan@example.com,  Lan "),
    "a time zone with space around": ("email,timezone", "lan@example.com, Asia/Bangkok"),
    "a name of spaces only": ("email,first_name", "lan@example.com,   "),
    "an unknown time zone": ("email,timezone", "lan@example.com,Asia/Saigon City"),
    "a region's locale": ("email,locale", "lan@example.com,pt_BR"),
    "a locale that is no language tag": ("email,locale", "lan@example.com,fr FR"),
    "an unknown stage": ("email,stage", "lan@example.com,shopping"),
    "a bad address": ("email,first_name", "lan-at-example.com,Lan"),
    "no address": ("first_name,plan", "Lan,pro"),
    "a date that is not ISO": ("email,birthday", "lan@example.com,17/05/1990"),
    "a tab in an attribute": ("email,city", 'lan@example.com,"Hu\tế"'),
    "a name of 200 characters": ("email,last_name", "lan@example.com," + "n" * 200),
    "a name over 200 characters": ("email,first_name", "lan@example.com," + "n" * 201),
    "an attribute's name over 200 characters": ("email," + "d" * 201, "lan@example.com,2026-12-01"),
}


@pytest.mark.parametrize("header, row", CSV_CONTACTS.values(), ids=CSV_CONTACTS.keys())
def test_a_csv_contact_is_read_as_its_model_reads_it(tmp_path, header, row):
    with RecordFile(write_csv(tmp_path / "c.csv", header, row)) as records:
        ((_, raw, _),) = list(records)
    assert imported_contact(tmp_path, header, row) == modelled_contact(raw)


JSON_CONTACTS = {
    "attributes of every kind": {
        "email": "lan@example.com",
        "vip": True,
        "orders": 3,
        "address": {"lines": ["12 Lê Lợi", "Huế"]},
        "tags": ["a", "b"],
        "nothing": None,
    },
    "a name that is null": {"email": "lan@example.com", "first_name": None},
    "a name that is a number": {"email": "lan@example.com", "first_name": 5},
    "an address that is a number": {"email": 5},
    "a line break in a nested attribute": {"email": "lan@example.com", "address": {"lines": ["Huế\n"]}},
    "an escape in an attribute's name": {"email": "lan@example.com", "note\x1b": "hello"},
    "an attribute's name of 200 characters": {"email": "lan@example.com", "d" * 200: "2026-12-01"},
    "an attribute's name over 200 characters": {"email": "lan@example.com", "d" * 201: 5},
}


@pytest.mark.parametrize("record", JSON_CONTACTS.values(), ids=JSON_CONTACTS.keys())
def test_a_json_contact_is_read_as_its_model_reads_it(tmp_path, record):
    assert imported_json_contact(tmp_path, record) == modelled_contact(record)


def test_a_plain_contact_takes_the_quick_path():
    row = {"email": "lan@example.com", "first_name": "Lan", "timezone": "Asia/Bangkok", "plan": "pro"}
    assert screening.contact(row) == (
        "lan@example.com",
        {"first_name": "Lan", "timezone": "Asia/Bangkok"},
        {"plan": "pro"},
    )


def checked_whole(address: str) -> str:
    """The address checked by email_validator whole, as every address was before the quick path."""
    if not address.strip():
        return "error: email is required"
    try:
        return _normalize_email(address.strip())
    except ValueError as exc:
        return f"error: {exc}"


def normalized(address: str) -> str:
    try:
        return normalize_email(address)
    except ValueError as exc:
        return f"error: {exc}"


def random_address(rng: random.Random) -> str:
    """Mostly plausible addresses, with the odd piece that email_validator refuses or rewrites."""
    local = ["lan", "Nguyen", "a1", ".", "-", "_", "+shop", "é", "'", '"', " ", "!", "l" * 30]
    label = ["example", "shop", "co", "vn", "com", "EXAMPLE", "xn--bcher-kva", "bücher", "-a", "a-"]
    label += ["e" * 63, "e" * 64, "123", "localhost", "invalid", "test", "local", "", "ab--cd", "a_b"]
    before = "".join(rng.choice(local) for _ in range(rng.randint(1, 4)))
    after = ".".join(rng.choice(label) for _ in range(rng.randint(1, 5)))
    return rng.choice(["", " "]) + before + rng.choice(["@", "@", "@", "@@", ""]) + after


def test_any_address_is_normalized_as_email_validator_checks_it_whole():
    rng = random.Random(19)
    addresses = [random_address(rng) for _ in range(5000)]
    differ = [(a, normalized(a), checked_whole(a)) for a in addresses if normalized(a) != checked_whole(a)]
    assert differ == []
    assert sum(not normalized(a).startswith("error") for a in addresses) > 200  # valid ones too
