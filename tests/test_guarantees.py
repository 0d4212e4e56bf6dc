"""What automator promises whatever the rule: once per occurrence, suppressions, nothing lost
to a broken rule, a broken template or a failing mail server, and `then` recorded."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from automator import enqueue
from automator import lookup as lookup_module
from automator.emails import OutgoingEmail
from automator.engine import Engine, TickReport
from automator.errors import PermanentDeliveryError, TemporaryDeliveryError
from automator.importing import import_events
from automator.project import load_project
from automator.store import candidates, contacts, coupons, queueing, rulestate, suppressions, table
from automator.store.candidates import Watermark
from automator.tables import Coupon, Message
from automator.testing import RecordingTransport
from tests.conftest import all_messages, cart, history_of, statuses, utc, write_jsonl

ORDER = {"order_id": "A-1001", "total": 1_250_000, "currency": "VND"}

BROKEN_RULE = """\
# A win-back rule with a typo in it.
id: win_back
stages: [retention]
trigger:
  event: order_placed
  delay: 30d
send:
  templte: post_purchase_thank_you
"""


def run_tick(engine: Engine, now: datetime):
    return asyncio.run(engine.tick(now))


def shop_day(make_contact, make_event) -> None:
    """A cart (due 04:00), an order (due 04:00 next day) and a trial end (due 04:00)."""
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), email="lan@example.com", id="evt-1", **cart())
    make_contact("minh@example.com")
    make_event("order_placed", utc("2026-11-19 04:00"), email="minh@example.com", id="ord-1", **ORDER)
    make_contact("hoa@example.com", trial_ends_at="2026-11-23T04:00:00Z")


def test_rerunning_a_tick_at_the_same_time_does_nothing_more(
    make_contact, make_event, tick, store, transport
):
    shop_day(make_contact, make_event)
    first = tick(utc("2026-11-20 04:00"))
    assert sum(rule.sent for rule in first.rules.values()) == 3

    again = tick(utc("2026-11-20 04:00"))

    assert sum(rule.enqueued + rule.sent for rule in again.rules.values()) == 0
    assert len(all_messages(store)) == 3
    assert len(transport.sent) == 3


def test_reimporting_events_creates_no_duplicates(make_contact, project, store, tick, transport, tmp_path):
    make_contact("lan@example.com")
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [
            {"id": "evt-1", "type": "cart_updated", "email": "lan@example.com",
             "at": "2026-11-20T03:00:00Z", "properties": cart("c1")},
            # no id: the same line imported twice is recognised by its content
            {"type": "cart_updated", "email": "lan@example.com",
             "at": "2026-11-20T03:05:00Z", "properties": cart("c2")},
        ],
    )  # fmt: skip

    import_events(store, path, project.journey, utc("2026-11-20 03:10"))
    again = import_events(store, path, project.journey, utc("2026-11-20 03:20"))
    tick(utc("2026-11-20 04:05"))

    assert (again.imported, again.duplicates) == (0, 2)
    assert len(all_messages(store)) == 2
    assert len(transport.sent) == 2


def test_suppressed_address_gets_nothing_and_the_message_is_recorded_suppressed(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "unsubscribed", "", utc("2026-11-01 00:00"))
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    [message] = all_messages(store)
    assert message.status == "suppressed"
    assert transport.sent == []


def test_suppression_added_after_queueing_stops_the_send(make_contact, make_event, store, tick, transport):
    make_contact("lan@example.com", timezone="Asia/Ho_Chi_Minh")
    make_event("cart_updated", utc("2026-11-20 13:30"), id="evt-1", **cart())
    tick(utc("2026-11-20 14:30"))  # 21:30 local: waits for 08:00
    with store.session() as session:
        suppressions.add(session, "lan@example.com", "unsubscribed", "", utc("2026-11-20 16:00"))

    tick(utc("2026-11-21 01:00"))

    [message] = all_messages(store)
    assert message.status == "suppressed"
    assert transport.sent == []


def test_a_broken_rule_does_not_stop_the_good_ones(
    project_dir: Path, environ, store, transport, make_contact, make_event
):
    (project_dir / "rules" / "win_back.yaml").write_text(BROKEN_RULE, encoding="utf-8")
    project = load_project(project_dir, environ)
    engine = Engine(project, store, transport)
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    report = run_tick(engine, utc("2026-11-20 04:00"))

    assert "win_back" not in [rule.id for rule in project.rules]
    assert report.rules["abandoned_cart"].sent == 1
    assert [rule.error for rule in report.rules.values() if rule.error] == []
    assert len(transport.sent) == 1


def test_check_lists_the_broken_rule_with_file_line_and_field(project_dir: Path, cli):
    (project_dir / "rules" / "win_back.yaml").write_text(BROKEN_RULE, encoding="utf-8")

    result = cli("check")

    assert result.exit_code == 1
    [line] = [line for line in result.output.splitlines() if line.startswith("rules/win_back.yaml:8:")]
    assert "send.templte: unknown field" in line
    assert "abandoned_cart" not in result.output


def test_a_template_failing_for_one_contact_holds_only_that_message(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    make_contact("minh@example.com")
    broken = {key: value for key, value in cart().items() if key != "items"}
    make_event("cart_updated", utc("2026-11-20 03:00"), email="lan@example.com", id="evt-1", **broken)
    make_event("cart_updated", utc("2026-11-20 03:00"), email="minh@example.com", id="evt-2", **cart())

    tick(utc("2026-11-20 04:00"))

    by_email = {message.email: message for message in all_messages(store)}
    assert by_email["lan@example.com"].status == "held"
    reason = history_of(store, by_email["lan@example.com"].id)[-1].reason
    assert reason.startswith("template error: email_templates/abandoned_cart/")
    assert "items" in reason
    assert by_email["minh@example.com"].status == "sent"
    assert [email["To"] for email in transport.sent] == ["minh@example.com"]


def test_temporary_failure_keeps_the_message_queued_with_a_retry_time(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())
    transport.fail_with = TemporaryDeliveryError("451 4.3.0 mailbox busy, try later")

    tick(utc("2026-11-20 04:00"))

    [message] = all_messages(store)
    assert message.status == "queued"
    assert message.send_at > utc("2026-11-20 04:00")
    assert "451" in (message.last_error or "")
    last = history_of(store, message.id)[-1]
    assert (last.status, "retry at" in last.reason, "451" in last.reason) == ("queued", True, True)


def test_temporarily_failed_message_is_sent_after_the_retry_time(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())
    transport.fail_with = TemporaryDeliveryError("451 4.3.0 mailbox busy, try later")
    tick(utc("2026-11-20 04:00"))
    transport.fail_with = None
    [waiting] = all_messages(store)

    tick(utc("2026-11-20 04:00:20"))  # backoff for a first failure is at least 30 s
    assert transport.sent == []
    tick(waiting.send_at)

    [message] = all_messages(store)
    assert (message.status, message.attempts) == ("sent", 2)
    assert len(transport.sent) == 1


def test_permanent_failure_fails_the_message_and_suppresses_the_address_as_bounced(
    make_contact, make_event, store, tick, transport
):
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())
    transport.fail_with = PermanentDeliveryError("550 5.1.1 no such user")

    tick(utc("2026-11-20 04:00"))

    [message] = all_messages(store)
    assert message.status == "failed"
    with store.session() as session:
        suppression = suppressions.get(session, "lan@example.com")
        assert suppression is not None and suppression.reason == "bounced"


def test_a_refused_address_does_not_hold_back_the_rest_of_its_batch(
    make_contact, make_event, store, tick, transport
):
    for address in ("lan@example.com", "minh@example.com", "hoa@example.com"):
        make_contact(address)
        make_event("cart_updated", utc("2026-11-20 03:00"), email=address, id=f"evt-{address}", **cart())
    transport.refuse["minh@example.com"] = PermanentDeliveryError("550 5.1.1 no such user")
    transport.refuse["hoa@example.com"] = TemporaryDeliveryError("451 4.3.0 mailbox busy, try later")

    tick(utc("2026-11-20 04:00"))

    statuses = {message.email: message.status for message in all_messages(store)}
    assert statuses == {"lan@example.com": "sent", "minh@example.com": "failed", "hoa@example.com": "queued"}
    assert [str(email["To"]) for email in transport.sent] == ["lan@example.com"]
    with store.session() as session:
        assert suppressions.get(session, "minh@example.com") is not None
        assert suppressions.get(session, "hoa@example.com") is None


class StallingTransport(RecordingTransport):
    """Sends `before` emails, then waits for `go` before it sends the rest."""

    def __init__(self, before: int) -> None:
        super().__init__()
        self.before = before
        self.stalled = asyncio.Event()
        self.go = asyncio.Event()

    async def send(self, email: OutgoingEmail) -> None:
        if len(self.sent) == self.before:
            self.stalled.set()
            await self.go.wait()
        await super().send(email)


def test_what_went_out_is_recorded_while_the_rest_of_the_batch_is_still_sending(
    make_contact, make_event, project, store
):
    before, total = 125, 145
    addresses = [f"shopper{i:03d}@example.com" for i in range(total)]
    for i, address in enumerate(addresses):
        make_contact(address)
        make_event("cart_updated", utc("2026-11-20 03:00"), email=address, id=f"cart-{i}", **cart(f"c{i}"))
    transport = StallingTransport(before)
    engine = Engine(project, store, transport)
    now = utc("2026-11-20 04:00")

    async def send_and_look_while_stalled() -> dict[str, int]:
        report = TickReport(now)
        engine.evaluate(now, report)
        dispatching = asyncio.ensure_future(engine.dispatcher().run(now, report))
        await asyncio.wait_for(transport.stalled.wait(), timeout=10)
        # What the server has answered is recorded at once, by the dispatcher's thread.
        for _ in range(100):
            counts = statuses(store)
            if counts.get("sent") == before:
                break
            await asyncio.sleep(0.05)
        transport.go.set()
        await dispatching
        return counts

    try:
        while_stalled = asyncio.run(send_and_look_while_stalled())
    finally:
        engine.close()

    # A crash at that moment would send again only the ones still `sending`, not the batch.
    assert while_stalled == {"sent": before, "sending": total - before}
    assert statuses(store) == {"sent": total}
    assert len(transport.sent) == total


def test_sent_abandoned_cart_moves_the_contact_to_conversion_with_its_cause(
    make_contact, make_event, store, tick
):
    with freeze_time("2026-11-01"):
        contact_id = make_contact("lan@example.com", stage="consideration")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    [message] = all_messages(store)
    with store.session() as session:
        contact = contacts.by_id(session, contact_id)
        last = contacts.stage_history(session, contact_id)[-1]
    assert contact is not None and contact.stage == "conversion"
    assert (last.from_stage, last.to_stage, last.at) == (
        "consideration",
        "conversion",
        utc("2026-11-20 04:00"),
    )
    assert last.cause == f"rule abandoned_cart (message {message.id})"


def test_sent_abandoned_cart_tags_the_contact_as_cart_abandoner(make_contact, make_event, store, tick):
    contact_id = make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 03:00"), id="evt-1", **cart())

    tick(utc("2026-11-20 04:00"))

    with store.session() as session:
        assert "cart_abandoner" in contacts.tags(session, contact_id)


def test_an_event_move_is_recorded_in_stage_history_with_its_cause(make_contact, make_event, store):
    with freeze_time("2026-11-01"):
        contact_id = make_contact("lan@example.com", stage="consideration")

    make_event("order_placed", utc("2026-11-20 03:00"), id="ord-1", **ORDER)

    with store.session() as session:
        last = contacts.stage_history(session, contact_id)[-1]
    assert (last.to_stage, last.at, last.cause) == (
        "retention",
        utc("2026-11-20 03:00"),
        "event order_placed (ord-1)",
    )


def failing_insert_for(monkeypatch, email: str) -> None:
    """The database refuses any chunk holding `email`'s message (a row it cannot take)."""
    original = queueing.insert_messages

    def insert_messages(session, rows):
        if any(row["email"] == email for row in rows):
            raise OperationalError("INSERT INTO message", {}, Exception("disk I/O error"))
        return original(session, rows)

    monkeypatch.setattr(queueing, "insert_messages", insert_messages)


THREE = ["hoa@example.com", "lan@example.com", "minh@example.com"]


def three_carts(make_contact, make_event) -> None:
    for name in ("lan", "minh", "hoa"):
        make_contact(f"{name}@example.com")
        make_event(
            "cart_updated", utc("2026-11-20 03:00"), email=f"{name}@example.com", id=f"evt-{name}", **cart()
        )


def test_an_occurrence_the_database_refuses_does_not_stop_the_others_of_its_chunk(
    make_contact, make_event, store, tick, transport, monkeypatch
):
    three_carts(make_contact, make_event)
    failing_insert_for(monkeypatch, "minh@example.com")

    report = tick(utc("2026-11-20 04:00"))

    assert sorted(email["To"] for email in transport.sent) == ["hoa@example.com", "lan@example.com"]
    error = report.rules["abandoned_cart"].error or ""
    assert error.startswith("1 occurrence(s) could not be queued; first: minh@example.com (evt-minh)")

    monkeypatch.undo()  # the database is well again: the next tick queues what failed
    tick(utc("2026-11-20 04:05"))
    assert sorted(email["To"] for email in transport.sent) == THREE


def test_a_chunk_that_fails_after_its_messages_are_inserted_is_undone_alone_and_queued_again(
    make_contact, make_event, store, tick, transport, monkeypatch
):
    three_carts(make_contact, make_event)
    original = queueing.record_history

    def record_history(session, lines, at):  # the chunk's history fails; one message's does not
        if len(lines) > 1:
            raise OperationalError("INSERT INTO message_history", {}, Exception("disk I/O error"))
        return original(session, lines, at)

    monkeypatch.setattr(queueing, "record_history", record_history)

    report = tick(utc("2026-11-20 04:00"))

    assert report.rules["abandoned_cart"].error is None
    assert report.rules["abandoned_cart"].enqueued == 3
    assert sorted(email["To"] for email in transport.sent) == THREE
    for message in all_messages(store):  # the chunk's rows were undone, not left half-written
        assert [line.status for line in history_of(store, message.id)][:1] == ["queued"]


@pytest.mark.sqlite_only  # SQLite rolls a transaction back by itself; PostgreSQL never does
def test_a_transaction_the_database_rolled_back_by_itself_keeps_no_mark_and_is_queued_again(
    make_contact, make_event, store, tick, transport, monkeypatch
):
    three_carts(make_contact, make_event)
    monkeypatch.setattr(lookup_module, "CHUNK_MIN", 1)  # a chunk per message
    original = queueing.record_history
    failed: list[object] = []

    def record_history(session, lines, at):
        # A chunk written after another in the same transaction fails as SQLite fails on a
        # full disk: the whole transaction is rolled back, the chunk before too.
        written_before = len(all_messages(store))  # what is committed
        if not failed and count_messages(session) > written_before + len(lines):
            failed.append(lines)
            session.connection().connection.driver_connection.rollback()
            raise OperationalError("INSERT INTO message_history", {}, Exception("database or disk is full"))
        return original(session, lines, at)

    monkeypatch.setattr(queueing, "record_history", record_history)

    report = tick(utc("2026-11-20 04:00"))

    assert failed
    assert "not committed" in (report.rules["abandoned_cart"].error or "")
    with store.session() as session:
        assert "abandoned_cart" not in rulestate.all_states(session)
    monkeypatch.undo()
    tick(utc("2026-11-20 04:05"))
    assert sorted(email["To"] for email in transport.sent) == THREE


def count_messages(session) -> int:
    return session.execute(select(func.count()).select_from(table(Message))).scalar_one()


def test_a_pool_coupon_rule_also_queues_around_an_occurrence_the_database_refuses(
    make_contact, store, tick, transport, monkeypatch
):
    with store.session() as session:
        coupons.import_pool(session, "renewal", ["RENEW-1", "RENEW-2"], 15, None, utc("2026-11-01 00:00"))
    for name in ("lan", "minh"):
        make_contact(f"{name}@example.com", stage="retention", renews_at="2026-12-20T03:00:00Z")
    failing_insert_for(monkeypatch, "lan@example.com")

    report = tick(utc("2026-11-20 03:00"))

    assert [email["To"] for email in transport.sent] == ["minh@example.com"]
    assert "lan@example.com" in (report.rules["renewal_offer"].error or "")
    with store.session() as session:
        assert coupons.pool_counts(session) == {"renewal": (1, 1)}  # lan's code went back with the rollback


def test_an_occurrence_another_daemon_queued_first_is_skipped_without_a_second_code(
    make_contact, make_event, project, store, engine
):
    make_contact("lan@example.com")
    make_event("order_placed", utc("2026-11-19 03:00"), id="evt-order", **ORDER)
    rule = project.rule("post_purchase_thank_you")
    now = utc("2026-11-20 04:00")
    with store.session() as session:
        found = candidates.find(session, rule, now, Watermark(until=now - timedelta(days=3), seq=0))
        prepared = enqueue.prepare(engine.render_pool, engine.settings, session, rule, found, now)
    other = Engine(project, store, RecordingTransport())
    other.evaluate(now, TickReport(now))  # the other daemon queues the same occurrence first

    with store.session() as session:
        outcomes = enqueue.finish(session, rule, prepared, now)

    assert outcomes == []
    [message] = all_messages(store)
    with store.session() as session:
        [code] = session.execute(select(table(Coupon))).all()
    assert code.message_id == message.id
