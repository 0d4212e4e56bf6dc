"""The email a message becomes when it is sent: its stored subject and bodies, its contact's
name, the project's sender and an unsubscribe link. The console's message page shows this
same email, so support staff read exactly what goes out.

Outside the dispatch package and the store, on purpose: the render workers build a claim's
emails (`build_each`), and importing this module must not bring SQLAlchemy into them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

from automator import clicks, emails
from automator.errors import UnsafeHeaderError
from automator.packing import unpack
from automator.status import HoldKind

if TYPE_CHECKING:
    from automator.config import Settings


class Named(Protocol):
    """A contact as far as the To header goes."""

    @property
    def first_name(self) -> str | None: ...
    @property
    def last_name(self) -> str | None: ...


class Bodies(Protocol):
    """A message's bodies, unpacked."""

    @property
    def text(self) -> str: ...
    @property
    def html(self) -> str: ...


class Unpacked(NamedTuple):
    """A letter's bodies once unpacked."""

    text: str
    html: str


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


@dataclass(frozen=True)
class Letterhead:
    """What every email of a project takes from its settings: the sender, and what its
    links are made of. Small, and it pickles: a render worker builds emails with it."""

    sender: str
    base_url: str
    secret: str
    track_clicks: bool

    @classmethod
    def of(cls, settings: Settings) -> Letterhead:
        return cls(settings.sender, settings.base_url, settings.secret, settings.track_clicks)


class Letter(NamedTuple):
    """A claimed message as its email needs it, its bodies as stored (packed): a plain
    tuple, cheap to send to a render worker. It is both the message and the contact that
    `build_stored` takes."""

    id: int
    email: str
    subject: str
    message_id: str
    rule_id: str
    variant: str | None
    first_name: str | None
    last_name: str | None
    text: bytes | str
    html: bytes | str


@dataclass(frozen=True)
class Refused:
    """Why a claimed message's email was not built: it is held, never sent."""

    kind: HoldKind
    reason: str


def build_each(
    head: Letterhead, now: datetime, letters: list[Letter]
) -> list[emails.OutgoingEmail | Refused]:
    """Each letter's email, or why it cannot have one: a stored body that cannot be
    unpacked (held as a failed render: releasing it renders it again), or a header that
    would carry a line break. Needs no database: the render workers run it for a claim."""
    built: list[emails.OutgoingEmail | Refused] = []
    for letter in letters:
        try:
            content = Unpacked(unpack(letter.text), unpack(letter.html))
        except (RuntimeError, UnicodeDecodeError) as exc:  # lz4 says RuntimeError
            reason = f"its stored body cannot be read ({exc}); releasing it renders it again"
            built.append(Refused(HoldKind.RENDER, reason))
            continue
        try:
            built.append(build_stored(head, letter, letter, content, now))
        except UnsafeHeaderError as exc:
            built.append(Refused(HoldKind.HEADER, str(exc)))
    return built


def build_stored(
    settings: Settings | Letterhead, contact: Named | None, message: Stored, content: Bodies, now: datetime
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


def _tracked(settings: Settings | Letterhead, message: Stored, html: str) -> str:
    """With `track_clicks`, the HTML's links as signed redirects that count clicks (the
    message needs its id, which it has only once queued: so here, not at rendering). Without
    a secret nothing can be signed, and links stay as they are (docs/results.md)."""
    if not settings.track_clicks or not settings.secret or message.id is None:
        return html
    return clicks.tracked(html, message.id, settings.base_url, settings.secret)
