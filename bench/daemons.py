"""Several daemons on one PostgreSQL, for `dispatch.py --daemons 1,2,3`: each daemon is a
process of its own running the daemon's dispatcher (`Engine.dispatcher(kind="daemon")`) at
the bench's NOW, over SMTP to sinks that only count what they receive.

Each process opens its own store and transport, waits for the start signal, and delivers
until nothing more is due; they share the queue through their claims (FOR UPDATE SKIP
LOCKED), as `automator run` processes do. The run's time is from the start signal to the
last process's end; each process reports its CPU time, and the sinks theirs.

The sink answers the SMTP commands a client sends (EHLO, MAIL, RCPT, DATA, RSET, NOOP,
QUIT) and counts each message's final dot, without parsing a header: a fraction of what
aiosmtpd costs per message, so that it is not what is measured. `--sinks` starts several.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, make_url, text

GREETING = b"220 sink ready\r\n"
END_OF_DATA = b"\r\n.\r\n"


class CountingSink(asyncio.Protocol):
    """One client's SMTP session: every command is accepted, every message counted."""

    def __init__(self, counter: Any) -> None:
        self.counter = counter
        self.buffer = b""
        self.in_data = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        assert self.transport is not None
        while True:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end, skip = 0, 3
                else:
                    end = self.buffer.find(END_OF_DATA)
                    if end < 0:
                        return
                    skip = len(END_OF_DATA)
                self.buffer = self.buffer[end + skip :]
                self.in_data = False
                with self.counter.get_lock():
                    self.counter.value += 1
                self.transport.write(b"250 OK counted\r\n")
                continue
            line, found, rest = self.buffer.partition(b"\r\n")
            if not found:
                return
            self.buffer = rest
            self.transport.write(self.answer(line[:4].upper()))

    def answer(self, verb: bytes) -> bytes:
        if verb == b"EHLO":
            return b"250-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
        if verb == b"DATA":
            self.in_data = True
            return b"354 go ahead\r\n"
        if verb == b"QUIT":
            assert self.transport is not None
            self.transport.close()
            return b"221 bye\r\n"
        return b"250 OK\r\n"


def serve_sink(port: int, counter: Any, ready: EventType) -> None:
    """A counting sink on 127.0.0.1:`port`, until SIGTERM."""

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        server = await loop.create_server(lambda: CountingSink(counter), "127.0.0.1", port, backlog=256)
        ready.set()
        await stop.wait()
        server.close()

    asyncio.run(serve())


@dataclass
class Sinks:
    """`count` sink processes, each on a port of its own."""

    ports: list[int]
    counters: list[Any]
    processes: Sequence[multiprocessing.process.BaseProcess]

    @classmethod
    def start(cls, count: int) -> Sinks:
        context = multiprocessing.get_context("spawn")
        ports = [_free_port() for _ in range(count)]
        counters = [context.Value("q", 0) for _ in ports]
        ready = [context.Event() for _ in ports]
        processes = [
            context.Process(target=serve_sink, args=(port, counter, event), daemon=True)
            for port, counter, event in zip(ports, counters, ready, strict=True)
        ]
        for process in processes:
            process.start()
        for event in ready:
            if not event.wait(30):
                raise SystemExit("bench: a sink did not start")
        return cls(ports, counters, processes)

    def received(self) -> int:
        return sum(counter.value for counter in self.counters)

    def cpu(self) -> float:
        """The sinks' CPU time so far (user and system), from /proc."""
        return sum(_process_cpu(process.pid) for process in self.processes if process.pid)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(10)


def _process_cpu(pid: int, children: bool = False) -> float:
    """A process's CPU time (user and system), with that of its children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = sum(int(value) for value in fields[11:15] if children or value in fields[11:13])
    return ticks / os.sysconf("SC_CLK_TCK")


def server_cpu(data: Path) -> float:
    """The CPU time of a PostgreSQL server so far: its postmaster, the backends that have
    ended (the postmaster waited for them) and the processes it runs now."""
    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    total = _process_cpu(postmaster, children=True)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError):
            continue  # a backend that ended meanwhile
    return total


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Databases:
    """Databases on one PostgreSQL server: the queued store is made once, and each run gets a
    copy of it (CREATE DATABASE … TEMPLATE), as the file mode copies its SQLite file."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.server = create_engine(self.url, isolation_level="AUTOCOMMIT", poolclass=None)
        self.queued = "automator_bench_queued"
        self.run = "automator_bench_run"

    def url_of(self, name: str) -> str:
        return self.url.set(database=name).render_as_string(hide_password=False)

    def fresh_queued(self) -> str:
        self._recreate(self.queued)
        return self.url_of(self.queued)

    def analyze_queued(self) -> None:
        """Gather the planner's statistics on the queued store, as autovacuum would have on a
        database in use: each run's copy starts with them."""
        engine = create_engine(self.url_of(self.queued), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(text("VACUUM ANALYZE"))
        engine.dispose()

    def fresh_run(self) -> str:
        self._recreate(self.run, template=self.queued)
        return self.url_of(self.run)

    def _recreate(self, name: str, template: str | None = None) -> None:
        with self.server.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))

    def dispose(self) -> None:
        with self.server.connect() as connection:
            for name in (self.run, self.queued):
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.server.dispose()


@dataclass
class DaemonResult:
    sent: int
    outcomes: Counter[str]
    cpu: float


def daemon_process(
    root: str, url: str, smtp: str, ready: Any, go: EventType, results: Any, batch: int, workers: int
) -> None:
    """One daemon with `workers` render workers: open the store and the transport, say it is
    ready, wait for `go`, deliver what is due."""
    from dispatch import NOW, children_cpu

    from automator.engine import Engine, TickReport
    from automator.project import load_project
    from automator.transports.smtp import SmtpTransport
    from automator.transports.smtp_settings import SmtpSettings

    project = load_project(
        Path(root), {"AUTOMATOR_DATABASE_URL": url, "AUTOMATOR_RENDER_WORKERS": str(workers)}
    )
    store = project.open_store()
    engine = Engine(project, store, SmtpTransport(SmtpSettings.from_url(smtp)))
    dispatcher = engine.dispatcher(kind="daemon")
    report = TickReport(NOW)

    async def deliver() -> int:
        try:
            return await dispatcher.run(NOW, report, batch)
        finally:
            await engine.transport.close()

    with store.session() as session:  # connected before the start, as a running daemon is
        session.execute(text("SELECT 1"))
    warming = engine.render_pool.warm()  # its render workers, up as a daemon's are
    if warming is not None:
        warming.result()
    ready.put(os.getpid())
    go.wait()
    cpu = time.process_time() + children_cpu()
    sent = asyncio.run(deliver())
    outcomes: Counter[str] = Counter()
    for rule in report.rules.values():
        outcomes.update(rule.outcomes)
    results.put(DaemonResult(sent, outcomes, time.process_time() + children_cpu() - cpu))
    engine.close()
    store.dispose()


@dataclass
class DaemonsRun:
    daemons: int
    workers: int  # render workers per daemon
    sent: int
    received: int
    seconds: float
    cpu: float  # the daemons' CPU time
    sink_cpu: float
    server_cpu: float | None  # the PostgreSQL server's, when the bench started it
    outcomes: Counter[str]

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def run_daemons(
    count: int,
    root: Path,
    url: str,
    sinks: Sinks,
    concurrency: int,
    batch: int,
    server: Callable[[], float] | None = None,
) -> DaemonsRun:
    """`count` daemon processes delivering the queue in `url`, each to the next sink;
    `server` tells the PostgreSQL server's CPU time so far, when it can be known."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    ready, results = context.Queue(), context.Queue()
    received_before, sink_cpu = sinks.received(), sinks.cpu()
    processes = []
    # The daemons share the machine: their render workers share the cores the daemons leave,
    # as an operator running several on one machine sets them (one per core but one is for
    # a daemon alone on its machine).
    workers = max(0, (os.cpu_count() or 1) // count - 1)
    for number in range(count):
        port = sinks.ports[number % len(sinks.ports)]
        smtp = f"smtp://127.0.0.1:{port}?timeout=30&pool_size={concurrency}&concurrency={concurrency}"
        processes.append(
            context.Process(
                target=daemon_process, args=(str(root), url, smtp, ready, go, results, batch, workers)
            )
        )
    for process in processes:
        process.start()
    for _ in processes:
        ready.get(timeout=120)
    server_before = server() if server else 0.0
    started = time.perf_counter()
    go.set()
    done = [results.get(timeout=600) for _ in processes]
    seconds = time.perf_counter() - started
    server_used = server() - server_before if server else None
    for process in processes:
        process.join(30)
    outcomes: Counter[str] = Counter()
    for result in done:
        outcomes.update(result.outcomes)
    sent = sum(result.sent for result in done)
    outcomes["sent"] += sent
    return DaemonsRun(
        count,
        workers,
        sent,
        sinks.received() - received_before,
        seconds,
        sum(result.cpu for result in done),
        sinks.cpu() - sink_cpu,
        server_used,
        outcomes,
    )
