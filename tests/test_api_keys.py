"""API keys: made by `automator keys create` and shown once (the store keeps a hash), listed
with their last use, revoked at once. A request without a key, with an unknown or a revoked
one is refused (401); a key without the endpoint's scope too (403). HTTP Basic with the key
as the user name works as Segment sends it. On both stores, through the real app."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from automator.api.keys import hash_of, new_key, presented_key
from automator.project import Project
from automator.store import Store, api_keys, audit
from automator.tables import ApiKey
from automator.web import create_app
from tests.conftest import utc

EVENT = {"id": "e1", "type": "cart_updated", "email": "lan@example.com", "at": "2026-11-20T03:00:00Z"}
NAMES = itertools.count(1)


@pytest.fixture
def make_key(store: Store) -> Callable[..., str]:
    """`make_key("events:write", …)`: a new key with these scopes; returns the key itself."""

    def make(*scopes: str, name: str | None = None) -> str:
        key = new_key()
        with store.session() as session:
            api_keys.add(
                session, name or f"key-{next(NAMES)}", hash_of(key), sorted(scopes), datetime.now(UTC)
            )
        return key

    return make


@pytest.fixture
def client(project: Project, store: Store) -> Iterator[TestClient]:
    """The daemon's web app, unsubscribe and the API, in this process."""
    with TestClient(create_app(project, store)) as client:
        yield client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def stored_key(store: Store, name: str) -> ApiKey:
    with store.session() as session:
        return session.execute(select(ApiKey).where(api_keys.KEYS.c.name == name)).scalar_one()


def test_a_key_is_printed_once_alone_on_the_last_line_and_only_its_hash_is_stored(cli, store) -> None:
    result = cli("keys", "create", "shop", "--scope", "events:write", "--scope", "contacts:write")

    assert result.exit_code == 0, result.output
    key = result.output.splitlines()[-1]
    assert key.startswith("ak_") and len(key) > 40 and " " not in key
    row = stored_key(store, "shop")
    assert row.key_hash == hash_of(key) and key not in row.key_hash
    assert row.scopes == ["contacts:write", "events:write"]
    assert key not in cli("keys", "list").output


def test_an_unknown_scope_or_a_taken_name_is_refused(cli) -> None:
    cli("keys", "create", "shop", "--scope", "events:write")

    unknown = cli("keys", "create", "other", "--scope", "events:read")
    taken = cli("keys", "create", "shop", "--scope", "contacts:write")

    assert unknown.exit_code == 1 and "unknown scope events:read" in unknown.output
    assert taken.exit_code == 1 and "there is already a key named shop" in taken.output


def test_keys_list_shows_scopes_created_last_used_and_revoked(cli, client) -> None:
    used = cli("keys", "create", "shop", "--scope", "events:write").output.splitlines()[-1]
    cli("keys", "create", "crm", "--scope", "contacts:write")
    cli("keys", "create", "old", "--scope", "events:write")
    cli("keys", "revoke", "old")
    client.post("/v1/events", json=EVENT, headers=bearer(used))

    lines = cli("keys", "list").output.splitlines()

    assert lines[0].split("\t") == ["name", "scopes", "created", "last used", "revoked"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:-1]}
    assert rows["crm"][1] == "contacts:write" and rows["crm"][3] == "never" and rows["crm"][4] == "-"
    assert rows["shop"][3] != "never" and rows["shop"][4] == "-"
    assert rows["old"][4] != "-"
    assert lines[-1] == "3 keys"


def test_last_use_is_written_at_most_once_a_minute(make_key, project, store) -> None:
    now = [utc("2026-11-20 03:00")]
    key = make_key("events:write", name="shop")
    with TestClient(create_app(project, store, lambda: now[0])) as client:
        for minute in (0, 0.5, 1.5):
            now[0] = utc("2026-11-20 03:00") + timedelta(minutes=minute)
            client.post("/v1/events", json=EVENT, headers=bearer(key))
            if minute == 0.5:
                assert stored_key(store, "shop").last_used_at == utc("2026-11-20 03:00")

    assert stored_key(store, "shop").last_used_at == utc("2026-11-20 03:01:30")


def test_revoking_a_key_refuses_it_at_once_and_is_audited(cli, client, store) -> None:
    key = cli("keys", "create", "shop", "--scope", "events:write").output.splitlines()[-1]
    assert client.post("/v1/events", json=EVENT, headers=bearer(key)).status_code == 200

    revoked = cli("keys", "revoke", "shop", "--by", "ops")
    refused = client.post("/v1/events", json=EVENT, headers=bearer(key))

    assert revoked.exit_code == 0 and revoked.output.strip() == "revoked the key shop"
    assert refused.status_code == 401
    assert refused.json() == {"detail": "the API key shop was revoked"}
    with store.session() as session:
        actions = [(entry.actor, entry.reason) for entry in audit.for_action(session, "revoke api key")]
    assert actions == [("ops", "shop")]


def test_revoking_an_unknown_key_names_the_keys_in_use(cli) -> None:
    cli("keys", "create", "shop", "--scope", "events:write")

    result = cli("keys", "revoke", "shpo")

    assert result.exit_code == 1 and "no key in use named shpo (keys in use: shop)" in result.output


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer ak_unknown"}, {"Authorization": "Token something"}],
    ids=["none", "unknown", "another-scheme"],
)
def test_a_request_without_a_known_key_is_refused_with_401(client, headers) -> None:
    response = client.post("/v1/events", json=EVENT, headers=headers)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_without_the_scope_is_refused_with_403_and_stores_nothing(make_key, client, store) -> None:
    key = make_key("contacts:write", name="crm")

    response = client.post("/v1/events", json=EVENT, headers=bearer(key))

    assert response.status_code == 403
    assert response.json() == {"detail": "the API key crm lacks the scope events:write"}
    erased = client.delete("/v1/contacts/lan@example.com", headers=bearer(key))
    assert erased.status_code == 403


def test_http_basic_with_the_key_as_user_name_is_accepted(make_key, client) -> None:
    key = make_key("events:write")
    basic = base64.b64encode(f"{key}:".encode()).decode()

    response = client.post("/v1/events", json=EVENT, headers={"Authorization": f"Basic {basic}"})

    assert response.status_code == 200


def test_the_key_is_found_in_bearer_and_basic_headers_only() -> None:
    assert presented_key("Bearer ak_1") == "ak_1"
    assert presented_key("bearer  ak_1 ") == "ak_1"
    assert presented_key("Basic " + base64.b64encode(b"ak_1:").decode()) == "ak_1"
    assert presented_key("Basic " + base64.b64encode(b"ak_1").decode()) == "ak_1"
    assert presented_key("Basic !!!") is None
    assert presented_key("Bearer") is None
    assert presented_key(None) is None
