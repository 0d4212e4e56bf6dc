"""The engine: evaluate rules into queued messages, then deliver what is due.

`tick(now)` is the heartbeat the CLI and the daemon call. Every step takes `now` from its
caller; nothing here reads the clock.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from automator import contents
from automator.clock import Clock, utcnow
from automator.dispatch import Dispatcher
from automator.enqueue import Prepared, can_overlap, enqueue_chunk, finish, prepare, priority
from automator.errors import NotFoundError, TransactionLost
from automator.model import DateTrigger, EventTrigger, Rule, ScheduleTrigger
from automator.project import Project
from automator.rendering import Links, Renderer, RenderPool
from automator.reports import RuleReport, TickReport
from automator.store import Store, contacts, events, messages, rulestate
from automator.store import candidates as candidate_queries
from automator.store.candidates import Candidate, Watermark
from automator.tables import Contact, Coupon, Message
from automator.templates import Rendered
from automator.transports import Transport

log = logging.getLogger("automator.engine")

# Occurrences queued per chunk (one savepoint): up to CHUNK, but a rule with few is cut into about
# SPREAD chunks of at least CHUNK_MIN, so that the render workers start early and the
# pipeline below has something to overlap. While a lookup is still running, a chunk is what
# it has found so far (at least CHUNK_MIN).
CHUNK = 500
CHUNK_MIN = 100
SPREAD = 8
# Chunks started (read, rendering) before the oldest is written (see Pipeline).
AHEAD = 2
# Messages written before the tick's transaction is committed, also within a rule (see
# Writes): about half a second of the write lock at the pace of a big first tick.
COMMIT_EVERY = 2000
YOUNG_GARBAGE = 20_000  # objects a tick makes before the collector looks at them


class Lookup:
    """A rule's candidates as the lookup thread finds them, and the watermark to keep once
    they are all queued. The lookup thread adds; the tick's thread takes them in chunks,
    from the first ones found, while the rest are still being looked for."""

    def __init__(self) -> None:
        self._arrived: queue.SimpleQueue[list[Candidate] | tuple[str, Watermark] | BaseException] = (
            queue.SimpleQueue()
        )
        self._waiting: deque[Candidate] = deque()
        self.found = 0
        self.trigger_hash = ""  # of the rule they were found for (it keys the watermark)
        self.next_mark: Watermark | None = None  # set when the lookup has ended
        self.abandoned = threading.Event()  # the tick's thread wants no more

    # The lookup thread's side.
    def add(self, batch: list[Candidate]) -> None:
        self._arrived.put(batch)

    def end(self, trigger_hash: str, next_mark: Watermark) -> None:
        self._arrived.put((trigger_hash, next_mark))

    def fail(self, error: BaseException) -> None:
        self._arrived.put(error)

    # The tick's side.
    def chunks(self) -> Iterator[list[Candidate]]:
        """Every candidate, in chunks: what has arrived when a chunk is asked for (at least
        CHUNK_MIN unless the lookup has ended), cut as described at CHUNK."""
        while True:
            while self._take(block=len(self._waiting) < CHUNK_MIN and self.next_mark is None):
                pass
            if not self._waiting:
                return
            if self.next_mark is None:
                size = min(CHUNK, len(self._waiting))
            else:
                size = max(CHUNK_MIN, min(CHUNK, -(-self.found // SPREAD)))
            yield [self._waiting.popleft() for _ in range(min(size, len(self._waiting)))]

    def _take(self, block: bool) -> bool:
        """Take what has arrived into the waiting line; whether anything was there."""
        try:
            item = self._arrived.get(block=block)
        except queue.Empty:
            return False
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, tuple):
            self.trigger_hash, self.next_mark = item
        else:
            self._waiting.extend(item)
            self.found += len(item)
        return True


@dataclass(eq=False)
class Queueing:
    """One rule's occurrences on their way to the queue."""

    rule: Rule
    lookup: Lookup
    report: RuleReport
    errors: list[str] = field(default_factory=list)  # what could not be queued
    in_flight: int = 0  # chunks started and not written yet
    taken: bool = False  # every chunk has been taken from the lookup (or the rule failed)
    failed: bool = False
    uncommitted: list[str | None] = field(default_factory=list)  # outcomes written, not committed


Written = tuple[list[str | None], list[str]]  # a chunk's outcomes, and what could not be queued


class Writes:
    """A tick's writes: one transaction, each chunk in a savepoint of it (a chunk that fails
    is undone alone), committed once a rule's chunks are all written, with the rule's
    watermark, and after every COMMIT_EVERY messages.

    A commit writes every page the transaction changed to SQLite's log. The indexes of the
    message table keyed by contact are changed all over by every chunk: committed chunk by
    chunk, their pages would go to the log again with every commit; committed together, once."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._session: Session | None = None

    @contextmanager
    def savepoint(self) -> Iterator[Session]:
        """A savepoint of the transaction (begun first if need be); an error in it undoes
        it alone, unless the database rolled the whole transaction back by itself: then
        `TransactionLost`, and the next savepoint begins a new transaction."""
        if self._session is None:
            self._session = self._store.writing()
        session = self._session
        try:
            with session.begin_nested():
                yield session
        except Exception as exc:
            if self._store.in_transaction(session):
                raise
            self.close()
            raise TransactionLost(f"the database rolled the transaction back: {exc}") from exc

    def commit(self) -> None:
        """Commit what is written; raises when the database refuses (it is then undone)."""
        session, self._session = self._session, None
        if session is not None:
            with session:
                session.commit()

    def close(self) -> None:
        """Undo what is not committed: a tick stopped midway (the next tick queues it)."""
        session, self._session = self._session, None
        if session is not None:
            session.close()


class Pipeline:
    """Queues the rules' chunks one rule after the other, with AHEAD chunks in flight
    (read, rendering) before the oldest is written: the render workers render a chunk while
    the tick's thread writes the one before and reads the one after, also from one rule to
    the next, so that the workers start on a rule while the last chunks of the rule before
    are written. A rule's watermark is kept with the commit of its last chunk (see Writes);
    its counts are reported as its chunks are committed."""

    def __init__(self, engine: Engine, now: datetime) -> None:
        self.engine = engine
        self.now = now
        self.started: deque[tuple[Queueing, list[Candidate], Prepared | None]] = deque()
        self.writes = Writes(engine.store)
        self._uncommitted: list[Queueing] = []  # rules with chunks in the open transaction
        self._since_commit = 0  # messages written in it

    def queue(self, queueing: Queueing) -> None:
        """Start (and write, as more are started) the rule's chunks; a failing rule is
        reported and skipped."""
        rule, engine = queueing.rule, self.engine
        try:
            if can_overlap(rule):
                for chunk in queueing.lookup.chunks():
                    self.started.append((queueing, chunk, engine.prepare_chunk(rule, chunk, self.now)))
                    queueing.in_flight += 1
                    if len(self.started) > AHEAD:
                        self._finish_oldest()
            else:
                # Pool codes are chosen in the transaction that gives them: one chunk at a
                # time, after what is in flight.
                self.drain()
                for chunk in queueing.lookup.chunks():
                    self._written(queueing, engine.enqueue_chunk(rule, chunk, self.now, self.writes))
        except TransactionLost as exc:
            queueing.lookup.abandoned.set()
            self._undone(exc, queueing)
        except Exception as exc:  # one broken rule must never stop the others
            queueing.lookup.abandoned.set()  # its lookup need not go on
            log.exception("rule %s failed", rule.id)
            queueing.report.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
            queueing.failed = True
        queueing.taken = True
        self._settle(queueing)

    def drain(self) -> None:
        while self.started:
            self._finish_oldest()

    def finish(self) -> None:
        """Write what is in flight and commit (every rule's last commit has happened, unless
        a rule is still unsettled: a safety net)."""
        self.drain()
        self._commit()

    def _finish_oldest(self) -> None:
        queueing, chunk, prepared = self.started.popleft()
        try:
            written = self.engine.finish_chunk(queueing.rule, chunk, prepared, self.now, self.writes)
        except TransactionLost as exc:
            self._undone(exc, queueing)
        else:
            self._written(queueing, written)
        queueing.in_flight -= 1
        self._settle(queueing)

    def _written(self, queueing: Queueing, written: Written) -> None:
        outcomes, errors = written
        queueing.errors += errors
        queueing.uncommitted += outcomes
        if queueing not in self._uncommitted:
            self._uncommitted.append(queueing)
        self._since_commit += len(outcomes)
        if self._since_commit >= COMMIT_EVERY:
            self._commit()

    def _commit(self) -> None:
        """Commit, and count what was committed."""
        self._since_commit = 0
        try:
            self.writes.commit()
        except Exception as exc:
            self._undone(exc)
            return
        for queueing in self._uncommitted:
            _tally(queueing.report, queueing.uncommitted)
            queueing.uncommitted.clear()
        self._uncommitted.clear()

    def _undone(self, exc: Exception, also: Queueing | None = None) -> None:
        """The transaction could not be committed, or the database rolled it back: the
        rules written in it (and `also`) are reported as failed and keep their watermarks,
        so that the next tick queues what was undone."""
        log.error("the tick's messages could not be committed", exc_info=exc)
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        for queueing in [*self._uncommitted, *([also] if also and also not in self._uncommitted else [])]:
            queueing.failed = True
            queueing.uncommitted.clear()
            queueing.report.error = f"not committed ({reason}); the next tick queues again"
        self._uncommitted.clear()

    def _settle(self, queueing: Queueing) -> None:
        """Once a rule's chunks are all written: its count, then its watermark with the
        commit, unless something failed (the next tick then retries; what was queued is
        skipped)."""
        if queueing.in_flight or not queueing.taken:
            return
        queueing.report.evaluated = queueing.lookup.found
        if not queueing.failed and not queueing.errors:
            try:
                summary = {
                    "evaluated": queueing.lookup.found,
                    "enqueued": queueing.report.enqueued + queueing.uncommitted.count("queued"),
                }
                self.engine.keep_watermark(queueing.rule, queueing.lookup, summary, self.now, self.writes)
            except TransactionLost as exc:
                self._undone(exc, queueing)
            except Exception as exc:
                log.exception("rule %s: its watermark could not be kept", queueing.rule.id)
                queueing.report.error = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
        self._commit()
        if queueing.errors and not queueing.failed:
            errors = queueing.errors
            queueing.report.error = f"{len(errors)} occurrence(s) could not be queued; first: {errors[0]}"


def trigger_hash(rule: Rule) -> str:
    """Changes when the trigger or conditions change, which restarts the rule's watermark."""
    shape = rule.trigger.model_dump_json() + repr([c.model_dump() for c in rule.when])
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


class Engine:
    """Evaluates a project's rules against a store and delivers through a transport."""

    def __init__(self, project: Project, store: Store, transport: Transport) -> None:
        self.project = project
        self.settings = project.settings
        self.store = store
        self.transport = transport
        links = Links(self.settings.base_url, self.settings.secret)
        self.renderer = Renderer(project.templates, links, self.settings.timezone)
        self.render_pool = RenderPool(self.renderer, self.settings.render_workers)

    def dispatcher(self, kind: str = "tick", clock: Clock = utcnow) -> Dispatcher:
        """A dispatcher delivering through this engine's transport; `kind` names its claims."""
        return Dispatcher(self.store, self.project, self.renderer, self.transport, kind, clock)

    def close(self) -> None:
        """Stop the render workers, if any were started."""
        self.render_pool.close()

    async def tick(self, now: datetime) -> TickReport:
        """Evaluate every rule, then deliver every due message."""
        report = TickReport(now)
        self.evaluate(now, report)
        await self.dispatcher().run(now, report)
        with self.store.session() as session:
            for rule in self.project.ruleset.rules:
                report.rule(rule.id).waiting = messages.waiting(session, rule.id, now)
        return report

    def evaluate(self, now: datetime, report: TickReport) -> None:
        """Enqueue every due occurrence of every rule, the highest priority first; a failing
        rule is reported and skipped.

        The rules' candidates are looked up one after the other in a thread of their own
        while the tick's thread queues them, as they are found: SQLite reads from its own
        snapshot without blocking the writer, and the lookups' SQL runs without the GIL."""
        with self.store.evaluating(), _collecting_young_objects_only():
            self._evaluate(now, report)

    def _evaluate(self, now: datetime, report: TickReport) -> None:
        for rule in self.project.rules:
            report.rule(rule.id)  # the summary lists the rules in the project's order
        rules = sorted(self.project.rules, key=lambda rule: -priority(self.settings, rule))
        lookups = [Lookup() for _ in rules]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="automator-lookup") as finder:
            finder.submit(self._look_up_each, list(zip(rules, lookups, strict=True)), now)
            pipeline = Pipeline(self, now)
            try:
                for rule, lookup in zip(rules, lookups, strict=True):
                    pipeline.queue(Queueing(rule, lookup, report.rule(rule.id)))
                pipeline.finish()
            finally:
                pipeline.writes.close()  # a tick stopped midway: what is not committed is undone
                for lookup in lookups:  # a tick stopped midway stops the lookups too
                    lookup.abandoned.set()

    def _look_up_each(self, work: list[tuple[Rule, Lookup]], now: datetime) -> None:
        for rule, lookup in work:
            if lookup.abandoned.is_set():
                continue
            try:
                self.look_up(rule, now, lookup)
            except BaseException as exc:  # the tick's thread reports it with the rule
                lookup.fail(exc)

    def look_up(self, rule: Rule, now: datetime, lookup: Lookup) -> None:
        """Find a rule's due, new occurrences into `lookup`, then the watermark they were
        found against."""
        hashed = trigger_hash(rule)
        with self.store.session() as session:
            fresh = now - rule.offset - rule.lateness - timedelta(seconds=1)
            mark = rulestate.watermark(session, rule.id, hashed, fresh)
            seq_now = rulestate.current_seq(session, _sequence_kind(rule))
            for batch in candidate_queries.batches(session, rule, now, mark, self.settings.zone):
                if lookup.abandoned.is_set():
                    return
                lookup.add(batch)
        lookup.end(hashed, Watermark(until=now, seq=seq_now))

    def keep_watermark(
        self, rule: Rule, lookup: Lookup, summary: dict[str, Any], now: datetime, writes: Writes
    ) -> None:
        """Once every occurrence the lookup found is written, the next tick starts from its
        mark (committed with them)."""
        assert lookup.next_mark is not None, "every chunk was taken, so the lookup has ended"
        with writes.savepoint() as session:
            rulestate.advance(
                session,
                rule.id,
                lookup.trigger_hash,
                lookup.next_mark,
                now,
                summary,
            )

    def prepare_chunk(self, rule: Rule, chunk: list[Candidate], now: datetime) -> Prepared | None:
        try:
            with self.store.session() as session:
                return prepare(self.render_pool, self.settings, session, rule, chunk, now)
        except Exception:
            log.warning("rule %s: a chunk could not be prepared", rule.id, exc_info=True)
            return None  # finish redoes it one by one

    def finish_chunk(
        self, rule: Rule, chunk: list[Candidate], prepared: Prepared | None, now: datetime, writes: Writes
    ) -> Written:
        """Write a prepared chunk in a savepoint of `writes`: one outcome per message
        written, and what could not be queued."""
        if prepared is not None:
            try:
                with writes.savepoint() as session:
                    return list(finish(session, rule, prepared, now)), []
            except TransactionLost:
                raise
            except Exception:
                log.warning(
                    "rule %s: a chunk failed; queueing its %d occurrences one by one", rule.id, len(chunk)
                )
        return self._one_by_one(rule, chunk, now, writes)

    def enqueue_chunk(self, rule: Rule, chunk: list[Candidate], now: datetime, writes: Writes) -> Written:
        """Queue a chunk in a savepoint of `writes`; if anything unexpected fails, redo it
        one candidate per savepoint so that one bad occurrence never blocks the others."""
        try:
            with writes.savepoint() as session:
                return list(enqueue_chunk(self.render_pool, self.settings, session, rule, chunk, now)), []
        except TransactionLost:
            raise
        except Exception:
            log.warning(
                "rule %s: a chunk failed; queueing its %d occurrences one by one", rule.id, len(chunk)
            )
        return self._one_by_one(rule, chunk, now, writes)

    def _one_by_one(self, rule: Rule, chunk: list[Candidate], now: datetime, writes: Writes) -> Written:
        outcomes: list[str | None] = []
        errors = []
        for candidate in chunk:
            try:
                with writes.savepoint() as session:
                    outcomes += enqueue_chunk(
                        self.render_pool, self.settings, session, rule, [candidate], now
                    )
            except TransactionLost:
                raise
            except Exception as exc:
                log.exception(
                    "rule %s: cannot queue %s for %s", rule.id, candidate.occurrence, candidate.email
                )
                errors.append(f"{candidate.email} ({candidate.occurrence}): {str(exc).splitlines()[0]}")
        return outcomes, errors


@contextmanager
def _collecting_young_objects_only() -> Iterator[None]:
    """While a tick runs, Python's garbage collections scan only the objects made since it
    started, and seldom.

    A full collection scans every object the process holds (modules, rules, templates, a web
    console's state), and one may fall in the middle of a tick. `gc.freeze` sets the older
    objects aside; at the end of the tick they are collected as before. A tick's own objects
    (its candidates, drafts and jobs) live until their chunk is written, and a young
    collection every 700 new objects would scan them again and again: hence YOUNG_GARBAGE
    new objects between collections.

    When objects are frozen already (a tick running beside this one, or the process's own
    choice), the collector is left as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], YOUNG_GARBAGE), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _tally(report: RuleReport, outcomes: list[str | None]) -> None:
    for outcome in outcomes:
        if outcome == "queued":
            report.enqueued += 1
        elif outcome:
            report.outcomes[outcome] += 1


def _sequence_kind(rule: Rule) -> str:
    if isinstance(rule.trigger, EventTrigger):
        return "event"
    if isinstance(rule.trigger, ScheduleTrigger):
        return "schedule"
    return "date" if isinstance(rule.trigger, DateTrigger) else "stage"


def preview(engine: Engine, rule: Rule, email: str, now: datetime) -> Rendered:
    """Render what `rule` would send `email` as of `now`, storing and sending nothing.

    Event rules use the contact's latest event of the trigger's type; date rules the
    contact's date attribute. A coupon is shown as a sample code.
    """
    with engine.store.session() as session:
        contact = contacts.by_email(session, email)
        if contact is None:
            raise NotFoundError(f"no contact with email {email}")
        occurred_at, event_id = _preview_occurrence(session, rule, contact, now)
        message = Message(
            rule_id=rule.id,
            contact_id=contact.id or 0,
            email=contact.email,
            occurrence="preview",
            occurred_at=occurred_at,
            event_id=event_id,
            status="preview",
            due_at=occurred_at + rule.offset,
            send_at=max(now, occurred_at + rule.offset),
            expires_at=now,
            created_at=now,
        )
        spec = rule.send.coupon
        coupon = (
            None
            if spec is None
            else Coupon(
                code=f"{spec.prefix + '-' if spec.prefix else ''}PREVIEW",
                percent_off=spec.percent_off,
                expires_at=now + spec.expires_in,
            )
        )
        return contents.render(engine.renderer, session, rule, message, contact, coupon)


def _preview_occurrence(
    session: Session, rule: Rule, contact: Contact, now: datetime
) -> tuple[datetime, int | None]:
    trigger = rule.trigger
    if isinstance(trigger, EventTrigger):
        event = events.latest(session, contact.id or 0, trigger.event, now)
        if event is None:
            raise NotFoundError(f"{contact.email} has no {trigger.event} event by {now.isoformat()}")
        return event.at, event.id
    if isinstance(trigger, DateTrigger):
        value = contacts.dates(session, contact.id or 0).get(trigger.attribute)
        if value is None:
            raise NotFoundError(f"{contact.email} has no date attribute {trigger.attribute}")
        return value, None
    return contact.stage_entered_at or now, None
