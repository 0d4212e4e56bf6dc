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
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, NamedTuple

from sqlmodel import Session

from automator import emails, letters
from automator.clock import Clock
from automator.config import Settings
from automator.dispatch.rechecks import Facts, Verdict, recheck_batch, window_start
from automator.dispatch.rerender import Rerender
from automator.model import DateTrigger, EventTrigger
from automator.project import Project
from automator.rendering import RenderPool
from automator.status import HoldKind, Status
from automator.store import Store, claims, contacts, events, messages, suppressions
from automator.store.claims import Due
from automator.store.messages import Change, Packed

LEASE = timedelta(minutes=5)
ORPHANED = (
    "the dispatcher that was sending it stopped before recording the outcome; "
    "will be sent again (same Message-ID)"
)
# A batch still going out renews its claims this often. On PostgreSQL another dispatcher
# puts back the claims of one whose lock is free only once they have gone SILENCE without a
# renewal: a lock also goes free when the connection holding it is closed under a live
# dispatcher (a DBA's pg_terminate_backend, idle_session_timeout, a firewall dropping an
# idle connection), and that dispatcher is still sending them.
RENEW_AFTER = timedelta(seconds=5)
SILENCE = 6 * RENEW_AFTER
HELD_OUTCOMES = {HoldKind.HEADER: "held: unsafe header", HoldKind.RENDER: "held: unreadable body"}


@dataclass
class Claimed:
    message: Due
    email: emails.OutgoingEmail


class Outcome(NamedTuple):
    """What became of a message a claim did not send: "waiting: quiet hours", "cancelled: …"."""

    rule_id: str
    outcome: str
    message_id: int


@dataclass
class Taken:
    """What one claim did: the messages it took, what became of the others, and whether
    more may be due."""

    messages: list[Due]
    bodies: dict[int, Packed]  # of the messages it took, as stored
    outcomes: list[Outcome]  # of each message it did not take
    more: bool


class Claims:
    """One dispatcher's claims; `owner` names them (`daemon:host:pid:…` or `tick:…`)."""

    def __init__(self, store: Store, project: Project, pool: RenderPool, kind: str, clock: Clock) -> None:
        self.store = store
        self.project = project
        self.settings: Settings = project.settings
        self.pool = pool  # its workers build the emails
        self.rerender = Rerender(pool.renderer)
        self.clock = clock  # the real time: leases outlive whatever time a tick acts as
        self.owner = f"{kind}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.in_flight: set[int] = set()  # claimed, outcome not recorded yet
        self.renewed_at = clock()

    def take(self, now: datetime, limit: int) -> Taken:
        """Re-check a batch of due messages, write the verdicts and mark the sendable ones
        `sending` under this dispatcher's lease, in one transaction, a few statements for the
        whole batch. Their emails are built after it (`letters`): the write lock is held no
        longer than the claim needs."""
        with self.store.transaction() as session:
            claims.without_parallel_workers(session)
            due = claims.due(session, now, limit, lock=True)
            more = len(due) == limit
            busy = claims.lock_contacts(session, {message.contact_id for message in due})
            if busy:  # in another claim: left for the next one
                due = [message for message in due if message.contact_id not in busy]
                more = True
            facts = self.facts(session, due, now)
            verdicts = recheck_batch(due, now, facts, self.settings)
            stopped = [(m, v) for m, v in zip(due, verdicts, strict=True) if v.status is not None]
            sendable = [m for m, v in zip(due, verdicts, strict=True) if v.status is None]
            outcomes = self.write(session, stopped, facts, now)
            taken = claims.claim(session, sendable, now, self.owner, self.lease_end())
            # Read on the claim's connection: another would find its cache out of date.
            bodies = messages.bodies(session, [message.id for message in taken])
        self.in_flight.update(message.id for message in taken)
        return Taken(taken, bodies, outcomes, more)

    def letters(self, taken: Taken, now: datetime) -> tuple[list[Claimed], list[Change]]:
        """The claimed messages' emails, built on the render workers, and the holds of those
        that must not be built (`hold` writes them): a header that would carry a line break,
        or a stored body that cannot be unpacked (see `letters.build_each`)."""
        head = letters.Letterhead.of(self.settings)
        made = self.pool.map(
            partial(letters.build_each, head, now), [_letter(m, taken) for m in taken.messages]
        )
        claimed: list[Claimed] = []
        held: list[Change] = []
        for message, email in zip(taken.messages, made, strict=True):
            if isinstance(email, letters.Refused):
                values = {"lease_until": None, "claimed_by": None, "hold_kind": email.kind}
                held.append(Change(message.id, Status.HELD, email.reason, values))
            else:
                claimed.append(Claimed(message, email))
        return claimed, held

    def hold(self, held: list[Change], rule_of: dict[int, str], now: datetime) -> list[Outcome]:
        """Hold claimed messages whose email must not be built; returns their outcomes."""
        with self.store.session() as session:
            made = messages.change_many(session, held, now, expected=(Status.SENDING,))
        self.in_flight.difference_update(change.message_id for change in held)
        return [
            Outcome(rule_of[change.message_id], HELD_OUTCOMES[change.values["hold_kind"]], change.message_id)
            for change in made
        ]

    def facts(self, session: Session, batch: list[Due], now: datetime) -> Facts:
        """Everything the re-checks of a batch need, read in a few queries for the whole batch.

        Events are read from the earliest moment one could stop a message of the batch that
        is not past its lateness already (that one is cancelled before they are looked at);
        the events that triggered the messages are among them."""
        rules = {rule_id: self.project.rule(rule_id) for rule_id in {m.rule_id for m in batch}}
        triggers = [rule.trigger for rule in rules.values() if rule is not None]
        grouped = {t.event: t.latest_per for t in triggers if isinstance(t, EventTrigger) and t.latest_per}
        stopping = {kind for rule in rules.values() if rule is not None for kind in rule.cancel_events}
        event_types = stopping | set(grouped)
        dated = any(isinstance(t, DateTrigger) for t in triggers)
        contact_ids = {m.contact_id for m in batch}
        live = [m for m in batch if now <= m.expires_at]
        since = min((window_start(m, rules[m.rule_id]) for m in live), default=now)
        history = events.seen_between(
            session, {m.contact_id for m in live}, event_types, since, now, set(grouped.values())
        )
        own = {m.event_id for m in live if m.event_id is not None} if grouped else set()
        cap = self.settings.frequency_cap
        return Facts(
            rules=rules,
            runnable={rule.id for rule in self.project.rules},
            suppressed=suppressions.among(session, {m.email for m in batch}),
            events=history,
            own_events={event.id: event for seen in history.values() for event in seen if event.id in own},
            dates=contacts.dates_of(session, contact_ids) if dated else {},
            sent=claims.sent_times(session, contact_ids, now - cap.per, now) if cap else {},
        )

    def write(
        self, session: Session, stopped: list[tuple[Due, Verdict]], facts: Facts, now: datetime
    ) -> list[Outcome]:
        """The verdicts that stop or delay messages, as compare-and-sets on `queued`, a few
        statements for the batch; returns the outcome of each message changed. A wait
        whose reason the history gives last already only moves the send time."""
        repeats = [m.id for m, v in stopped if v.repeat_quietly and v.until is not None]
        last = messages.last_reasons(session, repeats) if repeats else {}
        quietly = {m.id: v.until for m, v in stopped if v.until is not None and last.get(m.id) == v.reason}
        changes = [_change(m, v) for m, v in stopped if m.id not in quietly]
        made = {c.message_id for c in messages.change_many(session, changes, now, expected=(Status.QUEUED,))}
        made.update(messages.reschedule_many(session, quietly))
        # A wait moved the send time: content that shows it follows.
        moved = [m for m, v in stopped if v.expires_at is not None and m.id in made]
        self.rerender.follow(session, moved, facts.rules, now)
        # Another dispatcher or a person changed the others since they were read.
        return [Outcome(m.rule_id, v.outcome or "", m.id) for m, v in stopped if m.id in made]

    def lease_end(self) -> datetime:
        return self.clock() + LEASE

    def renewal_due(self) -> bool:
        return self.clock() - self.renewed_at > RENEW_AFTER

    def renew(self) -> None:
        """Keep the claims from expiring while they are still being sent: an expired lease
        would let another process put them back and send them again."""
        if not self.renewal_due():
            return
        self.renewed_at = self.clock()
        with self.store.session() as session:
            claims.extend_leases(session, list(self.in_flight), self.owner, self.lease_end())

    def give_back(self, ids: set[int] | list[int], reason: str) -> int:
        """Put back in the queue those of these claims that have no outcome yet (a stop)."""
        with self.store.session() as session:
            return claims.requeue_claimed(session, ids, self.owner, self.clock(), reason)

    def alive(self) -> AbstractContextManager[claims.OwnerLock]:
        """Held while this dispatcher claims and sends: on PostgreSQL, other dispatchers can
        tell that its claims have someone to record them (`recover_abandoned`)."""
        return claims.owning(self.store, self.owner)

    def recover_abandoned(self) -> int:
        """Put back messages whose dispatcher stopped without recording their outcome: their
        lease ran out or (on PostgreSQL) their dispatcher's lock is free and they have not
        been renewed for SILENCE. Returns how many of the latter."""
        now = self.clock()
        with self.store.session() as session:
            claims.requeue_expired(
                session, now, "lease expired while sending; will be sent again (same Message-ID)"
            )
            renewed_before = now - SILENCE + LEASE  # the lease end of a claim renewed SILENCE ago
            return claims.requeue_orphans(session, self.owner, now, ORPHANED, renewed_before)


def _letter(message: Due, taken: Taken) -> letters.Letter:
    body = taken.bodies[message.id]
    contact = message.contact
    return letters.Letter(
        message.id,
        message.email,
        message.subject,
        message.message_id,
        message.rule_id,
        message.variant,
        contact.first_name,
        contact.last_name,
        body.text,
        body.html,
    )


def _change(message: Due, verdict: Verdict) -> Change:
    """A verdict as the change it makes: the new status, why, and the send time, deadline
    or kind of hold that go with it."""
    assert verdict.status is not None
    values: dict[str, Any] = {}
    if verdict.until is not None:
        values["send_at"] = verdict.until
    if verdict.expires_at is not None:
        values["expires_at"] = verdict.expires_at
    if verdict.hold_kind is not None:
        values["hold_kind"] = verdict.hold_kind
    return Change(message.id, verdict.status, verdict.reason, values)
