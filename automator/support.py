"""What support staff do to queued messages: hold, release, cancel, send now — each with a
required reason that lands in the message's history and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from automator import contents
from automator.display import has_control
from automator.engine import Engine
from automator.errors import (
    AlreadyDone,
    AutomatorError,
    NotFoundError,
    PermissionDenied,
    StateError,
    StatusChanged,
)
from automator.status import CANCEL, HOLD, NEEDS_COMPLETING, RELEASE, SEND_NOW, Action, HoldKind, Status
from automator.store import audit, messages
from automator.tables import Contact, Message

MAX_REASON = 500  # characters: a sentence or two, shown on the message's page and in its history


def given_reason(text: str) -> str:
    """A person's reason for an action as it is kept (the message's history, the audit log):
    one line without control characters, of at most MAX_REASON characters, trimmed;
    AutomatorError saying what is wrong otherwise."""
    reason = text.strip()
    if not reason:
        raise AutomatorError("a reason is required (it is kept in the message's history)")
    if len(reason) > MAX_REASON:
        raise AutomatorError(f"a reason has at most {MAX_REASON} characters (this one has {len(reason)})")
    if has_control(reason):
        raise AutomatorError("a reason is one line of text, without line breaks, tabs or control characters")
    return reason


def hold(
    engine: Engine,
    message_id: int,
    reason: str,
    actor: str,
    now: datetime,
    kind: HoldKind = HoldKind.ADMIN,
) -> Message:
    """Stop a queued message from going out until someone releases it; `kind` says whose hold
    it is (support may lift only support's)."""
    reason = given_reason(reason)
    with engine.store.transaction() as session:
        message = _get(session, message_id, reason, HOLD, actor, now)
        _change(session, message, HOLD, now, reason, actor, hold_kind=kind)
        return message


def release(
    engine: Engine,
    message_id: int,
    reason: str,
    actor: str,
    now: datetime,
    only: frozenset[HoldKind] | None = None,
) -> Message:
    """Put a held message back in the queue; one held for a coupon or a template error is
    completed first. When that still fails, the attempt is recorded (the message stays held,
    with the new reason) and StateError says why, so nobody is told it is on its way.
    `only`: the kinds of hold this person may lift (None: any)."""
    reason = given_reason(reason)
    with engine.store.transaction() as session:
        message = _get(session, message_id, reason, RELEASE, actor, now)
        if only is not None and message.hold_kind not in only:
            raise PermissionDenied(
                f"message {message_id} is held by {_holder(message.hold_kind)}; only an admin can release it"
            )
        rule = engine.project.rule(message.rule_id)
        planned = message.send_at
        if message.send_at < now:
            message.send_at = now  # rendered content (days left…) counts from when it goes out
        still_held = None
        if message.hold_kind in NEEDS_COMPLETING:
            if rule is None:
                raise StateError(f"rule '{message.rule_id}' does not load; fix it before releasing")
            contact = session.get(Contact, message.contact_id)
            assert contact is not None
            still_held = contents.complete(
                engine.renderer, session, rule, message, contact, now, actor, reason
            )
            if still_held is not None:
                message.send_at = planned  # nothing changes but its history
        if still_held is None:
            lateness = rule.lateness if rule else None
            expires = max(message.expires_at, now + lateness) if lateness else message.expires_at
            _change(
                session,
                message,
                RELEASE,
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
    reason = given_reason(reason)
    with engine.store.transaction() as session:
        message = _get(session, message_id, reason, CANCEL, actor, now)
        rule = engine.project.ruleset.get(message.rule_id)
        steps = len(rule.journey) if rule is not None else 1
        if message.step < steps:  # a journey's later steps follow only a sent step
            reason += f"; the journey ends at step {message.step} of {steps}"
        _change(session, message, CANCEL, now, reason, actor)
        return message


def send_now(engine: Engine, message_id: int, reason: str, actor: str, now: datetime) -> Message:
    """Send a queued or held message at the next dispatch, past quiet hours and the cap
    (never past a suppression or a cancelling event)."""
    reason = given_reason(reason)
    with engine.store.transaction() as session:
        message = _get(session, message_id, reason, SEND_NOW, actor, now)
        if message.hold_kind in NEEDS_COMPLETING:
            raise StateError(
                f"message {message_id} is held for its {message.hold_kind}; release it first "
                "(Release completes it)"
            )
        _change(
            session,
            message,
            SEND_NOW,
            now,
            reason,
            actor,
            hold_kind=None,
            send_at=now,
            skip_policies=True,
            expires_at=max(message.expires_at, now),
        )
        return message


def _get(
    session: Session, message_id: int, reason: str, action: Action, actor: str, now: datetime
) -> Message:
    """The message, once the action is known to apply to it (audited with the action)."""
    message = messages.get(session, message_id)
    if message is None:
        raise NotFoundError(f"message {message_id} does not exist")
    audit.record(session, now, actor, action.name, reason, message.id, message.contact_id)
    if not action.applies(message.status):
        raise _too_late(StatusChanged(message_id, *messages.last_change(session, message_id)), action)
    return message


def _change(
    session: Session,
    message: Message,
    action: Action,
    now: datetime,
    reason: str,
    actor: str,
    **values: Any,
) -> None:
    try:
        messages.change(session, message, action.to, now, reason, actor, **values)
    except StatusChanged as changed:  # a dispatcher took it between our read and our write
        raise _too_late(changed, action) from changed


def _too_late(changed: StatusChanged, action: Action) -> StateError:
    """'message 45 was sent at 2026-11-20 10:02 UTC, before your cancel; only a queued or
    held message can be cancelled'."""
    before = "" if changed.status == Status.QUEUED else f", before your {action.name}"
    if changed.status == action.to:  # e.g. a second click on Hold: what it asks for holds
        return AlreadyDone(f"{changed}{before}; nothing changed")
    return StateError(f"{changed}{before}; {action.refusal()}")


def _holder(kind: str | None) -> str:
    holders: dict[str | None, str] = {
        HoldKind.ADMIN: "an admin",
        HoldKind.BULK: "an admin's bulk hold",
        HoldKind.COUPON: "its empty coupon pool",
        HoldKind.RENDER: "its template error",
        HoldKind.HEADER: "an unsafe header",
        HoldKind.RULE: "its disabled rule",
    }
    return holders.get(kind, "support")
