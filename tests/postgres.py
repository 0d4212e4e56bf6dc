"""A throw-away PostgreSQL for the tests: one server per test session, started from Debian's
`postgresql-15` binaries (`make test` installs them when missing) on 127.0.0.1 at a free
port, with fsync off, and stopped at the end, or by its watcher when the test session ends
without stopping it (killed). Each test gets a database of its own.

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
`postgres` user the Debian package creates, in a folder that user owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from tests.smtp_server import free_port

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
START_SECONDS = 60
TEMPLATE = "automator_template"

# Run beside the test session, in a session of its own (a signal to the tests' process
# group does not reach it): it waits for its stdin to close, which happens when the tests'
# process exits however it exits, even by SIGKILL; then it stops the server (argv[2:]) and
# removes its folder (argv[1]). Three times, a second apart: a `pg_ctl start` the tests
# were running goes on without them, and may write its log into the folder once it is gone.
# After a clean stop the tests end it first.
WATCHER = """
import shutil, subprocess, sys, time
sys.stdin.buffer.read()
for attempt in range(3):
    subprocess.run(sys.argv[2:], capture_output=True, timeout=60)
    shutil.rmtree(sys.argv[1], ignore_errors=True)
    time.sleep(1)
"""


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
        subprocess.run(self._command(*args), check=True, capture_output=True, timeout=START_SECONDS)

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return command

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
        self._run(*self._stop)

    @property
    def _stop(self) -> tuple[str, ...]:
        return ("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def watcher(self) -> subprocess.Popen[bytes]:
        """A process that stops the server and removes its folder once this one exits (`WATCHER`)."""
        command = [sys.executable, "-c", WATCHER, str(self.root), *self._command(*self._stop)]
        return subprocess.Popen(command, stdin=subprocess.PIPE, start_new_session=True)

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
        watcher = server.watcher()
        try:
            server.start()
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
            watcher.kill()
            watcher.wait()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with running_server() as server:
        yield server
