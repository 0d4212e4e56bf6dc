"""One exception hierarchy for everything automator reports to a person."""

from __future__ import annotations

from datetime import datetime

from automator.status import what_happened


class AutomatorError(Exception):
    """Base of every error automator raises on purpose."""


class ConfigError(AutomatorError):
    """automator.toml or an environment variable holds a value we cannot use."""


class RuleError(AutomatorError):
    """A rule file (or journey.yaml) is invalid; names the file, line and field."""

    def __init__(self, file: str, line: int | None, field: str | None, message: str) -> None:
        self.file = file
        self.line = line
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {what}"


class TemplateError(AutomatorError):
    """A template does not exist, does not parse, or fails to render."""

    def __init__(self, template: str, line: int | None, message: str) -> None:
        self.template = template
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.template if self.line is None else f"{self.template}:{self.line}"
        return f"{where}: {self.message}"


class ImportRecordError(AutomatorError):
    """One record of an import file is invalid; the others are still imported."""

    def __init__(self, file: str, record: int, message: str) -> None:
        self.file = file
        self.record = record
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.file}:{self.record}: {self.message}"

    def __reduce__(self) -> tuple[type[ImportRecordError], tuple[str, int, str]]:
        """Pickled by what makes it (an import's reading process sends it): an exception is
        pickled by its `args`, here the whole text, which this constructor does not take."""
        return ImportRecordError, (self.file, self.record, self.message)


class NotFoundError(AutomatorError):
    """A contact, message or rule asked for by name or id does not exist."""


class StateError(AutomatorError):
    """An action does not apply to the object in its current state (e.g. cancel a sent message)."""


class TransactionLost(AutomatorError):
    """The database rolled a transaction back by itself (SQLite does on a full disk or an I/O
    error): everything written in it since its start is undone."""


class DatabaseLocked(AutomatorError):
    """Another process held the SQLite database's write lock for longer than a statement
    waits for it: what was being written is rolled back, and trying again may succeed."""


class DeliveryError(AutomatorError):
    """A transport could not deliver a message."""


class TemporaryDeliveryError(DeliveryError):
    """Delivery failed in a way that may succeed later (4xx, refused connection, timeout)."""


class PermanentDeliveryError(DeliveryError):
    """Delivery failed for good (5xx): retrying will not help.

    `address_rejected` says the server refused the recipient itself (the address is then
    suppressed as bounced), rather than this message or our sender.
    """

    address_rejected = True


class UnsafeHeaderError(AutomatorError):
    """A header value of an email carries a line break or another control character, which
    would let the text that follows it become a header (a Bcc) or the body. Such an email is
    never sent: its message is held with this reason."""


class StatusChanged(StateError):
    """A message left the status it was read in before a change to it could be made: another
    process or person changed it first. Says what happened, and when."""

    def __init__(self, message_id: int, status: str, at: datetime | None) -> None:
        self.message_id = message_id
        self.status = status
        self.at = at
        super().__init__(f"message {message_id} {what_happened(status, at)}")


class AlreadyDone(StateError):
    """An action found its message already where the action leads (held, cancelled): most
    often the second click of the same button. Nothing changed, and nothing needs to."""


class PermissionDenied(AutomatorError):
    """The person's role does not allow this action on this object (support lifting an admin's hold)."""
