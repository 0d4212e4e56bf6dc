"""The `automator` command line: check, import, tick, queue, preview."""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlmodel import Session

from automator import support
from automator.config import Settings, require_secret
from automator.display import printable, printable_json, printable_text
from automator.engine import Engine, TickReport, preview
from automator.errors import AutomatorError, NotFoundError
from automator.importing import (
    ImportReport,
    import_contacts,
    import_events,
    normalize_email,
    parse_timestamp,
    read_coupon_codes,
)
from automator.project import Project, load_project
from automator.rules import describe_trigger
from automator.store import Store, coupons, messages, rulestate, suppressions
from automator.store import contacts as contact_store
from automator.store.messages import QueueFilter
from automator.tables import User
from automator.transports.file import FileTransport

app = typer.Typer(
    help="Marketing automation rules engine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
contacts_app = typer.Typer(help="Import and look up contacts.", no_args_is_help=True)
events_app = typer.Typer(help="Import events.", no_args_is_help=True)
suppressions_app = typer.Typer(help="Addresses that get nothing from any rule.", no_args_is_help=True)
coupons_app = typer.Typer(help="Coupon pools.", no_args_is_help=True)
queue_app = typer.Typer(help="See and manage queued messages.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")
app.add_typer(events_app, name="events")
app.add_typer(suppressions_app, name="suppressions")
app.add_typer(coupons_app, name="coupons")
app.add_typer(queue_app, name="queue")
users_app = typer.Typer(help="Who may log in to the support console.", no_args_is_help=True)
app.add_typer(users_app, name="users")
secret_app = typer.Typer(
    help="The secret that signs unsubscribe links and console logins.", no_args_is_help=True
)
app.add_typer(secret_app, name="secret")

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """The project folder chosen with --project, loaded on first use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._project: Project | None = None
        self._store: Store | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = load_project(self.directory)
        return self._project

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = self.project.open_store()
        return self._store

    def engine(self) -> Engine:
        return Engine(self.project, self.store, make_transport(self.project))

    def close(self) -> None:
        """Release the database (and its checkpoint thread) when the command is done."""
        if self._store is not None:
            self._store.dispose()
            self._store = None


def make_transport(project: Project) -> Any:
    """SMTP when configured, else the file outbox."""
    if project.settings.smtp_url:
        from automator.transports.smtp import SmtpSettings, SmtpTransport

        return SmtpTransport(SmtpSettings.from_url(project.settings.smtp_url))
    return FileTransport(project.settings.outbox_dir)


_state: State | None = None


def _say(line: str, err: bool = False) -> None:
    """Print one line whose text comes (in part) from the store or a file: a control
    character in it is shown as its escape, so that it cannot act on the terminal."""
    typer.echo(printable(line), err=err)


def _say_columns(*values: object) -> None:
    """Print values separated by tabs, each escaped as `_say` does (tabs in them too)."""
    typer.echo("\t".join(printable(str(value)) for value in values))


def state() -> State:
    assert _state is not None
    return _state


def reports_errors(command: F) -> F:
    """Turn an AutomatorError into one readable line and exit code 1 (no traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except AutomatorError as exc:
            typer.secho(f"error: {printable(str(exc))}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def main(
    ctx: typer.Context,
    project: Annotated[Path, typer.Option("--project", "-p", help="Project folder.", file_okay=False)] = Path(
        "."
    ),
) -> None:
    """automator: rules in rules/, templates in email_templates/, settings in automator.toml."""
    global _state
    _state = State(project)
    ctx.call_on_close(_state.close)


def parse_now(value: str | None) -> datetime:
    """`--now` (ISO 8601; without an offset it is UTC), or the current time."""
    if value is None:
        return datetime.now(UTC)
    try:
        return parse_timestamp(value, UTC)
    except ValueError as exc:
        raise AutomatorError(f'--now "{value}" is not an ISO 8601 time, e.g. 2026-11-20T11:00:00Z') from exc


NowOption = Annotated[str | None, typer.Option("--now", help="Act as if it were this time (ISO 8601).")]


@app.command()
@reports_errors
def check() -> None:
    """Validate every rule file, journey.yaml and the templates the rules use."""
    project = state().project
    for error in project.errors:
        _say(str(error))
    if project.errors:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(project.ruleset.rules)} rules")


@contacts_app.command("import")
@reports_errors
def contacts_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], now: NowOption = None
) -> None:
    """Upsert contacts from a .csv (header row) or .jsonl file, keyed by email."""
    project = state().project
    report = import_contacts(state().store, file, project.journey, project.settings.zone, parse_now(now))
    _print_import(report, "contacts")


@contacts_app.command("show")
@reports_errors
def contacts_show(email: str) -> None:
    """A contact: fields and attributes, stage and its history, tags, suppression, messages."""
    with state().store.session() as session:
        contact = contact_store.by_email(session, email.strip().lower())
        if contact is None or contact.id is None:
            raise NotFoundError(f"no contact with email {email}")
        stages = contact_store.stage_history(session, contact.id)
        tags = contact_store.tags(session, contact.id)
        suppression = suppressions.get(session, contact.email)
        sent = messages.listing(session, QueueFilter(None, None, contact.email, 20))
    name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    _say(f"Contact {contact.email}" + (f" ({name})" if name else ""))
    since = f" since {contact.stage_entered_at:%Y-%m-%d %H:%M}Z" if contact.stage_entered_at else ""
    suppressed = f"{suppression.reason} since {suppression.created_at:%Y-%m-%d}" if suppression else "no"
    for label, value in (
        ("Stage", f"{contact.stage or '-'}{since}"),
        ("Locale", contact.locale or "-"),
        ("Time zone", contact.timezone or "-"),
        ("Tags", ", ".join(tags) or "-"),
        ("Suppressed", suppressed),
    ):
        _say(f"{label}: {value}")
    for key, value in sorted(contact.attributes.items()):
        _say(f"  {key}: {value}")
    typer.echo("\nStage history:")
    for change in stages:
        move = f"{change.from_stage or '-'} -> {change.to_stage}"
        _say(f"  {change.at:%Y-%m-%d %H:%M}Z  {move}  ({change.cause})")
    typer.echo("")
    _say(f"Messages (newest first, at most 20; queue list --contact {contact.email} for all):")
    for row in sent:
        when = f"{row.send_at:%Y-%m-%d %H:%M}Z"
        _say(f"  {row.id:>6}  {row.status:<10} {when}  {row.rule_id:<24} {row.subject or '(not rendered)'}")
    if not sent:
        typer.echo("  none")


@events_app.command("import")
@reports_errors
def events_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], now: NowOption = None
) -> None:
    """Import events from a .jsonl file; an event id seen before is stored once."""
    report = import_events(state().store, file, state().project.journey, parse_now(now))
    _print_import(report, "events")


def _print_import(report: ImportReport, noun: str) -> None:
    for error in report.errors:
        _say(f"rejected {error}", err=True)
    extra = f", {report.duplicates} already known" if report.duplicates else ""
    typer.echo(f"imported {report.imported} {noun}{extra}, rejected {len(report.errors)}")
    if report.errors:
        raise typer.Exit(1)


@suppressions_app.command("add")
@reports_errors
def suppressions_add(
    email: str,
    reason: Annotated[str, typer.Option(help="unsubscribed, bounced, complained or blocked")] = "blocked",
    note: Annotated[str, typer.Option(help="Free text kept with the suppression.")] = "",
    now: NowOption = None,
) -> None:
    """Suppress an address: no rule sends it anything."""
    if reason not in suppressions.REASONS:
        raise AutomatorError(f"--reason must be one of {', '.join(suppressions.REASONS)}")
    address = _email(email)
    with state().store.session() as session:
        added = suppressions.add(session, address, reason, note, parse_now(now))
    _say(f"suppressed {address} ({reason})" if added else f"{address} was already suppressed")


@suppressions_app.command("remove")
@reports_errors
def suppressions_remove(email: str) -> None:
    """Allow mail to an address again."""
    address = _email(email)
    with state().store.session() as session:
        if not suppressions.remove(session, address):
            raise NotFoundError(f"{address} is not suppressed")
    _say(f"removed suppression of {address}")


@suppressions_app.command("list")
@reports_errors
def suppressions_list() -> None:
    """Every suppressed address, newest first."""
    with state().store.session() as session:
        rows = suppressions.listing(session)
    for row in rows:
        _say_columns(row.email, row.reason, row.created_at.isoformat(), row.note)
    typer.echo(f"{len(rows)} suppressed")


def _email(value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError as exc:
        raise AutomatorError(str(exc)) from exc


@coupons_app.command("import")
@reports_errors
def coupons_import(
    pool: str,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    percent_off: Annotated[int | None, typer.Option(help="Discount the codes give.")] = None,
    expires: Annotated[str | None, typer.Option(help="Expiry of the codes (ISO 8601).")] = None,
) -> None:
    """Add coupon codes (a CSV with a `code` column) to a pool."""
    codes, errors = read_coupon_codes(file)
    for error in errors:
        _say(f"rejected {error}", err=True)
    expires_at = parse_now(expires) if expires else None
    with state().store.session() as session:
        added = coupons.import_pool(session, pool, codes, percent_off, expires_at, datetime.now(UTC))
    _say(f"pool {pool}: added {added} codes, {len(codes) - added} already known, rejected {len(errors)}")
    if errors:
        raise typer.Exit(1)


@coupons_app.command("list")
@reports_errors
def coupons_list() -> None:
    """Free and taken codes per pool."""
    with state().store.session() as session:
        counts = coupons.pool_counts(session)
    for pool, (free, taken) in sorted(counts.items()):
        _say_columns(pool, f"free {free}", f"taken {taken}")


@app.command()
@reports_errors
def tick(now: NowOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Evaluate every rule as of NOW, queue what is due, and deliver what may be sent."""
    at = parse_now(now)
    project = state().project
    if project.settings.smtp_url:
        require_secret(
            project.settings, "automator tick signs the unsubscribe links of the email it sends with it"
        )
    for error in project.errors:
        typer.echo(printable(f"skipping: {error}"), err=True)
    engine = state().engine()
    try:
        report = asyncio.run(_tick(engine, at))
    finally:
        engine.close()
    if as_json:
        typer.echo(
            json.dumps(
                {"now": at.isoformat(), "rules": [r.as_dict() for r in report.rules.values()]},
                indent=2,
            )
        )
    else:
        _print_tick(report)
    if any(r.error for r in report.rules.values()):
        raise typer.Exit(1)


async def _tick(engine: Engine, at: datetime) -> TickReport:
    try:
        return await engine.tick(at)
    finally:
        await engine.transport.close()


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


@queue_app.command("list")
@reports_errors
def queue_list(
    status: Annotated[
        str | None, typer.Option(help="queued, held, sending, sent, failed, cancelled, suppressed")
    ] = None,
    rule: Annotated[str | None, typer.Option(help="Rule id.")] = None,
    contact: Annotated[str | None, typer.Option(help="Contact email.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Messages, newest first."""
    if status and status not in messages.STATUSES:
        raise AutomatorError(f"--status must be one of {', '.join(messages.STATUSES)}")
    with state().store.session() as session:
        rows = messages.listing(session, QueueFilter(status, rule, contact, limit))
    if as_json:
        typer.echo(
            printable_json(json.dumps([_message_json(row) for row in rows], indent=2, ensure_ascii=False))
        )
        return
    for row in rows:
        _say(
            f"{row.id:>6}  {row.status:<10} {row.send_at:%Y-%m-%d %H:%M}Z  {row.rule_id:<24} "
            f"{row.email:<28} {row.subject or '(not rendered)'}"
        )
    typer.echo(f"{len(rows)} messages")


def _message_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule_id,
        "email": row.email,
        "status": row.status,
        "send_at": row.send_at.isoformat(),
        "subject": row.subject,
        "created_at": row.created_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "message_id": row.message_id,
    }


@queue_app.command("show")
@reports_errors
def queue_show(message_id: int, html: Annotated[bool, typer.Option("--html")] = False) -> None:
    """A message's headers, body and full status history."""
    with state().store.session() as session:
        message = messages.get(session, message_id)
        if message is None:
            raise NotFoundError(f"message {message_id} does not exist")
        coupon = coupons.for_message(session, message_id)
        content = messages.content(session, message_id)
        history = messages.history(session, message_id)
    settings = state().project.settings
    _say(f"Message {message.id}: {message.status}")
    for name, value in (
        ("From", settings.sender),
        ("To", message.email),
        ("Subject", message.subject),
        ("Message-ID", message.message_id),
        ("X-Automator-Rule", message.rule_id),
        ("Send-At", message.send_at.isoformat()),
        ("Locale", message.locale),
        ("Coupon", coupon.code if coupon else "-"),
    ):
        _say(f"{name}: {value}")
    typer.echo("")
    typer.echo(printable_text(content.html if html else content.text))
    typer.echo("")
    typer.echo("History:")
    for line in history:
        _say(f"  {line.at.isoformat()}  {line.status:<10} {line.actor:<12} {line.reason}")


ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the message's history).")]
ActorOption = Annotated[str, typer.Option("--by", help="Who acts (kept in the history).")]


@queue_app.command("hold")
@reports_errors
def queue_hold(message_id: int, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None) -> None:
    """Keep a queued message from being sent until released."""
    message = support.hold(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} held")


@queue_app.command("release")
@reports_errors
def queue_release(
    message_id: int, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Let a held message be sent."""
    message = support.release(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} {message.status}")


@queue_app.command("cancel")
@reports_errors
def queue_cancel(
    message_id: int, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Make sure a queued or held message is never sent."""
    message = support.cancel(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} cancelled")


@queue_app.command("send-now")
@reports_errors
def queue_send_now(
    message_id: int, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Send a queued or held message at the next dispatch, past quiet hours and the cap."""
    message = support.send_now(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} will be sent at the next dispatch")


@app.command("preview")
@reports_errors
def preview_command(
    rule: str,
    contact: Annotated[str, typer.Option("--contact", help="The contact's email.")],
    now: NowOption = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the text.")] = False,
) -> None:
    """Render the message RULE would send a contact; stores and sends nothing."""
    project = state().project
    found = project.rule(rule)
    if found is None:
        known = ", ".join(r.id for r in project.ruleset.rules)
        raise NotFoundError(f"no rule '{rule}' (rules: {known})")
    rendered = preview(state().engine(), found, _email(contact), parse_now(now))
    _say(f"Subject: {rendered.subject}")
    typer.echo("")
    typer.echo(printable_text(rendered.html if html else rendered.text))


@app.command("run")
@reports_errors
def run_daemon(
    tick_interval: Annotated[float, typer.Option(help="Seconds between rule evaluations.")] = 60.0,
    dispatch_interval: Annotated[float, typer.Option(help="Seconds between dispatch passes.")] = 2.0,
    log_format: Annotated[str, typer.Option(help="text or json")] = "text",
    listen: Annotated[
        str | None,
        typer.Option(
            envvar="AUTOMATOR_LISTEN",
            help="Serve unsubscribe links and /health on HOST:PORT (e.g. 0.0.0.0:8080).",
        ),
    ] = None,
    console: Annotated[bool, typer.Option("--console", help="Also serve the support console.")] = False,
    console_listen: Annotated[
        str,
        typer.Option(envvar="AUTOMATOR_CONSOLE_LISTEN", help="Where --console serves it (HOST:PORT)."),
    ] = "127.0.0.1:8081",
) -> None:
    """Run the daemon: evaluate rules on a schedule and deliver due messages until SIGTERM."""
    from automator.daemon import Daemon, DaemonOptions, SingleDaemonLock, configure_logging, log, parse_listen

    if log_format not in ("text", "json"):
        raise AutomatorError("--log-format must be text or json")
    address = parse_listen(listen) if listen else None
    console_address = parse_listen(console_listen) if console else None
    project = state().project
    _refuse_a_weak_secret(project.settings, address is not None, console_address is not None)
    configure_logging(log_format)
    for error in project.errors:  # logged, so that with --log-format json every line is JSON
        log.warning("skipping", extra={"fields": {"error": str(error)}})
    lock = (
        SingleDaemonLock(project.settings.database)
        if project.settings.database.startswith("sqlite")
        else None
    )
    if lock is not None:
        lock.acquire()
    engine = state().engine()
    try:
        options = DaemonOptions(
            tick_interval,
            dispatch_interval,
            listen=address,
            console=console_address,
            exclusive=lock is not None,
        )
        asyncio.run(_run(Daemon(engine, options)))
    finally:
        if lock is not None:
            lock.release()


def _refuse_a_weak_secret(settings: Settings, listen: bool, console: bool) -> None:
    """What `automator run` signs or checks must not be forgeable: over SMTP it signs each
    email's unsubscribe link, --listen checks them, --console signs logins. The file outbox
    alone (the demo) needs no secret."""
    if settings.smtp_url:
        require_secret(settings, "automator run signs the unsubscribe links of the email it sends with it")
    if listen:
        require_secret(settings, "automator run --listen checks unsubscribe links with it", previous=True)
    if console:
        require_secret(settings, "automator run --console signs logins with it")


async def _run(daemon: Any) -> None:
    try:
        await daemon.run()
    finally:
        await daemon.engine.transport.close()


@app.command("status")
@reports_errors
def status_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Is a daemon running; queue counts by status; last tick; oldest waiting message."""
    from automator.daemon import SingleDaemonLock
    from automator.store import heartbeats

    settings = state().project.settings
    with state().store.session() as session:
        counts = messages.counts_by_status(session)
        oldest = messages.oldest_waiting(session)
        beats = heartbeats.latest(session)
        states = rulestate.all_states(session)
    running = [beat for beat in beats if beat.state == "running"]
    if settings.database.startswith("sqlite"):
        held = SingleDaemonLock(settings.database).is_held()
        running = running[:1] if held else []
    ticks = [state.last_tick_at for state in states.values() if state.last_tick_at]
    last_tick = max(ticks, default=None)
    info = {
        "daemon": [b.daemon for b in running] or None,
        "queue": counts,
        "last_tick": last_tick.isoformat() if last_tick else None,
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
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    names = ", ".join(b.daemon for b in running)
    _say(f"daemon: running ({names})" if running else "daemon: not running")
    _say("queue: " + (", ".join(f"{status} {n}" for status, n in counts.items()) or "empty"))
    _say(f"last tick: {info['last_tick'] or 'never'}")
    if oldest is not None:
        _say(
            f"oldest waiting: message {oldest.id} ({oldest.rule_id} to {oldest.email}, "
            f"{oldest.status}, send at {oldest.send_at.isoformat()})"
        )


@app.command("rules")
@reports_errors
def rules_list() -> None:
    """Each rule with its stages, trigger and template."""
    for rule in state().project.ruleset.rules:
        _say(f"{rule.id:<26} [{', '.join(rule.stages)}] {describe_trigger(rule)} → {rule.send.template}")


PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@users_app.command("add")
@reports_errors
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="support (view, hold, release, suppress) or admin (everything)")],
    password_stdin: PasswordStdinOption = False,
    by: ActorOption = "cli",
) -> None:
    """Create a console user. The password is asked for (or read from stdin) and kept hashed."""
    from automator.console.auth import ROLES, hash_password
    from automator.store import audit, users

    if role not in ROLES:
        raise AutomatorError(f"--role must be one of {', '.join(ROLES)}")
    if not name.strip() or name != name.strip():
        raise AutomatorError("a user name cannot be empty or start or end with a space")
    if len(name) > users.NAME_KEPT:
        raise AutomatorError(f"a user name has at most {users.NAME_KEPT} characters")
    password_hash = hash_password(_new_password(password_stdin))
    now = datetime.now(UTC)
    with state().store.session() as session:
        if not users.add(session, name, password_hash, role, now):
            raise AutomatorError(f"there is already a user named {name}")
        audit.record(session, now, by, "add user", f"{name} ({role})")
    typer.echo(printable(f"added {role} {name}"))


@users_app.command("list")
@reports_errors
def users_list() -> None:
    """Every console user with their role."""
    from automator.store import users

    with state().store.session() as session:
        rows = users.listing(session)
    for user in rows:
        _say_columns(user.name, user.role, f"since {user.created_at:%Y-%m-%d}")
    typer.echo(f"{len(rows)} user{'' if len(rows) == 1 else 's'}")


@users_app.command("remove")
@reports_errors
def users_remove(name: str, by: ActorOption = "cli") -> None:
    """Remove a console user; their sessions end at once."""
    from automator.store import audit, users

    now = datetime.now(UTC)
    with state().store.session() as session:
        _existing_user(session, name)
        users.remove(session, name)
        audit.record(session, now, by, "remove user", name)
    _say(f"removed {name}")


@users_app.command("passwd")
@reports_errors
def users_passwd(name: str, password_stdin: PasswordStdinOption = False, by: ActorOption = "cli") -> None:
    """Give a console user a new password (asked for, or read from stdin); their sessions end."""
    from automator.console.auth import hash_password
    from automator.store import audit, users

    with state().store.session() as session:
        _existing_user(session, name)
    password_hash = hash_password(_new_password(password_stdin))
    now = datetime.now(UTC)
    with state().store.session() as session:
        _existing_user(session, name)  # again: it may have been removed while the password was typed
        users.set_password(session, name, password_hash)
        audit.record(session, now, by, "change password", name)
    _say(f"changed the password of {name}; their sessions have ended")


@users_app.command("role")
@reports_errors
def users_role(name: str, role: str, by: ActorOption = "cli") -> None:
    """Give a console user another role (support or admin); their sessions end."""
    from automator.console.auth import ROLES
    from automator.store import audit, users

    if role not in ROLES:
        raise AutomatorError(f"unknown role {role} (roles: {', '.join(ROLES)})")
    now = datetime.now(UTC)
    with state().store.session() as session:
        before = _existing_user(session, name).role
        users.set_role(session, name, role)
        audit.record(session, now, by, "change role", f"{name}: {before} → {role}")
    _say(f"{name} is now {role}; their sessions have ended")


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _existing_user(session: Session, name: str) -> User:
    """The user called `name`, or NotFoundError naming the users there are."""
    from automator.store import users

    user = users.get(session, name)
    if user is None:
        known = ", ".join(row.name for row in users.listing(session)) or "none yet"
        raise NotFoundError(f"no console user named {name} (users: {known})")
    return user


@secret_app.command("generate")
def secret_generate() -> None:
    """Print a new random secret (32 bytes as hex), for AUTOMATOR_SECRET or `secret` in automator.toml."""
    typer.echo(secrets.token_hex(32))


@app.command("console")
@reports_errors
def console_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
) -> None:
    """Serve the support console (users come from `automator users add`)."""
    import uvicorn

    from automator.console import create_app
    from automator.daemon import _bind, _join_host_port, configure_logging
    from automator.store import users

    project = state().project
    require_secret(project.settings, "automator console signs logins with it")
    configure_logging("text")
    console_app = create_app(project, state().store)
    with state().store.session() as session:
        if not users.listing(session):
            typer.echo("no console users yet: add one with `automator users add NAME --role admin`", err=True)
    listener = _bind(host, port)
    typer.echo(f"console on http://{_join_host_port(host, listener.getsockname()[1])} (Ctrl-C stops it)")
    config = uvicorn.Config(console_app, log_config=None, server_header=False, access_log=False)
    uvicorn.Server(config).run(sockets=[listener])
