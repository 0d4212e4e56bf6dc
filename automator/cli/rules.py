"""What a marketer runs on the rule files: `check`, `rules` and `preview`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from automator.cli.options import NowOption, email_address, parse_now
from automator.cli.output import reports_errors, say
from automator.cli.state import state
from automator.display import printable_text
from automator.errors import NotFoundError

if TYPE_CHECKING:
    from automator.model import Rule, Send
    from automator.project import Project


StoreOption = Annotated[
    bool,
    typer.Option(
        "--store",
        help="Also look at the contacts in the database: a date trigger whose attribute holds "
        "text that is not a date (17/05/1990) never fires for them.",
    ),
]


@reports_errors
def check(store: StoreOption = False) -> None:
    """Validate every rule file, journey.yaml and the templates the rules use."""
    project = state().project
    for error in project.errors:
        say(str(error))
    if project.errors:
        raise typer.Exit(1)
    for warning in _undated_attributes(project) if store else ():
        say(f"warning: {warning}")
    typer.echo(f"ok: {len(project.ruleset.rules)} rules")


def _undated_attributes(project: Project) -> Iterator[str]:
    """A warning for each date trigger whose attribute holds what is not a date in the store
    (text such as "17/05/1990"): the rule never fires for those contacts. A store that does
    not exist yet (no SQLite file) is not made for this. Only with --store: without it,
    `check` never loads the database (tests/test_startup.py)."""
    from sqlalchemy import make_url

    from automator.model import DateTrigger
    from automator.store import contacts

    rules = [rule for rule in project.ruleset.rules if isinstance(rule.trigger, DateTrigger)]
    url = make_url(project.settings.database)
    if not rules or (url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file()):
        return
    with state().store.session() as session:
        for rule in rules:
            assert isinstance(rule.trigger, DateTrigger)
            name = rule.trigger.attribute
            count, shown = contacts.undated(session, name)
            if count:
                examples = ", ".join(f'{email} "{value}"' for email, value in shown)
                yield (
                    f"{rule.file}:{rule.line_of('trigger.date')}: trigger.date: {count} contact(s) hold a "
                    f"{name} that is not an ISO 8601 date (e.g. {examples}); the rule never fires for them"
                )


@reports_errors
def rules_list() -> None:
    """Each rule with its stages, trigger and what it sends: its template, its variants or
    its journey's steps, then its goal and its limit."""
    from automator.rules import describe_trigger

    for rule in state().project.ruleset.rules:
        say(f"{rule.id:<26} [{', '.join(rule.stages)}] {describe_trigger(rule)} → {_sends(rule)}")


def _sends(rule: Rule) -> str:
    """`welcome_1`, `3 steps: welcome_1, 2d later welcome_2, …`, `variants a: cart_a 70%, …`,
    then `; goal order_placed` and `; at most 1 per 7d` when the rule has them."""
    from automator.durations import format_duration

    steps = rule.journey
    if len(steps) == 1:
        text = _send(steps[0].send)
    else:
        parts = [
            (f"{format_duration(step.delay)} later " if number else "")
            + _send(step.send)
            + (" (if its conditions hold)" if step.when else "")
            for number, step in enumerate(steps)
        ]
        text = f"{len(steps)} steps: {', '.join(parts)}"
    if rule.goal is not None:
        text += f"; goal {rule.goal.event}"
    if rule.limit is not None:
        text += f"; at most {rule.limit.max} per {format_duration(rule.limit.per)}"
    return text


def _send(send: Send) -> str:
    if send.variants is None:
        return send.template or ""
    shares = send.weights
    listed = ", ".join(
        f"{name}: {variant.template} {shares[name]:g}%" for name, variant in send.variants.items()
    )
    return f"variants {listed}"


@reports_errors
def preview_command(
    rule: str,
    contact: Annotated[str, typer.Option("--contact", help="The contact's email.")],
    now: NowOption = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the text.")] = False,
) -> None:
    """Render the message RULE would send a contact; stores and sends nothing."""
    from automator.preview import preview

    project = state().project
    found = project.rule(rule)
    if found is None:
        known = ", ".join(r.id for r in project.ruleset.rules)
        raise NotFoundError(f"no rule '{rule}' (rules: {known})")
    engine = state().engine()
    rendered = preview(engine.store, engine.renderer, found, email_address(contact), parse_now(now))
    say(f"Subject: {rendered.subject}")
    typer.echo("")
    typer.echo(printable_text(rendered.html if html else rendered.text))
