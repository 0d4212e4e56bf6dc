"""The database tables (SQLModel). Times are stored as UTC and always read back timezone-aware."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    extract,
    literal_column,
    text,
    true,
)
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from automator.name_keys import name_key
from automator.packing import pack, unpack


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC (SQLite has no time zones) and returns them aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: automator keeps every time in UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: Any) -> Any:
        """Each value to what the driver takes in one step: on SQLite straight to the text
        SQLAlchemy's DateTime stores ("2026-11-20 05:00:00.000000"), elsewhere to naive UTC.
        Queueing binds several times per message, and the generic steps (to naive UTC, then
        through the type's own processor) cost most of a chunk's insert on SQLite and a
        share of it on PostgreSQL."""
        to_text = dialect.name == "sqlite"
        if not to_text and DateTime().bind_processor(dialect) is not None:
            return super().bind_processor(dialect)  # a driver that wants more than naive UTC

        # A chunk's rows share a few instants (the tick's time, a send time, an expiry), and
        # converting one costs more than finding it again.
        @functools.lru_cache(maxsize=1024)
        def process(value: datetime | None) -> datetime | str | None:
            if value is None:
                return None
            if not isinstance(value, datetime):
                raise TypeError(f"{value!r} is not a datetime")
            if value.tzinfo is None:
                raise ValueError(f"naive datetime {value!r}: automator keeps every time in UTC")
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            if to_text:
                return value.isoformat(" ", "microseconds")[:-6]  # without its "+00:00"
            return value.replace(tzinfo=None)

        return process

    def result_processor(self, dialect: Any, coltype: Any) -> Any:
        """On SQLite, from the stored text to an aware datetime in one step: the dispatcher
        reads three times per due message, and the two generic steps (text to naive, then
        naive to aware) cost ten times what `fromisoformat` does with the offset given."""
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        generic = super().result_processor(dialect, coltype)

        def process(value: str | None) -> datetime | None:
            if value is None:
                return None
            try:
                found = datetime.fromisoformat(value + "+00:00")
            except (TypeError, ValueError):
                found = None
            if found is None or found.tzinfo is None:  # not the text SQLAlchemy writes
                return generic(value) if generic is not None else None
            return found

        return process


class PackedText(TypeDecorator[str]):
    """Text stored packed on SQLite (see `automator.packing`): bytes (packed already) are
    stored as they are, and text read as it was stored before bodies were packed.
    PostgreSQL compresses long text itself (TOAST), so there the column stays text and a
    packed value is unpacked before it is stored."""

    impl = LargeBinary
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        return Text() if dialect.name == "postgresql" else LargeBinary()

    def process_bind_param(self, value: str | None, dialect: Any) -> str | bytes | None:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return unpack(value) if isinstance(value, bytes) else value
        if isinstance(value, bytes):
            return value  # packed already
        if not isinstance(value, str):
            raise TypeError(f"{value!r} is not text")
        return pack(value)

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else unpack(value)


def _time(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_column=Column(UTCDateTime(), nullable=nullable, index=index))


def key_text(length: int | None = None) -> Any:
    """The type of text that is compared rather than read (addresses, keys, rule ids,
    statuses, stages): on PostgreSQL in the "C" collation, byte by byte.

    A PostgreSQL database's own collation (C.UTF-8, en_US.UTF-8, ...) orders text through the
    C library's locale functions, and every step down a B-tree of such text calls them: in
    a tick, the message table's indexes on rule, status and occurrence made its INSERT cost
    about twice what it does in "C". Where these values are sorted, byte order is their
    natural order (addresses are kept in lower case). SQLite compares text byte by byte
    already."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")


def _id() -> Any:
    # BigInteger on PostgreSQL, INTEGER PRIMARY KEY (rowid alias) on SQLite.
    return Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )


class Contact(SQLModel, table=True):
    id: int | None = _id()
    email: str = Field(sa_column=Column(key_text(320), unique=True, nullable=False))
    first_name: str | None = None
    last_name: str | None = None
    locale: str | None = None
    # Local schedules group contacts by their zone.
    timezone: str | None = Field(default=None, sa_type=key_text(), index=True)
    stage: str | None = Field(default=None, sa_type=key_text(), index=True)
    stage_entered_at: datetime | None = _time(nullable=True)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    updated_at: datetime = _time()


_contacts = Contact.__table__  # type: ignore[attr-defined]
Index("ix_contact_first_name_key", name_key(_contacts.c.first_name))
Index("ix_contact_last_name_key", name_key(_contacts.c.last_name))


class ContactDate(SQLModel, table=True):
    """Date attributes of contacts, indexed so date triggers read only the due window.

    `id` grows on every change, so it doubles as a watermark for late or changed dates.
    """

    __tablename__ = "contact_date"
    __table_args__ = (
        UniqueConstraint("contact_id", "name"),
        Index("ix_contact_date_name_value", "name", "value"),
    )

    id: int | None = _id()
    contact_id: int = Field(foreign_key="contact.id")
    name: str = Field(sa_type=key_text())
    value: datetime = _time()


def month_day(value: Any) -> ColumnElement[Any]:
    """A timestamp's month and day as one number (17 May: 517), in SQL that both stores can
    index: yearly date triggers read a few days' range of it (see `automator.store.yearly`).
    The 100 is a literal, not a parameter, so that a query's expression is the index's."""
    return extract("month", value) * literal_column("100") + extract("day", value)


_dates = ContactDate.__table__  # type: ignore[attr-defined]
Index("ix_contact_date_name_month_day", _dates.c.name, month_day(_dates.c.value))


class ContactTag(SQLModel, table=True):
    __tablename__ = "contact_tag"

    contact_id: int = Field(foreign_key="contact.id", primary_key=True)
    tag: str = Field(sa_type=key_text(), primary_key=True)
    added_at: datetime = _time()


class ContactChange(SQLModel, table=True):
    """A write that changed a contact's fields, attributes, stage or tags, appended by the
    database's own triggers (`automator.store.changes`), whatever wrote it. A tick looks
    again at the due occurrences of the contacts changed since its rule's last tick: a
    contact may match a rule now that did not when its occurrence came due.

    `position` orders the log for a rule's watermark: on SQLite the row's place in it, on
    PostgreSQL the writing transaction's id (see `automator.store.changes`)."""

    __tablename__ = "contact_change"
    # One B-tree in position order on SQLite: a change is appended at its end, a tick reads
    # a range of it, and pruning cuts its start.
    __table_args__ = {"sqlite_with_rowid": False}

    position: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    contact_id: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    # What changed: fields or attributes, the stage (from `from_stage`), tags. An entry
    # logged before they were kept says everything changed.
    fields: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))
    stage: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))
    tags: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))
    from_stage: str | None = Field(default=None, sa_column=Column(String, nullable=True))


class StageChange(SQLModel, table=True):
    __tablename__ = "stage_change"
    __table_args__ = (Index("ix_stage_change_stage_at", "to_stage", "at"),)

    id: int | None = _id()
    contact_id: int = Field(foreign_key="contact.id", index=True)
    from_stage: str | None = None
    to_stage: str = Field(sa_type=key_text())
    at: datetime = _time()
    cause: str


class Event(SQLModel, table=True):
    """Something a contact did. `key` is the sender's id (or a hash of the event), so a
    re-imported event is stored once."""

    __table_args__ = (
        # A lookup's scan of an event type's time window reaches each event's contact (and
        # its stage) from the index alone: the event's row is read only for the contacts the
        # rule targets.
        Index("ix_event_type_at_contact", "type", "at", "contact_id"),
        Index("ix_event_contact_type_at", "contact_id", "type", "at"),
    )

    id: int | None = _id()
    key: str = Field(sa_column=Column(key_text(200), unique=True, nullable=False))
    contact_id: int = Field(foreign_key="contact.id")
    type: str = Field(sa_type=key_text())
    at: datetime = _time()
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    received_at: datetime = _time()


class Suppression(SQLModel, table=True):
    email: str = Field(sa_column=Column(key_text(320), primary_key=True))
    reason: str
    note: str = ""
    created_at: datetime = _time()


# What a partial index of sent messages keeps: a query that compares `sent_at` with
# anything implies it, on both databases, and may use the index.
SENT_AT_SET = text("sent_at IS NOT NULL")


class Message(SQLModel, table=True):
    """One email for one contact from one rule occurrence; (rule, contact, occurrence) is its
    dedupe key, unique in the table."""

    # The dedupe key: one message per rule, contact and trigger occurrence, whoever inserts it.
    # Its (rule, contact) prefix also answers whether a date or schedule occurrence was sent.
    __table_args__ = (
        UniqueConstraint("rule_id", "contact_id", "occurrence", name="uq_message_dedupe"),
        # Due messages by priority, then send time (the dispatcher's batches).
        Index("ix_message_status_priority_send_at", "status", "priority", "send_at", "id"),
        # A contact's messages (frequency cap, contact page, search by address).
        Index("ix_message_contact_sent", "contact_id", "sent_at"),
        # The console's keyset-paged listing and per-rule counts.
        Index("ix_message_created_id", "created_at", "id"),
        Index("ix_message_status_created_id", "status", "created_at", "id"),
        Index("ix_message_rule_created_id", "rule_id", "created_at", "id"),
        Index("ix_message_rule_status", "rule_id", "status"),
        # A journey's sent steps by send time: the next step is due a delay after each.
        # Sent messages only: a claim then leaves it alone, and the record of a send adds an
        # entry rather than moving one from among the unsent messages of its rule and step.
        Index(
            "ix_message_rule_step_sent",
            "rule_id",
            "step",
            "sent_at",
            sqlite_where=SENT_AT_SET,
            postgresql_where=SENT_AT_SET,
        ),
    )

    id: int | None = _id()
    rule_id: str = Field(sa_type=key_text())
    contact_id: int = Field(foreign_key="contact.id")
    email: str  # found through its contact's index: one index less to write per message
    occurrence: str = Field(sa_type=key_text())
    occurred_at: datetime = _time()
    event_id: int | None = None
    # Its step of the rule's journey, from 1 (a rule without steps sends step 1 only), and
    # its variant when the step is an A/B test.
    step: int = Field(default=1, sa_column=Column(Integer, nullable=False, server_default="1"))
    variant: str | None = Field(default=None, sa_column=Column(String(40), nullable=True))
    status: str = Field(sa_type=key_text())
    priority: int = 0
    due_at: datetime = _time()
    send_at: datetime = _time()
    expires_at: datetime = _time()
    locale: str = "en"
    subject: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    message_id: str = ""
    hold_kind: str | None = None
    skip_policies: bool = False  # "send now" by support: no quiet hours or frequency cap
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    lease_until: datetime | None = _time(nullable=True)
    claimed_by: str | None = None  # the dispatcher sending it (`daemon:…` or `tick:…`)
    created_at: datetime = _time()
    sent_at: datetime | None = _time(nullable=True)


class MessageContent(SQLModel, table=True):
    """A message's rendered bodies, apart from its row: a message row is read and rewritten at
    every claim and every outcome, and without several kilobytes of content in it (and in its
    overflow pages) each of those writes is a small one."""

    __tablename__ = "message_content"

    message_id: int = Field(
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"),
            ForeignKey("message.id"),
            primary_key=True,
            autoincrement=False,
        )
    )
    text_body: str = Field(default="", sa_column=Column(PackedText, nullable=False, default=""))
    html_body: str = Field(default="", sa_column=Column(PackedText, nullable=False, default=""))


class MessageHistory(SQLModel, table=True):
    __tablename__ = "message_history"
    __table_args__ = (Index("ix_message_history_status_at", "status", "at"),)

    id: int | None = _id()
    message_id: int = Field(foreign_key="message.id", index=True)
    at: datetime = _time()
    status: str = Field(sa_type=key_text())
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    actor: str = "automator"


class Coupon(SQLModel, table=True):
    """A coupon code: from a pool (imported, unassigned until taken) or generated for a message."""

    __table_args__ = (Index("ix_coupon_pool_free", "pool", "message_id"),)

    id: int | None = _id()
    code: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    pool: str | None = None
    percent_off: int | None = None
    expires_at: datetime | None = _time(nullable=True)
    contact_id: int | None = None
    rule_id: str | None = None
    message_id: int | None = Field(default=None, index=True)
    created_at: datetime = _time()
    assigned_at: datetime | None = _time(nullable=True)


class RuleState(SQLModel, table=True):
    """Per-rule watermarks: what a tick has already looked at, so the next looks only at new work."""

    __tablename__ = "rule_state"

    rule_id: str = Field(primary_key=True)
    trigger_hash: str
    evaluated_until: datetime = _time()
    event_seq: int = 0
    date_seq: int = 0
    # The first position of the contact change log (`ContactChange`) not looked at yet.
    change_position: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    last_tick_at: datetime | None = _time(nullable=True)
    last_summary: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Heartbeat(SQLModel, table=True):
    """One row per daemon process: its state and when it was last seen and last ticked."""

    daemon: str = Field(primary_key=True)
    state: str
    started_at: datetime = _time()
    seen_at: datetime = _time()
    last_tick_at: datetime | None = _time(nullable=True)


class User(SQLModel, table=True):
    """A console user. `role` is `support` (view, hold, release) or `admin` (also cancel,
    send now, bulk actions).

    Every session cookie carries the `session_version` it was made under; logging out, a new
    password or role moves it on, which ends all the user's sessions at once. It starts at a
    random number, so a cookie of a removed user never fits a new user given the same name."""

    __tablename__ = "console_user"

    name: str = Field(primary_key=True)
    password_hash: str
    role: str
    session_version: int = Field(default=0, sa_column=Column(BigInteger, nullable=False, default=0))
    created_at: datetime = _time()


class LoginFailure(SQLModel, table=True):
    """A failed login to the console: the name typed, the client's address, when. Kept in the
    database so that every console process counts the same failures; forgotten after a day."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_name_at", "name", "at"),
        Index("ix_login_failure_address_at", "address", "at"),
        Index("ix_login_failure_at", "at"),
    )

    id: int | None = _id()
    name: str = Field(sa_column=Column(String(100), nullable=False))
    address: str = Field(sa_column=Column(String(64), nullable=False))
    at: datetime = _time()


class ApiKey(SQLModel, table=True):
    """A key for the HTTP API: what it may do (`scopes`), and only a hash of the key itself,
    which is shown once when it is made. A key is a random 256-bit value, so a fast hash
    (SHA-256) is as safe as a slow password hash would be, and costs nothing per request."""

    __tablename__ = "api_key"

    id: int | None = _id()
    name: str = Field(sa_column=Column(String(100), unique=True, nullable=False))
    key_hash: str = Field(sa_column=Column(String(64), unique=True, nullable=False))
    scopes: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _time()
    last_used_at: datetime | None = _time(nullable=True)  # to the minute: written at most once a minute
    revoked_at: datetime | None = _time(nullable=True)


class AuditEntry(SQLModel, table=True):
    """Who did what, when and why: every action a person takes on a message or a contact."""

    __tablename__ = "audit_entry"

    id: int | None = _id()
    at: datetime = _time()
    actor: str
    action: str
    reason: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    message_id: int | None = Field(default=None, index=True)
    contact_id: int | None = Field(default=None, index=True)


class Click(SQLModel, table=True):
    """A click on a tracked link of a sent message (`track_clicks`): which message, and when.
    Not the URL: the link carries it, and a row here then holds no personal data."""

    id: int | None = _id()
    message_id: int = Field(foreign_key="message.id", index=True)
    at: datetime = _time()
