"""The email a message becomes when it is sent: its stored subject and bodies, its contact's
name, the project's sender and an unsubscribe link. The console's message page shows this
same email, so support staff read exactly what goes out."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from automator import clicks, emails
from automator.config import Settings
from automator.store.messages import Content


class Named(Protocol):
    """A contact as far as the To header goes."""

    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...


class Stored(Protocol):
    """A message as far as its email goes: a claimed Due, or a stored Message."""

    @property
    def email(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def rule_id(self) -> str: ...
    @property
    def variant(self) -> str | None: ...
    @property
    def id(self) -> int | None: ...


def build_stored(
    settings: Settings, contact: Named | None, message: Stored, content: Content, now: datetime
) -> emails.OutgoingEmail:
    """The email a stored message, with its contact and content, becomes when sent at `now`.
    Raises UnsafeHeaderError for a header that would carry a line break (the message is
    then held, never sent)."""
    name = " ".join(filter(None, [contact.first_name, contact.last_name])) if contact else None
    return emails.build_email(
        sender=settings.sender,
        to=message.email,
        to_name=name or None,
        subject=message.subject,
        text=content.text,
        html=_tracked(settings, message, content.html),
        message_id=message.message_id,
        rule_id=message.rule_id,
        date=now,
        list_unsubscribe_url=emails.unsubscribe_url(settings.base_url, settings.secret, message.email),
        variant=message.variant,
    )


def _tracked(settings: Settings, message: Stored, html: str) -> str:
    """With `track_clicks`, the HTML's links as signed redirects that count clicks (the
    message needs its id, which it has only once queued: so here, not at rendering). Without
    a secret nothing can be signed, and links stay as they are (docs/results.md)."""
    if not settings.track_clicks or not settings.secret or message.id is None:
        return html
    return clicks.tracked(html, message.id, settings.base_url, settings.secret)
