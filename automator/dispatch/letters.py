"""The email a message becomes when it is sent: its stored subject and bodies, its contact's
name, the project's sender and an unsubscribe link. The console's message page shows this
same email, so support staff read exactly what goes out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from automator import emails
from automator.config import Settings
from automator.store.messages import Content
from automator.tables import Message


class Named(Protocol):
    """A contact as far as the To header goes."""

    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...


class Letter(Protocol):
    """A message as far as its email goes: a claimed Due, or a stored one with its content."""

    @property
    def email(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def text_body(self) -> str: ...
    @property
    def html_body(self) -> str: ...
    @property
    def message_id(self) -> str: ...
    @property
    def rule_id(self) -> str: ...


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A stored message with its content, as far as its email goes."""

    email: str
    subject: str
    text_body: str
    html_body: str
    message_id: str
    rule_id: str


def build(settings: Settings, contact: Named | None, letter: Letter, now: datetime) -> emails.OutgoingEmail:
    """The email for `letter`, sent at `now`. Raises UnsafeHeaderError for a header that
    would carry a line break (the message is then held, never sent)."""
    name = " ".join(filter(None, [contact.first_name, contact.last_name])) if contact else None
    return emails.build_email(
        sender=settings.sender,
        to=letter.email,
        to_name=name or None,
        subject=letter.subject,
        text=letter.text_body,
        html=letter.html_body,
        message_id=letter.message_id,
        rule_id=letter.rule_id,
        date=now,
        list_unsubscribe_url=emails.unsubscribe_url(settings.base_url, settings.secret, letter.email),
    )


def build_stored(
    settings: Settings, contact: Named | None, message: Message, content: Content, now: datetime
) -> emails.OutgoingEmail:
    """The email a stored message, with its contact and content, becomes when sent at `now`."""
    letter = StoredLetter(
        message.email, message.subject, content.text, content.html, message.message_id, message.rule_id
    )
    return build(settings, contact, letter, now)
