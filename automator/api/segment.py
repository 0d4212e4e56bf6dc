"""Segment's calls as automator's records: a `track` becomes an event, an `identify` a
contact, so that a Segment or RudderStack source can send here unchanged.

- The contact is found by email address: `traits.email`, then `context.traits.email`, then
  `properties.email`, then `userId` when it is an address. A call without one is rejected
  (automator mails people, and keeps no map of anonymous or user ids to addresses).
- `messageId` is the event's id, so a call Segment retries is stored once.
- `event` becomes the event type: as `[api.segment_events]` in automator.toml maps it
  (`"Order Completed" = "order_placed"`), else in snake_case (`order_completed`).
- `timestamp` (else `originalTimestamp`, else the time it arrives) is when it happened.
- An identify's `traits` are the contact's fields and attributes: `firstName`/`first_name`,
  `lastName`/`last_name`, `locale` and `timezone` (else the context's), the rest as
  attributes under their own names.

Pure: no store, no clock (the caller passes the time of arrival).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from automator.importing.records import field_key

KINDS = ("track", "identify")
NAMES = {"firstName": "first_name", "lastName": "last_name"}  # Segment's trait → automator's field


class NotMapped(ValueError):
    """A call that cannot become a record; `field` names where, in Segment's terms."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def with_context(call: Any, shared: Any) -> Any:
    """A batch item with the batch's own `context` under its own (the item's keys win)."""
    if not isinstance(call, dict) or not isinstance(shared, dict) or not shared:
        return call
    own = call.get("context")
    return {**call, "context": {**shared, **(own if isinstance(own, dict) else {})}}


def kind_of(call: Any, expected: str | None = None) -> str:
    """`track` or `identify`: the endpoint's, or (in a batch) the call's `type`."""
    if not isinstance(call, dict):
        raise NotMapped("", "a call is a JSON object")
    given = call.get("type")
    if expected is not None and given not in (None, expected):
        raise NotMapped(
            "type", f"a {given!r} call sent to /v1/{expected}: send it to its own endpoint or /v1/batch"
        )
    kind = expected or given
    if kind not in KINDS:
        raise NotMapped("type", f"{kind!r} calls are not taken here: send track or identify")
    return str(kind)


def event_of(call: dict[str, Any], names: Mapping[str, str], arrived: datetime) -> dict[str, Any]:
    """A track call as an event record, as `events import` reads one."""
    name = call.get("event")
    if not isinstance(name, str) or not name.strip():
        raise NotMapped("event", "a track call needs the event's name")
    event: dict[str, Any] = {
        "type": event_type(name, names),
        "email": _email(call),
        "at": call.get("timestamp") or call.get("originalTimestamp") or arrived.isoformat(),
        "properties": call.get("properties") or {},
    }
    if call.get("messageId") not in (None, ""):
        event["id"] = _text(call["messageId"])
    return event


def contact_of(call: dict[str, Any]) -> dict[str, Any]:
    """An identify call as a contact record, as `contacts import` reads one."""
    traits = _object(call, "traits")
    context = _object(call, "context")
    address = _email_key(traits)
    contact = {NAMES.get(name, name): value for name, value in traits.items() if name != address}
    for name in ("locale", "timezone"):
        if contact.get(name) is None and isinstance(context.get(name), str):
            contact[name] = context[name]
    return {**contact, "email": _email(call)}


def event_type(name: str, names: Mapping[str, str]) -> str:
    """`Order Completed` → as mapped, else `order_completed`; `checkoutStarted` → `checkout_started`."""
    if name in names:
        return names[name]
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    snake = re.sub(r"[^A-Za-z0-9]+", "_", spaced).strip("_").lower()
    if not snake:
        raise NotMapped("event", f"{name!r} has no letter or digit to name an event type by")
    return snake


def _email(call: dict[str, Any]) -> str:
    return _address(call)[1]


def _address(call: dict[str, Any]) -> tuple[str, str]:
    """(where, the address): the first of the places an address may be sent in."""
    for within, data in (
        ("traits", _object(call, "traits")),
        ("context.traits", _object(_object(call, "context"), "traits")),
        ("properties", _object(call, "properties")),
    ):
        name = _email_key(data)
        where, found = f"{within}.{name}", data.get(name)
        if found not in (None, ""):
            if not isinstance(found, str):
                raise NotMapped(where, "an email address is text")
            return where, found
    user = call.get("userId")
    if isinstance(user, str) and "@" in user:
        return "userId", user
    raise NotMapped(
        "context.traits.email",
        "no email address: send it in context.traits.email (or traits.email), or as the userId",
    )


def _email_key(data: dict[str, Any]) -> str:
    """The key an address is under: `email`, or as a contact's field may be named (`Email`)."""
    return "email" if "email" in data else next((key for key in data if field_key(key) == "email"), "email")


_TRACK_FIELDS = {"id": "messageId", "type": "event"}


def sent_field(field: str, call: dict[str, Any], kind: str) -> str:
    """The field of the Segment call that holds what its record has as `field` (an error
    names the field the caller sent): a track's `at` is its `timestamp` (or
    `originalTimestamp`), `id` its `messageId`; an identify's `first_name` is
    `traits.firstName`, `locale` `context.locale` when the traits have none."""
    head, dot, rest = field.partition(".")
    if head == "email":
        return _address(call)[0] + dot + rest
    if not head:
        return field
    if kind == "track":
        if head == "at":
            return "timestamp" if call.get("timestamp") else "originalTimestamp"
        return _TRACK_FIELDS.get(head, head) + dot + rest
    traits = _object(call, "traits")
    sent = next((name for name in traits if field_key(NAMES.get(name, name)) == field_key(head)), None)
    if sent is None and head in ("locale", "timezone"):
        return f"context.{head}"
    return f"traits.{sent or head}{dot}{rest}"


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    found = data.get(name)
    return found if isinstance(found, dict) else {}


def _text(value: Any) -> Any:
    """An id sent as a number is the same id as text; anything else is left to be refused."""
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
