"""Finding a tick's due occurrences: each rule's candidates are looked up in a lookup thread
(`Store.lookup_lanes` of them, taking the rules in turn) and handed to the tick's thread in
chunks as they are found, so that queueing starts before the lookup ends."""

from __future__ import annotations

import hashlib
import queue
import threading
from collections import deque
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from automator.model import DateTrigger, EventTrigger, Rule, ScheduleTrigger
from automator.store import Store, changes, rulestate, steps, windows
from automator.store import candidates as candidate_queries
from automator.store.candidates import Candidate, Watermark

# Occurrences queued per chunk (one savepoint): up to CHUNK, but a rule with few is cut into about
# SPREAD chunks of at least CHUNK_MIN, so that the render workers start early and the
# pipeline has something to overlap. While a lookup is still running, a chunk is what it
# has found so far (at least CHUNK_MIN).
CHUNK = 500
CHUNK_MIN = 100
SPREAD = 8
# Candidates a lookup may have found and not handed over in chunks yet: the lookup thread
# waits beyond that. It can find a whole first tick's occurrences (tens of thousands at a
# million contacts) long before they are queued, and holding them all would make a tick's
# memory grow with the store.
AHEAD_MAX = 4 * CHUNK


class Lookup:
    """A rule's candidates as the lookup thread finds them, and the watermark to keep once
    they are all queued. The lookup thread adds; the tick's thread takes them in chunks,
    from the first ones found, while the rest are still being looked for."""

    def __init__(self, step: int = 1) -> None:
        self.step = step  # of the rule's journey: 1 is the trigger's lookup, 2.. `store.steps`
        self._arrived: queue.SimpleQueue[list[Candidate] | tuple[str, Watermark] | BaseException] = (
            queue.SimpleQueue()
        )
        self._waiting: deque[Candidate] = deque()
        self.found = 0
        self.trigger_hash = ""  # of the rule they were found for (it keys the watermark)
        self.next_mark: Watermark | None = None  # set when the lookup has ended
        self.abandoned = threading.Event()  # the tick's thread wants no more: see `abandon`
        self._room = threading.Condition()  # for `ahead`, between the two threads
        self._ahead = 0  # found and not yet handed over in a chunk

    def abandon(self) -> None:
        """The tick's thread wants no more: the lookup stops at its next batch."""
        with self._room:
            self.abandoned.set()
            self._room.notify_all()

    # The lookup thread's side.
    def add(self, batch: list[Candidate]) -> None:
        """Hand a batch over, once the tick's thread has taken enough of those before it
        (AHEAD_MAX); at once when it wants no more."""
        with self._room:
            self._room.wait_for(lambda: self._ahead < AHEAD_MAX or self.abandoned.is_set())
            self._ahead += len(batch)
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
            chunk = [self._waiting.popleft() for _ in range(min(size, len(self._waiting)))]
            with self._room:
                self._ahead -= len(chunk)
                self._room.notify_all()
            yield chunk

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


class NewestIds:
    """The newest ids of the trigger tables (`rulestate.newest_ids`), read once per tick by
    the first lookup thread to ask, and shared by the others: on PostgreSQL a reading goes
    past the fence (`postgres.past_the_fence`), which two lookup threads would take in turn,
    the second a FENCE_PAUSE later. A reading that fails fails every thread that asks: the
    database out of reach is waited for once per tick, not once per thread."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._read: tuple[dict[str, int] | None] | BaseException | None = None

    def get(self) -> dict[str, int] | None:
        with self._lock:
            if self._read is None:
                try:
                    with self._store.session() as session:
                        self._read = (rulestate.newest_ids(session),)
                except BaseException as exc:
                    self._read = exc
            if isinstance(self._read, BaseException):
                raise self._read
            return self._read[0]


def look_up_each(
    store: Store, zone: ZoneInfo, work: list[tuple[Rule, Lookup]], now: datetime, newest_ids: NewestIds
) -> None:
    """Look up each rule's candidates in turn (a lookup thread's work); an error goes to the
    rule's lookup, for the tick's thread to report with the rule."""
    try:
        newest = newest_ids.get()
    except BaseException as exc:
        for _, lookup in work:
            lookup.fail(exc)
        return
    for rule, lookup in work:
        if lookup.abandoned.is_set():
            continue
        try:
            look_up(store, zone, rule, now, lookup, newest)
        except BaseException as exc:
            lookup.fail(exc)


def look_up(
    store: Store, zone: ZoneInfo, rule: Rule, now: datetime, lookup: Lookup, newest: dict[str, int] | None
) -> None:
    """Find a rule's due, new occurrences (or its journey's step `lookup.step`) into `lookup`,
    then the watermark they were found against (`newest`: see `rulestate.newest_ids`)."""
    if lookup.step > 1:
        _look_up_step(store, rule, now, lookup)
        return
    hashed = trigger_hash(rule)
    with store.session() as session:
        mark = rulestate.watermark(session, rule.id, hashed, windows.fresh_until(rule, now))
        seq_now = mark.seq if newest is None else newest[_sequence_kind(rule)]
        changes_now = changes.position(session)  # before the lookup: see `changes.position`
        for batch in candidate_queries.batches(session, rule, now, mark, zone):
            if lookup.abandoned.is_set():
                return
            lookup.add(steps.with_first_step_skips(session, rule, batch, now))
    lookup.end(hashed, Watermark(until=now, seq=seq_now, changes=changes_now))


def _look_up_step(store: Store, rule: Rule, now: datetime, lookup: Lookup) -> None:
    """A journey's later step: the journeys whose step before went its delay ago."""
    hashed = steps.step_hash(rule, lookup.step)
    with store.session() as session:
        key = rulestate.state_key(rule.id, lookup.step)
        mark = rulestate.watermark(session, key, hashed, windows.fresh_until(rule, now))
        for batch in steps.batches(session, rule, lookup.step, now, mark):
            if lookup.abandoned.is_set():
                return
            lookup.add(batch)
    lookup.end(hashed, Watermark(until=now, seq=0))


def lookups(rule: Rule) -> list[Lookup]:
    """A rule's lookups for one tick: its trigger's, then one per later step of its journey."""
    return [Lookup(step) for step in range(1, len(rule.journey) + 1)]


def trigger_hash(rule: Rule) -> str:
    """Changes when the trigger or conditions change, which restarts the rule's watermark."""
    shape = rule.trigger.model_dump_json() + repr([c.model_dump() for c in rule.when])
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


def _sequence_kind(rule: Rule) -> str:
    if isinstance(rule.trigger, EventTrigger):
        return "event"
    if isinstance(rule.trigger, ScheduleTrigger):
        return "schedule"
    return "date" if isinstance(rule.trigger, DateTrigger) else "stage"
