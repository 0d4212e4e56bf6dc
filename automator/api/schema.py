"""The shapes the OpenAPI document (`/v1/openapi.json`) describes.

The endpoints read their bodies themselves (an item at a time, so that one bad item is
answered with its index while the others are stored), with the import's validation; these
models say the same for the readers of the document, not to a validator.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from automator.api.limits import MAX_BODY
from automator.importing.records import LANGUAGE_TAG

MAX_ITEMS = 1000
TYPE_PATTERN = r"^[A-Za-z0-9_]+$"


class Event(BaseModel):
    """One event, as a line of `automator events import`."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None,
        max_length=200,
        description="The sender's id: an event sent again with an id already stored is a duplicate. "
        "Without one, a hash of the whole event is its id.",
    )
    type: str = Field(pattern=TYPE_PATTERN, examples=["cart_updated"])
    email: str = Field(examples=["lan@example.com"])
    at: datetime = Field(description="When it happened: ISO 8601 with Z or an offset.")
    properties: dict[str, Any] = Field({}, examples=[{"cart_id": "c1", "total": 1250000}])


class EventBatch(BaseModel):
    batch: list[Event] = Field(max_length=MAX_ITEMS)


class Contact(BaseModel):
    """One contact, as a row of `automator contacts import`: upserted by email; every other
    field is an attribute (an ISO 8601 date or time one is a date attribute)."""

    model_config = ConfigDict(extra="allow")

    email: str = Field(examples=["lan@example.com"])
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = Field(None, pattern=LANGUAGE_TAG, examples=["vi", "en-GB", "pt_BR"])
    timezone: str | None = Field(None, examples=["Asia/Ho_Chi_Minh"])
    stage: str | None = Field(None, examples=["consideration"])


class ContactBatch(BaseModel):
    batch: list[Contact] = Field(max_length=MAX_ITEMS)


class SegmentContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    traits: dict[str, Any] = Field({}, examples=[{"email": "lan@example.com"}])
    locale: str | None = Field(None, pattern=LANGUAGE_TAG)
    timezone: str | None = None


class Track(BaseModel):
    """A Segment track call: an event."""

    model_config = ConfigDict(extra="allow")

    type: Literal["track"] | None = Field(None, description="Required in a batch.")
    event: str = Field(examples=["Order Completed"])
    userId: str | None = None  # noqa: N815 (Segment's names)
    anonymousId: str | None = None  # noqa: N815
    messageId: str | None = Field(None, description="The idempotency key.")  # noqa: N815
    timestamp: datetime | None = None
    properties: dict[str, Any] = {}
    context: SegmentContext | None = None


class Identify(BaseModel):
    """A Segment identify call: a contact."""

    model_config = ConfigDict(extra="allow")

    type: Literal["identify"] | None = Field(None, description="Required in a batch.")
    userId: str | None = None  # noqa: N815 (Segment's names)
    anonymousId: str | None = None  # noqa: N815
    messageId: str | None = None  # noqa: N815
    timestamp: datetime | None = None
    traits: dict[str, Any] = Field({}, examples=[{"email": "lan@example.com", "firstName": "Lan"}])
    context: SegmentContext | None = None


class SegmentBatch(BaseModel):
    batch: list[Track | Identify] = Field(max_length=MAX_ITEMS)
    context: SegmentContext | None = Field(None, description="Applies to every call in the batch.")


class FieldError(BaseModel):
    field: str = Field(description="Where, in the item (empty: the item as a whole).")
    message: str


class Rejection(BaseModel):
    index: int = Field(description="The item's place in the batch, from 0 (0 for a single item).")
    errors: list[FieldError]


class Outcome(BaseModel):
    """What became of the items: stored, already stored (by id), refused."""

    accepted: int
    duplicates: int
    merged: int = Field(
        0,
        description="Of the accepted contacts, those for an address an earlier item had: merged "
        "into it, their fields winning. Sent only when there are some.",
    )
    rejected: list[Rejection]


class Erased(BaseModel):
    found: bool = Field(description="Whether a contact had the address (it is suppressed either way).")
    events: int = Field(description="Its events, deleted.")
    messages: int = Field(description="Its messages, kept without personal data for the counts.")
    cancelled: int = Field(description="Of those, the ones not sent yet, now cancelled.")


class Problem(BaseModel):
    detail: str


REQUEST_MODELS = (Event, EventBatch, Contact, ContactBatch, Track, Identify, SegmentBatch)


def body(*models: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` naming the request bodies an endpoint takes."""
    refs = [{"$ref": f"#/components/schemas/{model.__name__}"} for model in models]
    schema = refs[0] if len(refs) == 1 else {"oneOf": refs}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The answers other than 200 an endpoint gives, for `responses=`."""
    said = {
        207: "Some items were rejected; the others were stored.",
        400: "The body is not JSON.",
        401: "No API key, an unknown one, or a revoked one.",
        403: "The key lacks the scope the endpoint needs.",
        413: f"The body passes {MAX_BODY // (1024 * 1024)} MB (once decompressed, if sent as gzip).",
        415: "The body's Content-Encoding is neither gzip nor none.",
        422: f"The body is not an item or a batch of at most {MAX_ITEMS}, or the address is not one.",
        429: "Too many requests for this key: try again after Retry-After seconds.",
        503: "The database is busy or unreachable: try again after Retry-After seconds.",
    }
    return {
        status: {"model": Outcome if status == 207 else Problem, "description": said[status]}
        for status in statuses
    }


INTAKE_ANSWERS = answers(207, 400, 401, 403, 413, 415, 422, 429, 503)


def add_request_models(document: dict[str, Any]) -> dict[str, Any]:
    """The request bodies' schemas, in the document's components."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in REQUEST_MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return document
