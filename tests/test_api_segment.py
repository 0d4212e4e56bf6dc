"""Segment's HTTP API shapes: `/v1/track`, `/v1/identify` and `/v1/batch` take what a Segment
or RudderStack destination sends, unchanged (docs/api.md has the mapping): the address from
the traits or the userId, `messageId` as the event's id, event names as mapped or in
snake_case, a call without an address rejected by index with a clear reason."""

from __future__ import annotations

import dataclasses

import pytest
from fastapi.testclient import TestClient

from automator.api import segment
from automator.config import ApiSettings
from automator.store import contacts, events
from automator.web import create_app
from tests import test_api_keys
from tests.conftest import utc
from tests.test_api_keys import bearer

client, make_key = test_api_keys.client, test_api_keys.make_key  # fixtures

ARRIVED = utc("2026-11-20 05:00")


def track(**fields: object) -> dict[str, object]:
    return {
        "type": "track",
        "event": "Cart Updated",
        "userId": "u-42",
        "messageId": "ajs-1",
        "timestamp": "2026-11-20T03:00:00.000Z",
        "properties": {"cart_id": "c1", "total": 120},
        "context": {"traits": {"email": "lan@example.com"}},
        **fields,
    }


@pytest.fixture
def writer(make_key) -> dict[str, str]:
    return bearer(make_key("events:write", "contacts:write"))


def stored_events(store, email: str) -> list[tuple[str, str]]:
    with store.session() as session:
        contact = contacts.by_email(session, email)
        assert contact is not None and contact.id is not None
        return [(event.key, event.type) for event in events.for_contact(session, contact.id)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Order Completed", "order_completed"),
        ("checkoutStarted", "checkout_started"),
        ("Product Added to Cart!", "product_added_to_cart"),
        ("cart_updated", "cart_updated"),
    ],
)
def test_an_event_name_becomes_snake_case(name, expected) -> None:
    assert segment.event_type(name, {}) == expected


def test_a_mapped_event_name_becomes_the_type_it_is_mapped_to() -> None:
    assert segment.event_type("Order Completed", {"Order Completed": "order_placed"}) == "order_placed"


def test_a_track_call_becomes_an_event_with_its_message_id() -> None:
    assert segment.event_of(track(), {}, ARRIVED) == {
        "id": "ajs-1",
        "type": "cart_updated",
        "email": "lan@example.com",
        "at": "2026-11-20T03:00:00.000Z",
        "properties": {"cart_id": "c1", "total": 120},
    }


def test_a_track_call_without_a_timestamp_happened_when_it_arrived() -> None:
    call = {key: value for key, value in track().items() if key != "timestamp"}

    assert segment.event_of(call, {}, ARRIVED)["at"] == ARRIVED.isoformat()


@pytest.mark.parametrize(
    "where",
    [
        {"traits": {"email": "lan@example.com"}, "context": {}},
        {"context": {"traits": {"email": "lan@example.com"}}},
        {"properties": {"email": "lan@example.com"}, "context": {}},
        {"userId": "lan@example.com", "context": {}},
    ],
    ids=["traits", "context-traits", "properties", "user-id"],
)
def test_the_address_is_found_where_segment_sources_put_it(where) -> None:
    assert segment.event_of(track(**where), {}, ARRIVED)["email"] == "lan@example.com"


def test_an_identify_call_becomes_a_contact() -> None:
    call = {
        "type": "identify",
        "userId": "u-42",
        "traits": {"email": "lan@example.com", "firstName": "Lan", "lastName": "Tran", "plan": "pro"},
        "context": {"locale": "vi", "timezone": "Asia/Ho_Chi_Minh"},
    }

    assert segment.contact_of(call) == {
        "email": "lan@example.com",
        "first_name": "Lan",
        "last_name": "Tran",
        "plan": "pro",
        "locale": "vi",
        "timezone": "Asia/Ho_Chi_Minh",
    }


def test_a_track_call_is_stored_once_by_its_message_id(client, writer, store) -> None:
    first = client.post("/v1/track", json=track(), headers=writer)
    retried = client.post("/v1/track", json=track(), headers=writer)

    assert first.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert retried.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert stored_events(store, "lan@example.com") == [("ajs-1", "cart_updated")]


def test_an_identify_call_upserts_the_contact(client, writer, store) -> None:
    call = {"userId": "lan@example.com", "traits": {"firstName": "Lan", "vip": True}}

    response = client.post("/v1/identify", json=call, headers=writer)

    assert response.status_code == 200
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
    assert lan is not None and (lan.first_name, lan.attributes) == ("Lan", {"vip": True})


def test_an_identify_call_takes_the_locale_a_browser_sends(client, writer, store) -> None:
    call = {"userId": "lan@example.com", "context": {"locale": "es-419"}}

    assert client.post("/v1/identify", json=call, headers=writer).status_code == 200
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
    assert lan is not None and lan.locale == "es-419"


def test_an_identify_call_with_a_locale_that_is_no_language_tag_is_rejected(client, writer, store) -> None:
    call = {"userId": "lan@example.com", "traits": {"locale": "English (US)"}}

    response = client.post("/v1/identify", json=call, headers=writer)

    assert response.status_code == 207
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "errors": [
                {
                    "field": "traits.locale",
                    "message": '"English (US)" is not a language tag (such as vi, en-GB or pt_BR)',
                }
            ],
        }
    ]
    with store.session() as session:
        assert contacts.by_email(session, "lan@example.com") is None


def test_an_identify_calls_traits_name_the_fields_whatever_their_case(client, writer, store) -> None:
    call = {"traits": {"Email": "Lan@Example.com", "First Name": "Lan", "plan": "pro"}}

    response = client.post("/v1/identify", json=call, headers=writer)

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
    assert lan is not None and (lan.first_name, lan.attributes) == ("Lan", {"plan": "pro"})


def test_a_track_calls_errors_name_the_segment_fields_it_sent(client, writer, store) -> None:
    calls = [
        track(timestamp="yesterday"),
        track(messageId="m" * 201),
        {**track(), "timestamp": None, "originalTimestamp": "last week"},
        track(context={}, userId="not an address", properties={"email": "lan@", "total": 1}),
    ]

    response = client.post("/v1/batch", json={"batch": calls}, headers=writer)

    assert [
        (rejection["index"], [error["field"] for error in rejection["errors"]])
        for rejection in response.json()["rejected"]
    ] == [(0, ["timestamp"]), (1, ["messageId"]), (2, ["originalTimestamp"]), (3, ["properties.email"])]


def test_an_identify_calls_errors_name_the_segment_fields_it_sent(client, writer, store) -> None:
    calls = [
        {"type": "identify", "userId": "lan@example.com", "traits": {"firstName": "Lan\nBcc: x"}},
        {"type": "identify", "userId": "lan@example.com", "context": {"timezone": "Mars/Olympus"}},
        {"type": "identify", "userId": "lan@example.com", "traits": {"stage": "vip"}},
    ]

    response = client.post("/v1/batch", json={"batch": calls}, headers=writer)

    assert [
        (rejection["index"], [error["field"] for error in rejection["errors"]])
        for rejection in response.json()["rejected"]
    ] == [(0, ["traits.firstName"]), (1, ["context.timezone"]), (2, ["traits.stage"])]


def test_a_call_sent_to_the_other_kinds_endpoint_is_rejected(client, writer, store) -> None:
    response = client.post("/v1/identify", json={**track(), "type": "track"}, headers=writer)

    assert response.status_code == 207
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "errors": [
                {
                    "field": "type",
                    "message": "a 'track' call sent to /v1/identify: "
                    "send it to its own endpoint or /v1/batch",
                }
            ],
        }
    ]
    with store.session() as session:
        assert contacts.by_email(session, "lan@example.com") is None


def test_a_batch_takes_track_and_identify_and_rejects_the_rest_by_index(client, writer, store) -> None:
    batch = {
        "batch": [
            {"type": "identify", "traits": {"email": "lan@example.com", "firstName": "Lan"}},
            track(messageId="ajs-2", context={}),  # its address comes from the batch's context
            {"type": "page", "name": "Home", "userId": "lan@example.com"},
            track(messageId="ajs-3", anonymousId="anon-7", userId=None, context={"traits": {}}),
        ],
        "context": {"traits": {"email": "lan@example.com"}},
    }

    response = client.post("/v1/batch", json=batch, headers=writer)

    assert response.status_code == 207
    assert response.json() == {
        "accepted": 2,
        "duplicates": 0,
        "rejected": [
            {
                "index": 2,
                "errors": [
                    {"field": "type", "message": "'page' calls are not taken here: send track or identify"}
                ],
            },
            {
                "index": 3,
                "errors": [
                    {
                        "field": "context.traits.email",
                        "message": "no email address: send it in context.traits.email (or traits.email), "
                        "or as the userId",
                    }
                ],
            },
        ],
    }
    assert stored_events(store, "lan@example.com") == [("ajs-2", "cart_updated")]


def test_a_batch_call_the_key_may_not_make_is_rejected_by_index(make_key, client, store) -> None:
    key = make_key("events:write", name="events-only")
    batch = {"batch": [track(), {"type": "identify", "traits": {"email": "minh@example.com"}}]}

    response = client.post("/v1/batch", json=batch, headers=bearer(key))

    assert response.status_code == 207
    assert response.json()["rejected"] == [
        {
            "index": 1,
            "errors": [
                {"field": "type", "message": "the API key events-only lacks the scope contacts:write"}
            ],
        }
    ]


def test_event_names_are_mapped_as_automator_toml_says(make_key, project, store) -> None:
    mapped = ApiSettings(segment_events={"Order Completed": "order_placed"})
    app = create_app(
        dataclasses.replace(project, settings=project.settings.model_copy(update={"api": mapped})), store
    )
    with TestClient(app) as client:
        client.post(
            "/v1/track", json=track(event="Order Completed"), headers=bearer(make_key("events:write"))
        )

    assert stored_events(store, "lan@example.com") == [("ajs-1", "order_placed")]
