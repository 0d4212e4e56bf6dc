"""The dispatcher works a batch at a time: a claim's re-checks and state changes cost the
same few statements for five messages as for twenty, and write what one message at a time
would have written (a history line each, a compare-and-set each)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from automator.engine import Engine, TickReport
from automator.status import Status
from automator.store import Store, claims, messages
from automator.store.messages import Change
from automator.testing import RecordingTransport
from tests.conftest import all_messages, cart, history_of, utc

QUEUED_AT = utc("2026-11-21 01:30")  # 20:30 in New York: before its quiet hours
SENT_AT = utc("2026-11-21 02:30")  # 21:30 in New York: inside them
ORDER = {"order_id": "A-1", "total": 1_250_000, "currency": "VND"}


@contextmanager
def counting_statements(store: Store) -> Iterator[list[str]]:
    """Every statement the store's engine runs meanwhile (an executemany counts once)."""
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith("PRAGMA"):  # the log's checkpoints come when they come
            statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(store.engine, "before_cursor_execute", count)


def shop(
    count: int,
    make_contact: Callable[..., int],
    make_event: Callable[..., str],
    engine: Engine,
    name: str = "shopper",
) -> None:
    """`count` carts due at QUEUED_AT and queued then; by SENT_AT, a third of the shoppers
    ordered (their message is cancelled), a third are in New York's quiet hours (theirs
    waits), and a third may be sent."""
    for number in range(count):
        email = f"{name}{number}@example.com"
        zone = "America/New_York" if number % 3 == 1 else "Asia/Ho_Chi_Minh"
        make_contact(email, timezone=zone)
        cart_at = QUEUED_AT - timedelta(hours=1, minutes=5)
        make_event(
            "cart_updated", cart_at, email=email, id=f"{name}-cart-{number}", **cart(f"{name}{number}")
        )
    engine.evaluate(QUEUED_AT, TickReport(QUEUED_AT))
    for number in range(0, count, 3):
        email, at = f"{name}{number}@example.com", QUEUED_AT + timedelta(minutes=10)
        make_event("order_placed", at, email=email, id=f"{name}-order-{number}", **ORDER)


def dispatch(engine: Engine, store: Store, now: datetime) -> tuple[TickReport, list[str]]:
    """Dispatch what is due at `now`; the report, and the statements its claims ran (the
    outcomes are recorded a group at a time, as the transport answers)."""
    report = TickReport(now)
    dispatcher = engine.dispatcher()
    take = dispatcher.claims.take
    claimed: list[str] = []

    def counted(*args: Any) -> Any:
        with counting_statements(store) as statements:
            taken = take(*args)
        claimed.extend(statements)
        return taken

    dispatcher.claims.take = counted  # type: ignore[method-assign]
    asyncio.run(dispatcher.run(now, report))
    return report, claimed


def test_a_claim_costs_the_same_statements_for_twenty_messages_as_for_five(
    make_contact, make_event, engine: Engine, store: Store
) -> None:
    counts = []
    for count, name in ((5, "few"), (20, "many")):
        shop(count, make_contact, make_event, engine, name)
        report, statements = dispatch(engine, store, SENT_AT)
        outcomes = report.rules["abandoned_cart"].outcomes
        assert outcomes["cancelled: order_placed"] > 1 and outcomes["waiting: quiet hours"] > 1
        counts.append(len(statements))

    assert counts[0] == counts[1]


def test_a_batch_writes_each_verdict_with_its_own_history_line(
    make_contact, make_event, engine: Engine, store: Store, transport: RecordingTransport
) -> None:
    shop(6, make_contact, make_event, engine)

    dispatch(engine, store, SENT_AT)

    by_email = {message.email: message for message in all_messages(store)}
    ordered, waiting = by_email["shopper0@example.com"], by_email["shopper1@example.com"]
    sent = by_email["shopper2@example.com"]
    assert ordered.status == Status.CANCELLED
    assert history_of(store, ordered.id)[-1].reason.startswith("order_placed: order_placed at ")
    assert (waiting.status, waiting.send_at) == (Status.QUEUED, utc("2026-11-21 13:00"))  # 08:00 in New York
    assert history_of(store, waiting.id)[-1].reason == (
        "waiting until 2026-11-21T13:00:00+00:00: quiet hours in the contact's time zone"
    )
    assert [line.status for line in history_of(store, sent.id)] == ["queued", "sending", "sent"]
    assert sorted(str(email["To"]) for email in transport.sent) == [
        "shopper2@example.com",
        "shopper5@example.com",
    ]


def test_a_wait_leaves_content_that_does_not_show_the_send_time_as_it_is(
    make_contact, make_event, engine: Engine, store: Store
) -> None:
    shop(3, make_contact, make_event, engine)
    [waiting] = [message for message in all_messages(store) if message.email == "shopper1@example.com"]
    with store.session() as session:
        before = messages.content(session, waiting.id or 0)

    dispatch(engine, store, SENT_AT)

    with store.session() as session:
        assert messages.content(session, waiting.id or 0) == before
    assert [line.reason for line in history_of(store, waiting.id) if "re-rendered" in line.reason] == []


def test_a_wait_renders_the_days_left_again_for_the_new_send_time(
    make_contact, engine: Engine, store: Store, transport: RecordingTransport
) -> None:
    # Due 2026-11-20 13:00 UTC, queued at 20:30 in Ho Chi Minh City: "3 days" (2.98).
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh", trial_ends_at="2026-11-23T13:00:00Z")
    engine.evaluate(utc("2026-11-20 13:30"), TickReport(utc("2026-11-20 13:30")))
    [message] = all_messages(store)
    assert message.subject == "Your Lotus Shop trial ends in 3 days"

    # 21:30 there: it waits until 08:00 (01:00 UTC), 2.5 days before the trial ends.
    dispatch(engine, store, utc("2026-11-20 14:30"))

    [message] = all_messages(store)
    assert (message.status, message.send_at) == (Status.QUEUED, utc("2026-11-21 01:00"))
    assert message.subject == "Your Lotus Shop trial ends in 2 days"
    assert history_of(store, message.id)[-1].reason == "re-rendered for the new send time"
    assert transport.sent == []


def test_a_batch_with_nothing_to_send_does_not_end_the_run_while_more_are_due(
    make_contact, make_event, engine: Engine, store: Store, transport: RecordingTransport
) -> None:
    # The New York carts were queued first (an earlier send time): a batch of their own.
    for number, zone in enumerate(["America/New_York"] * 2 + ["Asia/Ho_Chi_Minh"] * 2):
        email = f"shopper{number}@example.com"
        make_contact(email, timezone=zone)
        at = QUEUED_AT - timedelta(hours=2 if number < 2 else 1, minutes=5)
        make_event("cart_updated", at, email=email, id=f"cart-{number}", **cart(f"c{number}"))
        queued_at = QUEUED_AT - timedelta(minutes=30 if number < 2 else 0)
        engine.evaluate(queued_at, TickReport(queued_at))

    asyncio.run(engine.dispatcher().run(SENT_AT, TickReport(SENT_AT), batch_size=2))

    assert sorted(str(email["To"]) for email in transport.sent) == [
        "shopper2@example.com",
        "shopper3@example.com",
    ]


def test_a_change_made_by_someone_else_first_is_left_alone_and_gets_no_history_line(
    make_contact, make_event, engine: Engine, store: Store
) -> None:
    shop(3, make_contact, make_event, engine)
    first, second, _ = sorted(message.id or 0 for message in all_messages(store))
    with store.session() as session:
        messages.change(session, messages.known(session, first), Status.HELD, SENT_AT, "held by mai")

    with store.session() as session:
        made = messages.change_many(
            session,
            [
                Change(first, Status.QUEUED, "waiting", {"send_at": SENT_AT + timedelta(hours=1)}),
                Change(second, Status.QUEUED, "waiting", {"send_at": SENT_AT + timedelta(hours=2)}),
            ],
            SENT_AT,
            expected=(Status.QUEUED,),
        )

    assert [change.message_id for change in made] == [second]
    by_id = {message.id: message for message in all_messages(store)}
    assert (by_id[first].status, by_id[second].send_at) == (Status.HELD, SENT_AT + timedelta(hours=2))
    assert history_of(store, first)[-1].reason == "held by mai"
    assert history_of(store, second)[-1].reason == "waiting"


def test_messages_being_sent_count_for_the_frequency_cap_as_sent_now(
    make_contact, make_event, engine: Engine, store: Store
) -> None:
    shop(3, make_contact, make_event, engine)
    first, second, _ = sorted(all_messages(store), key=lambda message: message.id or 0)
    with store.transaction() as session:
        due = {message.id: message for message in claims.due(session, SENT_AT, 10)}
        claims.claim(session, [due[first.id]], SENT_AT, "tick:here", SENT_AT + timedelta(minutes=5))
        claims.claim(session, [due[second.id]], SENT_AT, "tick:here", SENT_AT + timedelta(minutes=5))
    with store.session() as session:
        claims.mark_sent(session, [due[second.id]], SENT_AT)

    with store.session() as session:
        found = claims.sent_times(
            session,
            {first.contact_id, second.contact_id},
            SENT_AT - timedelta(days=1),
            SENT_AT + timedelta(1),
        )

    assert found == {first.contact_id: [SENT_AT + timedelta(1)], second.contact_id: [SENT_AT]}


def test_a_claim_runs_without_parallel_workers_on_postgresql(
    make_contact, make_event, engine: Engine, store: Store, database_url: str, monkeypatch
) -> None:
    """A claim's reads are small, whatever the planner makes of their hundreds of ids."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite plans no parallel workers")
    shop(3, make_contact, make_event, engine)
    seen: list[str] = []
    lock_contacts = claims.lock_contacts

    def locking(session: Any, contact_ids: Any) -> set[int]:
        seen.append(session.connection().exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar())
        return lock_contacts(session, contact_ids)

    monkeypatch.setattr(claims, "lock_contacts", locking)
    dispatch(engine, store, SENT_AT)
    with store.session() as session:  # a transaction of another kind keeps the server's setting
        after = session.connection().exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar()

    assert seen and set(seen) == {"0"}
    assert after != "0"
