"""Content that shows its send time follows a wait: when quiet hours or the frequency cap
move a message's send time, a template that reads the send time (the days left, `now`) is
rendered again for the new one, so that the stored content stays exactly what will be sent.

Whether a template reads it is decided once per template, from the names its files (and
the layouts and includes they reach) take from the context. Content that does not show the
send time is left as it is: rendering it again would give the same bytes, at about a
millisecond a message, and most waiting messages (an abandoned cart, a thank-you) are such.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from automator import contents
from automator.errors import TemplateError
from automator.model import Rule
from automator.rendering import Renderer
from automator.store import contacts, coupons, messages
from automator.store.claims import Due

# What `Renderer.context` fills from the send time: `now`, and `trigger` (its days_left).
SEND_TIME_NAMES = frozenset({"now", "trigger"})


class Rerender:
    """Renders moved messages again where their template shows the send time."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer

    def shows_send_time(self, template: str) -> bool:
        """Whether the template reads the send time (or may: see `Templates.reads_any`)."""
        return self.renderer.templates.reads_any(template, SEND_TIME_NAMES)

    def follow(
        self, session: Session, moved: list[Due], rules: dict[str, Rule | None], now: datetime
    ) -> None:
        """Render again the moved messages whose content shows the send time (one at a time:
        each is a render of its own)."""
        for message in moved:
            rule = rules.get(message.rule_id)
            if rule is not None and self.shows_send_time(
                rule.sending(message.step, message.variant).template
            ):
                self.one(session, message.id, rule, now)

    def one(self, session: Session, message_id: int, rule: Rule, now: datetime) -> None:
        message = messages.known(session, message_id)
        contact = contacts.by_id(session, message.contact_id)
        assert contact is not None
        coupon = coupons.for_message(session, message_id)
        try:
            rendered = contents.render(self.renderer, session, rule, message, contact, coupon)
        except TemplateError as exc:
            messages.record(
                session, message_id, now, message.status, f"kept the content rendered earlier: {exc}"
            )
            return
        stored = messages.content(session, message_id)
        if (rendered.subject, rendered.text, rendered.html) != (message.subject, stored.text, stored.html):
            messages.change(
                session,
                message,
                message.status,
                now,
                "re-rendered for the new send time",
                subject=rendered.subject,
            )
            messages.set_content(session, message_id, rendered.text, rendered.html)
