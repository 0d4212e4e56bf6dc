"""`automator run`: the scheduler daemon.

APScheduler (3.x, AsyncIOScheduler) evaluates the rules every `tick_interval` seconds and
dispatches due messages every `dispatch_interval` seconds. On SIGTERM/SIGINT it stops
claiming, lets in-flight sends finish (or puts them back in the queue), and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from automator.dispatch import Dispatcher
from automator.engine import Engine, TickReport
from automator.errors import AutomatorError
from automator.store import heartbeats, messages

log = logging.getLogger("automator.daemon")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DaemonOptions:
    tick_interval: float = 60.0
    dispatch_interval: float = 2.0
    shutdown_grace: float = 20.0


class SingleDaemonLock:
    """An exclusive lock file beside a SQLite database: one daemon per SQLite file.

    The OS releases it when the process dies, even by SIGKILL, so a crash never leaves a
    stale lock behind.
    """

    def __init__(self, database_url: str) -> None:
        database = make_url(database_url).database or ""
        self.path = Path(f"{database}.daemon.lock")
        self.handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown pid"
            handle.close()
            raise AutomatorError(
                f"another automator daemon ({holder}) is already running on this SQLite database; "
                "stop it first (several daemons need PostgreSQL)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        self.handle = handle

    def release(self) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def is_held(self) -> bool:
        """Whether some process holds the lock now."""
        if not self.path.exists():
            return False
        with self.path.open("a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False


class Daemon:
    """Runs ticks and dispatches on a schedule until told to stop."""

    def __init__(self, engine: Engine, options: DaemonOptions, clock: Clock = utcnow) -> None:
        self.engine = engine
        self.options = options
        self.clock = clock
        self.dispatcher = Dispatcher(engine)
        self.stopping = asyncio.Event()
        self.busy = asyncio.Lock()
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    async def run(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self.evaluate,
            "interval",
            seconds=self.options.tick_interval,
            next_run_time=self.clock(),
            max_instances=1,
            coalesce=True,
            id="evaluate",
        )
        scheduler.add_job(
            self.dispatch,
            "interval",
            seconds=self.options.dispatch_interval,
            max_instances=1,
            coalesce=True,
            id="dispatch",
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)
        self.beat("started")
        scheduler.start()
        log.info("daemon started", extra={"fields": {"daemon": self.name, **self.options.__dict__}})
        try:
            await self.stopping.wait()
        finally:
            scheduler.shutdown(wait=False)
            await self.drain()
            self.beat("stopped")
            log.info("daemon stopped", extra={"fields": {"daemon": self.name}})

    def stop(self, signum: int | None = None) -> None:
        if not self.stopping.is_set():
            log.info("stopping", extra={"fields": {"signal": signum}})
            self.stopping.set()

    async def drain(self) -> None:
        """Wait for the running job (bounded); then put back anything still `sending`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.busy.acquire(), self.options.shutdown_grace)
        self.release_in_flight()

    def release_in_flight(self) -> None:
        with self.engine.store.session() as session:
            for message in self.dispatcher.in_flight(session):
                messages.change(
                    session,
                    message,
                    "queued",
                    self.clock(),
                    "daemon stopped before the send finished; will be sent again",
                    lease_until=None,
                )

    async def evaluate(self) -> None:
        if self.stopping.is_set():
            return
        async with self.busy:
            now = self.clock()
            started = time.monotonic()
            report = TickReport(now)
            await asyncio.to_thread(self.engine.evaluate, now, report)
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
        async with self.busy:
            now = self.clock()
            report = TickReport(now)
            sent = await self.dispatcher.run(now, report, stop=self.stopping)
            for rule in report.rules.values():
                for outcome, count in rule.outcomes.items():
                    if outcome.startswith(("retrying", "failed")):
                        log.warning(
                            "delivery failure",
                            extra={"fields": {"rule": rule.rule_id, "outcome": outcome, "count": count}},
                        )
            if sent:
                log.info("dispatched", extra={"fields": {"sent": sent, "now": now.isoformat()}})

    def beat(self, what: str, tick_at: datetime | None = None) -> None:
        with self.engine.store.session() as session:
            heartbeats.beat(session, self.name, what, self.clock(), tick_at)


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
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger("automator")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
