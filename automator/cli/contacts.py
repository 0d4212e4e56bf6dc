"""`automator contacts …`: import contacts from a file, find them by address or name, and
show one with everything about it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from automator.cli.options import ActorOption, NowOption, email_address, parse_now
from automator.cli.output import command_group, print_import, reports_errors, say, say_columns
from automator.cli.state import state
from automator.errors import NotFoundError

if TYPE_CHECKING:
    from sqlmodel import Session

    from automator.store.journeys import Position
    from automator.tables import Contact, Message, StageChange, Suppression

app = command_group("Import and look up contacts.", no_args_is_help=True)

SHOWN_MESSAGES = 20


@app.command("import")
@reports_errors
def contacts_import(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)], now: NowOption = None
) -> None:
    """Upsert contacts from a .csv (header row), .jsonl or .json file, keyed by email."""
    from automator.cli.progress import import_progress
    from automator.importing import import_contacts

    project, store, at = state().project, state().store, parse_now(now)
    with import_progress(file, "contacts") as watcher:
        report = import_contacts(store, file, project.journey, project.settings.zone, at, watcher)
    print_import(report, "contacts")


@app.command("show")
@reports_errors
def contacts_show(email: str) -> None:
    """A contact: fields and attributes, stage and its history, tags, suppression, messages."""
    with state().store.session() as session:
        card = _card(session, email)
    _print_fields(card)
    _print_stages(card.stages)
    _print_journeys(card.journeys)
    _print_messages(card.contact.email, card.messages)


@app.command("find")
@reports_errors
def contacts_find(text: str) -> None:
    """Contacts whose email, or (without an @) first, last or whole name ("Lan Ng", "Nguyễn
    L"), starts with TEXT, in any case: one a line (email, name, stage), in address order,
    at most 50."""
    from automator.store.console import contacts_matching

    with state().store.session() as session:
        found, more = contacts_matching(session, text)
    for contact in found:
        name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
        say_columns(contact.email, name, contact.stage or "-")
    if not found:
        raise NotFoundError(f"no contact's email or name starts with {text!r}")
    if more:
        say(f"(more contacts match than these {len(found)}: type more of the address or name)", err=True)


@app.command("erase")
@reports_errors
def contacts_erase(
    email: str,
    reason: Annotated[
        str, typer.Option(metavar="<text>", help="Why (kept in the audit log).")
    ] = "right to erasure",
    by: ActorOption = "cli",
) -> None:
    """Erase a contact's personal data (the right to erasure); its address stays only as a
    hashed suppression, so that a later import cannot mail it. See docs/api.md."""
    from automator.store import erasure

    address = email_address(email)
    with state().store.transaction() as session:
        done = erasure.erase(session, address, parse_now(None), by, reason)
    if done.contact_id is None:
        say(f"no contact with email {address}; its address is suppressed, as a hash")
        return
    say(
        f"erased contact #{done.contact_id}: {done.events} events deleted, {done.messages} messages kept "
        f"without personal data ({done.cancelled} not sent yet, cancelled); its address is suppressed, "
        "as a hash"
    )


@dataclass(frozen=True)
class _Card:
    """What `contacts show` prints, read in one session."""

    contact: Contact
    stages: list[StageChange]
    tags: list[str]
    suppression: Suppression | None
    messages: list[Message]
    journeys: list[Position]  # where the contact is in each journey it began


def _card(session: Session, email: str) -> _Card:
    from automator.store import contacts, journeys, messages, suppressions
    from automator.store.messages import QueueFilter

    contact = contacts.by_email(session, email.strip().lower())
    if contact is None or contact.id is None:
        raise NotFoundError(f"no contact with email {email}")
    return _Card(
        contact,
        contacts.stage_history(session, contact.id),
        contacts.tags(session, contact.id),
        suppressions.get(session, contact.email),
        messages.listing(session, QueueFilter(None, None, contact.email, SHOWN_MESSAGES)),
        journeys.positions(session, state().project.ruleset.rules, contact.id),
    )


def _print_fields(card: _Card) -> None:
    contact, suppression = card.contact, card.suppression
    name = " ".join(part for part in (contact.first_name, contact.last_name) if part)
    say(f"Contact {contact.email}" + (f" ({name})" if name else ""))
    since = f" since {contact.stage_entered_at:%Y-%m-%d %H:%M}Z" if contact.stage_entered_at else ""
    suppressed = f"{suppression.reason} since {suppression.created_at:%Y-%m-%d}" if suppression else "no"
    for label, value in (
        ("Stage", f"{contact.stage or '-'}{since}"),
        ("Locale", contact.locale or "-"),
        ("Time zone", contact.timezone or "-"),
        ("Tags", ", ".join(card.tags) or "-"),
        ("Suppressed", suppressed),
    ):
        say(f"{label}: {value}")
    for key, value in sorted(contact.attributes.items()):
        say(f"  {key}: {value}")


def _print_stages(stages: list[StageChange]) -> None:
    typer.echo("\nStage history:")
    for change in stages:
        move = f"{change.from_stage or '-'} -> {change.to_stage}"
        say(f"  {change.at:%Y-%m-%d %H:%M}Z  {move}  ({change.cause})")
    typer.echo("")


def _print_journeys(positions: list[Position]) -> None:
    if not positions:
        return
    typer.echo("Journeys:")
    for position in positions:
        say(f"  {position}")
    typer.echo("")


def _print_messages(email: str, rows: list[Message]) -> None:
    say(f"Messages (newest first, at most {SHOWN_MESSAGES}; queue list --contact {email} for all):")
    for row in rows:
        when = f"{row.send_at:%Y-%m-%d %H:%M}Z"
        say(f"  {row.id:>6}  {row.status:<10} {when}  {row.rule_id:<24} {row.subject or '(not rendered)'}")
    if not rows:
        typer.echo("  none")
