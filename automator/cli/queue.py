"""`automator queue …`: list and read queued messages; hold, release, cancel or send one now.

Each action goes through automator/support.py, as the console's do, so that both record the
same history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automator.cli.options import ActorOption, MessageId, NowOption, ReasonOption, how_many, parse_now
from automator.cli.output import command_group, reports_errors, say
from automator.cli.state import state
from automator.display import printable_json, printable_text
from automator.errors import AutomatorError, NotFoundError

if TYPE_CHECKING:
    from sqlmodel import Session

    from automator.store.journeys import Position
    from automator.store.messages import Content
    from automator.tables import Coupon, Message, MessageHistory

app = command_group("See and manage queued messages.", no_args_is_help=True)


@app.command("list")
@reports_errors
def queue_list(
    status: Annotated[
        str | None,
        typer.Option(
            metavar="<status>", help="queued, held, sending, sent, failed, cancelled, suppressed, skipped"
        ),
    ] = None,
    rule: Annotated[str | None, typer.Option(metavar="<rule>", help="Rule id.")] = None,
    contact: Annotated[str | None, typer.Option(metavar="<email>", help="Contact email.")] = None,
    limit: Annotated[
        int,
        typer.Option(
            metavar="<n>",
            callback=how_many,
            help="At most this many, newest first; the last line (on stderr with --json) says how "
            "many more match.",
        ),
    ] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Messages, newest first; a journey's later step shows as `rule#2`, an A/B variant as
    `rule/b`."""
    from automator.store import messages
    from automator.store.messages import QueueFilter

    if status and status not in messages.STATUSES:
        raise AutomatorError(f"--status must be one of {', '.join(messages.STATUSES)}")
    where = QueueFilter(status, rule, contact, limit)
    with state().store.session() as session:
        rows = messages.listing(session, where)
        # Only a full page may have left some out; counted up to a bound, not the whole table.
        counted = messages.count_matching(session, where, _count_up_to(limit)) if len(rows) == limit else None
    if as_json:
        typer.echo(
            printable_json(json.dumps([_message_json(row) for row in rows], indent=2, ensure_ascii=False))
        )
        if counted is not None and counted > len(rows):  # stdout stays the list a script reads
            say(_shown_of(len(rows), counted, limit), err=True)
        return
    for row in rows:
        say(
            f"{row.id:>6}  {row.status:<10} {row.send_at:%Y-%m-%d %H:%M}Z  {_rule_column(row):<24} "
            f"{row.email:<28} {row.subject or '(not rendered)'}"
        )
    typer.echo(_shown_of(len(rows), counted, limit))


COUNT_UP_TO = 10_000  # messages a listing counts, at least, to say how many it left out


def _count_up_to(limit: int) -> int:
    return max(COUNT_UP_TO, limit + 1)


def _shown_of(shown: int, counted: int | None, limit: int) -> str:
    """'41 messages', or what a full page left out: '3 of 41 messages shown (--limit 3; …)'.
    `counted`: how many match, up to `_count_up_to(limit)` (None: not counted, all shown)."""
    if counted is None or counted == shown:
        return f"{shown} message" if shown == 1 else f"{shown} messages"
    total = f"more than {counted - 1:,}" if counted >= _count_up_to(limit) else f"{counted:,}"
    return f"{shown} of {total} messages shown (--limit {limit}; raise it to see more)"


def _rule_column(row: Message) -> str:
    """The rule, then the step of a journey past its first (`#2`) and the A/B variant
    (`/b`) where there is one: `welcome_series#2/b`. A plain rule's message shows its id."""
    step = f"#{row.step}" if row.step > 1 else ""
    variant = f"/{row.variant}" if row.variant else ""
    return f"{row.rule_id}{step}{variant}"


def _message_json(row: Message) -> dict[str, Any]:
    return {
        "id": row.id,
        "rule": row.rule_id,
        "step": row.step,
        "variant": row.variant,
        "email": row.email,
        "status": row.status,
        "send_at": row.send_at.isoformat(),
        "subject": row.subject,
        "created_at": row.created_at.isoformat(),
        "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        "message_id": row.message_id,
    }


@app.command("show")
@reports_errors
def queue_show(message_id: MessageId, html: Annotated[bool, typer.Option("--html")] = False) -> None:
    """A message's headers, body and full status history."""
    with state().store.session() as session:
        shown = _shown(session, message_id)
    _print_headers(shown, state().project.settings.sender)
    typer.echo("")
    typer.echo(printable_text(shown.content.html if html else shown.content.text))
    typer.echo("")
    _print_history(shown.history)


@dataclass(frozen=True)
class _Shown:
    """What `queue show` prints, read in one session."""

    message: Message
    coupon: Coupon | None
    content: Content
    history: list[MessageHistory]
    journey: list[Position]  # its contact's place in the message's journey (a rule with steps)


def _shown(session: Session, message_id: int) -> _Shown:
    from automator.store import coupons, journeys, messages

    message = messages.get(session, message_id)
    if message is None:
        raise NotFoundError(f"message {message_id} does not exist")
    return _Shown(
        message,
        coupons.for_message(session, message_id),
        messages.content(session, message_id),
        messages.history(session, message_id),
        journeys.positions(session, state().project.ruleset.rules, message.contact_id, message.rule_id),
    )


def _print_headers(shown: _Shown, sender: str) -> None:
    message = shown.message
    say(f"Message {message.id}: {message.status}")
    for name, value in (
        ("From", sender),
        ("To", message.email),
        ("Subject", message.subject),
        ("Message-ID", message.message_id),
        ("X-Automator-Rule", message.rule_id),
        ("Send-At", message.send_at.isoformat()),
        ("Locale", message.locale),
        ("Coupon", shown.coupon.code if shown.coupon else "-"),
    ):
        say(f"{name}: {value}")
    for position in shown.journey:
        say(f"Journey: step {message.step} of {position.steps}; {position}")


def _print_history(history: list[MessageHistory]) -> None:
    typer.echo("History:")
    for line in history:
        say(f"  {line.at.isoformat()}  {line.status:<10} {line.actor:<12} {line.reason}")


@app.command("hold")
@reports_errors
def queue_hold(
    message_id: MessageId, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Keep a queued message from being sent until released."""
    from automator import support

    message = support.hold(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} held")


@app.command("release")
@reports_errors
def queue_release(
    message_id: MessageId, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Let a held message be sent."""
    from automator import support

    message = support.release(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} {message.status}")


@app.command("cancel")
@reports_errors
def queue_cancel(
    message_id: MessageId, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Make sure a queued or held message is never sent."""
    from automator import support

    message = support.cancel(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} cancelled")


@app.command("send-now")
@reports_errors
def queue_send_now(
    message_id: MessageId, reason: ReasonOption, by: ActorOption = "cli", now: NowOption = None
) -> None:
    """Send a queued or held message at the next dispatch, past quiet hours and the cap."""
    from automator import support

    message = support.send_now(state().engine(), message_id, reason, by, parse_now(now))
    typer.echo(f"message {message.id} will be sent at the next dispatch")
