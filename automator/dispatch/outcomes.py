"""What became of claimed messages, recorded as the transport answers: sent (and the rule's
`then`: move the contact, tag it), retried later with backoff, or failed for good (a
rejected address is suppressed as bounced)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlmodel import Session

from automator import policies
from automator.config import Settings
from automator.errors import PermanentDeliveryError, StatusChanged, TemporaryDeliveryError
from automator.project import Project
from automator.status import Status
from automator.store import Store, claims, contacts, messages, suppressions
from automator.store.claims import Due
from automator.store.messages import Change

log = logging.getLogger("automator.dispatch")

SENDING = (Status.SENDING,)  # what an outcome expects: a claim whose lease ran out is someone else's


class Outcomes:
    """Records delivery outcomes for one dispatcher."""

    def __init__(self, store: Store, project: Project) -> None:
        self.store = store
        self.project = project
        self.settings: Settings = project.settings

    def sent(self, delivered: list[Due], now: datetime) -> None:
        """Mark messages sent and carry out their rules' `then` (move the contact, tag it)."""
        if not delivered:
            return
        with self.store.session() as session:
            recorded = set(claims.mark_sent(session, delivered, now))
            if len(recorded) < len(delivered):
                log.warning(
                    "sent messages that had already ended (another dispatcher sent them first)",
                    extra={"fields": {"messages": [m.id for m in delivered if m.id not in recorded]}},
                )
            self.follow_up(session, [m for m in delivered if m.id in recorded], now)

    def follow_up(self, session: Session, delivered: list[Due], now: datetime) -> None:
        """Each delivered message's `then`, in order: later messages see earlier moves."""
        rules = {rule_id: self.project.rule(rule_id) for rule_id in {m.rule_id for m in delivered}}
        followed = [
            (message, rule)
            for message in delivered
            if (rule := rules[message.rule_id]) is not None and (rule.then.move_to or rule.then.tag)
        ]
        if not followed:
            return
        # As they are now: an event may have moved a contact since the claim.
        stages = contacts.current_stages(session, {message.contact_id for message, _ in followed})
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
        """Record failed sends (one log line per failure) in one transaction, a few
        statements for all of them; returns each one's rule and outcome for the summary."""
        changes: list[Change] = []
        outcomes: list[tuple[str, str]] = []
        for message, error in failures:
            change, outcome = self._failure(message, now, error)
            changes.append(change)
            outcomes.append((message.rule_id, outcome))
        with self.store.session() as session:
            made = {change.message_id for change in messages.change_many(session, changes, now, SENDING)}
            bounced = [
                (message.email, str(error))
                for message, error in failures
                if message.id in made and isinstance(error, PermanentDeliveryError) and error.address_rejected
            ]
            suppressions.add_many(session, bounced, "bounced", now)
            for change in changes:
                if change.message_id not in made:  # its lease ran out and someone else has it now
                    happened = messages.last_change(session, change.message_id)
                    log.warning("failure not recorded: %s", StatusChanged(change.message_id, *happened))
        return outcomes

    def _failure(self, message: Due, now: datetime, error: BaseException) -> tuple[Change, str]:
        """What a failed send changes, and the outcome for the summary."""
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
            values = {"lease_until": None, "last_error": str(error)}
            rejected = Change(message.id, Status.FAILED, f"rejected: {error}", values)
            return rejected, "failed: rejected by server"
        if not isinstance(error, TemporaryDeliveryError):
            # An unexpected error must not lose the message: retry it like a 4xx.
            log.error("unexpected error sending message %s", message.id, exc_info=error)
            error = TemporaryDeliveryError(repr(error))
        return self.temporary_failure(message, now, error), "retrying: delivery failed"

    def temporary_failure(self, message: Due, now: datetime, exc: TemporaryDeliveryError) -> Change:
        """Back to the queue with a retry time, or failed for good after the last attempt."""
        if message.attempts >= self.settings.retry_limit:
            gave_up = f"gave up after {message.attempts} attempts: {exc}"
            return Change(message.id, Status.FAILED, gave_up, {"lease_until": None, "last_error": str(exc)})
        retry = policies.retry_at(message.attempts, now)
        values = {
            "send_at": retry,
            "lease_until": None,
            "claimed_by": None,
            "last_error": str(exc),
            "expires_at": max(message.expires_at, retry + timedelta(days=1)),
        }
        reason = f"attempt {message.attempts} failed, retry at {retry.isoformat()}: {exc}"
        return Change(message.id, Status.QUEUED, reason, values)
