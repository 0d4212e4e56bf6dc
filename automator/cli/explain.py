"""`automator explain RULE --contact EMAIL`: why a contact gets a rule's message, or not."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from automator.cli.options import NowOption, email_address, parse_now
from automator.cli.output import reports_errors, say
from automator.cli.state import state
from automator.errors import NotFoundError

if TYPE_CHECKING:
    from datetime import datetime

    from automator.explain import Explanation

UNKNOWN = 2  # the exit code for a rule or contact that does not exist


@reports_errors
def explain_command(
    rule: str,
    contact: Annotated[str, typer.Option("--contact", metavar="<email>", help="The contact's email.")],
    now: NowOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Every check between a contact and RULE, in order, with what it saw, and the verdict."""
    moment = parse_now(now)
    try:
        explanation = explained(rule, email_address(contact), moment)
    except NotFoundError as exc:
        typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(UNKNOWN) from None
    if as_json:
        typer.echo(json.dumps(explanation.as_json(), ensure_ascii=False, indent=2))
        return
    say(f"{explanation.rule} for {explanation.contact} as of {moment:%Y-%m-%d %H:%M} UTC")
    print_checks(explanation)


def explained(rule_id: str, email: str, now: datetime) -> Explanation:
    """The explanation of a rule (by id) for a contact; NotFoundError naming what is missing."""
    from automator.explain import explain

    project = state().project
    rule = project.rule(rule_id)
    if rule is None:
        known = ", ".join(r.id for r in project.ruleset.rules)
        raise NotFoundError(f"no rule '{rule_id}' (rules: {known})")
    runs = any(r.id == rule.id for r in project.rules)
    return explain(state().store, project.settings, rule, email, now, runs)


def print_checks(explanation: Explanation) -> None:
    """One line per check (✓ passed, ✗ failed, · for information), then the verdict."""
    for check in explanation.checks:
        mark = "·" if check.passed is None else ("✓" if check.passed else "✗")
        expected = f"  (expected {check.expected})" if check.expected and check.passed is False else ""
        say(f"  {mark} {check.check}: {check.saw}{expected}")
    say(f"verdict: {explanation.headline}")
