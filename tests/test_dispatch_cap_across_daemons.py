"""Two dispatchers on one PostgreSQL claiming one contact's messages at the same moment: the
second counts the first's messages for the frequency cap (at most 2 a day) once the first's
claim has committed, instead of sending a third. Meanwhile it claims the other contacts of
its batch; a batch of that contact alone waits for the first's claim."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from automator.dispatch.claims import Taken
from automator.engine import Engine, TickReport
from automator.project import Project
from automator.store import Store, claims
from automator.testing import RecordingTransport
from tests.conftest import cart, utc

NOW = utc("2026-11-20 04:00")  # 11:00 in Ho Chi Minh City: no quiet hours
WAIT = 10.0  # seconds


def waiting_for_a_lock(store: Store) -> bool:
    """Whether some transaction waits for an advisory lock now."""
    with store.engine.connect() as connection:
        query = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        return bool(connection.execute(text(query)).scalar())


def holding_the_first_claim_open(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """A claim made in a thread named "first" stays open, once it has claimed, until
    `release` is set; `claimed` is set then."""
    claimed, release = threading.Event(), threading.Event()
    original = claims.claim

    def claim_then_hold(*args: Any, **kwargs: Any) -> Any:
        taken = original(*args, **kwargs)
        if threading.current_thread().name == "first":
            claimed.set()
            assert release.wait(WAIT), "the test never let the first claim commit"
        return taken

    monkeypatch.setattr(claims, "claim", claim_then_hold)
    return claimed, release


def outcomes(taken) -> list[tuple[str, str]]:
    """(rule, outcome) of each message a claim did not take."""
    return [(one.rule_id, one.outcome) for one in taken.outcomes]


def test_a_second_claim_of_a_contact_waits_for_the_first_and_respects_the_cap(
    project: Project,
    store: Store,
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("on SQLite a claim holds the write lock: claims never overlap")
    make_contact("lan@example.com")
    for number in range(3):
        at = NOW - timedelta(hours=2, minutes=number)
        make_event("cart_updated", at, id=f"cart-{number}", **cart(f"c{number}"))
    engine = Engine(project, store, RecordingTransport())
    engine.evaluate(NOW, TickReport(NOW))
    first, second = engine.dispatcher(), engine.dispatcher()
    claimed, release = holding_the_first_claim_open(monkeypatch)
    results: dict[str, Taken] = {}

    def take(name: str, dispatcher: Any) -> threading.Thread:
        thread = threading.Thread(
            target=lambda: results.__setitem__(name, dispatcher.claims.take(NOW, 2)), name=name
        )
        thread.start()
        return thread

    threads = [take("first", first)]
    assert claimed.wait(WAIT)
    threads.append(take("second", second))
    deadline = time.monotonic() + WAIT
    while not waiting_for_a_lock(store):
        assert time.monotonic() < deadline, "the second claim did not wait for the first"
        time.sleep(0.02)
    release.set()
    for thread in threads:
        thread.join(WAIT)

    assert len(results["first"].messages) == 2
    assert results["second"].messages == []
    assert outcomes(results["second"]) == [("abandoned_cart", "waiting: frequency cap")]
    engine.close()


def test_a_claim_leaves_a_contact_another_claim_holds_for_later_and_takes_the_others(
    project: Project,
    store: Store,
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Lan's first two carts are in the first claim, held open; the second claim's batch is
    Lan's third cart and Hoa's. It takes Hoa's at once, without waiting, and leaves Lan's in
    the queue; its next claim, after the first's, counts Lan's two for the cap."""
    if not database_url.startswith("postgresql"):
        pytest.skip("on SQLite a claim holds the write lock: claims never overlap")
    make_contact("lan@example.com")
    make_contact("hoa@example.com")
    for number in range(3):
        at = NOW - timedelta(hours=2, minutes=number)
        make_event("cart_updated", at, id=f"cart-{number}", **cart(f"c{number}"))
    make_event("cart_updated", NOW - timedelta(hours=1), "hoa@example.com", id="hoa-cart", **cart("h1"))
    engine = Engine(project, store, RecordingTransport())
    engine.evaluate(NOW, TickReport(NOW))
    first, second = engine.dispatcher(), engine.dispatcher()
    claimed, release = holding_the_first_claim_open(monkeypatch)
    results: dict[str, Taken] = {}
    holder = threading.Thread(
        target=lambda: results.__setitem__("first", first.claims.take(NOW, 2)), name="first"
    )
    holder.start()
    assert claimed.wait(WAIT)
    try:
        beside = second.claims.take(NOW, 2)  # while the first claim is still open
        waited = waiting_for_a_lock(store)
    finally:
        release.set()
        holder.join(WAIT)
    after = second.claims.take(NOW, 2)

    assert [message.email for message in results["first"].messages] == ["lan@example.com"] * 2
    assert [message.email for message in beside.messages] == ["hoa@example.com"]
    assert (outcomes(beside), beside.more, waited) == ([], True, False)
    assert (after.messages, outcomes(after)) == ([], [("abandoned_cart", "waiting: frequency cap")])
    engine.close()
