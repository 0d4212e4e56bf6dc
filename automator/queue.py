"""What support staff do to queued messages: hold, release, cancel, send now — each with a
required reason that lands in the message's history and the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from automator.engine import Engine
from automator.errors import AutomatorError, NotFoundError, StateError
from automator.schema import Contact, Message
from automator.store import audit, messages


def hold(engine: Engine, message_id: int, reason: str, actor: str, now: datetime) -> Message:
    """Stop a queued message from going out until someone releases it."""
    with engine.store.session() as session:
        message = _get(session, message_id, reason)
        _audit(session, message, "hold", reason, actor, now)
        if message.status != "queued":
            raise StateError(f"message {message_id} is {message.status}; only a queued message can be held")
        messages.change(session, message, "held", now, reason, actor, hold_kind="manual")
        return message


def release(engine: Engine, message_id: int, reason: str, actor: str, now: datetime) -> Message:
    """Put a held message back in the queue; one held for a coupon or a template error is
    completed first. When that still fails, the attempt is recorded (the message stays held,
    with the new reason) and StateError says why, so nobody is told it is on its way."""
    with engine.store.session() as session:
        message = _get(session, message_id, reason)
        _audit(session, message, "release", reason, actor, now)
        if message.status != "held":
            raise StateError(f"message {message_id} is {message.status}; only a held message can be released")
        rule = engine.project.rule(message.rule_id)
        planned = message.send_at
        if message.send_at < now:
            message.send_at = now  # rendered content (days left…) counts from when it goes out
        still_held = None
        if message.hold_kind in ("coupon", "render"):
            if rule is None:
                raise StateError(f"rule '{message.rule_id}' does not load; fix it before releasing")
            contact = session.get(Contact, message.contact_id)
            assert contact is not None
            if engine.fill(session, rule, message, contact, now) != "queued":
                still_held = messages.history(session, message_id)[-1].reason
                message.send_at = planned  # nothing changes but its history
        if still_held is None:
            lateness = rule.lateness if rule else None
            expires = max(message.expires_at, now + lateness) if lateness else message.expires_at
            messages.change(
                session,
                message,
                "queued",
                now,
                reason,
                actor,
                hold_kind=None,
                expires_at=expires,
                send_at=message.send_at,
            )
            return message
    raise StateError(f"message {message_id} is still held: {still_held}")


def cancel(engine: Engine, message_id: int, reason: str, actor: str, now: datetime) -> Message:
    """Make sure a message is never sent."""
    with engine.store.session() as session:
        message = _get(session, message_id, reason)
        _audit(session, message, "cancel", reason, actor, now)
        if message.status not in messages.OPEN_STATUSES:
            raise StateError(
                f"message {message_id} is {message.status}; only a queued or held message can be cancelled"
            )
        messages.change(session, message, "cancelled", now, reason, actor)
        return message


def send_now(engine: Engine, message_id: int, reason: str, actor: str, now: datetime) -> Message:
    """Send a queued or held message at the next dispatch, past quiet hours and the cap
    (never past a suppression or a cancelling event)."""
    with engine.store.session() as session:
        message = _get(session, message_id, reason)
        _audit(session, message, "send now", reason, actor, now)
        if message.status not in messages.OPEN_STATUSES or message.hold_kind in ("coupon", "render"):
            raise StateError(
                f"message {message_id} is {message.status}; only a queued or manually held "
                "message can be sent now"
            )
        messages.change(
            session,
            message,
            "queued",
            now,
            reason,
            actor,
            hold_kind=None,
            send_at=now,
            skip_policies=True,
            expires_at=max(message.expires_at, now),
        )
        return message


def _get(session: Session, message_id: int, reason: str) -> Message:
    if not reason.strip():
        raise AutomatorError("a reason is required (it is kept in the message's history)")
    message = messages.get(session, message_id)
    if message is None:
        raise NotFoundError(f"message {message_id} does not exist")
    return message


def _audit(session: Session, message: Message, action: str, reason: str, actor: str, now: datetime) -> None:
    audit.record(session, now, actor, action, reason, message.id, message.contact_id)
