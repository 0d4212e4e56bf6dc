"""Every command the README and docs/ show works as they say, so the docs cannot drift from
the code.

The commands come from the docs' fenced blocks: every line of a ```sh block, and the lines
of an untagged block that call automator (docs/console.md shows its commands that way; the
other untagged blocks are output, a file tree or a transcript). Each fenced block is a
session: its commands run in order, as typed, in a project folder of their own (a copy of
rules/, email_templates/, automator.toml and examples/; the database, the outbox and a
secret set in the environment). A block starts where `make demo` leaves the repository (the
example contacts, coupons and events, ticked on 2026-11-20), except one that imports contacts
of its own ("Bring your own data"), which starts from an empty project with small files under
the names its commands use.

A plain `automator …` line runs in this process through the real CLI (a process per line
costs a second of imports); a line with shell syntax (`$(…)`, a pipe, `export`) runs in bash,
and what it exports carries on to the next line; `automator run` and `automator console` run
as processes, answer on every address the command or its comment names, and stop on SIGTERM.

Each command exits 0 without a traceback, or as REFUSED says; SKIPPED lists the commands that
need what a test machine does not have, with why.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
from typer.testing import CliRunner

from automator.cli import app
from tests.conftest import REPO, TEST_SECRET, cart

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PASSWORD = "correct horse battery"  # the docs' $PASSWORD, and the answer to a password prompt
START = 30.0  # seconds a server may take to answer
STOP = 30.0  # seconds SIGTERM may take: the daemon's 20 s grace, and slack
COMMAND = 60.0  # seconds a line run in bash may take
PORT_WAIT = 30.0  # seconds to wait for a port the docs name that another program holds

# Where `make demo` leaves the repository, in four commands instead of its hour-by-hour walk.
DEMO_NOW = "2026-11-20T11:00:00Z"
AFTER_THE_DEMO = [
    ["contacts", "import", "examples/contacts.csv", "--now", "2026-11-02T00:00:00Z"],
    ["coupons", "import", "renewal", "examples/renewal_coupons.csv", "--percent-off", "15"],
    ["events", "import", "examples/events.jsonl", "--now", DEMO_NOW],
    ["tick", "--now", DEMO_NOW],
]

# Commands the docs show that this test does not run, by how they start.
SKIPPED = {
    "make demo": "creates .venv and installs automator with pip; the blocks after it start from "
    "what it leaves (AFTER_THE_DEMO)",
    "make test": "the whole suite, this test included",
    "sudo ": "the systemd set-up: needs root, /opt, /etc and a running systemd",
    "docker ": "needs docker",
    "pip install ": "installs from the network",
    # The lines after it (`automator db …`) run on the session's SQLite database.
    "export AUTOMATOR_DATABASE_URL=postgresql": "needs a PostgreSQL server (db.example.com)",
    "AUTOMATOR_": "a line of an environment file (NAME=value, with placeholders), not a command",
    "curl ": "asks the daemon a block before starts; tests/test_api_docs.py runs docs/api.md's against one",
}

# Commands that the docs' order leads to a refusal, with the exit code and the error.
REFUSED: dict[str, tuple[int, str]] = {
    # `preview` says first whether the contact would get the message, as of --now. After
    # `make demo` she got it ("sent (message 1 at 2026-11-04 05:00Z)"); in this short walk,
    # one tick on the 20th, nothing was queued for her cart of the 4th by the 5th, and its
    # lateness had passed. The README's next line renders it all the same (`--force`).
    "automator preview abandoned_cart --contact lan@example.com --now 2026-11-05T12:00:00Z": (
        1,
        r"lan@example\.com would not get it: not eligible: too late: due at 2026-11-04 04:30Z",
    ),
}

# How a server may end on SIGTERM: `run` exits 0 (docs/operations.md, "Stopping"); `automator
# console` is uvicorn's server, which shuts down cleanly and then ends by the signal it got
# (143 in a shell), as a supervisor expects of a process it stopped.
ENDS_ON_SIGTERM = {"run": {0}, "console": {0, -signal.SIGTERM}}

FENCE = re.compile(r"^```\s*(\S*)")
SHELL_BLOCKS = ("sh", "bash", "shell")
CALLS_AUTOMATOR = re.compile(r"(?:^|[|;&]|\$\()\s*automator(?=\s|\)|$)")
SHELL_SYNTAX = re.compile(r"[|&;<>$`]|^export\s")
ADDRESS = re.compile(r"\b(\d{1,3}(?:\.\d{1,3}){3}):(\d+)\b")


@dataclass(frozen=True)
class Command:
    """One command line of a doc's fenced block."""

    doc: str  # relative to the repository
    line: int
    block: int  # which fenced block of the doc, from 1
    text: str  # as typed, without its comment
    comment: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line} {self.text}"

    @property
    def serves(self) -> bool:
        """`automator run` and `automator console` run until stopped."""
        return shlex.split(self.text)[:2] in (["automator", "run"], ["automator", "console"])


def split_comment(line: str) -> tuple[str, str]:
    """`automator check   # ok: 4 rules` → ("automator check", "ok: 4 rules")."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].strip(), line[index + 1 :].strip()
    return line.strip(), ""


def commands_in(doc: Path) -> list[Command]:
    found: list[Command] = []
    language: str | None = None  # None: outside a fenced block
    block, pending, first = 0, "", 0
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if fence := FENCE.match(line):
            language, block = (fence.group(1), block + 1) if language is None else (None, block)
            continue
        if language not in (*SHELL_BLOCKS, ""):
            continue
        if line.rstrip().endswith("\\"):  # continued on the next line
            pending, first = f"{pending}{line.rstrip()[:-1].strip()} ", first or number
            continue
        text, comment = split_comment(pending + line.strip())
        start, pending, first = first or number, "", 0
        if text and (language in SHELL_BLOCKS or CALLS_AUTOMATOR.search(text)):
            found.append(Command(str(doc.relative_to(REPO)), start, block, text, comment))
    return found


COMMANDS = [command for doc in DOCS for command in commands_in(doc)]


def skip_reason(command: Command) -> str | None:
    return next((why for start, why in SKIPPED.items() if command.text.startswith(start)), None)


RUNNABLE = [command for command in COMMANDS if skip_reason(command) is None]


# ---------------------------------------------------------------- projects and sessions


def own_data(root: Path) -> None:
    """The files "Bring your own data" names. Twelve shoppers in New York leave carts at 04:30
    local time; the tick at 11:00Z (06:00 there, quiet hours) queues twelve reminders for
    08:00, so that message 12 is queued for the queue commands to act on."""
    emails = [f"shopper{number:02d}@example.com" for number in range(1, 13)]
    rows = "".join(f"{email},Sam,en,America/New_York,consideration\n" for email in emails)
    (root / "contacts.csv").write_text("email,first_name,locale,timezone,stage\n" + rows, encoding="utf-8")
    events = [
        {"id": f"cart-{n}", "type": "cart_updated", "email": email, "at": "2026-11-20T09:30:00Z"}
        | {"properties": cart(f"c{n}", total=120, currency="USD")}
        for n, email in enumerate(emails, 1)
    ]
    lines = "".join(json.dumps(event) + "\n" for event in events)
    (root / "events.jsonl").write_text(lines, encoding="utf-8")
    (root / "codes.csv").write_text("code\nRENEW-DOCS-1\nRENEW-DOCS-2\n", encoding="utf-8")


def new_project(root: Path) -> Path:
    root.mkdir(parents=True)
    for folder in ("rules", "email_templates", "examples"):
        shutil.copytree(REPO / folder, root / folder)
    shutil.copy(REPO / "automator.toml", root / "automator.toml")
    return root


def automator_folder(spare: Path) -> str:
    """A folder with the `automator` script for bash: the virtualenv's, or a stand-in."""
    script = Path(sys.executable).with_name("automator")
    if script.exists():
        return str(script.parent)
    spare.mkdir(exist_ok=True)
    stand_in = spare / "automator"
    run_app = '"from automator.cli import app; app()"'
    stand_in.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -c {run_app} "$@"\n')
    stand_in.chmod(0o755)
    return str(spare)


@dataclass
class Session:
    """A block's project folder, its environment, and how many of its commands have run."""

    root: Path
    env: dict[str, str]
    done: int = 0

    @classmethod
    def at(cls, root: Path) -> Session:
        env = {name: value for name, value in os.environ.items() if not name.startswith("AUTOMATOR_")}
        env |= {
            "PATH": f"{automator_folder(root.parent / 'bin')}{os.pathsep}{env.get('PATH', '')}",
            "AUTOMATOR_DATABASE_URL": f"sqlite:///{root / 'automator.db'}",
            "AUTOMATOR_OUTBOX": str(root / "outbox"),
            "AUTOMATOR_SECRET": TEST_SECRET,
            "AUTOMATOR_RENDER_WORKERS": "0",  # the daemon's render pool is not what the docs show
            "PASSWORD": PASSWORD,
        }
        return cls(root, env)

    def run_here(self, *args: str) -> tuple[int, str]:
        """Through the real CLI in this process, in the project folder, with its environment."""
        names = {name for name in (*os.environ, *self.env) if name.startswith("AUTOMATOR_")}
        env = {name: self.env.get(name) for name in names}
        with contextlib.chdir(self.root):
            result = CliRunner().invoke(
                app, list(args), input=f"{PASSWORD}\n{PASSWORD}\n", env=env, catch_exceptions=False
            )
        return result.exit_code, result.output

    def run_in_bash(self, line: str) -> tuple[int, str]:
        """In bash, with no terminal (a password prompt reads stdin); keeps what it exports."""
        exported = self.root.parent / "exported"
        script = f"{line}\nstatus=$?\nenv -0 > {shlex.quote(str(exported))}\nexit $status\n"
        done = subprocess.run(
            ["bash", "-c", script],
            cwd=self.root,
            env=self.env,
            input=f"{PASSWORD}\n{PASSWORD}\n",
            capture_output=True,
            text=True,
            timeout=COMMAND,
            start_new_session=True,
        )
        for entry in exported.read_text(encoding="utf-8").split("\0"):
            name, _, value = entry.partition("=")
            if name.startswith("AUTOMATOR_"):
                self.env[name] = value
        return done.returncode, done.stdout + done.stderr

    def run(self, command: Command) -> tuple[int, str]:
        if SHELL_SYNTAX.search(command.text):
            return self.run_in_bash(command.text)
        return self.run_here(*shlex.split(command.text)[1:])


class Sessions:
    """One session per fenced block, started when a test first needs it."""

    def __init__(self, folder: Path, demo: Path) -> None:
        self.folder, self.demo = folder, demo
        self.started: dict[tuple[str, int], Session] = {}
        self.numbers = itertools.count(1)

    def new(self, own_contacts: bool = False) -> Session:
        root = self.folder / f"session-{next(self.numbers)}" / "project"
        if own_contacts:
            own_data(new_project(root))
        else:
            shutil.copytree(self.demo, root)
        return Session.at(root)

    def before(self, command: Command) -> Session:
        """The session of the command's block, with the block's commands before it run. Only
        their own tests check what they did; a server leaves nothing the next lines need."""
        block = [other for other in RUNNABLE if (other.doc, other.block) == (command.doc, command.block)]
        index = block.index(command)
        session = self.started.get((command.doc, command.block))
        if session is None or session.done > index:
            own_contacts = any(other.text.startswith("automator contacts import") for other in block)
            session = self.started[command.doc, command.block] = self.new(own_contacts)
        for earlier in block[session.done : index]:
            if not earlier.serves:
                session.run(earlier)
        session.done = index + 1
        return session


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> Sessions:
    demo = Session.at(new_project(tmp_path_factory.mktemp("demo") / "project"))
    for args in AFTER_THE_DEMO:
        code, output = demo.run_here(*args)
        assert code == 0, f"automator {shlex.join(args)}:\n{output}"
    return Sessions(tmp_path_factory.mktemp("sessions"), demo.root)


# ---------------------------------------------------------------- servers


@dataclass(frozen=True)
class Probe:
    """A page a server must answer: /health on a --listen address, /login on a console's."""

    host: str  # as the command binds it
    port: int
    path: str

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}{self.path}"

    def answered(self, response: httpx.Response) -> bool:
        if self.path == "/health":
            return response.status_code == 200 and response.json()["status"] == "ok"
        return response.status_code == 200 and "<h1>Log in</h1>" in response.text


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def probes_of(command: Command) -> list[Probe]:
    """The addresses the command's options and its comment name: `--listen` answers /health,
    the console (`--console-listen`, `console --host --port`, an address in the comment) /login."""
    args = shlex.split(command.text)
    probes: dict[int, Probe] = {}
    if listen := option(args, "--listen"):
        host, _, port = listen.rpartition(":")
        probes[int(port)] = Probe(host, int(port), "/health")
    if console_listen := option(args, "--console-listen"):
        host, _, port = console_listen.rpartition(":")
        probes[int(port)] = Probe(host, int(port), "/login")
    console_host, console_port = option(args, "--host"), option(args, "--port")
    if args[1] == "console" and console_host and console_port:
        probes[int(console_port)] = Probe(console_host, int(console_port), "/login")
    for named_host, named_port in ADDRESS.findall(command.comment):
        probes.setdefault(int(named_port), Probe(named_host, int(named_port), "/login"))
    return list(probes.values())


def port_is_free(host: str, port: int) -> bool:
    try:
        socket.create_server((host, port)).close()
    except OSError:
        return False
    return True


def wait_for_ports(probes: list[Probe]) -> None:
    """The docs name fixed ports: skip, saying which, when another program keeps one."""
    deadline = time.monotonic() + PORT_WAIT
    for probe in probes:
        while not port_is_free(probe.host, probe.port):
            if time.monotonic() > deadline:
                pytest.skip(f"port {probe.port} is taken by another program")
            time.sleep(0.2)


def serve(
    session: Session, line: str, probes: list[Probe], after_start: Callable[[str], list[Probe]] | None = None
) -> tuple[int, str]:
    """Start `line`, wait until every probe answers, stop it with SIGTERM; its exit code and
    output. `after_start(output so far)` may add probes found in the server's log."""
    assert probes, f"{line}: the docs do not say where it answers (an address in its options or comment)"
    wait_for_ports(probes)
    log = session.root.parent / f"server-{time.monotonic_ns()}.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {line}"],
            cwd=session.root,
            env=session.env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        for probe in probes:
            wait_until_answered(probe, process, log)
        for probe in after_start(log.read_text(encoding="utf-8")) if after_start else []:
            wait_until_answered(probe, process, log)
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(STOP)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{line}: still running {STOP:g} s after SIGTERM:\n{log.read_text(encoding='utf-8')}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    return code, log.read_text(encoding="utf-8")


def wait_until_answered(probe: Probe, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"exited {process.returncode} before {probe.url} answered:\n{log.read_text(encoding='utf-8')}"
            )
        with contextlib.suppress(httpx.TransportError):
            if probe.answered(httpx.get(probe.url, timeout=2)):
                return
        if time.monotonic() > deadline:
            pytest.fail(f"{probe.url} did not answer within {START:g} s:\n{log.read_text(encoding='utf-8')}")
        time.sleep(0.1)


# ---------------------------------------------------------------- tests


def param(command: Command) -> object:
    reason = skip_reason(command)
    return pytest.param(command, id=str(command), marks=[pytest.mark.skip(reason=reason)] if reason else [])


@pytest.mark.parametrize("command", [param(command) for command in COMMANDS])
def test_a_command_the_docs_show_works_as_they_say(command: Command, sessions: Sessions) -> None:
    assert CALLS_AUTOMATOR.search(command.text), "neither runs automator nor is in SKIPPED: say why"
    session = sessions.before(command)

    if command.serves:
        code, output = serve(session, command.text, probes_of(command))
        expected, error = ENDS_ON_SIGTERM[shlex.split(command.text)[1]], ""
    else:
        code, output = session.run(command)
        exit_code, error = REFUSED.get(command.text, (0, ""))
        expected = {exit_code}

    assert "Traceback" not in output, output
    assert code in expected, output
    assert re.search(error, output), output


def the_readmes_listen_address() -> str:
    """Where the README's prose has `automator run --listen HOST:PORT` serve /health."""
    found = re.search(
        r"`automator run --listen\s+([\d.]+:\d+)`", (REPO / "README.md").read_text(encoding="utf-8")
    )
    assert found, "the README no longer shows `automator run --listen HOST:PORT`"
    return found.group(1)


def the_console_in_the_log(output: str) -> list[Probe]:
    """The console's address, from the daemon's `serving console` log line."""
    found = [ADDRESS.search(line) for line in output.splitlines() if "serving console" in line]
    assert found and found[0], f"no address in a `serving console` line of the daemon's log:\n{output}"
    return [Probe(found[0].group(1), int(found[0].group(2)), "/login")]


def test_run_with_the_readmes_listen_address_and_console_serves_both(sessions: Sessions) -> None:
    """The README's prose: "`automator run --listen 127.0.0.1:8080` also serves the one-click
    unsubscribe endpoint and `/health`", and "`automator run --console` serves [the console]
    inside the daemon". Both at once work: the console keeps a port of its own."""
    host, _, port = the_readmes_listen_address().rpartition(":")
    line = f"automator run --listen {host}:{port} --console"

    code, output = serve(sessions.new(), line, [Probe(host, int(port), "/health")], the_console_in_the_log)

    assert "Traceback" not in output, output
    assert code == 0, output


def test_every_skip_and_refusal_listed_here_is_still_in_the_docs() -> None:
    texts = [command.text for command in COMMANDS]
    assert RUNNABLE, "no command found in the docs' fenced blocks"
    assert [start for start in SKIPPED if not any(text.startswith(start) for text in texts)] == []
    assert [text for text in REFUSED if text not in texts] == []
