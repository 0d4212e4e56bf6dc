"""The dispatcher: claims batches of due messages, hands them to the transport, and records
each outcome as the server answers, the next batch being claimed and its emails built while
one goes out."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Generator
from datetime import datetime
from typing import Any, TypeVar

from automator.clock import Clock, utcnow
from automator.dispatch.claims import Claimed, Claims, Outcome, Taken
from automator.dispatch.outcomes import Outcomes
from automator.project import Project
from automator.rendering import RenderPool
from automator.reports import TickReport
from automator.store import Store
from automator.store.claims import Due
from automator.transports import Transport

log = logging.getLogger("automator.dispatch")

BATCH = 1000  # the most claims a dispatcher holds at once, in two claims of half (see `deliver`)
# While a batch waits on the server, the dispatcher wakes this often to keep its leases fresh.
WAKE_SECONDS = 1.0
# The outcomes that come in this long after a group's first go into its record with it,
# unless a connection waits for that record before then.
RECORD_WINDOW = 0.005
T = TypeVar("T")


class Dispatcher:
    """Delivers due messages; `kind` ("daemon" or "tick") names its claims."""

    def __init__(
        self,
        store: Store,
        project: Project,
        pool: RenderPool,
        transport: Transport,
        kind: str = "tick",
        clock: Clock = utcnow,
    ) -> None:
        self.claims = Claims(store, project, pool, kind, clock)
        self.outcomes = Outcomes(store, project)
        self.transport = transport

    async def run(
        self, now: datetime, report: TickReport, batch_size: int = BATCH, stop: asyncio.Event | None = None
    ) -> int:
        """Deliver every message due by `now`, after putting back what stopped dispatchers
        left in `sending`; returns how many were sent."""
        with self.claims.alive():
            orphans = self.claims.recover_abandoned()
            if orphans:
                log.warning(
                    "re-queued messages a stopped dispatcher left in flight",
                    extra={"fields": {"count": orphans}},
                )
            return await self.deliver(now, report, batch_size, stop)

    async def deliver(
        self, now: datetime, report: TickReport, batch_size: int, stop: asyncio.Event | None
    ) -> int:
        """Claim, send and record batch after batch until nothing more is due by `now`.

        Bounded: each pass moves every message it touches out of the due set (claimed,
        cancelled, or deferred past now), and a batch with nothing to send does not end the
        run while more may be due.
        """
        turns = Turns(serial=self.claims.store.engine.dialect.name == "sqlite")
        sent = 0
        half = claim_size(batch_size)
        taken = await self.claim(turns, now, report, half)
        # A claim takes at most half the batch size, so that the next one is claimed and its
        # emails built while one goes out: the database claims while the render workers build
        # and the transport sends. A batch starts going out once the transport is done with the
        # one before. Together they never hold more than `batch_size` claims (`room`).
        in_flight: list[asyncio.Future[int]] = []
        gone: asyncio.Future[None] | None = None  # the batch before has left the transport
        try:
            for _ in range(100_000):
                if taken.messages:
                    after, gone = gone, asyncio.get_running_loop().create_future()
                    going = self.send(taken, now, report, turns, after, gone)
                    in_flight.append(asyncio.ensure_future(going))
                    # The messages and their stored bodies are the send's alone: nothing here
                    # gives them back once they may be on the wire, and the bodies go with
                    # the emails' build rather than stay through the next claim.
                    taken = Taken([], {}, [], taken.more)
                if not taken.more or (stop is not None and stop.is_set()):
                    taken = Taken([], {}, [], False)
                    break
                sent += await self.room(turns, in_flight, batch_size)
                room = batch_size - len(self.claims.in_flight)
                taken = await self.claim(turns, now, report, max(1, min(half, room)))
            while in_flight:
                sent += await in_flight[0]
                in_flight.pop(0)
        finally:
            for sending in in_flight:  # a claim failed, or a stop past the grace: the sends stop too
                sending.cancel()
        if taken.messages:  # claimed, never sent (the loop's bound ran out): back to the queue now
            ids = [message.id for message in taken.messages]
            self.claims.in_flight.difference_update(ids)
            self.claims.give_back(ids, "dispatch stopped before sending")
        return sent

    async def room(self, turns: Turns, in_flight: list[asyncio.Future[int]], batch_size: int) -> int:
        """Wait until the next claim may go beside the sending and this dispatcher still hold
        no more than `batch_size` claims: until at most one batch is claimed and not done,
        leaving room for at least half the batch size (or none is). Returns how many the
        batches that ended meanwhile sent. Bounded: each pass waits for a record, or for a
        batch to end."""
        sent = 0
        half = claim_size(batch_size)
        for _ in range(10_000_000):
            while in_flight and in_flight[0].done():
                sent += in_flight.pop(0).result()
            if not in_flight or (len(in_flight) == 1 and batch_size - len(self.claims.in_flight) >= half):
                break
            await turns.next_record(in_flight[0])
        return sent

    def give_back_in_flight(self, reason: str) -> int:
        """Put back what this dispatcher claimed and has no outcome for yet (a stop)."""
        return self.claims.give_back(list(self.claims.in_flight), reason)

    async def claim(self, turns: Turns, now: datetime, report: TickReport, limit: int) -> Taken:
        """Claim a batch, in a worker thread, while the batch before is sent; its emails are
        built as it goes out (`send`)."""
        taken = await turns.claim(self.claims.take, now, limit)
        self.tally(taken.outcomes, report)
        return taken

    async def letters(self, taken: Taken, now: datetime, report: TickReport, turns: Turns) -> list[Claimed]:
        """The emails of a claim's messages, built on the render workers from a worker thread,
        and held those that must not be built (`Claims.letters`)."""
        claimed, held = await asyncio.to_thread(self.claims.letters, taken, now)
        if held:
            rule_of = {message.id: message.rule_id for message in taken.messages}
            self.tally(await turns.claim(self.claims.hold, held, rule_of, now), report)
        return claimed

    @staticmethod
    def tally(outcomes: list[Outcome], report: TickReport) -> None:
        """Count what became of messages not sent in the tick's report."""
        counted = Counter((one.rule_id, one.outcome) for one in outcomes)
        with report.lock:  # the recording threads add to it too
            for (rule_id, outcome), count in counted.items():
                report.rule(rule_id).outcomes[outcome] += count
            for one in outcomes:
                if one.outcome.startswith("waiting"):
                    report.rule(one.rule_id).waited.add(one.message_id)

    async def send(
        self,
        taken: Taken,
        now: datetime,
        report: TickReport,
        turns: Turns,
        after: asyncio.Future[None] | None = None,
        gone: asyncio.Future[None] | None = None,
    ) -> int:
        """Build the emails of claimed messages (while the batch before goes out), send them as
        one batch (the transport bounds its own concurrency) once the batch before has left
        the transport (`after`), and record the outcomes as the server gives them. `gone` is
        done when the transport is done with this batch: one batch at a time in the transport
        keeps each connection's open emails to two. Returns how many were sent."""
        try:
            claimed = await self.letters(taken, now, report, turns)
            del taken  # its stored bodies: built into the emails now
            if after is not None:
                await after
            # Only the transport holds the emails: a batch recorded after the transport is
            # done with it (the file outbox's) lets them go first.
            answered = Answered([item.message for item in claimed])
            emails = [item.email for item in claimed]
            del claimed
            sending = asyncio.ensure_future(self.transport.send_many(emails, answered.add))
            del emails
            sending.add_done_callback(lambda _: _settle(gone))
            return await self.record_as_answered(answered, sending, now, report, turns)
        finally:
            _settle(gone)

    async def record_as_answered(
        self,
        answered: Answered,
        sending: asyncio.Future[Any],
        now: datetime,
        report: TickReport,
        turns: Turns,
    ) -> int:
        """Record the outcomes of a batch as the server gives them: a group is written once a
        connection waits for it, or RECORD_WINDOW after its first outcome, whichever comes
        first. A crash can then send again only what was on the wire or waiting for its
        record, not the batch. Returns how many were sent."""
        sent = 0
        try:
            while not sending.done() or answered.outcomes:
                if not answered.outcomes:
                    await answered.wait(sending, answered.arrived, WAKE_SECONDS)
                if answered.outcomes and not sending.done():
                    await answered.wait(sending, answered.waited_for, RECORD_WINDOW)
                outcomes, recorded = answered.take()
                try:
                    if outcomes:
                        sent += await turns.record(self.record, outcomes, now, report)
                finally:
                    recorded.set_result(None)  # the connections waiting for it go on
                if self.claims.renewal_due():
                    await turns.record(self.claims.renew)
        finally:
            answered.close()
            sending.cancel()  # a stop past the grace cancels us: the sends stop with us
        await sending  # send_many reports each email's error; this only raises on a bug
        return sent

    def record(
        self, outcomes: list[tuple[Due, BaseException | None]], now: datetime, report: TickReport
    ) -> int:
        """Record what the transport did with claimed messages; returns how many were sent."""
        delivered: list[Due] = []
        failures: list[tuple[Due, BaseException]] = []
        for message, result in outcomes:
            if result is None:
                delivered.append(message)
            else:
                failures.append((message, result))
            self.claims.in_flight.discard(message.id)
        failed = self.outcomes.failed(failures, now) if failures else []
        sent = Counter(message.rule_id for message in delivered)
        with report.lock:
            for (rule_id, outcome), count in Counter(failed).items():
                report.rule(rule_id).outcomes[outcome] += count
            for rule_id, count in sent.items():
                report.rule(rule_id).sent += count
        self.outcomes.sent(delivered, now)
        return len(delivered)


def claim_size(batch_size: int) -> int:
    """The most a claim takes: half the batch size (rounded up), so that one batch is
    claimed while the one before goes out, and the two hold no more than `batch_size`."""
    return (batch_size + 1) // 2


def _settle(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


class Answered:
    """What the transport has answered for a batch and the database does not hold yet.

    Each outcome comes with the record of its group, which the transport may await: a
    connection starts its next email once the one before the last is recorded, so that it
    never runs more than one email ahead of the records (see `Transport.send_many`). A
    connection that waits says so (`waited_for`): the group is then written at once."""

    def __init__(self, messages: list[Due]) -> None:
        self.messages = messages  # in the order of the emails given to the transport
        self.outcomes: list[tuple[Due, BaseException | None]] = []
        self.arrived = asyncio.Event()
        self.waited_for = asyncio.Event()
        self.recorded = Record(self.waited_for)

    def add(self, index: int, outcome: BaseException | None) -> Record:
        self.outcomes.append((self.messages[index], outcome))
        self.arrived.set()
        return self.recorded

    @staticmethod
    async def wait(sending: asyncio.Future[Any], event: asyncio.Event, timeout: float) -> None:
        """Until `event` is set, the batch is done, or `timeout` passes."""
        if event.is_set():
            return
        waiting = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sending, waiting}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()

    def take(self) -> tuple[list[tuple[Due, BaseException | None]], Record]:
        """The outcomes so far and their record; the next ones go into a new one."""
        taken, recorded = self.outcomes, self.recorded
        self.outcomes, self.recorded = [], Record(self.waited_for)
        self.arrived.clear()
        self.waited_for.clear()
        return taken, recorded

    def close(self) -> None:
        """Let any connection still waiting go (the batch has ended, or was cancelled)."""
        self.recorded.set_result(None)


class Record:
    """The record of a group of outcomes, as a transport awaits it: done once committed."""

    def __init__(self, waited_for: asyncio.Event) -> None:
        self.done = asyncio.get_running_loop().create_future()
        self.waited_for = waited_for

    def __await__(self) -> Generator[Any, None, None]:
        if not self.done.done():
            self.waited_for.set()  # a connection waits: write the group now
        return self.done.__await__()

    def set_result(self, result: None) -> None:
        if not self.done.done():
            self.done.set_result(result)


class Turns:
    """Whose turn it is at the database, among one run's claims and records, which run in
    worker threads while the event loop sends. On SQLite they take turns: two at once
    would contend for its one writer (and the GIL) for nothing. On PostgreSQL a record
    need not wait for a claim (they touch other rows): the connections a transport holds
    wait for the records, never for the next batch's claim."""

    def __init__(self, serial: bool) -> None:
        self.claims = asyncio.Lock()
        self.records = self.claims if serial else asyncio.Lock()
        self.recorded = asyncio.Event()  # set at each record (`next_record`)

    async def claim(self, work: Callable[..., T], *args: Any) -> T:
        async with self.claims:
            return await asyncio.to_thread(work, *args)

    async def record(self, work: Callable[..., T], *args: Any) -> T:
        async with self.records:
            try:
                return await asyncio.to_thread(work, *args)
            finally:
                self.recorded.set()

    async def next_record(self, batch: asyncio.Future[int]) -> None:
        """Until the next record is written, or `batch` has ended."""
        self.recorded.clear()
        waiting = asyncio.ensure_future(self.recorded.wait())
        either: set[asyncio.Future[Any]] = {batch, waiting}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
