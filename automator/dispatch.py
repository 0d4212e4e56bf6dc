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
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlmodel import Session

from automator import emails, policies
from automator.config import Settings
from automator.errors import PermanentDeliveryError, TemplateError, TemporaryDeliveryError
from automator.model import DateTrigger, EventTrigger, Rule
from automator.schema import Contact, Event, Message
from automator.store import contacts, coupons, events, messages, suppressions, table

if TYPE_CHECKING:
    from automator.engine import Engine, TickReport

log = logging.getLogger("automator.dispatch")

LEASE = timedelta(minutes=5)
RULE_MISSING_RETRY = timedelta(minutes=10)
BATCH = 500
EVENTS = table(Event)
MESSAGES = table(Message)


def contact_zone(settings: Settings, contact: Contact) -> ZoneInfo:
    return (_zone(contact.timezone) if contact.timezone else None) or settings.zone


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def planned_send_at(settings: Settings, contact: Contact, at: datetime) -> datetime:
    """`at`, moved to the end of the contact's quiet hours when it falls inside them."""
    if settings.quiet_hours is None:
        return at
    quiet = policies.quiet_until(
        at, contact_zone(settings, contact), settings.quiet_hours.start, settings.quiet_hours.end
    )
    return quiet or at


@dataclass
class Claimed:
    message: Message
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
        sent = 0
        claimed, more = await asyncio.to_thread(self.claim, now, report, batch_size)
        for _ in range(100_000):
            if not claimed:
                break
            # The next batch is claimed (in a thread) while this one is being sent.
            sending = asyncio.ensure_future(self.send_claimed(claimed, now, report))
            stopping = stop is not None and stop.is_set()
            if more and not stopping:
                claimed, more = await asyncio.to_thread(self.claim, now, report, batch_size)
            else:
                claimed, more = [], False
            sent += await sending
        for item in claimed:  # claimed but never sent (stopping): back to the queue now
            self.in_flight_ids.discard(item.message.id or 0)
        if claimed:
            self.release_claimed([item.message for item in claimed], now)
        return sent

    def release_claimed(self, claimed: list[Message], now: datetime) -> None:
        with self.store.session() as session:
            for message in claimed:
                messages.change(
                    session, message, "queued", now, "dispatch stopped before sending", lease_until=None
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
            for message in batch:
                outcome = self.recheck(session, message, now, facts, in_batch[message.contact_id])
                if outcome is not None:
                    with report.lock:
                        report.rule(message.rule_id).outcomes[outcome] += 1
                    continue
                in_batch[message.contact_id] += 1
                claimed.append(
                    Claimed(message, self.build_for(facts.contacts.get(message.contact_id), message, now))
                )
            messages.mark_sending(session, [item.message for item in claimed], now, now + LEASE)
        self.in_flight_ids.update(item.message.id or 0 for item in claimed)
        return claimed, len(batch) == limit

    def in_flight(self, session: Session) -> list[Message]:
        """Messages this dispatcher claimed whose send has not been recorded yet."""
        if not self.in_flight_ids:
            return []
        rows = session.execute(
            select(Message).where(MESSAGES.c.id.in_(self.in_flight_ids), MESSAGES.c.status == "sending")
        )
        return list(rows.scalars())

    async def send_claimed(self, claimed: list[Claimed], now: datetime, report: TickReport) -> int:
        """Send claimed messages concurrently (the transport bounds its own concurrency)."""
        results = await asyncio.gather(
            *(self.engine.transport.send(item.email) for item in claimed), return_exceptions=True
        )
        delivered: list[Message] = []
        outcomes: list[tuple[str, str]] = []
        for item, result in zip(claimed, results, strict=True):
            message = item.message
            if isinstance(result, BaseException):
                outcomes.append((message.rule_id, self.failed(message, now, result)))
            else:
                delivered.append(message)
            self.in_flight_ids.discard(message.id or 0)
        with report.lock:
            for rule_id, outcome in outcomes:
                report.rule(rule_id).outcomes[outcome] += 1
            for message in delivered:
                report.rule(message.rule_id).sent += 1
        self.sent(delivered, now)
        return len(delivered)

    def facts(self, session: Session, batch: list[Message], now: datetime) -> Facts:
        """Everything the re-checks of a batch need, read in a few queries for the whole batch."""
        rules = {m.rule_id: self.engine.project.rule(m.rule_id) for m in batch}
        event_types = set()
        for rule in rules.values():
            if rule is not None and rule.trigger.cancel_if is not None:
                event_types.add(rule.trigger.cancel_if.event)
            if rule is not None and isinstance(rule.trigger, EventTrigger) and rule.trigger.latest_per:
                event_types.add(rule.trigger.event)
        contact_ids = {m.contact_id for m in batch}
        cap = self.settings.frequency_cap
        return Facts(
            suppressed=suppressions.among(session, {m.email for m in batch}),
            contacts=contacts.by_ids(session, contact_ids),
            events=events.of_types(session, contact_ids, event_types, now),
            own_events=events.by_ids(session, {m.event_id for m in batch if m.event_id is not None}),
            dates=contacts.dates_of(session, contact_ids),
            sent=messages.sent_times(session, contact_ids, now - cap.per, now) if cap else {},
        )

    def recheck(
        self, session: Session, message: Message, now: datetime, facts: Facts, claimed: int = 0
    ) -> str | None:
        """Everything that can stop or delay a message just before it goes out; the outcome
        (for the tick summary) or None when it may be sent now."""
        if message.email in facts.suppressed:
            messages.change(session, message, "suppressed", now, "address is suppressed")
            return "suppressed"
        if now > message.expires_at:
            late = f"too late: due {message.due_at.isoformat()}, max lateness passed"
            messages.change(session, message, "cancelled", now, late)
            return "cancelled: too late"
        rule = self.engine.project.rule(message.rule_id)
        if rule is not None and not rule.enabled:
            messages.change(
                session,
                message,
                "held",
                now,
                f"rule '{rule.id}' is disabled (enabled: false)",
                hold_kind="rule",
            )
            return "held: rule disabled"
        if rule is None or rule not in self.engine.project.rules:
            self._wait_for_rule(session, message, now)
            return "waiting: rule does not load"
        contact = facts.contacts[message.contact_id]
        cancel = self.cancel_reason(rule, message, contact, now, facts)
        if cancel:
            messages.change(session, message, "cancelled", now, cancel)
            return "cancelled: " + cancel.split(":")[0]
        return self.defer(session, message, contact, rule, now, facts.sent.get(contact.id or 0, []), claimed)

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
        self, rule: Rule, message: Message, contact: Contact, now: datetime, facts: Facts
    ) -> str | None:
        trigger = rule.trigger
        history = facts.events.get(contact.id or 0, [])
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
            current = facts.dates.get(contact.id or 0, {}).get(trigger.attribute)
            if current != message.occurred_at:
                shown = current.isoformat() if current else "removed"
                return f"date changed: {trigger.attribute} is now {shown}"
        if contact.stage not in rule.stages:
            return f"stage changed: contact is in {contact.stage}, rule targets {', '.join(rule.stages)}"
        return None

    def defer(
        self,
        session: Session,
        message: Message,
        contact: Contact,
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
        message: Message,
        rule: Rule,
        until: datetime,
        now: datetime,
        why: str,
    ) -> None:
        messages.change(
            session,
            message,
            "queued",
            now,
            f"waiting until {until.isoformat()}: {why}",
            send_at=until,
            expires_at=max(message.expires_at, until + rule.lateness),
        )
        self._rerender(session, message, rule, now)

    def _rerender(self, session: Session, message: Message, rule: Rule, now: datetime) -> None:
        """Content that depends on the send time (days left…) follows a moved send time; the
        stored content stays exactly what will be sent."""
        contact = session.get(Contact, message.contact_id)
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
        if (rendered.subject, rendered.text, rendered.html) != (
            message.subject,
            message.text_body,
            message.html_body,
        ):
            messages.change(
                session,
                message,
                message.status,
                now,
                "re-rendered for the new send time",
                subject=rendered.subject,
                text_body=rendered.text,
                html_body=rendered.html,
            )

    def build(self, session: Session, message: Message, now: datetime) -> emails.OutgoingEmail:
        """The email a message becomes when it is sent at `now`."""
        return self.build_for(session.get(Contact, message.contact_id), message, now)

    def build_for(self, contact: Contact | None, message: Message, now: datetime) -> emails.OutgoingEmail:
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

    def sent(self, delivered: list[Message], now: datetime) -> None:
        """Mark messages sent and carry out their rules' `then` (move the contact, tag it)."""
        if not delivered:
            return
        with self.store.session() as session:
            messages.mark_sent(session, delivered, now)
            people = contacts.by_ids(session, {m.contact_id for m in delivered})
            moves: list[tuple[int, str | None, str, str]] = []
            tags: list[tuple[int, str]] = []
            stages: dict[int | None, str | None] = {}
            for message in delivered:
                rule = self.engine.project.rule(message.rule_id)
                contact = people.get(message.contact_id)
                if rule is None or contact is None:
                    continue
                if rule.then.move_to and stages.get(contact.id, contact.stage) != rule.then.move_to:
                    cause = f"rule {rule.id} (message {message.id})"
                    moves.append(
                        (message.contact_id, stages.get(contact.id, contact.stage), rule.then.move_to, cause)
                    )
                    stages[message.contact_id] = rule.then.move_to  # later messages see the move
                if rule.then.tag:
                    tags.append((message.contact_id, rule.then.tag))
            contacts.move_many(session, moves, now)
            contacts.add_tags(session, tags, now)

    def failed(self, message: Message, now: datetime, error: BaseException) -> str:
        """Record a failed send (one log line per failure); returns the outcome for the summary."""
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
            self.permanent_failure(message, now, error)
            return "failed: rejected by server"
        if not isinstance(error, TemporaryDeliveryError):
            # An unexpected error must not lose the message: retry it like a 4xx.
            log.error("unexpected error sending message %s", message.id, exc_info=error)
            error = TemporaryDeliveryError(repr(error))
        self.temporary_failure(message, now, error)
        return "retrying: delivery failed"

    def temporary_failure(self, message: Message, now: datetime, exc: TemporaryDeliveryError) -> None:
        with self.store.session() as session:
            if message.attempts >= self.settings.retry_limit:
                messages.change(
                    session,
                    message,
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
                message,
                "queued",
                now,
                f"attempt {message.attempts} failed, retry at {retry.isoformat()}: {exc}",
                send_at=retry,
                lease_until=None,
                last_error=str(exc),
                expires_at=max(message.expires_at, retry + timedelta(days=1)),
            )

    def permanent_failure(self, message: Message, now: datetime, exc: PermanentDeliveryError) -> None:
        with self.store.session() as session:
            messages.change(
                session,
                message,
                "failed",
                now,
                f"rejected: {exc}",
                lease_until=None,
                last_error=str(exc),
            )
            if exc.address_rejected:
                suppressions.add(session, message.email, "bounced", str(exc), now)


@dataclass
class Facts:
    """What the re-checks of one claimed batch read, loaded once for the batch."""

    suppressed: set[str]
    contacts: dict[int, Contact]
    events: dict[int, list[Event]]  # per contact, of the types the batch's rules look at, by time
    own_events: dict[int, Event]  # the events that triggered the batch's messages
    dates: dict[int, dict[str, datetime]]
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
