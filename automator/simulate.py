"""A forecast: the real engine run forward, tick by tick, on a disposable copy of the store.

Every tick is `Engine.tick` itself (the lookups, the queueing, the dispatcher's re-checks,
quiet hours and the frequency cap), so the forecast cannot drift from what real ticks do.
Only the transport differs: it sends nothing and answers "delivered". The live store is
only read (to copy it, see `automator.store.copies`), no email leaves, and no new event is
assumed to arrive in the simulated days.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from automator.emails import OutgoingEmail
from automator.engine import Engine
from automator.errors import AutomatorError
from automator.project import Project
from automator.reports import RuleReport
from automator.rules import RuleSet
from automator.store import Store
from automator.store.copies import disposable_copy
from automator.store.forecasts import Sent, sent_between

# Each skipped-or-stopped outcome of a tick ("cancelled: superseded", "held: coupon pool
# empty", …) counts under the word it starts with. "waited" counts messages, not waits: a
# message made to wait when it was due counts once, on that day, however often it waits.
COLUMNS = ("queued", "sent", "cancelled", "held", "suppressed", "skipped", "waited")
OUTCOME_COLUMN = {"cancelled": "cancelled", "held": "held", "suppressed": "suppressed", "skipped": "skipped"}


@dataclass
class DayCounts:
    """What one rule's messages did on one day (in the project's time zone)."""

    date: date
    rule: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLUMNS, 0))
    error: str | None = None  # the first error of the rule's ticks that day: its figures fall short
    # Why the cancelled, held, suppressed and skipped ones were: each outcome as the ticks
    # gave it ("held: coupon pool 'renewal' is empty") with its count.
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, report: RuleReport, waited_before: set[int]) -> None:
        """Add a tick's figures; `waited_before`: the messages that waited on an earlier
        tick of the forecast (a message counts as waiting once: when it was due)."""
        if report.error and self.error is None:
            self.error = report.error
        self.counts["queued"] += report.enqueued
        self.counts["sent"] += report.sent
        for outcome, count in report.outcomes.items():
            column = OUTCOME_COLUMN.get(outcome.split(":")[0].strip())
            if column is not None:
                self.counts[column] += count
                self.reasons[outcome] = self.reasons.get(outcome, 0) + count
        first = report.waited - waited_before
        self.counts["waited"] += len(first)
        waited_before |= first

    def as_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "rule": self.rule,
            **self.counts,
            "reasons": self.reasons,
            "error": self.error,
        }


@dataclass
class Forecast:
    """What a simulated period did: per day and rule, and each message it sent."""

    start: datetime
    end: datetime
    every: timedelta
    days: list[DayCounts]
    sent: list[Sent]
    rules: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "every_seconds": int(self.every.total_seconds()),
            "rules": self.rules,
            "days": [day.as_dict() for day in self.days],
        }


class Nowhere:
    """A transport that sends nothing and takes every email as delivered, counting them."""

    def __init__(self) -> None:
        self.count = 0

    async def send(self, email: OutgoingEmail) -> None:
        self.count += 1

    async def send_many(self, emails: Sequence[OutgoingEmail], on_result: Any = None) -> list[None]:
        for index, email in enumerate(emails):
            await self.send(email)
            recorded = on_result(index, None) if on_result is not None else None
            if recorded is not None:
                await recorded
        return [None] * len(emails)

    async def close(self) -> None:
        return None


def only_rules(project: Project, rule_ids: Sequence[str]) -> Project:
    """The project with only the named rules (all when none is named); an unknown name is
    an error that lists the rules there are."""
    if not rule_ids:
        return project
    known = {rule.id for rule in project.ruleset.rules}
    unknown = [rule_id for rule_id in rule_ids if rule_id not in known]
    if unknown:
        raise AutomatorError(f"no rule '{unknown[0]}' (the rules are: {', '.join(sorted(known))})")
    kept = [rule for rule in project.ruleset.rules if rule.id in rule_ids]
    return replace(project, ruleset=RuleSet(kept, [], project.ruleset.broken_ids))


def tick_times(start: datetime, end: datetime, every: timedelta) -> Iterator[datetime]:
    """start, start + every, … up to (not including) end."""
    at = start
    while at < end:
        yield at
        at += every


def simulate(project: Project, start: datetime, days: int, every: timedelta) -> Forecast:
    """Tick `project`'s rules every `every` for `days` days from `start`, on a copy of its
    store that is dropped afterwards."""
    if every <= timedelta(0):
        raise AutomatorError("--every must be a positive duration, e.g. 1h or 15m")
    with disposable_copy(project.settings.database) as url:
        return simulate_on(project, url, start, start + timedelta(days=days), every)


def simulate_on(project: Project, url: str, start: datetime, end: datetime, every: timedelta) -> Forecast:
    """Tick `project`'s rules on the database at `url` (a copy) from `start` to `end`."""
    settings = project.settings.model_copy(update={"database_url": url, "smtp_url": None})
    project = replace(project, settings=settings)
    store = Store(url)
    engine = Engine(project, store, Nowhere())  # type: ignore[arg-type]  # a Transport by shape
    try:
        store.create_schema()
        days = asyncio.run(_ticks(engine, start, end, every))
        with store.session() as session:
            sent = sent_between(session, start, end)
    finally:
        engine.close()
        store.dispose()
    rules = [rule.id for rule in project.rules]
    return Forecast(start, end, every, [day for day in days if day.rule in rules], sent, rules)


async def _ticks(engine: Engine, start: datetime, end: datetime, every: timedelta) -> list[DayCounts]:
    zone = engine.settings.zone
    days: dict[tuple[date, str], DayCounts] = {}
    waited: set[int] = set()
    for now in tick_times(start, end, every):
        report = await engine.tick(now)
        day = now.astimezone(zone).date()
        for rule in report.rules.values():
            days.setdefault((day, rule.rule_id), DayCounts(day, rule.rule_id)).add(rule, waited)
    return list(days.values())
