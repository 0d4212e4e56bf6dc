"""`automator report`: what each rule's messages led to, per step and variant, with a test of
each A/B split (automator/results.py words it; automator/store/results.py counts it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from automator.cli.options import NowOption, parse_now
from automator.cli.output import reports_errors, say
from automator.cli.state import state
from automator.errors import AutomatorError

if TYPE_CHECKING:
    from automator.results import Report, RuleResults

HEADINGS = ("step", "variant", "sent", "bounced", "unsub", "clicks", "converted", "rate", "revenue")


@reports_errors
def report_command(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="<time|30d>",
            help="Only messages sent since then: an ISO 8601 time, or a duration ago (30d).",
        ),
    ] = None,
    rule: Annotated[str | None, typer.Option("--rule", metavar="<rule>", help="Only this rule.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    now: NowOption = None,
) -> None:
    """Per rule, step and variant: sent, bounced, unsubscribed, converted (the rule's goal
    within goal.within of a message), conversion rate and revenue; A/B variants tested."""
    from automator.results import assemble
    from automator.store import results

    start = _since(since, parse_now(now))
    project = state().project
    rules = project.ruleset.rules
    with state().store.session() as session:
        outcomes = results.outcomes(session, rules, start)
    found = assemble(rules, outcomes, since=start, only=rule)
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2, ensure_ascii=False))
    else:
        _print(found)


def _since(value: str | None, now: datetime) -> datetime | None:
    """`--since`: a time, or a duration before now."""
    if value is None:
        return None
    from automator.durations import parse_duration
    from automator.timestamps import parse_timestamp

    try:
        return now - parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_timestamp(value, UTC)
    except ValueError as exc:
        raise AutomatorError(f'--since "{value}" is neither an ISO 8601 time nor a duration (30d)') from exc


def _print(found: Report) -> None:
    if found.since is not None:
        say(f"messages sent since {found.since.isoformat()}")
    for results in found.rules:
        say("")
        goal = f"goal {results.goal}" if results.goal else "no goal: conversions are not counted"
        say(f"{results.rule_id}  ({goal})")
        for line in _table(results):
            say("  " + line)
        for test in results.tests:
            say(f"  step {test.step}: {test.verdict}")


def _table(results: RuleResults) -> list[str]:
    from automator.results import money, percent, rate

    rows = [list(HEADINGS)]
    for row in [*results.rows, results.total] if len(results.rows) > 1 else results.rows:
        converted = str(row.converted) if results.goal else "-"
        shown_rate = rate(row)
        rows.append(
            [
                str(row.step) if row.step else "all",
                row.variant or "-",
                str(row.sent),
                str(row.bounced),
                str(row.unsubscribed),
                str(row.clicks),
                converted,
                percent(shown_rate) if results.goal and shown_rate is not None else "-",
                money(row.revenue),
            ]
        )
    if len(rows) == 1:
        return ["nothing sent yet"]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADINGS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
