"""A stored message's content, made again: rendered exactly as it will be sent when its send
time moves (days left…), and completed (coupon, then content) when a message held for its
coupon or its template is released."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from automator.enqueue import Draft, attach_coupons
from automator.errors import TemplateError
from automator.model import EventTrigger, Rule
from automator.rendering import ContactFields, CouponFields, Renderer
from automator.status import HoldKind, Status
from automator.store import coupons, events, messages
from automator.tables import Contact, Message
from automator.templates import Rendered


def render(
    renderer: Renderer,
    session: Session,
    rule: Rule,
    message: Message,
    contact: ContactFields,
    coupon: CouponFields | None,
) -> Rendered:
    """A stored message's content as it will be sent at its send time."""
    properties = None
    if isinstance(rule.trigger, EventTrigger) and message.event_id is not None:
        properties = events.properties_of(session, message.event_id)
    sending = rule.sending(message.step, message.variant)
    job = renderer.job(rule, contact, coupon, message.occurred_at, message.send_at, properties, sending)
    return renderer.render(job)


def complete(
    renderer: Renderer,
    session: Session,
    rule: Rule,
    message: Message,
    contact: Contact,
    now: datetime,
    actor: str,
    asked: str,
) -> str | None:
    """Attach the coupon and render a message someone releases (`actor`, for the reason
    `asked`). None when it is ready to go; otherwise why it stays held, which its history
    records with the person and their reason (never dropped)."""
    coupon = _coupon(session, rule, message, contact, now)
    spec = rule.sending(message.step, message.variant).coupon
    if spec is not None and coupon is None:
        why = f"coupon pool '{spec.pool}' is empty"
        return _still_held(session, message, now, HoldKind.COUPON, why, actor, asked)
    try:
        rendered = render(renderer, session, rule, message, contact, coupon)
    except TemplateError as exc:
        return _still_held(session, message, now, HoldKind.RENDER, f"template error: {exc}", actor, asked)
    messages.change(
        session, message, message.status, now, "rendered", subject=rendered.subject, hold_kind=None
    )
    assert message.id is not None
    messages.set_content(session, message.id, rendered.text, rendered.html)
    return None


def _still_held(
    session: Session, message: Message, now: datetime, kind: HoldKind, why: str, actor: str, asked: str
) -> str:
    line = f"not released: {why} (asked: {asked})"
    messages.change(session, message, Status.HELD, now, line, actor, hold_kind=kind)
    return why


def _coupon(
    session: Session, rule: Rule, message: Message, contact: Contact, now: datetime
) -> CouponFields | None:
    """The message's coupon: the one it has, else one taken or generated as when queueing."""
    spec = rule.sending(message.step, message.variant).coupon
    if spec is None:
        return None
    assert message.id is not None
    existing = coupons.for_message(session, message.id)
    if existing is not None:
        return existing
    draft = Draft({"contact_id": contact.id, "status": Status.QUEUED}, contact, message.id)
    attach_coupons(session, rule, spec, [draft], now)
    coupon: CouponFields | None = draft.coupon
    return coupon
