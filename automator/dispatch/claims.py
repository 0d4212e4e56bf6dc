"""Claiming due messages for one dispatcher: a batch is read, re-checked and the sendable
ones marked `sending` under a lease in the dispatcher's name, in one transaction; the leases
are kept on the real clock, renewed while a batch goes out, and given back on a stop.

A claim takes only what is still `queued` when it writes (on SQLite, under the write lock
taken before the read; on PostgreSQL, rows locked FOR UPDATE SKIP LOCKED), and only what it
took is sent: a daemon and any number of `automator tick` processes may dispatch from one
database at once, and each message still goes out once.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from automator import contents, emails
from automator.clock import Clock
from automator.config import Settings
from automator.dispatch import letters
from automator.dispatch.rechecks import Facts, Verdict, recheck
from automator.errors import StatusChanged, TemplateError, UnsafeHeaderError
from automator.model import DateTrigger, EventTrigger, Rule
from automator.project import Project
from automator.rendering import Renderer
from automator.status import HoldKind, Status
from automator.store import Store, contacts, coupons, events, messages, suppressions
from automator.store.messages import Due
from automator.tables import Message

LEASE = timedelta(minutes=5)
RENEW_AFTER = LEASE / 3  # a batch still going out keeps its claims this fresh


@dataclass
class Claimed:
    message: Due
    email: emails.OutgoingEmail


@dataclass
class Batch:
    """What one claim did: the messages it took, what became of the others, and whether
    more may be due."""

    claimed: list[Claimed]
    outcomes: list[tuple[str, str]]  # (rule, outcome) of each message it did not take
    more: bool


class Claims:
    """One dispatcher's claims; `owner` names them (`daemon:host:pid:…` or `tick:…`)."""

    def __init__(self, store: Store, project: Project, renderer: Renderer, kind: str, clock: Clock) -> None:
        self.store = store
        self.project = project
        self.settings: Settings = project.settings
        self.renderer = renderer
        self.clock = clock  # the real time: leases outlive whatever time a tick acts as
        self.owner = f"{kind}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.in_flight: set[int] = set()  # claimed, outcome not recorded yet
        self.renewed_at = clock()

    def take(self, now: datetime, limit: int) -> Batch:
        """Re-check a batch of due messages, write each verdict and mark the sendable ones
        `sending` under this dispatcher's lease, in one transaction; then build their
        emails, outside it (the write lock is held no longer than the claim needs)."""
        outcomes: list[tuple[str, str]] = []
        with self.store.transaction() as session:
            due = messages.due(session, now, limit, lock=True)
            facts = self.facts(session, due, now)
            in_batch: Counter[int] = Counter()
            sendable = []
            for message in due:
                verdict = recheck(message, now, facts, self.settings, in_batch[message.contact_id])
                if verdict.status is None:
                    sendable.append(message)
                    in_batch[message.contact_id] += 1
                    continue
                try:
                    self.write(session, message, verdict, facts.rules[message.rule_id], now)
                except StatusChanged:
                    continue  # another dispatcher or a person changed it since it was read
                outcomes.append((message.rule_id, verdict.outcome or ""))
            taken = messages.claim(session, sendable, now, self.owner, self.lease_end())
        self.in_flight.update(message.id for message in taken)
        claimed = self._letters(taken, now, outcomes)
        return Batch(claimed, outcomes, len(due) == limit)

    def _letters(self, taken: list[Due], now: datetime, outcomes: list[tuple[str, str]]) -> list[Claimed]:
        """The claimed messages' emails; one whose header would carry a line break is held."""
        claimed, unsafe = [], []
        for message in taken:
            try:
                claimed.append(Claimed(message, letters.build(self.settings, message.contact, message, now)))
            except UnsafeHeaderError as exc:
                unsafe.append((message, str(exc)))
        if unsafe:
            with self.store.session() as session:
                for message, reason in unsafe:
                    stored = messages.known(session, message.id)
                    messages.change(
                        session,
                        stored,
                        Status.HELD,
                        now,
                        reason,
                        hold_kind=HoldKind.HEADER,
                        lease_until=None,
                        claimed_by=None,
                    )
                    outcomes.append((message.rule_id, "held: unsafe header"))
            self.in_flight.difference_update(message.id for message, _ in unsafe)
        return claimed

    def facts(self, session: Session, batch: list[Due], now: datetime) -> Facts:
        """Everything the re-checks of a batch need, read in a few queries for the whole batch."""
        rules = {rule_id: self.project.rule(rule_id) for rule_id in {m.rule_id for m in batch}}
        triggers = [rule.trigger for rule in rules.values() if rule is not None]
        newest = {t.event for t in triggers if isinstance(t, EventTrigger) and t.latest_per}
        event_types = {t.cancel_if.event for t in triggers if t.cancel_if is not None} | newest
        event_ids = {m.event_id for m in batch if m.event_id is not None} if newest else set()
        dated = any(isinstance(t, DateTrigger) for t in triggers)
        contact_ids = {m.contact_id for m in batch}
        cap = self.settings.frequency_cap
        return Facts(
            rules=rules,
            runnable={rule.id for rule in self.project.rules},
            suppressed=suppressions.among(session, {m.email for m in batch}),
            events=events.of_types(session, contact_ids, event_types, now),
            own_events=events.by_ids(session, event_ids),
            dates=contacts.dates_of(session, contact_ids) if dated else {},
            sent=messages.sent_times(session, contact_ids, now - cap.per, now) if cap else {},
        )

    def write(
        self, session: Session, message: Due, verdict: Verdict, rule: Rule | None, now: datetime
    ) -> None:
        """A verdict that stops or delays a message, written as a compare-and-set on `queued`."""
        assert verdict.status is not None
        stored = messages.known(session, message.id)
        if verdict.repeat_quietly and verdict.until is not None:
            last = messages.history(session, message.id)[-1:]
            if last and last[0].reason == verdict.reason:  # the history says so once
                messages.reschedule(session, stored, verdict.until)
                return
        values: dict[str, Any] = {"send_at": verdict.until} if verdict.until is not None else {}
        if verdict.expires_at is not None:
            values["expires_at"] = verdict.expires_at
        if verdict.hold_kind is not None:
            values["hold_kind"] = verdict.hold_kind
        messages.change(session, stored, verdict.status, now, verdict.reason, **values)
        if verdict.expires_at is not None and rule is not None:  # a wait: the send time moved
            self._rerender(session, stored, rule, now)

    def _rerender(self, session: Session, message: Message, rule: Rule, now: datetime) -> None:
        """Content that depends on the send time (days left…) follows a moved send time; the
        stored content stays exactly what will be sent."""
        contact = contacts.by_id(session, message.contact_id)
        assert contact is not None and message.id is not None
        coupon = coupons.for_message(session, message.id)
        try:
            rendered = contents.render(self.renderer, session, rule, message, contact, coupon)
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

    def lease_end(self) -> datetime:
        return self.clock() + LEASE

    def renew(self) -> None:
        """Keep the claims from expiring while they are still being sent: an expired lease
        would let another process put them back and send them again."""
        if self.clock() - self.renewed_at <= RENEW_AFTER:
            return
        self.renewed_at = self.clock()
        with self.store.session() as session:
            messages.extend_leases(session, self.in_flight, self.owner, self.lease_end())

    def give_back(self, ids: set[int] | list[int], reason: str) -> int:
        """Put back in the queue those of these claims that have no outcome yet (a stop)."""
        with self.store.session() as session:
            return messages.requeue_claimed(session, ids, self.owner, self.clock(), reason)

    def recover_expired(self) -> None:
        """Put back messages whose dispatcher stopped without recording their outcome."""
        with self.store.session() as session:
            messages.requeue_expired(
                session, self.clock(), "lease expired while sending; will be sent again (same Message-ID)"
            )
