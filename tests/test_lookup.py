"""A rule's lookup hands its candidates to the tick's thread as it finds them."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from automator import enqueue as enqueue_module
from automator import lookup as lookup_module
from automator import memory
from automator import pipeline as pipeline_module
from automator.engine import TickReport
from automator.lookup import AHEAD_MAX, CHUNK_MIN, SPREAD, Lookup
from automator.pipeline import Pipeline
from automator.store import Store, rulestate
from automator.store.candidates import Addressee, Candidate, Watermark
from tests.conftest import all_messages, cart, utc

MARK = Watermark(until=utc("2026-11-20 04:00"), seq=7)


def candidates(count: int, start: int = 0) -> list[Candidate]:
    at = utc("2026-11-20 03:00")
    return [
        Candidate(
            Addressee(number, f"c{number}@example.com", None, None, "en", None, "consideration", "{}"),
            f"evt-{number}",
            at,
            number,
            False,
        )
        for number in range(start, start + count)
    ]


def test_a_chunk_is_what_has_arrived_once_there_is_enough_of_it():
    lookup = Lookup()
    lookup.add(candidates(CHUNK_MIN // 2))
    lookup.add(candidates(CHUNK_MIN // 2 + 10, start=1000))
    chunks = lookup.chunks()

    first = next(chunks)

    assert len(first) == CHUNK_MIN + 10
    assert lookup.next_mark is None  # the lookup goes on; the first chunk did not wait for it


def test_the_tick_waits_for_a_chunk_until_the_lookup_has_found_enough():
    lookup = Lookup()
    lookup.add(candidates(3))
    asked = threading.Event()
    got: list[list[Candidate]] = []

    def take_first() -> None:
        asked.set()
        got.append(next(lookup.chunks()))

    taker = threading.Thread(target=take_first)
    taker.start()
    asked.wait(timeout=10)
    lookup.add(candidates(CHUNK_MIN, start=100))
    taker.join(timeout=10)

    assert not taker.is_alive()
    assert [len(chunk) for chunk in got] == [CHUNK_MIN + 3]


def test_an_ended_lookup_is_cut_into_spread_chunks_and_keeps_its_mark():
    lookup = Lookup()
    total = SPREAD * CHUNK_MIN * 2
    lookup.add(candidates(total))
    lookup.end("shape", MARK)

    sizes = [len(chunk) for chunk in lookup.chunks()]

    assert sizes == [total // SPREAD] * SPREAD
    assert (lookup.found, lookup.trigger_hash, lookup.next_mark) == (total, "shape", MARK)


def test_a_short_lookup_is_one_chunk():
    lookup = Lookup()
    lookup.add(candidates(5))
    lookup.end("shape", MARK)

    assert [len(chunk) for chunk in lookup.chunks()] == [5]


def test_a_failing_lookup_raises_in_the_tick_after_what_it_found_before():
    lookup = Lookup()
    lookup.add(candidates(CHUNK_MIN))
    chunks = lookup.chunks()
    assert len(next(chunks)) == CHUNK_MIN

    lookup.fail(RuntimeError("no such column: e.nope"))

    with pytest.raises(RuntimeError, match="no such column"):
        next(chunks)


def _adding_in_a_thread(lookup: Lookup, batch: list[Candidate]) -> threading.Thread:
    adder = threading.Thread(target=lookup.add, args=(batch,), daemon=True)
    adder.start()
    return adder


def test_the_lookup_waits_while_as_many_as_ahead_max_are_not_taken_yet():
    lookup = Lookup()
    lookup.add(candidates(AHEAD_MAX))

    adder = _adding_in_a_thread(lookup, candidates(1, start=AHEAD_MAX))
    adder.join(timeout=0.5)  # bounded: it stays waiting, and the test goes on
    assert adder.is_alive()

    chunks = lookup.chunks()
    taken = next(chunks)
    adder.join(timeout=10)

    assert not adder.is_alive()
    assert len(taken) + sum(len(chunk) for chunk in _rest(lookup, chunks)) == AHEAD_MAX + 1


def _rest(lookup: Lookup, chunks: Iterator[list[Candidate]]) -> list[list[Candidate]]:
    lookup.end("shape", MARK)
    return list(chunks)


def test_an_abandoned_lookup_stops_waiting_for_room():
    lookup = Lookup()
    lookup.add(candidates(AHEAD_MAX))
    adder = _adding_in_a_thread(lookup, candidates(1, start=AHEAD_MAX))

    lookup.abandon()
    adder.join(timeout=10)

    assert not adder.is_alive()
    assert lookup.abandoned.is_set()


def test_a_rule_whose_lookup_fails_midway_keeps_its_watermark_and_the_others_run(
    make_contact, make_event, engine, store, monkeypatch
):
    carts_and_orders(make_contact, make_event)
    original = lookup_module.candidate_queries.batches

    def failing_for_carts(session, rule, *rest):  # type: ignore[no-untyped-def]
        for batch in original(session, rule, *rest):
            yield batch[:1]
            if rule.id == "abandoned_cart":
                raise RuntimeError("the disk went away")
            yield batch[1:]

    monkeypatch.setattr(lookup_module.candidate_queries, "batches", failing_for_carts)
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    assert "the disk went away" in (report.rules["abandoned_cart"].error or "")
    assert report.rules["post_purchase_thank_you"].enqueued == 3
    monkeypatch.setattr(lookup_module.candidate_queries, "batches", original)
    engine.evaluate(now + timedelta(minutes=1), TickReport(now))  # the next tick finds the carts again
    rules = sorted(message.rule_id for message in all_messages(store))
    assert rules.count("abandoned_cart") == 3
    assert rules.count("post_purchase_thank_you") == 3


def test_rules_looked_up_at_once_are_queued_in_priority_order(
    make_contact, make_event, engine, store, monkeypatch
):
    """On PostgreSQL a tick looks its rules up on several connections at once
    (`Store.lookup_lanes`), from the newest ids read once: a rule found after one below it
    in priority is still queued before it."""
    carts_and_orders(make_contact, make_event)
    monkeypatch.setattr(Store, "lookup_lanes", property(lambda _store: 3))
    orders_found = threading.Event()
    original = lookup_module.look_up

    def carts_after_orders(store, zone, rule, now, lookup, newest):  # type: ignore[no-untyped-def]
        if rule.id == "abandoned_cart":  # priority 20, in another lane than the orders' (10)
            assert orders_found.wait(timeout=10), "the orders were not looked up beside the carts"
        original(store, zone, rule, now, lookup, newest)
        if rule.id == "post_purchase_thank_you":
            orders_found.set()

    monkeypatch.setattr(lookup_module, "look_up", carts_after_orders)
    readings = []
    newest_ids = rulestate.newest_ids
    monkeypatch.setattr(rulestate, "newest_ids", lambda session: readings.append(1) or newest_ids(session))
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    assert report.rules["abandoned_cart"].error is None
    assert len(readings) == 1  # the newest ids, read once for the three lookup threads
    assert [message.rule_id for message in sorted(all_messages(store), key=lambda message: message.id)] == [
        *["abandoned_cart"] * 3,
        *["post_purchase_thank_you"] * 3,
    ]


def test_newest_ids_that_cannot_be_read_fail_every_lookup_thread_at_once(
    make_contact, make_event, engine, store, monkeypatch
):
    """The database out of reach at the start of a tick is waited for once, not once per
    lookup thread: every rule fails with the one reading's error, and the next tick queues."""
    carts_and_orders(make_contact, make_event)
    monkeypatch.setattr(Store, "lookup_lanes", property(lambda _store: 3))
    readings = []

    def unreadable(session):  # type: ignore[no-untyped-def]
        readings.append(1)
        raise RuntimeError("the server is starting up")

    monkeypatch.setattr(rulestate, "newest_ids", unreadable)
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    assert len(readings) == 1
    assert {rule.rule_id for rule in report.rules.values() if "starting up" in (rule.error or "")} == {
        rule.id for rule in engine.project.rules
    }
    monkeypatch.undo()
    engine.evaluate(now, TickReport(now))
    assert len(all_messages(store)) == 6


def test_collections_during_a_tick_leave_the_older_objects_aside_and_come_seldom(
    make_contact, make_event, engine, monkeypatch
):
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 01:00"), "lan@example.com", **cart("c1"))
    frozen_during: list[int] = []
    thresholds_during: list[int] = []
    original = lookup_module.candidate_queries.batches

    def noting_the_frozen(*args):  # type: ignore[no-untyped-def]
        frozen_during.append(gc.get_freeze_count())
        thresholds_during.append(gc.get_threshold()[0])
        yield from original(*args)

    monkeypatch.setattr(lookup_module.candidate_queries, "batches", noting_the_frozen)
    before, threshold = gc.get_freeze_count(), gc.get_threshold()
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    assert report.rules["abandoned_cart"].enqueued == 1
    assert frozen_during and min(frozen_during) > before  # set aside while the tick ran
    assert gc.get_freeze_count() == before  # and back in the collector's reach after it
    # The tick's own objects are looked at seldom while it runs, as often as before after.
    assert min(thresholds_during) >= memory.YOUNG_GARBAGE > threshold[0]
    assert gc.get_threshold() == threshold


def carts_and_orders(make_contact, make_event, count: int = 3) -> None:  # type: ignore[no-untyped-def]
    for number in range(count):
        make_contact(f"cart{number}@example.com")
        make_event("cart_updated", utc("2026-11-20 01:00"), f"cart{number}@example.com", **cart(f"c{number}"))
        make_contact(f"order{number}@example.com")
        order = {"order_id": f"A-{number}", "total": 10, "currency": "USD"}
        make_event("order_placed", utc("2026-11-19 01:00"), f"order{number}@example.com", **order)


def test_the_next_rule_starts_rendering_before_the_last_chunk_of_the_rule_before_is_written(
    make_contact, make_event, engine, monkeypatch
):
    carts_and_orders(make_contact, make_event)
    steps: list[tuple[str, str]] = []
    for name in ("prepare_chunk", "finish_chunk"):
        original = getattr(Pipeline, name)

        def noting(pipeline, rule, *args, _name=name, _original=original):  # type: ignore[no-untyped-def]
            steps.append((_name, rule.id))
            return _original(pipeline, rule, *args)

        monkeypatch.setattr(Pipeline, name, noting)
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    # The cart rule goes first (priority 20); its one chunk is written after the thank-you's
    # chunk has been started.
    assert steps.index(("prepare_chunk", "post_purchase_thank_you")) < steps.index(
        ("finish_chunk", "abandoned_cart")
    )
    enqueued = {rule_id: rule.enqueued for rule_id, rule in report.rules.items()}
    assert (enqueued["abandoned_cart"], enqueued["post_purchase_thank_you"]) == (3, 3)


def test_a_rule_that_fails_leaves_the_chunks_of_the_rule_before_to_be_written_and_its_mark_kept(
    make_contact, make_event, engine, store, monkeypatch
):
    carts_and_orders(make_contact, make_event)
    original = lookup_module.candidate_queries.batches

    def failing_for_orders(session, rule, *rest):  # type: ignore[no-untyped-def]
        if rule.id == "post_purchase_thank_you":
            raise RuntimeError("the disk went away")
        yield from original(session, rule, *rest)

    monkeypatch.setattr(lookup_module.candidate_queries, "batches", failing_for_orders)
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    assert "the disk went away" in (report.rules["post_purchase_thank_you"].error or "")
    assert report.rules["abandoned_cart"].error is None
    assert report.rules["abandoned_cart"].enqueued == 3
    with store.session() as session:
        states = rulestate.all_states(session)
    assert states["abandoned_cart"].evaluated_until == now
    assert "post_purchase_thank_you" not in states  # its mark waits for a tick that queues it


@pytest.mark.parametrize("every, committed_before_the_third", [(2, 2), (1_000_000, 0)])
def test_a_big_rule_is_committed_every_commit_every_messages(
    make_contact, make_event, engine, store, monkeypatch, every, committed_before_the_third
):
    carts_and_orders(make_contact, make_event)
    monkeypatch.setattr(lookup_module, "CHUNK_MIN", 1)  # a chunk per cart, however the
    monkeypatch.setattr(lookup_module, "CHUNK", 1)  # lookup thread's batches arrive
    monkeypatch.setattr(pipeline_module, "COMMIT_EVERY", every)
    committed: list[int] = []  # what another connection sees as each cart chunk is written
    original = Pipeline.finish_chunk

    def noting(pipeline, rule, *args):  # type: ignore[no-untyped-def]
        if rule.id == "abandoned_cart":
            committed.append(len([m for m in all_messages(store) if m.rule_id == "abandoned_cart"]))
        return original(pipeline, rule, *args)

    monkeypatch.setattr(Pipeline, "finish_chunk", noting)
    now = utc("2026-11-20 03:00")
    report = TickReport(now)

    engine.evaluate(now, report)

    # A rule commits when its last chunk is written, and a big rule every COMMIT_EVERY.
    assert committed[2] == committed_before_the_third
    assert report.rules["abandoned_cart"].enqueued == 3
    assert len(all_messages(store)) == 6


@pytest.mark.parametrize(
    "losing_before",
    [
        "insert_messages",  # a statement of SQLAlchemy's meets the lost connection
        "insert_contents",  # the driver's own COPY of the bodies does
    ],
)
def test_a_connection_lost_while_writing_fails_the_tick_once_and_the_next_tick_queues_it(
    make_contact, make_event, engine, store, monkeypatch, caplog, losing_before
):
    if store.engine.dialect.name != "postgresql":
        pytest.skip("a connection lost mid-transaction: PostgreSQL's server ends it")
    carts_and_orders(make_contact, make_event)
    original = getattr(enqueue_module.queueing, losing_before)
    lost: list[int] = []

    def losing_the_connection_once(session, rows):  # type: ignore[no-untyped-def]
        if not lost:
            lost.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            with store.engine.connect() as other:  # the server ends it, as a restart would
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": lost[0]})
        return original(session, rows)

    monkeypatch.setattr(enqueue_module.queueing, losing_before, losing_the_connection_once)
    now = utc("2026-11-20 03:00")
    first = TickReport(now)

    engine.evaluate(now, first)

    errors = [rule.error for rule in first.rules.values() if rule.error]
    assert errors and all("the next tick queues again" in error for error in errors)
    assert not [record for record in caplog.records if "cannot queue" in record.getMessage()]
    again = TickReport(now)
    engine.evaluate(now, again)
    assert len(all_messages(store)) == 6
    assert all(rule.error is None for rule in again.rules.values())
