"""What a marketer runs on the rule files: `check`, `rules` and `preview`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from automator.cli.options import NowOption, email_address, parse_now
from automator.cli.output import command_group, reports_errors, say
from automator.cli.state import state
from automator.display import printable_text
from automator.errors import NotFoundError

if TYPE_CHECKING:
    from sqlmodel import Session

    from automator.model import Rule, Send
    from automator.project import Project
    from automator.template_lint import Vocabulary


StoreOption = Annotated[
    bool,
    typer.Option(
        "--store",
        help="Also look at the contacts and events in the database: a date trigger whose attribute "
        "holds text that is not a date (17/05/1990) never fires for them; a condition, or an event "
        "type, that nothing in the store has matches nobody; contacts whose locale a template has "
        "no version in get the English one.",
    ),
]


@reports_errors
def check(store: StoreOption = False) -> None:
    """Validate every rule file, journey.yaml, automator.toml and the templates the rules use
    (with template lint), reporting every problem in one run."""
    from automator.data_check import declared_vocabulary
    from automator.errors import ConfigError
    from automator.project import load_project

    project = load_project(state().directory, settings_problems=True)
    vocabulary = declared_vocabulary(project.settings)
    warnings: list[str] = []
    settings_usable = not any(isinstance(error, ConfigError) for error in project.errors)
    if store and settings_usable and _store_exists(project):
        vocabulary, warnings = _store_findings(project, vocabulary)
    errors = [*project.errors, *project.lint(vocabulary)]
    for error in errors:
        say(str(error))
    for warning in warnings:
        say(f"warning: {warning}")
    if errors:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(project.ruleset.rules)} rules")


def _store_exists(project: Project) -> bool:
    """A store that does not exist yet (no SQLite file) is not made for `check --store`.
    Without --store, `check` never loads the database (tests/test_startup.py)."""
    from sqlalchemy import make_url

    url = make_url(project.settings.database)
    return url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()


def _store_findings(project: Project, declared: Vocabulary) -> tuple[Vocabulary, list[str]]:
    """What the store adds to the template vocabulary, and its warnings: date attributes that
    are not dates, conditions that match no contact, event types no event has, locales a
    template has no version in."""
    from automator.data_check import (
        condition_warnings,
        event_type_warnings,
        locale_warnings,
        stored_vocabulary,
    )

    rules = project.ruleset.rules
    with state().store.session() as session:
        vocabulary = stored_vocabulary(session, declared, rules)
        warnings = list(_undated_attributes(project, session))
        warnings += condition_warnings(session, rules, set(vocabulary.attributes))
        warnings += event_type_warnings(session, rules, declared.events)
        warnings += locale_warnings(session, rules, project.templates)
    return vocabulary, warnings


def _undated_attributes(project: Project, session: Session) -> Iterator[str]:
    """A warning for each date trigger whose attribute holds what is not a date in the store
    (text such as "17/05/1990"): the rule never fires for those contacts."""
    from automator.model import DateTrigger
    from automator.store import contacts

    for rule in project.ruleset.rules:
        if not isinstance(rule.trigger, DateTrigger):
            continue
        name = rule.trigger.attribute
        count, shown = contacts.undated(session, name)
        if count:
            examples = ", ".join(f'{email} "{value}"' for email, value in shown)
            yield (
                f"{rule.file}:{rule.line_of('trigger.date')}: trigger.date: {count} contact(s) hold a "
                f"{name} that is not an ISO 8601 date (e.g. {examples}); the rule never fires for them"
            )


rules_app = command_group("List the rules, or turn one off and on.", invoke_without_command=True)


@rules_app.callback()
@reports_errors
def rules_list(ctx: typer.Context) -> None:
    """Each rule with its stages, trigger and what it sends (its template, variants or
    journey's steps, goal and limit), then its conditions, priority and whether it is enabled."""
    from automator.rules import describe_conditions, describe_trigger

    if ctx.invoked_subcommand is not None:
        return
    project = state().project
    for rule in project.ruleset.rules:
        priority = project.settings.priorities.get(rule.id, rule.priority)
        extra = f"; when {describe_conditions(rule.when)}" if rule.when else ""
        extra += f"; priority {priority}" + ("" if rule.enabled else "; disabled")
        say(f"{rule.id:<26} [{', '.join(rule.stages)}] {describe_trigger(rule)} → {_sends(rule)}{extra}")


@rules_app.command("disable")
@reports_errors
def disable(rule_id: Annotated[str, typer.Argument(metavar="ID", help="The rule's id.")]) -> None:
    """Stop a rule: sets `enabled: false` in its file (nothing else in it changes). It queues
    nothing new; what it queued waits until it is enabled again."""
    _switch(rule_id, False)


@rules_app.command("enable")
@reports_errors
def enable(rule_id: Annotated[str, typer.Argument(metavar="ID", help="The rule's id.")]) -> None:
    """Run a rule again: sets `enabled: true` in its file (nothing else in it changes)."""
    _switch(rule_id, True)


def _switch(rule_id: str, enabled: bool) -> None:
    from automator.rules import set_enabled

    project = state().project
    rule = project.rule(rule_id)
    if rule is None:
        if rule_id in project.ruleset.broken_ids:
            raise NotFoundError(f"rule '{rule_id}' does not load; `automator check` says why")
        known = ", ".join(r.id for r in project.ruleset.rules)
        raise NotFoundError(f"no rule '{rule_id}' (rules: {known})")
    word = "enabled" if enabled else "disabled"
    line = set_enabled(project.settings.project / rule.file, enabled, rule.file)
    if line is None:
        say(f"{rule_id} is already {word} ({rule.file})")
    elif enabled:
        say(f"enabled {rule_id}: {rule.file}:{line} now says enabled: true")
    else:
        say(
            f"disabled {rule_id}: {rule.file}:{line} now says enabled: false; it queues nothing new "
            "and its queued messages wait until it is enabled again"
        )


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
    contact: Annotated[str, typer.Option("--contact", metavar="<email>", help="The contact's email.")],
    now: NowOption = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the text.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Render it even when the contact would not get it.")
    ] = False,
) -> None:
    """Say whether RULE's message would go out to a contact as of --now, then render it;
    exits 1 without rendering when it would not (--force renders it anyway). Stores and
    sends nothing. The verdict goes to stderr: stdout holds the message alone."""
    from automator.preview import checked_preview

    project = state().project
    found = project.rule(rule)
    if found is None:
        known = ", ".join(r.id for r in project.ruleset.rules)
        raise NotFoundError(f"no rule '{rule}' (rules: {known})")
    engine = state().engine()
    moment = parse_now(now)
    runs = any(r.id == found.id for r in project.rules)
    email = email_address(contact)
    explanation, rendered = checked_preview(
        engine.store, engine.renderer, project.settings, found, email, moment, runs=runs, force=force
    )
    as_of = f"as of {moment:%Y-%m-%d %H:%M} UTC{' (now)' if now is None else ''}"
    if not explanation.eligible:
        say(f"{as_of}: {explanation.contact} would not get it: {explanation.headline}", err=True)
        if rendered is None:
            hint = f"automator explain {found.id} --contact {email} shows every check"
            say(f"({hint}; --force renders it anyway)", err=True)
            raise typer.Exit(1)
    else:
        say(f"{as_of}: {explanation.headline}", err=True)
    assert rendered is not None
    say(f"Subject: {rendered.subject}")
    typer.echo("")
    typer.echo(printable_text(rendered.html if html else rendered.text))
