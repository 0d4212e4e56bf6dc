"""The dispatcher: claims batches of due messages, hands them to the transport, and records
each outcome as the server answers, the next batch being claimed while one goes out."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from automator.clock import Clock, utcnow
from automator.dispatch.claims import Batch, Claimed, Claims
from automator.dispatch.outcomes import Outcomes
from automator.project import Project
from automator.rendering import Renderer
from automator.reports import TickReport
from automator.store import Store
from automator.store.messages import Due
from automator.transports import Transport

BATCH = 500
# While a batch goes out, what has been sent is recorded once this many are done, or this
# often: a crash re-sends at most that much (plus what was on the wire), not the batch.
RECORD_EVERY = 100
RECORD_AFTER_SECONDS = 1.0
T = TypeVar("T")


class Dispatcher:
    """Delivers due messages; `kind` ("daemon" or "tick") names its claims."""

    def __init__(
        self,
        store: Store,
        project: Project,
        renderer: Renderer,
        transport: Transport,
        kind: str = "tick",
        clock: Clock = utcnow,
    ) -> None:
        self.claims = Claims(store, project, renderer, kind, clock)
        self.outcomes = Outcomes(store, project)
        self.transport = transport

    async def run(
        self, now: datetime, report: TickReport, batch_size: int = BATCH, stop: asyncio.Event | None = None
    ) -> int:
        """Deliver every message due by `now`; returns how many were sent.

        Bounded: each pass moves every message it touches out of the due set (claimed,
        cancelled, or deferred past now), and a batch with nothing to send does not end the
        run while more may be due.
        """
        self.claims.recover_expired()
        # The database work runs in a worker thread while the event loop sends, one
        # transaction at a time: two at once would contend for SQLite's write lock and the GIL.
        database = asyncio.Lock()
        sent = 0
        batch = await self.claim(database, now, report, batch_size)
        # The next batch is claimed while one goes out, and starts going out while the one
        # before has its last outcomes recorded: at most two batches are in flight.
        in_flight: list[asyncio.Future[int]] = []
        try:
            for _ in range(100_000):
                if batch.claimed:
                    in_flight.append(asyncio.ensure_future(self.send(batch.claimed, now, report, database)))
                if not batch.more or (stop is not None and stop.is_set()):
                    batch = Batch([], [], False)
                    break
                batch = await self.claim(database, now, report, batch_size)
                while len(in_flight) > 1:
                    sent += await in_flight.pop(0)
            while in_flight:
                sent += await in_flight[0]
                in_flight.pop(0)
        finally:
            for sending in in_flight:  # a claim failed, or a stop past the grace: the sends stop too
                sending.cancel()
        if batch.claimed:  # claimed but never sent (stopping): back to the queue now
            ids = [item.message.id for item in batch.claimed]
            self.claims.in_flight.difference_update(ids)
            self.claims.give_back(ids, "dispatch stopped before sending")
        return sent

    def give_back_in_flight(self, reason: str) -> int:
        """Put back what this dispatcher claimed and has no outcome for yet (a stop)."""
        return self.claims.give_back(self.claims.in_flight, reason)

    async def claim(self, database: asyncio.Lock, now: datetime, report: TickReport, limit: int) -> Batch:
        """Claim a batch (in a worker thread, while the batch before is sent), then build
        its emails (in a worker thread too, the database left to the recording meanwhile)."""
        taken = await _serially(database, self.claims.take, now, limit)
        claimed, unsafe = await asyncio.to_thread(self.claims.letters, taken, now)
        outcomes = taken.outcomes
        if unsafe:
            rule_of = {message.id: message.rule_id for message in taken.messages}
            outcomes = outcomes + await _serially(database, self.claims.hold, unsafe, rule_of, now)
        with report.lock:  # the recording threads add to it too
            for rule_id, outcome in outcomes:
                report.rule(rule_id).outcomes[outcome] += 1
        return Batch(claimed, outcomes, taken.more)

    async def send(
        self, claimed: list[Claimed], now: datetime, report: TickReport, database: asyncio.Lock
    ) -> int:
        """Send claimed messages as one batch (the transport bounds its own concurrency) and
        record the outcomes while the rest is still going out, a few dozen per transaction:
        a crash can then send again only what went out since the last record, not the whole
        batch. Returns how many were sent."""
        finished: list[tuple[Claimed, BaseException | None]] = []
        enough = asyncio.Event()

        def on_result(index: int, outcome: BaseException | None) -> None:
            finished.append((claimed[index], outcome))
            if len(finished) >= RECORD_EVERY:
                enough.set()

        sending = asyncio.ensure_future(self.transport.send_many([item.email for item in claimed], on_result))
        sent = 0
        try:
            while not sending.done() or finished:
                if not sending.done():
                    waiting = asyncio.ensure_future(enough.wait())
                    try:
                        await asyncio.wait(
                            {sending, waiting},
                            timeout=RECORD_AFTER_SECONDS,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        waiting.cancel()
                enough.clear()
                if finished:
                    sent += await _serially(database, self.record_finished, finished, now, report)
                if self.claims.renewal_due():
                    await _serially(database, self.claims.renew)
        finally:
            sending.cancel()  # a stop past the grace cancels us: the sends stop with us
        await sending  # send_many reports each email's error; this only raises on a bug
        return sent

    def record_finished(
        self, finished: list[tuple[Claimed, BaseException | None]], now: datetime, report: TickReport
    ) -> int:
        """Record the outcomes `finished` holds once the database is free (more may have
        come in meanwhile: one transaction for all of them), and take them out of it."""
        taken = finished[:]
        del finished[: len(taken)]  # the event loop may append more meanwhile; they stay
        return self.record(taken, now, report)

    def record(
        self, outcomes: list[tuple[Claimed, BaseException | None]], now: datetime, report: TickReport
    ) -> int:
        """Record what the transport did with claimed messages; returns how many were sent."""
        delivered: list[Due] = []
        failures: list[tuple[Due, BaseException]] = []
        for item, result in outcomes:
            if result is None:
                delivered.append(item.message)
            else:
                failures.append((item.message, result))
            self.claims.in_flight.discard(item.message.id)
        failed = self.outcomes.failed(failures, now) if failures else []
        sent = Counter(message.rule_id for message in delivered)
        with report.lock:
            for rule_id, outcome in failed:
                report.rule(rule_id).outcomes[outcome] += 1
            for rule_id, count in sent.items():
                report.rule(rule_id).sent += count
        self.outcomes.sent(delivered, now)
        return len(delivered)


async def _serially(database: asyncio.Lock, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in a worker thread, once the pass's previous database work is done."""
    async with database:
        return await asyncio.to_thread(work, *args)
