"""Deliver due messages: re-check each one, respect quiet hours and the frequency cap, send,
and record every outcome in the message's history.

Each message is claimed (status `sending`, with a lease) in one transaction, sent, then
marked in another, so a crash between the two leaves a lease that expires and the message
is sent again with the same Message-ID (at-least-once, never silently lost).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlmodel import Session

from automator import emails, policies
from automator.config import Settings
from automator.errors import PermanentDeliveryError, TemplateError, TemporaryDeliveryError
from automator.model import DateTrigger, EventTrigger, Rule
from automator.schema import Event, Message
from automator.store import contacts, coupons, events, messages, suppressions
from automator.store.contacts import Recipient
from automator.store.messages import Due

if TYPE_CHECKING:
    from automator.engine import Engine, TickReport

log = logging.getLogger("automator.dispatch")

LEASE = timedelta(minutes=5)
RULE_MISSING_RETRY = timedelta(minutes=10)
BATCH = 500
# While a batch goes out, what has been sent is recorded once this many are done, or this
# often: a crash re-sends at most that much (plus what was on the wire), not the batch.
RECORD_EVERY = 100
RECORD_AFTER_SECONDS = 1.0
T = TypeVar("T")


class Located(Protocol):
    """A contact as far as quiet hours go: an ORM Contact, a dispatch Recipient or a row."""

    @property
    def timezone(self) -> str | None: ...


class Named(Protocol):
    """A contact as far as the To header goes."""

    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...


class Letter(Protocol):
    """A message as far as its email goes: a claimed Due, or a Stored one."""

    @property
    def email(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def text_body(self) -> str: ...
    @property
    def html_body(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def rule_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored message with its content, as far as its email goes."""

    email: str
    subject: str
    text_body: str
    html_body: str
    message_id: str
    rule_id: str


def contact_zone(settings: Settings, contact: Located) -> ZoneInfo:
    return (_zone(contact.timezone) if contact.timezone else None) or settings.zone


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def planned_send_at(settings: Settings, contact: Located, at: datetime) -> datetime:
    """`at`, moved to the end of the contact's quiet hours when it falls inside them."""
    if settings.quiet_hours is None:
        return at
    quiet = policies.quiet_until(
        at, contact_zone(settings, contact), settings.quiet_hours.start, settings.quiet_hours.end
    )
    return quiet or at


@dataclass
class Claimed:
    message: Due
    email: emails.OutgoingEmail


class Dispatcher:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.store = engine.store
        self.in_flight_ids: set[int] = set()

    async def run(
        self, now: datetime, report: TickReport, batch_size: int = BATCH, stop: asyncio.Event | None = None
    ) -> int:
        """Deliver every message due by `now`; returns how many were sent.

        Bounded: each pass moves every message it touches out of the due set (claimed,
        cancelled, or deferred past now).
        """
        self.recover_leases(now)
        # The database work runs in a worker thread while the event loop sends, one
        # transaction at a time: two at once would contend for SQLite's write lock and the GIL.
        database = asyncio.Lock()
        sent = 0
        claimed, more = await _serially(database, self.claim, now, report, batch_size)
        for _ in range(100_000):
            if not claimed:
                break
            # The next batch is claimed while this one is being sent.
            sending = asyncio.ensure_future(self.send_claimed(claimed, now, report, database))
            stopping = stop is not None and stop.is_set()
            if more and not stopping:
                claimed, more = await _serially(database, self.claim, now, report, batch_size)
            else:
                claimed, more = [], False
            sent += await sending
        for item in claimed:  # claimed but never sent (stopping): back to the queue now
            self.in_flight_ids.discard(item.message.id)
        if claimed:
            self.release_claimed([item.message for item in claimed], now)
        return sent

    def release_claimed(self, claimed: list[Due], now: datetime) -> None:
        with self.store.session() as session:
            for message in claimed:
                messages.change(
                    session,
                    _stored(session, message),
                    "queued",
                    now,
                    "dispatch stopped before sending",
                    lease_until=None,
                )

    def recover_leases(self, now: datetime) -> None:
        """Put back messages a stopped dispatcher left in `sending`."""
        with self.store.session() as session:
            for message in messages.expired_leases(session, now):
                messages.change(
                    session,
                    message,
                    "queued",
                    now,
                    "lease expired while sending; will be sent again (same Message-ID)",
                    lease_until=None,
                )

    def claim(self, now: datetime, report: TickReport, limit: int) -> tuple[list[Claimed], bool]:
        """In one transaction: re-check a batch of due messages and mark the sendable ones
        `sending` with a lease. Returns them, and whether more may be due.

        Runs in a worker thread while the previous batch is sent; it only adds to `report`
        under the report's lock.
        """
        with self.store.session() as session:
            batch = messages.due(session, now, limit, lock=True)
            facts = self.facts(session, batch, now)
            in_batch: Counter[int] = Counter()
            claimed = []
            held: list[tuple[str, str]] = []
            for message in batch:
                outcome = self.recheck(session, message, now, facts, in_batch[message.contact_id])
                if outcome is not None:
                    held.append((message.rule_id, outcome))
                    continue
                in_batch[message.contact_id] += 1
                claimed.append(Claimed(message, self.build_for(message.contact, message, now)))
            messages.mark_sending(session, [item.message for item in claimed], now, now + LEASE)
            with report.lock:
                for rule_id, outcome in held:
                    report.rule(rule_id).outcomes[outcome] += 1
        self.in_flight_ids.update(item.message.id for item in claimed)
        return claimed, len(batch) == limit

    def in_flight(self, session: Session) -> list[Message]:
        """Messages this dispatcher claimed whose send has not been recorded yet."""
        return messages.sending_among(session, self.in_flight_ids)

    async def send_claimed(
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

        sending = asyncio.ensure_future(
            self.engine.transport.send_many([item.email for item in claimed], on_result)
        )
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
                taken = finished[:]
                del finished[:]
                if taken:
                    sent += await _serially(database, self.record, taken, now, report)
        finally:
            sending.cancel()  # a stop past the grace cancels us: the sends stop with us
        await sending  # send_many reports each email's error; this only raises on a bug
        return sent

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
            self.in_flight_ids.discard(item.message.id)
        failed = self.failed(failures, now) if failures else []
        sent = Counter(message.rule_id for message in delivered)
        with report.lock:
            for rule_id, outcome in failed:
                report.rule(rule_id).outcomes[outcome] += 1
            for rule_id, count in sent.items():
                report.rule(rule_id).sent += count
        self.sent(delivered, now)
        return len(delivered)

    def facts(self, session: Session, batch: list[Due], now: datetime) -> Facts:
        """Everything the re-checks of a batch need, read in a few queries for the whole batch."""
        project = self.engine.project
        rules = {rule_id: project.rule(rule_id) for rule_id in {m.rule_id for m in batch}}
        triggers = [rule.trigger for rule in rules.values() if rule is not None]
        newest = {t.event for t in triggers if isinstance(t, EventTrigger) and t.latest_per}
        event_types = {t.cancel_if.event for t in triggers if t.cancel_if is not None} | newest
        event_ids = {m.event_id for m in batch if m.event_id is not None} if newest else set()
        dated = any(isinstance(t, DateTrigger) for t in triggers)
        contact_ids = {m.contact_id for m in batch}
        cap = self.settings.frequency_cap
        return Facts(
            rules=rules,
            runnable={rule.id for rule in project.rules},
            suppressed=suppressions.among(session, {m.email for m in batch}),
            events=events.of_types(session, contact_ids, event_types, now),
            own_events=events.by_ids(session, event_ids),
            dates=contacts.dates_of(session, contact_ids) if dated else {},
            sent=messages.sent_times(session, contact_ids, now - cap.per, now) if cap else {},
        )

    def recheck(
        self, session: Session, message: Due, now: datetime, facts: Facts, claimed: int = 0
    ) -> str | None:
        """Everything that can stop or delay a message just before it goes out; the outcome
        (for the tick summary) or None when it may be sent now."""
        if message.email in facts.suppressed:
            messages.change(session, _stored(session, message), "suppressed", now, "address is suppressed")
            return "suppressed"
        if now > message.expires_at:
            late = f"too late: due {message.due_at.isoformat()}, max lateness passed"
            messages.change(session, _stored(session, message), "cancelled", now, late)
            return "cancelled: too late"
        rule = facts.rules[message.rule_id]
        if rule is not None and not rule.enabled:
            messages.change(
                session,
                _stored(session, message),
                "held",
                now,
                f"rule '{rule.id}' is disabled (enabled: false)",
                hold_kind="rule",
            )
            return "held: rule disabled"
        if rule is None or rule.id not in facts.runnable:
            self._wait_for_rule(session, _stored(session, message), now)
            return "waiting: rule does not load"
        contact = message.contact
        cancel = self.cancel_reason(rule, message, contact, now, facts)
        if cancel:
            messages.change(session, _stored(session, message), "cancelled", now, cancel)
            return "cancelled: " + cancel.split(":")[0]
        return self.defer(session, message, contact, rule, now, facts.sent.get(contact.id, []), claimed)

    def _wait_for_rule(self, session: Session, message: Message, now: datetime) -> None:
        """Retry later; the history says so once, not on every retry."""
        reason = f"waiting: rule '{message.rule_id}' does not load (see automator check)"
        assert message.id is not None
        last = messages.history(session, message.id)[-1:]
        if last and last[0].reason == reason:
            messages.reschedule(session, message, now + RULE_MISSING_RETRY)
        else:
            messages.change(session, message, "queued", now, reason, send_at=now + RULE_MISSING_RETRY)

    def cancel_reason(
        self, rule: Rule, message: Due, contact: Recipient, now: datetime, facts: Facts
    ) -> str | None:
        trigger = rule.trigger
        history = facts.events.get(contact.id, [])
        if trigger.cancel_if is not None:
            since = message.occurred_at
            if isinstance(trigger, DateTrigger):
                within = trigger.cancel_if.within
                since = message.occurred_at - within if within is not None else message.due_at
            inclusive = isinstance(trigger, DateTrigger)
            found = next(
                (
                    e
                    for e in history
                    if e.type == trigger.cancel_if.event
                    and e.at <= now
                    and (e.at >= since if inclusive else e.at > since)
                ),
                None,
            )
            if found is not None:
                return f"{found.type}: {found.type} at {found.at.isoformat()} ({found.key})"
        if isinstance(trigger, EventTrigger) and trigger.latest_per and message.event_id:
            newer = _newer_of_same(facts.own_events.get(message.event_id), history, trigger.latest_per, now)
            if newer is not None:
                return f"superseded: a newer {newer.type} at {newer.at.isoformat()} ({newer.key})"
        if isinstance(trigger, DateTrigger):
            current = facts.dates.get(contact.id, {}).get(trigger.attribute)
            if current != message.occurred_at:
                shown = current.isoformat() if current else "removed"
                return f"date changed: {trigger.attribute} is now {shown}"
        if contact.stage not in rule.stages:
            return f"stage changed: contact is in {contact.stage}, rule targets {', '.join(rule.stages)}"
        return None

    def defer(
        self,
        session: Session,
        message: Due,
        contact: Recipient,
        rule: Rule,
        now: datetime,
        sent_before: list[datetime],
        claimed: int = 0,
    ) -> str | None:
        """Quiet hours and the frequency cap make a message wait; they never drop it."""
        if message.skip_policies:
            return None
        quiet = planned_send_at(self.settings, contact, now)
        if quiet > now:
            self._wait(session, message, rule, quiet, now, "quiet hours in the contact's time zone")
            return "waiting: quiet hours"
        cap = self.settings.frequency_cap
        if cap is not None:
            # Messages claimed earlier in this batch count as sent now.
            sent = sent_before + [now] * claimed
            until = policies.cap_until(sent, cap.max, cap.per, now)
            if until is not None:
                until = planned_send_at(self.settings, contact, until)
                self._wait(
                    session,
                    message,
                    rule,
                    until,
                    now,
                    f"frequency cap ({cap.max} per {_hours(cap.per)})",
                )
                return "waiting: frequency cap"
        return None

    def _wait(
        self,
        session: Session,
        message: Due,
        rule: Rule,
        until: datetime,
        now: datetime,
        why: str,
    ) -> None:
        stored = _stored(session, message)
        messages.change(
            session,
            stored,
            "queued",
            now,
            f"waiting until {until.isoformat()}: {why}",
            send_at=until,
            expires_at=max(message.expires_at, until + rule.lateness),
        )
        self._rerender(session, stored, rule, now)

    def _rerender(self, session: Session, message: Message, rule: Rule, now: datetime) -> None:
        """Content that depends on the send time (days left…) follows a moved send time; the
        stored content stays exactly what will be sent."""
        contact = contacts.by_id(session, message.contact_id)
        assert contact is not None and message.id is not None
        try:
            rendered = self.engine.render(
                rule, message, contact, coupons.for_message(session, message.id), session
            )
        except TemplateError as exc:
            messages.record(
                session, message.id, now, message.status, f"kept the content rendered earlier: {exc}"
            )
            return
        stored = messages.content(session, message.id)
        if (rendered.subject, rendered.text, rendered.html) != (message.subject, stored.text, stored.html):
            messages.change(
                session,
                message,
                message.status,
                now,
                "re-rendered for the new send time",
                subject=rendered.subject,
            )
            messages.set_content(session, message.id, rendered.text, rendered.html)

    def build(
        self, contact: Named | None, message: Message, content: messages.Content, now: datetime
    ) -> emails.OutgoingEmail:
        """The email a stored message, with its contact and content, becomes when it is sent
        at `now`."""
        letter = Stored(
            message.email, message.subject, content.text, content.html, message.message_id, message.rule_id
        )
        return self.build_for(contact, letter, now)

    def build_for(self, contact: Named | None, message: Letter, now: datetime) -> emails.OutgoingEmail:
        name = " ".join(filter(None, [contact.first_name, contact.last_name])) if contact else None
        return emails.build_email(
            sender=self.settings.sender,
            to=message.email,
            to_name=name or None,
            subject=message.subject,
            text=message.text_body,
            html=message.html_body,
            message_id=message.message_id,
            rule_id=message.rule_id,
            date=now,
            list_unsubscribe_url=emails.unsubscribe_url(
                self.settings.base_url, self.settings.secret, message.email
            ),
        )

    def sent(self, delivered: list[Due], now: datetime) -> None:
        """Mark messages sent and carry out their rules' `then` (move the contact, tag it)."""
        if not delivered:
            return
        with self.store.session() as session:
            messages.mark_sent(session, delivered, now)
            self.follow_up(session, delivered, now)

    def follow_up(self, session: Session, delivered: list[Due], now: datetime) -> None:
        """Each delivered message's `then`, in order: later messages see earlier moves."""
        rules = {rule_id: self.engine.project.rule(rule_id) for rule_id in {m.rule_id for m in delivered}}
        followed = [
            (message, rule)
            for message in delivered
            if (rule := rules[message.rule_id]) is not None and (rule.then.move_to or rule.then.tag)
        ]
        if not followed:
            return
        # As they are now: an event may have moved a contact since the claim.
        claimed_in = {message.contact_id: message.contact.stage for message, _ in followed}
        stages = contacts.current_stages(session, claimed_in)
        moves: list[tuple[int, str | None, str, str]] = []
        tags: list[tuple[int, str]] = []
        for message, rule in followed:
            stage = stages[message.contact_id]
            if rule.then.move_to and stage != rule.then.move_to:
                cause = f"rule {rule.id} (message {message.id})"
                moves.append((message.contact_id, stage, rule.then.move_to, cause))
                stages[message.contact_id] = rule.then.move_to
            if rule.then.tag:
                tags.append((message.contact_id, rule.then.tag))
        contacts.move_many(session, moves, now)
        contacts.add_tags(session, tags, now)

    def failed(self, failures: list[tuple[Due, BaseException]], now: datetime) -> list[tuple[str, str]]:
        """Record failed sends (one log line per failure) in one transaction; returns each
        one's rule and outcome for the summary."""
        with self.store.session() as session:
            return [
                (message.rule_id, self._failure(session, message, now, error)) for message, error in failures
            ]

    def _failure(self, session: Session, message: Due, now: datetime, error: BaseException) -> str:
        log.warning(
            "delivery failed",
            extra={
                "fields": {
                    "message": message.id,
                    "rule": message.rule_id,
                    "email": message.email,
                    "attempt": message.attempts,
                    "error": str(error),
                }
            },
        )
        if isinstance(error, PermanentDeliveryError):
            self.permanent_failure(session, message, now, error)
            return "failed: rejected by server"
        if not isinstance(error, TemporaryDeliveryError):
            # An unexpected error must not lose the message: retry it like a 4xx.
            log.error("unexpected error sending message %s", message.id, exc_info=error)
            error = TemporaryDeliveryError(repr(error))
        self.temporary_failure(session, message, now, error)
        return "retrying: delivery failed"

    def temporary_failure(
        self, session: Session, message: Due, now: datetime, exc: TemporaryDeliveryError
    ) -> None:
        if message.attempts >= self.settings.retry_limit:
            messages.change(
                session,
                _stored(session, message),
                "failed",
                now,
                f"gave up after {message.attempts} attempts: {exc}",
                lease_until=None,
                last_error=str(exc),
            )
            return
        retry = policies.retry_at(message.attempts, now)
        messages.change(
            session,
            _stored(session, message),
            "queued",
            now,
            f"attempt {message.attempts} failed, retry at {retry.isoformat()}: {exc}",
            send_at=retry,
            lease_until=None,
            last_error=str(exc),
            expires_at=max(message.expires_at, retry + timedelta(days=1)),
        )

    def permanent_failure(
        self, session: Session, message: Due, now: datetime, exc: PermanentDeliveryError
    ) -> None:
        messages.change(
            session,
            _stored(session, message),
            "failed",
            now,
            f"rejected: {exc}",
            lease_until=None,
            last_error=str(exc),
        )
        if exc.address_rejected:
            suppressions.add(session, message.email, "bounced", str(exc), now)


async def _serially(database: asyncio.Lock, work: Callable[..., T], *args: Any) -> T:
    """`work(*args)` in a worker thread, once the pass's previous database work is done."""
    async with database:
        return await asyncio.to_thread(work, *args)


def _stored(session: Session, message: Due) -> Message:
    """The stored message behind a claimed one, for the rare paths that change it."""
    stored = messages.get(session, message.id)
    assert stored is not None
    return stored


@dataclass
class Facts:
    """What the re-checks of one claimed batch read, loaded once for the batch."""

    rules: dict[str, Rule | None]  # the batch's rules by id (None: does not load)
    runnable: set[str]  # ids of the rules that run (enabled, template parses)
    suppressed: set[str]
    events: dict[int, list[Event]]  # per contact, of the types the batch's rules look at, by time
    own_events: dict[int, Event]  # the events that triggered the batch's messages (for latest_per)
    dates: dict[int, dict[str, datetime]]  # per contact, date attributes (for date triggers)
    sent: dict[int, list[datetime]]  # per contact, send times inside the frequency-cap window


def _newer_of_same(event: Event | None, history: list[Event], key: str, now: datetime) -> Event | None:
    """A later event of the same type with the same `key` property (e.g. the same cart)."""
    if event is None or event.properties.get(key) is None:
        return None  # events without the property are each their own group (as when queued)
    value = event.properties[key]
    return next(
        (
            other
            for other in history
            if other.type == event.type and event.at < other.at <= now and other.properties.get(key) == value
        ),
        None,
    )


def _hours(value: timedelta) -> str:
    hours = value.total_seconds() / 3600
    return f"{hours:g}h"
