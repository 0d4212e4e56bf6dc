"""Queueing a tick's rules: their chunks of candidates prepared, rendered and written with
the render workers kept busy, in one transaction committed rule by rule.

The pipeline takes what it uses (the store, the render pool, the settings); the engine
builds one per tick."""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session

from automator.config import Settings
from automator.enqueue import Prepared, can_overlap, enqueue_chunk, finish, prepare
from automator.errors import DatabaseLocked, TransactionLost
from automator.lookup import Lookup
from automator.model import Rule
from automator.rendering import RenderPool
from automator.reports import RuleReport
from automator.store import Store, outage, rulestate
from automator.store.candidates import Candidate

log = logging.getLogger("automator.engine")  # the engine's log, as operators know it

# Chunks started (read, rendering) before the oldest is written (see Pipeline).
AHEAD = 2
# Messages written before the tick's transaction is committed, also within a rule (see
# Writes): about half a second of the write lock at the pace of a big first tick.
COMMIT_EVERY = 2000


class Stopped(BaseException):
    """The tick was asked to stop (its daemon is shutting down). A BaseException, so that
    no rule's error handling takes it for the rule's failure: the tick ends where it is,
    what is not committed is undone, and the next tick queues it."""


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
        `TransactionLost`, and the next savepoint begins a new transaction. DatabaseLocked
        when another process kept the write lock past the busy timeout: the tick stops there,
        rather than waiting that long again for each chunk, occurrence and rule after it."""
        if self._session is None:
            self._session = self._begin()
        session = self._session
        try:
            with session.begin_nested():
                yield session
        except Exception as exc:
            if self._store.in_transaction(session):
                raise
            self.close()
            raise TransactionLost(f"the database rolled the transaction back: {exc}") from exc

    def _begin(self) -> Session:
        try:
            return self._store.writing()
        except Exception as exc:
            locked = self._store.locked(exc)
            if locked is None:
                raise
            raise locked from exc

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

    def __init__(
        self,
        store: Store,
        pool: RenderPool,
        settings: Settings,
        now: datetime,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.pool = pool
        self.settings = settings
        self.now = now
        self.stop = stop  # set: `Stopped` before the next chunk
        self.started: deque[tuple[Queueing, list[Candidate], Prepared | None]] = deque()
        self.writes = Writes(store)
        self._uncommitted: list[Queueing] = []  # rules with chunks in the open transaction
        self._since_commit = 0  # messages written in it

    def queue(self, queueing: Queueing) -> None:
        """Start (and write, as more are started) the rule's chunks; a failing rule is
        reported and skipped."""
        rule = queueing.rule
        try:
            if can_overlap(rule):
                for chunk in queueing.lookup.chunks():
                    self._go_on()
                    self.started.append((queueing, chunk, self.prepare_chunk(rule, chunk)))
                    queueing.in_flight += 1
                    if len(self.started) > AHEAD:
                        self._finish_oldest()
            else:
                # Pool codes are chosen in the transaction that gives them: one chunk at a
                # time, after what is in flight.
                self.drain()
                for chunk in queueing.lookup.chunks():
                    self._go_on()
                    self._written(queueing, self.enqueue_chunk(rule, chunk))
        except TransactionLost as exc:
            queueing.lookup.abandon()
            self._undone(exc, queueing)
        except DatabaseLocked:
            raise  # the whole tick stops (see Writes.savepoint)
        except Exception as exc:  # one broken rule must never stop the others
            queueing.lookup.abandon()  # its lookup need not go on
            said = outage(exc)  # the database unreachable: no bug, one line
            if said is None:
                log.exception("rule %s failed", rule.id)
            else:
                log.warning("rule %s failed: %s", rule.id, said)
            queueing.report.error = _first_line(exc)
            queueing.failed = True
        queueing.taken = True
        self._settle(queueing)

    def _go_on(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise Stopped

    def drain(self) -> None:
        while self.started:
            self._finish_oldest()

    def finish(self) -> None:
        """Write what is in flight and commit (every rule's last commit has happened, unless
        a rule is still unsettled: a safety net)."""
        self.drain()
        self._commit()

    def prepare_chunk(self, rule: Rule, chunk: list[Candidate]) -> Prepared | None:
        """Read a chunk and start rendering it; None when that fails (`finish_chunk` then
        queues it one by one)."""
        try:
            with self.store.session() as session:
                return prepare(self.pool, self.settings, session, rule, chunk, self.now)
        except Exception:
            log.warning("rule %s: a chunk could not be prepared", rule.id, exc_info=True)
            return None

    def finish_chunk(self, rule: Rule, chunk: list[Candidate], prepared: Prepared | None) -> Written:
        """Write a prepared chunk: one outcome per message written, and what could not be
        queued."""
        if prepared is None:
            return self._one_by_one(rule, chunk)
        return self._write(rule, chunk, lambda session: finish(session, rule, prepared, self.now))

    def enqueue_chunk(self, rule: Rule, chunk: list[Candidate]) -> Written:
        """Prepare and write a chunk at once (see `can_overlap`)."""
        pool, settings, now = self.pool, self.settings, self.now

        def write(session: Session) -> list[str]:
            return enqueue_chunk(pool, settings, session, rule, chunk, now)

        return self._write(rule, chunk, write)

    def _write(self, rule: Rule, chunk: list[Candidate], write: Callable[[Session], list[str]]) -> Written:
        """Write a chunk in a savepoint; if anything unexpected fails, redo it one candidate
        per savepoint so that one bad occurrence never blocks the others."""
        try:
            with self.writes.savepoint() as session:
                return list(write(session)), []
        except (TransactionLost, DatabaseLocked):
            raise
        except Exception:
            log.warning(
                "rule %s: a chunk failed; queueing its %d occurrences one by one", rule.id, len(chunk)
            )
        return self._one_by_one(rule, chunk)

    def _one_by_one(self, rule: Rule, chunk: list[Candidate]) -> Written:
        outcomes: list[str | None] = []
        errors = []
        for candidate in chunk:
            try:
                with self.writes.savepoint() as session:
                    outcomes += enqueue_chunk(self.pool, self.settings, session, rule, [candidate], self.now)
            except (TransactionLost, DatabaseLocked):
                raise
            except Exception as exc:
                log.exception(
                    "rule %s: cannot queue %s for %s", rule.id, candidate.occurrence, candidate.email
                )
                errors.append(f"{candidate.email} ({candidate.occurrence}): {str(exc).splitlines()[0]}")
        return outcomes, errors

    def _finish_oldest(self) -> None:
        queueing, chunk, prepared = self.started.popleft()
        try:
            written = self.finish_chunk(queueing.rule, chunk, prepared)
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
        said = outage(exc)  # the connection cut, the server gone: no bug, one line
        if said is None:
            log.error("the tick's messages could not be committed", exc_info=exc)
        else:
            log.warning(f"the tick's messages could not be committed: {said}")
        for queueing in [*self._uncommitted, *([also] if also and also not in self._uncommitted else [])]:
            queueing.failed = True
            queueing.uncommitted.clear()
            queueing.report.error = f"not committed ({_first_line(exc)}); the next tick queues again"
        self._uncommitted.clear()

    def _settle(self, queueing: Queueing) -> None:
        """Once a rule's chunks are all written: its count, then its watermark with the
        commit, unless something failed (the next tick then retries; what was queued is
        skipped)."""
        if queueing.in_flight or not queueing.taken:
            return
        queueing.report.evaluated += queueing.lookup.found  # a journey's steps count under its rule
        if not queueing.failed and not queueing.errors:
            try:
                summary = {
                    "evaluated": queueing.lookup.found,
                    "enqueued": queueing.report.enqueued + queueing.uncommitted.count("queued"),
                }
                self._keep_watermark(queueing.rule, queueing.lookup, summary)
            except TransactionLost as exc:
                self._undone(exc, queueing)
            except DatabaseLocked:
                raise
            except Exception as exc:
                log.exception("rule %s: its watermark could not be kept", queueing.rule.id)
                queueing.report.error = _first_line(exc)
        self._commit()
        if queueing.errors and not queueing.failed:
            errors = queueing.errors
            queueing.report.error = f"{len(errors)} occurrence(s) could not be queued; first: {errors[0]}"

    def _keep_watermark(self, rule: Rule, lookup: Lookup, summary: dict[str, Any]) -> None:
        """Once every occurrence the lookup found is written, the next tick starts from its
        mark (committed with them)."""
        assert lookup.next_mark is not None, "every chunk was taken, so the lookup has ended"
        with self.writes.savepoint() as session:
            key = rulestate.state_key(rule.id, lookup.step)
            rulestate.advance(session, key, lookup.trigger_hash, lookup.next_mark, self.now, summary)


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"


def _tally(report: RuleReport, outcomes: list[str | None]) -> None:
    for outcome in outcomes:
        if outcome == "queued":
            report.enqueued += 1
        elif outcome:
            report.outcomes[outcome] += 1
