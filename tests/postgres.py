"""A throw-away PostgreSQL for the tests: one server per test session, started from Debian's
`postgresql-15` binaries (`make test` installs them when missing) on 127.0.0.1 at a free
port, with fsync off, and stopped at the end. Each test gets a database of its own.

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
`postgres` user the Debian package creates, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tests.smtp_server import free_port

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
START_SECONDS = 60
TEMPLATE = "automator_template"


class PostgresServer:
    """One server: `url(name)` reaches a database of it; `new_database()` makes one."""

    def __init__(self, root: Path) -> None:
        if not BINARIES:
            raise RuntimeError(
                "PostgreSQL's server binaries are missing (/usr/lib/postgresql/*/bin): "
                "`make test` installs Debian's postgresql-15"
            )
        self.bin = BINARIES[-1].parent
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self._names = count(1)
        self._template_made = False

    def _run(self, *args: str) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=START_SECONDS)

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self.resume()

    def resume(self) -> None:
        """Start the server on its data (made by `start`) and port, as after an outage."""
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c synchronous_commit=off"
            " -c full_page_writes=off -c max_connections=300"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, empty: bool = False) -> str:
        """A new database's URL: a copy of one whose schema is made already (copying is
        much faster than making the tables and indexes again), or an empty one."""
        name = f"test_{next(self._names)}"
        if empty:
            self.execute(f'CREATE DATABASE "{name}"')
        else:
            self.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self._template()}"')
        return self.url(name)

    def _template(self) -> str:
        if not self._template_made:
            from automator.store import Store

            self.execute(f'CREATE DATABASE "{TEMPLATE}"')
            store = Store(self.url(TEMPLATE))
            store.create_schema()
            store.dispose()
            self._template_made = True
        return TEMPLATE

    def execute(self, statement: str) -> None:
        """One statement outside a transaction (CREATE DATABASE cannot run inside one)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", autocommit=True) as db:
            db.execute(statement.encode())


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A new server, stopped at the end (unless a test left it stopped already)."""
    with tempfile.TemporaryDirectory(prefix="automator-pg-") as root:
        server = PostgresServer(Path(root))
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_server() as server:
        yield server
