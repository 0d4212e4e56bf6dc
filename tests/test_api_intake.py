"""`POST /v1/events` and `POST /v1/contacts`: one item or a batch, validated as the imports
validate a record; good items stored even beside bad ones (207), each bad one answered with
its index and fields; an event stored once per id; a body that is not JSON (400), not the
right shape (422), too big (413), or one request too many (429, Retry-After). On both stores,
through the real app in this process (tests/test_api_daemon.py does it over real HTTP)."""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from automator.api.limits import MAX_BODY, RateLimit
from automator.config import ApiSettings, load_settings
from automator.errors import ConfigError
from automator.store import contacts, events
from automator.tables import Event
from automator.web import create_app
from tests import test_api_keys
from tests.conftest import cart
from tests.test_api_keys import bearer

client, make_key = test_api_keys.client, test_api_keys.make_key  # fixtures


def event(number: int = 1, **fields: object) -> dict[str, object]:
    return {
        "id": f"evt-{number}",
        "type": "cart_updated",
        "email": f"shopper{number}@example.com",
        "at": "2026-11-20T03:00:00Z",
        "properties": cart(f"c{number}"),
        **fields,
    }


def nested(depth: int) -> object:
    """A list in a list…, `depth` lists deep."""
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture
def writer(make_key) -> dict[str, str]:
    return bearer(make_key("events:write", "contacts:write"))


def event_count(store) -> int:
    with store.session() as session:
        return int(session.execute(select(func.count()).select_from(Event)).scalar_one())


def test_one_event_is_stored_with_its_contact(client, writer, store) -> None:
    response = client.post("/v1/events", json=event(1), headers=writer)

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    with store.session() as session:
        contact = contacts.by_email(session, "shopper1@example.com")
        assert contact is not None and contact.id is not None
        [stored] = events.for_contact(session, contact.id)
    assert (stored.key, stored.type, stored.properties["cart_id"]) == ("evt-1", "cart_updated", "c1")


def test_a_replayed_event_is_a_duplicate_and_stored_once(client, writer, store) -> None:
    batch = {"batch": [event(n) for n in range(1, 4)]}
    client.post("/v1/events", json=batch, headers=writer)

    again = client.post("/v1/events", json=batch, headers=writer)

    assert again.json() == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert event_count(store) == 3


def test_an_event_without_an_id_is_known_again_by_its_content(client, writer, store) -> None:
    anonymous = {key: value for key, value in event(1).items() if key != "id"}

    first = client.post("/v1/events", json=anonymous, headers=writer).json()
    second = client.post("/v1/events", json=anonymous, headers=writer).json()

    assert (first["accepted"], second["duplicates"]) == (1, 1)
    assert event_count(store) == 1


def test_events_with_a_blank_id_are_not_duplicates_of_each_other(client, writer, store) -> None:
    client.post("/v1/events", json=event(1, id="  "), headers=writer)

    response = client.post("/v1/events", json=event(2, id="  "), headers=writer)

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert event_count(store) == 2


def test_good_events_are_stored_beside_bad_ones_which_are_answered_by_index(client, writer, store) -> None:
    batch = [
        event(1),
        event(2, email="not-an-address"),
        event(3),
        event(4, type="cart updated", at="yesterday"),
        "an event?",
        event(6, colour="blue"),
    ]

    response = client.post("/v1/events", json={"batch": batch}, headers=writer)

    assert response.status_code == 207
    body = response.json()
    assert (body["accepted"], body["duplicates"]) == (2, 0)
    rejected = {item["index"]: item["errors"] for item in body["rejected"]}
    assert sorted(rejected) == [1, 3, 4, 5]
    assert [error["field"] for error in rejected[1]] == ["email"]
    assert "is not valid" in rejected[1][0]["message"]
    assert {error["field"] for error in rejected[3]} == {"type", "at"}
    assert rejected[4] == [{"field": "", "message": "an event is a JSON object"}]
    assert rejected[5] == [{"field": "colour", "message": "Extra inputs are not permitted"}]
    assert event_count(store) == 2


@pytest.mark.parametrize("at", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+07:00"])
def test_a_time_whose_utc_time_is_outside_the_calendar_is_rejected_beside_good_events(
    client, writer, store, at
) -> None:
    response = client.post("/v1/events", json={"batch": [event(1, at=at), event(2)]}, headers=writer)

    assert response.status_code == 207
    [rejected] = response.json()["rejected"]
    assert rejected["index"] == 0
    assert rejected["errors"][0]["field"] == "at"
    assert "is out of range" in rejected["errors"][0]["message"]
    assert event_count(store) == 1


def test_an_event_id_longer_than_the_store_keeps_is_rejected(client, writer, store) -> None:
    response = client.post("/v1/events", json=event(1, id="x" * 201), headers=writer)

    assert response.status_code == 207
    assert response.json()["rejected"] == [
        {"index": 0, "errors": [{"field": "id", "message": "at most 200 characters"}]}
    ]


def test_an_email_that_is_not_text_is_answered_with_what_it_is(client, writer, store) -> None:
    batch = [event(1, email=["lan@example.com"]), event(2, email=84901234567), event(3, email=None)]

    response = client.post("/v1/events", json={"batch": batch}, headers=writer)

    assert [item["errors"] for item in response.json()["rejected"]] == [
        [{"field": "email", "message": "an email address is text, not a list"}],
        [{"field": "email", "message": "an email address is text, not a number"}],
        [{"field": "email", "message": "email is required"}],
    ]
    assert event_count(store) == 0


def test_contacts_are_upserted_by_email_and_a_later_one_is_merged_into_the_earlier(
    client, writer, store
) -> None:
    client.post("/v1/contacts", json={"email": "Lan@Example.com", "first_name": "Lan"}, headers=writer)
    batch = [
        {"email": "lan@example.com", "vip": "yes", "renews_at": "2027-01-15"},
        {"email": "minh@example.com", "first_name": "Minh", "stage": "retention"},
        {"email": "LAN@example.com", "vip": "no"},
    ]

    response = client.post("/v1/contacts", json={"batch": batch}, headers=writer)

    assert response.json() == {"accepted": 3, "duplicates": 0, "merged": 1, "rejected": []}
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
        minh = contacts.by_email(session, "minh@example.com")
    assert lan is not None and minh is not None
    assert (lan.first_name, lan.attributes) == ("Lan", {"vip": "no", "renews_at": "2027-01-15"})
    assert (minh.first_name, minh.stage) == ("Minh", "retention")


def test_contact_keys_name_the_fields_whatever_their_case(client, writer, store) -> None:
    response = client.post(
        "/v1/contacts", json={"Email": "lan@example.com", "First_Name": "Lan", "plan": "pro"}, headers=writer
    )

    assert response.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
    assert lan is not None and (lan.first_name, lan.attributes) == ("Lan", {"plan": "pro"})


def test_a_contact_may_name_its_email_email_address_as_mailchimp_does(client, writer, store) -> None:
    batch = [
        {"email_address": "lan@example.com", "first_name": "Lan"},
        {"email": "minh@example.com", "Email Address": "minh@example.org"},
        {"e-mail": "binh@example.com", "email_address": "binh@example.org"},
    ]

    response = client.post("/v1/contacts", json={"batch": batch}, headers=writer)

    assert response.json()["rejected"] == [
        {
            "index": 2,
            "errors": [
                {
                    "field": "",
                    "message": '"e-mail" and "email_address" could each be the email address: '
                    "name one of them email",
                }
            ],
        }
    ]
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
        minh = contacts.by_email(session, "minh@example.com")
        binh = contacts.by_email(session, "binh@example.com")
    assert lan is not None and lan.first_name == "Lan"
    assert minh is not None and minh.attributes == {"Email Address": "minh@example.org"}
    assert binh is None


def test_a_contact_with_an_empty_key_or_two_keys_for_one_field_is_rejected(client, writer, store) -> None:
    batch = [
        {"email": "an@example.com", "": "pro"},
        {"email": "binh@example.com", "EMAIL": "binh@example.org"},
    ]

    response = client.post("/v1/contacts", json={"batch": batch}, headers=writer)

    assert response.json()["rejected"] == [
        {
            "index": 0,
            "errors": [{"field": "", "message": 'a field with an empty name (""): every field needs a name'}],
        },
        {"index": 1, "errors": [{"field": "", "message": "email and EMAIL both name the field email"}]},
    ]


def test_a_contact_may_have_an_attribute_called_batch(client, writer, store) -> None:
    response = client.post(
        "/v1/contacts", json={"email": "lan@example.com", "batch": "2026-A"}, headers=writer
    )

    assert response.json()["accepted"] == 1
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
    assert lan is not None and lan.attributes == {"batch": "2026-A"}


def test_a_bad_contact_is_answered_with_its_field(client, writer) -> None:
    batch = [
        {"email": "lan@example.com", "stage": "vip"},
        {"email": "minh@example.com", "timezone": "Mars/Olympus"},
        {"email": "an@example.com", "first_name": "An\nBcc: x@example.com"},
        {"first_name": "Nobody"},
        {"email": "yen@example.com", "timezone": "Asia/Ho_Chi_Minh", "renews_at": "0001-01-01"},
        {"email": "hoa@example.com", "first_name": "Hoa\x1b[2J", "city": "Huế\r\n"},
        {"email": "tuan@example.com", "locale": "Vietnamese"},
    ]

    response = client.post("/v1/contacts", json={"batch": batch}, headers=writer)

    assert response.status_code == 207
    rejected = {item["index"]: item["errors"] for item in response.json()["rejected"]}
    fields = {index: [error["field"] for error in errors] for index, errors in rejected.items()}
    assert fields == {
        0: ["stage"],
        1: ["timezone"],
        2: ["first_name"],
        3: ["email"],
        4: ["renews_at"],
        5: ["first_name", "city"],
        6: ["locale"],
    }
    assert rejected[2][0]["message"].startswith("holds a line break (\\n): a contact's fields")
    assert (
        rejected[4][0]["message"]
        == '"0001-01-01" is out of range: its UTC time is before year 1 or after 9999'
    )
    assert rejected[6][0]["message"] == '"Vietnamese" is not a language tag (such as vi, en-GB or pt_BR)'


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "the body is not JSON"),
        (b"\xff\xfe\xfa", 400, "the body is not JSON"),
        # Not JSON, though Python's json reads them: stored, they broke the rules' queries.
        (
            json.dumps({"batch": [event(1), event(2, properties={"total": float("nan")})]}).encode(),
            400,
            "the body",
        ),
        (json.dumps(event(1, properties={"total": float("inf")})).encode(), 400, "the body is not JSON"),
        (b'{"batch": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400, "the body is not JSON"),
        (
            json.dumps(event(1, properties={"deep": nested(31)})).encode(),
            400,
            "the body is not JSON: lists and objects nested more than 32 deep",
        ),
        (b"[1, 2]", 422, 'the body is one event (a JSON object) or {"batch": [...]}'),
        (b'{"batch": {"id": "x"}}', 422, "batch: a list of at most 1000 events"),
        (
            json.dumps({"batch": [event(1)] * 1001}).encode(),
            422,
            "batch: at most 1000 events, this one holds 1001",
        ),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "nan",
        "infinity",
        "nested-100k",
        "nested-33",
        "a-list",
        "batch-not-a-list",
        "batch-too-long",
    ],
)
def test_a_body_of_the_wrong_kind_is_refused_with_a_message(
    client, writer, store, body, status, says
) -> None:
    response = client.post("/v1/events", content=body, headers=writer)

    assert response.status_code == status
    assert response.json()["detail"].startswith(says)
    assert event_count(store) == 0


def test_a_body_that_is_not_utf8_is_refused_with_where_its_first_other_byte_is(client, writer) -> None:
    body = '{"email": "rene@example.com",\n "first_name": "René"}'.encode("latin-1")

    response = client.post("/v1/contacts", content=body, headers=writer)

    assert response.status_code == 400
    assert response.json() == {
        "detail": "the body is not JSON: not UTF-8 text: byte 0xe9 at line 2, column 20"
    }


def test_a_body_over_5_mb_is_refused_by_its_content_length(client, writer) -> None:
    body = b" " * (MAX_BODY + 1)

    response = client.post("/v1/events", content=body, headers=writer)

    assert response.status_code == 413
    assert response.json() == {"detail": "the body passes 5 MB: send smaller batches"}


def test_a_gzip_body_is_decompressed(client, writer, store) -> None:
    body = gzip.compress(json.dumps({"batch": [event(1), event(2)]}).encode())
    headers = {**writer, "Content-Encoding": "gzip"}

    response = client.post("/v1/events", content=body, headers=headers)

    assert response.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert event_count(store) == 2


def test_a_gzip_body_over_5_mb_once_decompressed_is_refused(client, writer) -> None:
    body = gzip.compress(b" " * (MAX_BODY + 1))
    assert len(body) < MAX_BODY // 100

    response = client.post("/v1/events", content=body, headers={**writer, "Content-Encoding": "gzip"})

    assert response.status_code == 413
    assert response.json() == {"detail": "the body passes 5 MB once decompressed: send smaller batches"}


def test_a_body_said_to_be_gzip_that_is_not_is_refused(client, writer) -> None:
    sent = json.dumps(event(1)).encode()

    response = client.post("/v1/events", content=sent, headers={**writer, "Content-Encoding": "gzip"})
    cut = client.post(
        "/v1/events", content=gzip.compress(sent)[:-12], headers={**writer, "Content-Encoding": "gzip"}
    )

    assert (response.status_code, cut.status_code) == (400, 400)
    assert response.json()["detail"].startswith("the body is sent as gzip, but it is not gzip: ")
    assert cut.json()["detail"] == (
        "the body is sent as gzip, but its gzip data ends before the end of what it compresses"
    )


def test_a_body_in_another_content_encoding_is_refused_with_415(client, writer) -> None:
    response = client.post("/v1/events", content=b"...", headers={**writer, "Content-Encoding": "br"})

    assert response.status_code == 415
    assert response.json() == {"detail": "Content-Encoding br is not taken: send the body as it is, or gzip"}


def test_a_streamed_body_over_5_mb_is_refused_when_its_bytes_pass_the_limit(client, writer) -> None:
    def chunks() -> Iterator[bytes]:  # sent chunked: no Content-Length to go by
        for _ in range(6):
            yield b" " * (1024 * 1024)

    response = client.post("/v1/events", content=chunks(), headers=writer)

    assert "content-length" not in response.request.headers
    assert response.status_code == 413


def test_too_many_requests_for_a_key_are_refused_with_retry_after(make_key, project, store) -> None:
    limited = project.settings.model_copy(update={"api": ApiSettings(requests_per_second=0.5, burst=2)})
    app = create_app(dataclasses.replace(project, settings=limited), store)
    key, other = make_key("events:write"), make_key("events:write")
    with TestClient(app) as client:
        answers = [client.post("/v1/events", json=event(n), headers=bearer(key)) for n in range(3)]
        from_another_key = client.post("/v1/events", json=event(9), headers=bearer(other))

    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert answers[2].headers["Retry-After"] == "2"
    assert from_another_key.status_code == 200


@pytest.mark.parametrize("rate", ["inf", "nan", "-inf"])
def test_a_rate_that_is_no_finite_number_is_refused_naming_the_file_line_and_field(tmp_path, rate) -> None:
    (tmp_path / "automator.toml").write_text(
        f'timezone = "UTC"\n\n[api]\nrequests_per_second = {rate}\n', encoding="utf-8"
    )

    with pytest.raises(ConfigError) as refused:
        load_settings(tmp_path, {})

    assert str(refused.value) == "automator.toml:4: api.requests_per_second: must be a finite number"


def test_a_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    rate = RateLimit(per_second=10, burst=2, clock=lambda: now[0])

    taken = [rate.wait("k"), rate.wait("k"), rate.wait("k")]
    now[0] = 0.1
    refilled = rate.wait("k")

    assert taken == [0, 0, 1] and refilled == 0
    assert rate.wait("k") == 1 and rate.wait("other") == 0
