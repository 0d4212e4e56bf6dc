"""The HTTP API over real HTTP, against `automator run --listen` in a subprocess, as a shop's
backend meets it: keys and scopes, per-item errors, 413, 429, Segment's shapes, erasure,
nothing lost or stored twice under concurrent clients, and a cart posted with curl's
request becoming the abandoned-cart email an hour later. On both stores.

The fine-grained cases run in-process (tests/test_api_*.py); these check that the daemon
serves the same answers over a socket, beside its ticks and dispatches."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from sqlalchemy import func, select

from automator.store import Store, contacts
from automator.tables import Event
from tests.conftest import cart, statuses
from tests.smtp_server import free_port
from tests.test_daemon import AUTOMATOR, SETTINGS, DaemonProcess

STARTUP = 30.0  # seconds a daemon may take to start and answer /health
SENT = 30.0  # seconds for a due message to be queued by a tick and written to the outbox


class Api:
    """A running daemon's HTTP API, and the key made for the test."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    def post(self, path: str, body: Any, key: str | None = None, **options: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key or self.key}"}
        return httpx.post(f"{self.url}{path}", json=body, headers=headers, timeout=30, **options)


@pytest.fixture
def start_api(
    project_dir: Path, process_env: dict[str, str], cli: Callable[..., Any], tmp_path: Path
) -> Iterator[Callable[..., Api]]:
    """`start_api(settings="")`: `automator run --listen` on a free port with SETTINGS (and
    `settings` after them), and a key for events and contacts (the same for every daemon the
    test starts); killed at the end if still running."""
    started: list[DaemonProcess] = []
    keys: list[str] = []

    def start(settings: str = "", *options: str) -> Api:
        (project_dir / "automator.toml").write_text(SETTINGS + settings, encoding="utf-8")
        if not keys:
            made = cli("keys", "create", "shop", "--scope", "events:write", "--scope", "contacts:write")
            keys.append(made.output.splitlines()[-1])
        port = free_port()
        args = [*AUTOMATOR, "--project", str(project_dir), "run", "--log-format", "json"]
        args += ["--listen", f"127.0.0.1:{port}", "--dispatch-interval", "0.2", *options]
        daemon = DaemonProcess(args, process_env, tmp_path / f"daemon-{len(started) + 1}.log")
        started.append(daemon)
        url = f"http://127.0.0.1:{port}"
        daemon.wait_until(lambda: _answers(f"{url}/health"), STARTUP, "an answer on /health")
        return Api(url, keys[0])

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def event(number: int, at: datetime | None = None, contacts: int = 1000) -> dict[str, Any]:
    moment = at or datetime(2026, 11, 20, 3, tzinfo=UTC)
    return {
        "id": f"evt-{number}",
        "type": "cart_updated",
        "email": f"shopper{number % contacts}@example.com",
        "at": moment.isoformat(),
        "properties": cart(f"c{number}"),
    }


def event_count(store: Store) -> int:
    with store.session() as session:
        return int(session.execute(select(func.count()).select_from(Event)).scalar_one())


def test_keys_and_scopes_are_checked_over_http(start_api, cli) -> None:
    api = start_api()
    privacy_key = cli("keys", "create", "other", "--scope", "contacts:erase").output.splitlines()[-1]

    no_key = httpx.post(f"{api.url}/v1/events", json=event(1), timeout=10)
    wrong_scope = api.post("/v1/events", event(1), key=privacy_key)
    basic = httpx.post(f"{api.url}/v1/events", json=event(1), auth=(api.key, ""), timeout=10)
    cli("keys", "revoke", "shop")
    revoked = api.post("/v1/events", event(2))

    answers = [no_key, wrong_scope, basic]
    assert [answer.status_code for answer in answers] == [401, 403, 200], [answer.text for answer in answers]
    assert revoked.status_code == 401


def test_a_batch_with_bad_items_stores_the_good_ones_and_answers_207(start_api, store) -> None:
    api = start_api()
    batch = [event(1), {**event(2), "email": "nobody"}, event(3)]

    response = api.post("/v1/events", {"batch": batch})

    assert response.status_code == 207
    assert response.json()["accepted"] == 2
    assert [item["index"] for item in response.json()["rejected"]] == [1]
    assert event_count(store) == 2


def test_a_body_over_5_mb_is_refused_with_413(start_api) -> None:
    api = start_api()
    huge = {"batch": [{**event(n), "properties": {"note": "x" * 6000}} for n in range(1000)]}

    response = api.post("/v1/events", huge)

    assert response.status_code == 413


def test_too_many_requests_are_refused_with_429_and_retry_after(start_api) -> None:
    api = start_api("\n[api]\nrequests_per_second = 0.2\nburst = 3\n")

    answers = [api.post("/v1/events", event(n)) for n in range(4)]

    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[3].headers["Retry-After"] == "5"


def test_segment_calls_are_taken_as_segment_sends_them(start_api, store) -> None:
    api = start_api('\n[api.segment_events]\n"Order Completed" = "order_placed"\n')
    identify = {
        "type": "identify",
        "userId": "u-7",
        "traits": {"email": "lan@example.com", "firstName": "Lan"},
    }
    order = {"type": "track", "event": "Order Completed", "messageId": "ajs-9", "userId": "lan@example.com"}
    order |= {"timestamp": "2026-11-20T03:00:00Z", "properties": {"order_id": "o-1", "total": 90}}

    batch = httpx.post(
        f"{api.url}/v1/batch", json={"batch": [identify, order]}, auth=(api.key, ""), timeout=10
    )
    retried = httpx.post(f"{api.url}/v1/track", json=order, auth=(api.key, ""), timeout=10)

    assert batch.json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert retried.json() == {"accepted": 0, "duplicates": 1, "rejected": []}
    with store.session() as session:
        lan = contacts.by_email(session, "lan@example.com")
    assert lan is not None and (lan.first_name, lan.stage) == ("Lan", "retention")


def send_concurrently(apis: list[Api], batches: list[list[dict[str, Any]]]) -> list[int]:
    """Every batch posted by 8 clients at once, in turn to each daemon: the sums of the
    answers' accepted, duplicates and rejected."""

    def send(numbered: tuple[int, list[dict[str, Any]]]) -> tuple[int, int, int]:
        api = apis[numbered[0] % len(apis)]
        with httpx.Client(timeout=60) as client:
            answer = client.post(
                f"{api.url}/v1/events",
                json={"batch": numbered[1]},
                headers={"Authorization": f"Bearer {api.key}"},
            )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["accepted"], body["duplicates"], len(body["rejected"])

    with ThreadPoolExecutor(8) as clients:
        answers = list(clients.map(send, enumerate(batches)))
    return [sum(column) for column in zip(*answers, strict=True)]


def cart_batches(events: int, contacts: int) -> list[list[dict[str, Any]]]:
    return [
        [event(n, contacts=contacts) for n in range(start, start + 100)] for start in range(0, events, 100)
    ]


def test_concurrent_clients_lose_nothing_and_a_replay_is_all_duplicates(start_api, store) -> None:
    api = start_api()
    batches = cart_batches(4000, contacts=300)
    # Every batch is sent by two clients at once: the same events race each other, and
    # the same new contacts are made by concurrent requests.
    first = send_concurrently([api], [batch for batch in batches for _ in range(2)])
    replay = send_concurrently([api], batches)

    assert first == [4000, 4000, 0]
    assert replay == [0, 4000, 0]
    assert event_count(store) == 4000


def test_two_daemons_on_one_postgresql_store_each_event_once(start_api, store, database_url) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("a second daemon on a SQLite file refuses to start (tests/test_daemon.py)")
    apis = [start_api(), start_api()]
    batches = cart_batches(3000, contacts=2000)  # most events make a contact: their races too

    first = send_concurrently(apis, [batch for batch in batches for _ in range(2)])
    replay = send_concurrently(apis, batches)

    assert (first, replay) == ([3000, 3000, 0], [0, 3000, 0])
    assert event_count(store) == 3000


def test_erasure_over_http_leaves_a_hashed_suppression(start_api, cli, store) -> None:
    api = start_api()
    api.post("/v1/contacts", {"email": "lan@example.com", "first_name": "Lan"})
    privacy_key = cli("keys", "create", "dpo", "--scope", "contacts:erase").output.splitlines()[-1]

    response = httpx.delete(
        f"{api.url}/v1/contacts/lan%40example.com",
        headers={"Authorization": f"Bearer {privacy_key}"},
        timeout=10,
    )

    assert response.status_code == 200 and response.json()["found"] is True
    with store.session() as session:
        assert contacts.by_email(session, "lan@example.com") is None
    assert "sha256:" in cli("suppressions", "list").output


def test_a_cart_posted_to_the_api_becomes_the_abandoned_cart_email(start_api, project_dir, store) -> None:
    api = start_api("", "--tick-interval", "0.5")
    left = datetime.now(UTC) - timedelta(hours=1, minutes=5)

    response = api.post("/v1/events", event(1, at=left))

    assert response.status_code == 200
    outbox = project_dir / "outbox"
    deadline = time.monotonic() + SENT
    while statuses(store).get("sent") != 1:
        assert time.monotonic() < deadline, f"not sent within {SENT:g} s: {statuses(store)}"
        time.sleep(0.1)
    [email] = list(itertools.islice(outbox.glob("*.eml"), 2))
    assert "To: shopper1@example.com" in email.read_text(encoding="utf-8")
