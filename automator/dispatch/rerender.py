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

import jinja2
from jinja2 import meta
from sqlmodel import Session

from automator import contents
from automator.errors import TemplateError
from automator.model import Rule
from automator.rendering import Renderer
from automator.store import contacts, coupons, messages
from automator.store.messages import Due
from automator.templates import Templates

# What `Renderer.context` fills from the send time: `now`, and `trigger` (its days_left).
SEND_TIME_NAMES = frozenset({"now", "trigger"})


class Rerender:
    """Renders moved messages again where their template shows the send time."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._shows: dict[str, bool] = {}

    def shows_send_time(self, template: str) -> bool:
        """Whether the template reads the send time; when that cannot be told (a file that
        does not parse, an include whose name is computed), it is taken to."""
        if template not in self._shows:
            names = reads(self.renderer.templates, template)
            self._shows[template] = names is None or bool(names & SEND_TIME_NAMES)
        return self._shows[template]

    def follow(
        self, session: Session, moved: list[Due], rules: dict[str, Rule | None], now: datetime
    ) -> None:
        """Render again the moved messages whose content shows the send time (one at a time:
        each is a render of its own)."""
        for message in moved:
            rule = rules.get(message.rule_id)
            if rule is not None and self.shows_send_time(rule.send.template):
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


def reads(templates: Templates, template: str) -> set[str] | None:
    """The context names a template's files take (every part and locale variant, with what
    they extend, include or import); None when that cannot be told."""
    folder = templates.root / template
    if not folder.is_dir():
        return None
    names: set[str] = set()
    seen: set[str] = set()
    for path in sorted(folder.iterdir()):
        found = _reads(templates.env, f"{template}/{path.name}", seen)
        if found is None:
            return None
        names |= found
    return names


def _reads(env: jinja2.Environment, name: str, seen: set[str]) -> set[str] | None:
    seen.add(name)
    try:
        assert env.loader is not None
        source = env.loader.get_source(env, name)[0]
        tree = env.parse(source)
    except jinja2.TemplateError:
        return None
    names = set(meta.find_undeclared_variables(tree))
    for other in meta.find_referenced_templates(tree):
        if other is None:
            return None  # a computed name: it could be any template
        if other in seen:
            continue
        found = _reads(env, other, seen)
        if found is None:
            return None
        names |= found
    return names
