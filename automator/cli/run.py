"""The daemon and what it does once: `run`, `tick` and `status`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automator.cli.console import HOST as CONSOLE_HOST
from automator.cli.console import PORT as CONSOLE_PORT
from automator.cli.options import NowOption, parse_now, seconds_between
from automator.cli.output import reports_errors, say
from automator.cli.state import state
from automator.display import printable
from automator.errors import AutomatorError

if TYPE_CHECKING:
    from sqlmodel import Session

    from automator.config import Settings
    from automator.daemon import Daemon
    from automator.engine import Engine, TickReport
    from automator.store import Store
    from automator.tables import Message

CONSOLE_LISTEN = f"{CONSOLE_HOST}:{CONSOLE_PORT}"  # where `run --console` serves it
FUTURE_SLACK = timedelta(minutes=1)  # a --now this far ahead is a clock's drift, not the future


@reports_errors
def tick(
    now: NowOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Tick at a future --now even beside a daemon or over SMTP.")
    ] = False,
) -> None:
    """Evaluate every rule as of NOW, queue what is due, and deliver what may be sent."""
    from automator.config import require_secret

    at = parse_now(now)
    project = state().project
    if not force:
        _refuse_a_live_future(at, project.settings)
    if project.settings.smtp_url:
        require_secret(
            project.settings, "automator tick signs the unsubscribe links of the email it sends with it"
        )
    for error in project.errors:
        typer.echo(printable(f"skipping: {error}"), err=True)
    report = _run_tick(at)
    if as_json:
        typer.echo(json.dumps(_tick_json(report, at), indent=2))
    else:
        _print_tick(report)
    if any(r.error for r in report.rules.values()):
        raise typer.Exit(1)


def _refuse_a_live_future(at: datetime, settings: Settings) -> None:
    """A tick at a future time really acts: it sends tomorrow's email now and moves every
    rule's mark past what the daemon has still to do. Where that reaches people (SMTP) or a
    running daemon's database, it takes --force; `simulate` answers "what would happen"."""
    from datetime import UTC

    ahead = at - datetime.now(UTC)
    if ahead <= FUTURE_SLACK:
        return
    if settings.smtp_url:
        live = "SMTP is configured"
    else:
        daemons = _serving_daemons(settings, state().store)
        if not daemons:
            return
        live = f"a daemon serves this database ({', '.join(daemons)})"
    raise AutomatorError(
        f"--now {at.isoformat()} is {_ahead(ahead)} ahead of the clock and {live}: this tick would "
        "really send what falls due until then, now, and move every rule's mark forward. To see "
        f"what would happen, run `automator simulate --from {at.isoformat()}`; to do it anyway, add --force"
    )


def _ahead(span: timedelta) -> str:
    hours = span.total_seconds() / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"


def _serving_daemons(settings: Settings, store: Store) -> list[str]:
    """The daemons serving the database, told as `status` tells them."""
    with store.session() as session:
        return _running_daemons(settings, store, session)


def _running_daemons(settings: Settings, store: Store, session: Session) -> list[str]:
    """The names of the daemons running now. A heartbeat outlives a killed daemon (SIGKILL, a
    crash), its lock does not: on PostgreSQL the lock each daemon holds while it runs, on
    SQLite the single-daemon lock (a daemon holding it before its first heartbeat is named
    for its lock)."""
    from automator.daemon_lock import SingleDaemonLock
    from automator.store import heartbeats

    running = [beat.daemon for beat in heartbeats.latest(session) if beat.state == "running"]
    if settings.database.startswith("sqlite"):
        if not SingleDaemonLock(settings.database).is_held():
            return []
        return running[:1] or ["the one holding its lock"]
    if store.engine.dialect.name == "postgresql":
        dead = heartbeats.gone(session, running)
        return [daemon for daemon in running if daemon not in dead]
    return running


def _run_tick(at: datetime) -> TickReport:
    import asyncio

    engine = state().engine()
    try:
        return asyncio.run(_tick(engine, at))
    finally:
        engine.close()


async def _tick(engine: Engine, at: datetime) -> TickReport:
    try:
        return await engine.tick(at)
    finally:
        await engine.transport.close()


def _tick_json(report: TickReport, at: datetime) -> dict[str, Any]:
    return {"now": at.isoformat(), "rules": [r.as_dict() for r in report.rules.values()]}


def _print_tick(report: TickReport) -> None:
    typer.echo(f"tick at {report.now.isoformat()}")
    typer.echo(f"{'rule':<26}{'evaluated':>10}{'enqueued':>10}{'sent':>7}{'waiting':>9}  skipped")
    for rule in sorted(report.rules.values(), key=lambda r: r.rule_id):
        skipped = ", ".join(f"{why} ×{count}" for why, count in sorted(rule.outcomes.items())) or "-"
        if rule.error:
            skipped = f"ERROR {rule.error}"
        typer.echo(
            printable(
                f"{rule.rule_id:<26}{rule.evaluated:>10}{rule.enqueued:>10}{rule.sent:>7}"
                f"{rule.waiting:>9}  {skipped}"
            )
        )


@reports_errors
def run_daemon(
    tick_interval: Annotated[
        float,
        typer.Option(callback=seconds_between, metavar="<seconds>", help="Seconds between rule evaluations."),
    ] = 60.0,
    dispatch_interval: Annotated[
        float,
        typer.Option(callback=seconds_between, metavar="<seconds>", help="Seconds between dispatch passes."),
    ] = 2.0,
    dispatch_batch: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="<n>",
            help="Most messages this daemon holds claimed at once, the batch going out and the next "
            "one claimed beside it together (daemons sharing a database split a burst in such batches).",
        ),
    ] = 1000,
    log_format: Annotated[str, typer.Option(metavar="<text|json>", help="text or json")] = "text",
    listen: Annotated[
        str | None,
        typer.Option(
            envvar="AUTOMATOR_LISTEN",
            metavar="<host:port>",
            help="Serve unsubscribe links and /health on HOST:PORT (e.g. 0.0.0.0:8080).",
        ),
    ] = None,
    console: Annotated[bool, typer.Option("--console", help="Also serve the support console.")] = False,
    console_listen: Annotated[
        str,
        typer.Option(
            envvar="AUTOMATOR_CONSOLE_LISTEN",
            metavar="<host:port>",
            help="Where --console serves it (HOST:PORT).",
        ),
    ] = CONSOLE_LISTEN,
) -> None:
    """Run the daemon: evaluate rules on a schedule and deliver due messages until SIGTERM."""
    import asyncio

    from automator.daemon import Daemon, DaemonOptions, configure_logging, log, parse_listen

    if log_format not in ("text", "json"):
        raise AutomatorError("--log-format must be text or json")
    address = parse_listen(listen) if listen else None
    console_address = parse_listen(console_listen) if console else None
    project = state().project
    _refuse_a_weak_secret(project.settings, address is not None, console_address is not None)
    configure_logging(log_format)
    for error in project.errors:  # logged, so that with --log-format json every line is JSON
        log.warning("skipping", extra={"fields": {"error": str(error)}})
    with _single_daemon(project.settings.database) as exclusive:
        engine = state().engine()
        options = DaemonOptions(
            tick_interval,
            dispatch_interval,
            dispatch_batch=dispatch_batch,
            listen=address,
            console=console_address,
            exclusive=exclusive,
        )
        asyncio.run(_run(Daemon(engine, options)))


def _refuse_a_weak_secret(settings: Settings, listen: bool, console: bool) -> None:
    """What `automator run` signs or checks must not be forgeable: over SMTP it signs each
    email's unsubscribe link, --listen checks them, --console signs logins. The file outbox
    alone (the demo) needs no secret."""
    from automator.config import require_secret

    if settings.smtp_url:
        require_secret(settings, "automator run signs the unsubscribe links of the email it sends with it")
    if listen:
        require_secret(settings, "automator run --listen checks unsubscribe links with it", previous=True)
    if console:
        require_secret(settings, "automator run --console signs logins with it")


@contextlib.contextmanager
def _single_daemon(database: str) -> Iterator[bool]:
    """On SQLite, hold the lock that keeps a second daemon off the file while this one runs
    (yields True); on PostgreSQL, which several daemons may share, take none (False)."""
    from automator.daemon_lock import SingleDaemonLock

    if not database.startswith("sqlite"):
        yield False
        return
    lock = SingleDaemonLock(database)
    lock.acquire()
    try:
        yield True
    finally:
        lock.release()


async def _run(daemon: Daemon) -> None:
    try:
        await daemon.run()
    finally:
        await daemon.engine.transport.close()


@reports_errors
def status_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Is a daemon running; queue counts by status; last tick; oldest waiting message."""
    status = _read_status(state().project.settings, state().store)
    if as_json:
        typer.echo(json.dumps(status.as_dict(), indent=2))
    else:
        _print_status(status)


@dataclass(frozen=True)
class _Status:
    """What `automator status` reports."""

    daemons: list[str]  # the names of the running daemons
    queue: dict[str, int]
    last_tick: datetime | None
    oldest: Message | None  # the oldest message waiting to be sent

    def as_dict(self) -> dict[str, Any]:
        oldest = self.oldest
        return {
            "daemon": self.daemons or None,
            "queue": self.queue,
            "last_tick": self.last_tick.isoformat() if self.last_tick else None,
            "oldest_waiting": None
            if oldest is None
            else {
                "id": oldest.id,
                "rule": oldest.rule_id,
                "email": oldest.email,
                "send_at": oldest.send_at.isoformat(),
                "status": oldest.status,
            },
        }


def _read_status(settings: Settings, store: Store) -> _Status:
    from automator.store import messages, rulestate

    with store.session() as session:
        counts = messages.counts_by_status(session)
        oldest = messages.oldest_waiting(session)
        states = rulestate.all_states(session)
        running = _running_daemons(settings, store, session)
    ticks = [rule.last_tick_at for rule in states.values() if rule.last_tick_at]
    return _Status(running, counts, max(ticks, default=None), oldest)


def _print_status(status: _Status) -> None:
    names = ", ".join(status.daemons)
    say(f"daemon: running ({names})" if status.daemons else "daemon: not running")
    say("queue: " + (", ".join(f"{name} {n}" for name, n in status.queue.items()) or "empty"))
    say(f"last tick: {status.last_tick.isoformat() if status.last_tick else 'never'}")
    oldest = status.oldest
    if oldest is not None:
        say(
            f"oldest waiting: message {oldest.id} ({oldest.rule_id} to {oldest.email}, "
            f"{oldest.status}, send at {oldest.send_at.isoformat()})"
        )
