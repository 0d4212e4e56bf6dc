"""The project a command acts on: the folder chosen with --project, with its store and
engine opened when a command first asks for them, so that a command opens only what it uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automator.engine import Engine
    from automator.errors import DatabaseLocked
    from automator.project import Project
    from automator.store import Store


class State:
    """The project folder chosen with --project, loaded on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._project: Project | None = None
        self._store: Store | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            from automator.project import load_project

            self._project = load_project(self.directory)
        return self._project

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.project.open_store()
        return self._store

    def engine(self) -> Engine:
        from automator.engine import Engine

        return Engine(self.project, self.store, make_transport(self.project))

    def locked(self, exc: BaseException) -> DatabaseLocked | None:
        """`exc` as DatabaseLocked if it is the store's write lock waited for in vain."""
        return None if self._store is None else self._store.locked(exc)

    def close(self) -> None:
        """Release the database (and its checkpoint thread) when the command is done."""
        if self._store is not None:
            self._store.dispose()
            self._store = None


def make_transport(project: Project) -> Any:
    """SMTP when configured, else the file outbox."""
    if project.settings.smtp_url:
        from automator.transports.smtp import SmtpTransport
        from automator.transports.smtp_settings import SmtpSettings

        return SmtpTransport(SmtpSettings.from_url(project.settings.smtp_url))
    from automator.transports.file import FileTransport

    return FileTransport(project.settings.outbox_dir)


_state: State | None = None


def begin(directory: Path) -> State:
    """The State of this invocation, for the project in `directory` (set by --project)."""
    global _state
    _state = State(directory)
    return _state


def state() -> State:
    assert _state is not None
    return _state


def locked(exc: BaseException) -> DatabaseLocked | None:
    """`exc` as DatabaseLocked if this invocation's store waited in vain for its write lock."""
    return None if _state is None else _state.locked(exc)
