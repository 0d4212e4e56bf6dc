"""What a rule would send a contact, rendered for a marketer to read: nothing is stored or
sent. `checked_preview` first asks `explain` whether the message would go out at all, so
that a preview never shows a reminder the contact would not get."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session

from automator import contents
from automator.config import Settings
from automator.errors import NotFoundError
from automator.explain import Explanation, explain
from automator.explaining.occurrences import this_year
from automator.model import DateTrigger, EventTrigger, Rule
from automator.rendering import Renderer
from automator.store import Store, contacts, events
from automator.tables import Contact, Coupon, Message
from automator.templates import Rendered
from automator.timestamps import zone_named


def checked_preview(
    store: Store,
    renderer: Renderer,
    settings: Settings,
    rule: Rule,
    email: str,
    now: datetime,
    *,
    runs: bool,
    force: bool,
) -> tuple[Explanation, Rendered | None]:
    """Whether `rule`'s message would go out to `email` as of `now` (`explain`), and, when it
    would or when `force` says so, what it says. A contact without the trigger's event or
    date is a NotFoundError naming what is missing, as with `preview`."""
    explanation = explain(store, settings, rule, email, now, runs)
    if explanation.eligible or force:
        return explanation, preview(store, renderer, rule, email, now, settings.zone, explanation.step)
    if any(check.check == "trigger" and check.passed is False for check in explanation.checks):
        with store.session() as session:
            contact = contacts.by_email(session, email)
            assert contact is not None, "explain found the contact"
            _occurrence(session, rule, contact, now, settings.zone)  # raises: what is missing
    return explanation, None


def preview(
    store: Store,
    renderer: Renderer,
    rule: Rule,
    email: str,
    now: datetime,
    zone: ZoneInfo = ZoneInfo("UTC"),
    step: int = 1,
) -> Rendered:
    """Render what `rule` would send `email` as of `now` (for a journey, its `step`),
    storing and sending nothing.

    Event rules use the contact's latest event of the trigger's type; date rules the
    contact's date attribute, a yearly one this year's date in the contact's zone (else
    `zone`, the project's). A coupon is shown as a sample code.
    """
    with store.session() as session:
        contact = contacts.by_email(session, email)
        if contact is None:
            raise NotFoundError(f"no contact with email {email}")
        occurred_at, event_id = _occurrence(session, rule, contact, now, zone)
        message = Message(
            rule_id=rule.id,
            contact_id=contact.id or 0,
            email=contact.email,
            occurrence="preview",
            occurred_at=occurred_at,
            event_id=event_id,
            status="preview",
            step=step,
            variant=rule.step(step).send.choose(rule.id, contact.id or 0),
            due_at=occurred_at + rule.offset,
            send_at=max(now, occurred_at + rule.offset),
            expires_at=now,
            created_at=now,
        )
        spec = rule.sending(message.step, message.variant).coupon
        coupon = (
            None
            if spec is None
            else Coupon(
                code=f"{spec.prefix + '-' if spec.prefix else ''}PREVIEW",
                percent_off=spec.percent_off,
                expires_at=now + spec.expires_in,
            )
        )
        return contents.render(renderer, session, rule, message, contact, coupon)


def _occurrence(
    session: Session, rule: Rule, contact: Contact, now: datetime, zone: ZoneInfo
) -> tuple[datetime, int | None]:
    """The occurrence a preview shows: when it happened, and its event."""
    trigger = rule.trigger
    if isinstance(trigger, EventTrigger):
        event = events.latest(session, contact.id or 0, trigger.event, now)
        if event is None:
            raise NotFoundError(f"{contact.email} has no {trigger.event} event by {now.isoformat()}")
        return event.at, event.id
    if isinstance(trigger, DateTrigger):
        value = contacts.dates(session, contact.id or 0).get(trigger.attribute)
        if value is None:
            raise NotFoundError(f"{contact.email} has no date attribute {trigger.attribute}")
        if trigger.yearly:
            own = zone_named(contact.timezone) or zone
            return this_year(rule, trigger, value, own, now).occurred_at, None
        return value, None
    return contact.stage_entered_at or now, None
