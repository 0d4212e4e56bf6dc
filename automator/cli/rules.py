"""What a marketer runs on the rule files: `check`, `rules` and `preview`."""

from __future__ import annotations

from typing import Annotated

import typer

from automator.cli.options import NowOption, email_address, parse_now
from automator.cli.output import reports_errors, say
from automator.cli.state import state
from automator.display import printable_text
from automator.errors import NotFoundError


@reports_errors
def check() -> None:
    """Validate every rule file, journey.yaml and the templates the rules use."""
    project = state().project
    for error in project.errors:
        say(str(error))
    if project.errors:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(project.ruleset.rules)} rules")


@reports_errors
def rules_list() -> None:
    """Each rule with its stages, trigger and template."""
    from automator.rules import describe_trigger

    for rule in state().project.ruleset.rules:
        say(f"{rule.id:<26} [{', '.join(rule.stages)}] {describe_trigger(rule)} → {rule.send.template}")


@reports_errors
def preview_command(
    rule: str,
    contact: Annotated[str, typer.Option("--contact", help="The contact's email.")],
    now: NowOption = None,
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the text.")] = False,
) -> None:
    """Render the message RULE would send a contact; stores and sends nothing."""
    from automator.engine import preview

    project = state().project
    found = project.rule(rule)
    if found is None:
        known = ", ".join(r.id for r in project.ruleset.rules)
        raise NotFoundError(f"no rule '{rule}' (rules: {known})")
    rendered = preview(state().engine(), found, email_address(contact), parse_now(now))
    say(f"Subject: {rendered.subject}")
    typer.echo("")
    typer.echo(printable_text(rendered.html if html else rendered.text))
