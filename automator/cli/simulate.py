"""`automator simulate`: a forecast of the next days, and the plan of a rule set's change.

Nothing here opens the live store for writing: the forecast runs on a disposable copy
(automator/simulate.py), so the command is safe beside a daemon and with SMTP configured.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from automator.cli.options import parse_now
from automator.cli.output import reports_errors, say
from automator.cli.state import state
from automator.errors import AutomatorError

if TYPE_CHECKING:
    from automator.project import Project
    from automator.simulate import Forecast
    from automator.simulation.plan import RuleChanges

PLAN_INPUT_ERROR = 2  # exit code: the rule set to compare cannot be had
MAX_DAYS = 3660  # ten years; beyond the calendar's end a day cannot be counted at all


@reports_errors
def simulate_command(
    rules: Annotated[
        list[str] | None, typer.Argument(metavar="RULE...", help="Only these rules (default: all).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", metavar="<time>", help="Start at this time (ISO 8601; default: now)."),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", metavar="<n>", min=1, max=MAX_DAYS, help="How many days to run forward.")
    ] = 7,
    every: Annotated[
        str, typer.Option("--every", metavar="<duration>", help="Time between ticks, e.g. 1h or 15m.")
    ] = "1h",
    other_rules: Annotated[
        Path | None,
        typer.Option("--rules", metavar="<folder>", help="Plan: compare with the rules in this folder."),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            "--against", metavar="<revision>", help="Plan: compare with rules/ at this git revision."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run the rules forward on a copy of the store, sending nothing; with --rules or
    --against, show what a change of rules would change."""
    from automator.durations import parse_duration
    from automator.simulate import only_rules

    at = parse_now(start, "--from")
    try:
        interval = parse_duration(every)
    except ValueError as exc:
        raise AutomatorError(f'--every "{every}": {exc}') from exc
    project = state().project
    if other_rules is not None and against is not None:
        raise AutomatorError("give --rules or --against, not both")
    if other_rules is None and against is None:
        for error in project.errors:
            say(f"skipping: {error}", err=True)
        forecast = _forecast(only_rules(project, rules or []), at, days, interval)
        typer.echo(json.dumps(forecast.as_dict(), indent=2)) if as_json else _print_forecast(forecast)
        failed = [day for day in forecast.days if day.error]
        for day in failed:
            say(f"{day.date.isoformat()} {day.rule}: failed: {day.error} (its figures fall short)", err=True)
        if failed:
            raise typer.Exit(1)
        return
    try:
        changes = _plan(project, rules or [], other_rules, against, at, days, interval)
    except AutomatorError as exc:
        from automator.simulation.plan import PlanInputError

        if not isinstance(exc, PlanInputError):
            raise
        say(f"error: {exc}", err=True)
        raise typer.Exit(PLAN_INPUT_ERROR) from None
    if as_json:
        typer.echo(json.dumps({"rules": [change.as_dict() for change in changes]}, indent=2))
    else:
        _print_plan(changes)


def _forecast(project: Project, at: datetime, days: int, every: timedelta) -> Forecast:
    from automator.simulate import simulate

    return simulate(project, at, days, every)


def _plan(
    project: Project,
    rules: list[str],
    folder: Path | None,
    revision: str | None,
    at: datetime,
    days: int,
    every: timedelta,
) -> list[RuleChanges]:
    """Forecast the project's rules and the other set's over the same period, and compare:
    --rules shows going from the project's rules to the folder's, --against going from the
    revision's rules to the project's."""
    from automator.simulate import only_rules
    from automator.simulation.plan import PlanInputError, compare, rules_at_revision, rules_from

    if project.errors:
        raise PlanInputError(f"the project's rules do not load: {project.errors[0]}")
    place = rules_at_revision(project.settings.project, revision) if revision else nullcontext(folder)
    with place as other_folder:
        assert other_folder is not None
        shown = f"rules/ at {revision}" if revision else str(folder)
        other = rules_from(project, other_folder, shown)
    mine = _forecast(only_rules(project, rules), at, days, every)
    theirs = _forecast(_only_known(other, rules), at, days, every)
    before, after = (theirs, mine) if revision else (mine, theirs)
    return compare(before.sent, after.sent, {*before.rules, *after.rules})


def _only_known(project: Project, rules: list[str]) -> Project:
    """The named rules that this set has (a rule may be new, or gone, in one of the two)."""
    from automator.simulate import only_rules

    known = {rule.id for rule in project.ruleset.rules}
    return only_rules(project, [rule for rule in rules if rule in known]) if rules else project


def _print_forecast(forecast: Forecast) -> None:
    """The days on which a rule did something, then each rule's total over the period: a
    day of zeros for every rule would bury the few days that matter."""
    from automator.durations import format_duration

    columns = _columns()
    say(
        f"simulated {_minute(forecast.start)} to {_minute(forecast.end)}, a tick every "
        f"{format_duration(forecast.every)}, on a copy of the store: nothing was sent or written; "
        "no new events assumed"
    )
    width = max([len("rule"), *(len(rule) for rule in forecast.rules)]) + 2
    typer.echo(f"{'date':<12}{'rule':<{width}}" + "".join(f"{name:>11}" for name in columns))
    busy = [day for day in forecast.days if day.error or any(day.counts[name] for name in columns)]
    for day in sorted(busy, key=lambda d: (d.date, d.rule)):
        say(f"{day.date.isoformat():<12}{day.rule:<{width}}" + _figures(day.counts[n] for n in columns))
    if not busy:
        say("(no rule queued, sent or held anything on any day)")
    for rule in forecast.rules:
        totals = (sum(day.counts[name] for day in forecast.days if day.rule == rule) for name in columns)
        say(f"{'total':<12}{rule:<{width}}" + _figures(totals))
    reasons: Counter[tuple[str, str]] = Counter()
    for day in forecast.days:
        for reason, count in day.reasons.items():
            reasons[day.rule, reason] += count
    if reasons:
        say("why (cancelled, held, suppressed, skipped):")
    for (rule, reason), count in sorted(reasons.items()):
        say(f"  {rule}: {count} {reason}")


def _figures(figures: Iterable[int]) -> str:
    return "".join(f"{figure:>11}" for figure in figures)


def _minute(moment: datetime) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _columns() -> tuple[str, ...]:
    from automator.simulate import COLUMNS

    return COLUMNS


def _print_plan(changes: list[RuleChanges]) -> None:
    if not any(change.changed for change in changes):
        typer.echo("no change: both rule sets would send the same messages at the same times")
    for change in changes:
        typer.echo(f"{change.rule}:")
        for kind, words in (
            ("newly", "would newly get a message"),
            ("no_longer", "would no longer get one"),
            ("moved", "would get it at another time"),
        ):
            summary: dict[str, Any] = change.summary(kind)
            examples = f" (e.g. {', '.join(summary['examples'])})" if summary["examples"] else ""
            say(f"  {summary['contacts']:>6} contacts {words}{examples}")
