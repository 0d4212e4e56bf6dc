"""`automator run`: the scheduler daemon.

APScheduler (3.x, AsyncIOScheduler) evaluates the rules every `tick_interval` seconds and
dispatches due messages every `dispatch_interval` seconds, the two independently of each
other. With a listen address it also serves the web app (unsubscribe links, health) with
uvicorn on the same event loop. On SIGTERM/SIGINT it stops claiming, ends a running tick at
its next chunk, lets in-flight sends finish (or puts them back in the queue), stops the web
server, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import DBAPIError

from automator.clock import Clock, utcnow
from automator.dispatch import BATCH
from automator.dispatch.claims import ORPHANED
from automator.engine import Engine, TickReport
from automator.errors import AutomatorError
from automator.pipeline import Stopped
from automator.store import claims, heartbeats, outage

log = logging.getLogger("automator.daemon")
# How often a running daemon says so, and makes sure it holds its lock (`Daemon.heartbeat`).
HEARTBEAT_SECONDS = 10.0


@dataclass(frozen=True)
class DaemonOptions:
    tick_interval: float = 60.0
    dispatch_interval: float = 2.0
    dispatch_batch: int = BATCH  # the most messages the dispatcher holds claimed at once
    shutdown_grace: float = 20.0
    # (host, port) to serve the web app on; None serves nothing.
    listen: tuple[str, int] | None = None
    # (host, port) to serve the support console on; None serves no console.
    console: tuple[str, int] | None = None
    # This daemon holds the single-daemon lock (SQLite): no other process can be sending.
    exclusive: bool = False


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT`, `:PORT` (all interfaces) or `[::1]:PORT` → (host, port)."""
    host, colon, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]") or "0.0.0.0"
    if not colon or not port.isdigit() or int(port) > 65535:
        raise AutomatorError(f'--listen "{value}" is not HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080')
    return host, int(port)


class Daemon:
    """Runs ticks and dispatches on a schedule until told to stop."""

    def __init__(self, engine: Engine, options: DaemonOptions, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.options = options
        self.clock = clock
        self.dispatcher = engine.dispatcher(kind="daemon", clock=clock)
        self.stopping = asyncio.Event()
        # Held while a tick runs, and while a dispatch runs: the shutdown waits for both. A
        # tick does not wait for a dispatch, nor a dispatch for a tick: a slow or hung SMTP
        # server must not stop the rules being evaluated, and a tick beside a dispatch is
        # what two processes on one database do already (the claims, the frequency cap and
        # the coupons take their own locks in the database).
        self.ticking = asyncio.Lock()
        self.sending = asyncio.Lock()
        self.halt = threading.Event()  # the tick's thread stops at its next chunk
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.lock: claims.OwnerLock | None = None  # held while it runs (`heartbeats.alive`)
        # Since when the steps fail for want of the database, and how many have (`_passing_outage`).
        self.down_since: datetime | None = None
        self.skipped = 0

    async def run(self) -> None:
        with heartbeats.alive(self.engine.store, self.name) as lock:  # so `status` tells if it is killed
            self.lock = lock
            await self._run()

    async def _run(self) -> None:
        servers = [] if self.options.listen is None else [HttpServer(self, *self.options.listen)]
        if self.options.console is not None:
            servers.append(HttpServer(self, *self.options.console, console=True))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)
        _once_more_if_cut_off(self.release_orphans)
        self.engine.render_pool.warm()  # the workers start while the first lookup runs
        _once_more_if_cut_off(lambda: self.beat("started"))
        scheduler = self.schedule()
        scheduler.start()
        for server in servers:
            server.start()
        log.info("daemon started", extra={"fields": {"daemon": self.name, **self.options.__dict__}})
        try:
            await self.stopping.wait()
        finally:
            # The web server stops accepting at once and finishes its requests meanwhile.
            await asyncio.gather(self.drain(scheduler), *(server.stop() for server in servers))
            self.engine.close()
            _unless_out_of_reach("record the stop", lambda: self.beat("stopped"))
            log.info("daemon stopped", extra={"fields": {"daemon": self.name}})

    def schedule(self) -> AsyncIOScheduler:
        """The first tick now, then every `tick_interval`; dispatch every `dispatch_interval`.

        A run that comes late (a slow start, a long batch) still runs, once: APScheduler's
        default would skip a run more than a second late, and the first tick with it.
        """
        scheduler = AsyncIOScheduler(timezone=UTC)
        every = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        scheduler.add_job(
            self.evaluate,
            "interval",
            seconds=self.options.tick_interval,
            next_run_time=self.clock(),
            id="evaluate",
            **every,
        )
        scheduler.add_job(
            self.dispatch, "interval", seconds=self.options.dispatch_interval, id="dispatch", **every
        )
        scheduler.add_job(self.heartbeat, "interval", seconds=HEARTBEAT_SECONDS, id="heartbeat", **every)
        return scheduler

    def stop(self, signum: int | None = None) -> None:
        if not self.stopping.is_set():
            log.info("stopping", extra={"fields": {"signal": signum}})
            self.stopping.set()
            self.halt.set()

    async def drain(self, scheduler: AsyncIOScheduler) -> None:
        """Let the running jobs finish (a tick, a dispatch's batch; bounded by the grace),
        cancel them past that, then put back anything still `sending`.

        The scheduler is shut down only afterwards: its shutdown cancels running jobs, which
        would abandon sends mid-batch and re-queue messages the server had already taken.
        """
        scheduler.pause()  # no job starts from now on: one begun now would be cut off unstarted
        idle = [asyncio.ensure_future(lock.acquire()) for lock in (self.ticking, self.sending)]
        _, running = await asyncio.wait(idle, timeout=self.options.shutdown_grace)
        scheduler.shutdown(wait=False)
        if running:
            await asyncio.wait(running, timeout=5)  # the cancelled jobs unwinding
            for waiting in running:
                waiting.cancel()
        _unless_out_of_reach("put back the messages in flight", self.release_in_flight)

    def release_orphans(self) -> None:
        """Put back what dead dispatchers left in `sending`, without waiting for its lease.
        It goes out again with the same Message-ID; some may already have been delivered.

        On SQLite, the holder of the single-daemon lock puts back every daemon's: no other
        daemon can be sending, so these were left by one that died (SIGKILL, power loss)
        mid-batch. On PostgreSQL, which other daemons may share, only the claims whose
        dispatcher's process is gone (see `store.claims.owning`), or whose lease ran out.
        The claims of an `automator tick` that is running now are left alone on both.
        """
        if self.options.exclusive:
            with self.engine.store.session() as session:
                orphans = claims.requeue_daemons(session, self.clock(), ORPHANED)
        else:
            orphans = self.dispatcher.claims.recover_abandoned()
        if orphans:
            log.warning(
                "re-queued messages a stopped daemon left in flight",
                extra={"fields": {"count": orphans}},
            )

    def release_in_flight(self) -> None:
        self.dispatcher.give_back_in_flight("daemon stopped before the send finished; will be sent again")

    async def evaluate(self) -> None:
        if self.stopping.is_set():
            return
        try:
            with self._passing_outage("tick"):
                await self._evaluate()
        except (asyncio.CancelledError, Stopped):
            if not self.stopping.is_set():
                raise
            # Stopped between two chunks (what was not committed is undone, the next tick
            # queues it), or cancelled past the grace: an expected end.
            log.info("tick cut short by the shutdown")

    async def _evaluate(self) -> None:
        async with self.ticking:
            now = self.clock()
            started = time.monotonic()
            report = TickReport(now)
            await asyncio.to_thread(self.engine.evaluate, now, report, self.halt)
            self.beat("tick", now)
            log.info(
                "tick",
                extra={
                    "fields": {
                        "now": now.isoformat(),
                        "seconds": round(time.monotonic() - started, 3),
                        "enqueued": sum(r.enqueued for r in report.rules.values()),
                        "rules": {
                            r.rule_id: _active(r.as_dict())
                            for r in report.rules.values()
                            if r.evaluated or r.error
                        },
                    }
                },
            )

    async def dispatch(self) -> None:
        if self.stopping.is_set():
            return
        async with self.sending:
            now = self.clock()
            report = TickReport(now)
            sent = 0
            try:
                with self._passing_outage("dispatch"):
                    batch = self.options.dispatch_batch
                    sent = await self.dispatcher.run(now, report, batch, stop=self.stopping)
            except asyncio.CancelledError:
                if not self.stopping.is_set():
                    raise
                # The shutdown's grace ran out (`drain`): an expected end, not a job's failure.
                log.warning(
                    "dispatch cut short by the shutdown; what it had in flight goes back to the queue"
                )
                return
            for rule in report.rules.values():
                for outcome, count in rule.outcomes.items():
                    if outcome.startswith(("retrying", "failed")):
                        log.warning(
                            "delivery failure",
                            extra={"fields": {"rule": rule.rule_id, "outcome": outcome, "count": count}},
                        )
            if sent:
                log.info("dispatched", extra={"fields": {"sent": sent, "now": now.isoformat()}})

    async def heartbeat(self) -> None:
        """Say that the daemon is alive, and keep its lock: `status` and `tick` tell a live
        daemon from a killed one by that lock, which the server lets go whenever it closes
        the lock's connection, also under a live daemon (see `claims.OwnerLock`)."""
        if self.stopping.is_set():
            return
        with self._passing_outage("heartbeat"):
            await asyncio.to_thread(self._keep_alive)

    def _keep_alive(self) -> None:
        if self.lock is not None and self.lock.keep():
            log.warning(
                "took the daemon's lock again: the database had closed its connection",
                extra={"fields": {"daemon": self.name}},
            )
        self.beat("running")

    @contextlib.contextmanager
    def _passing_outage(self, step: str) -> Iterator[None]:
        """A step that fails because the database cannot be reached or used for now (a
        PostgreSQL server down or restarting, a connection cut, a SQLite file another process
        kept locked past the busy timeout) logs one warning line, `<step> skipped: <reason>`,
        and its next turn tries again (what the step wrote is rolled back, or recovered as
        after any failure). The first step that succeeds after such failures says once that
        the database answers again. Any other error keeps its traceback."""
        try:
            yield
        except Exception as exc:
            locked = self.engine.store.locked(exc)
            said = str(locked) if locked is not None else outage(exc)
            if said is None:
                raise
            log.warning(f"{step} skipped: {said}")
            if self.down_since is None:
                self.down_since = self.clock()
            self.skipped += 1
            return
        if self.down_since is not None:
            log.info(
                "the database answers again",
                extra={"fields": {"down_since": self.down_since.isoformat(), "skipped": self.skipped}},
            )
            self.down_since, self.skipped = None, 0

    def beat(self, what: str, tick_at: datetime | None = None) -> None:
        with self.engine.store.session() as session:
            heartbeats.beat(session, self.name, what, self.clock(), tick_at)


def _once_more_if_cut_off(action: Callable[[], object]) -> None:
    """`action`, run again once if the database cut its connection off (a restart, an
    administrator's pg_terminate_backend): the pool opens a new one. The jobs live through
    that by running again at their next turn; the steps of starting and stopping have none."""
    try:
        action()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning(
            "the database cut the connection off; trying again", extra={"fields": {"error": str(exc.orig)}}
        )
        action()


def _unless_out_of_reach(what: str, step: Callable[[], object]) -> None:
    """A step of stopping, run once more if the database cut the connection off; if the
    database cannot be reached at all, one warning line, and the stop goes on: there is no
    next turn to wait for. (Claims left `sending` go back when another dispatcher finds their
    owner gone, or their lease ends; a heartbeat left `running` is told by the lock.)"""
    try:
        _once_more_if_cut_off(step)
    except Exception as exc:
        said = outage(exc)
        if said is None:
            raise
        log.warning(f"could not {what}: {said}")


class HttpServer:
    """The web app (unsubscribe, health), or the support console, served by uvicorn on the
    daemon's event loop.

    The socket is bound in the constructor, so a port in use is a clear error before the
    daemon starts anything, rather than a uvicorn `sys.exit` inside a task.
    """

    def __init__(self, daemon: Daemon, host: str, port: int, console: bool = False) -> None:
        self.daemon = daemon
        self.what = "console" if console else "http"
        self.socket = _bind(host, port)
        bound = self.socket.getsockname()
        self.address = f"http://{_join_host_port(host, bound[1])}"
        engine = daemon.engine
        # Imported here: `automator status` and a daemon without --listen need no FastAPI.
        if console:
            from automator.console import create_app as create_console

            app = create_console(engine.project, engine.store, daemon.clock, engine=engine)
        else:
            from automator.web import create_app

            app = create_app(engine.project, engine.store, daemon.clock)
        from automator.web.cutoff import BodyCutoff

        self.cutoff = BodyCutoff(app)  # a stalled upload does not hold the shutdown (see there)
        config = uvicorn.Config(
            self.cutoff,
            log_config=None,  # our loggers (configure_logging), not uvicorn's own set-up
            access_log=False,  # request lines would carry unsubscribe tokens into the log
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=max(1, int(daemon.options.shutdown_grace)),
        )
        self.server = EmbeddedServer(config)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.server.serve(sockets=[self.socket]))
        self.task.add_done_callback(self._ended)
        log.info(f"serving {self.what}", extra={"fields": {"listen": self.address}})

    async def stop(self) -> None:
        """Stop accepting, let open requests finish (bounded; those whose body has not all
        arrived at once), close the socket."""
        self.server.should_exit = True
        self.cutoff.cut_off()
        if self.task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self.task, self.daemon.options.shutdown_grace + 1)
        self.socket.close()

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A web server that dies on its own takes the daemon down, so the operator's
        supervisor restarts the whole thing instead of leaving it half-alive."""
        if self.daemon.stopping.is_set() or task.cancelled():
            return
        log.error(f"{self.what} server stopped unexpectedly", exc_info=task.exception())
        self.daemon.stop()


class EmbeddedServer(uvicorn.Server):
    """uvicorn that leaves SIGTERM/SIGINT to the daemon, which owns the shutdown order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise AutomatorError(
            f"cannot listen on {_join_host_port(host, port)}: {exc.strerror or exc}"
        ) from exc


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _active(summary: dict[str, Any]) -> dict[str, Any]:
    """A rule's summary without its zero counts, to keep log lines short."""
    return {key: value for key, value in summary.items() if value and key != "rule"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        extra = " ".join(
            f"{key}={json.dumps(value, default=str, ensure_ascii=False)}" for key, value in fields.items()
        )
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        base = f"{stamp} {record.levelname:<7} {record.getMessage()}"
        text = f"{base} {extra}".rstrip()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure_logging(log_format: str) -> None:
    """automator's own lines at INFO, and the libraries' problems in the same format, so
    that with `--log-format json` every line on stderr is JSON."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    # apscheduler warns at every interval a long dispatch overlaps ("skipped: maximum number
    # of running instances"), which is expected: only its errors (a job that raised) show.
    for name, level in (
        ("automator", logging.INFO),
        ("apscheduler", logging.ERROR),
        ("uvicorn", logging.WARNING),
    ):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
