"""The Results page: `automator report`'s table, and per rule a chart of sends and conversions
per day drawn as inline SVG on the server (no script library), with a table beside it for
those who cannot see the chart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from automator.console.auth import Viewer
from automator.console.state import allowed, console_of, render
from automator.results import RuleResults, assemble, money, percent, rate
from automator.store import results as store_results
from automator.store.results import Day

router = APIRouter()

PERIODS = (7, 30, 90)  # days the page can look back
WIDTH, HEIGHT, TOP = 1000, 120, 18  # the chart's plot area, in SVG units


@dataclass(frozen=True)
class Bar:
    """One day of a chart: its bars' positions and heights, in SVG units."""

    day: Day
    x: float
    width: float
    sent_height: float
    converted_height: float


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    peak: int  # the most sends on one day: the top of the scale
    first: str
    last: str

    @property
    def described(self) -> str:
        sent = sum(bar.day.sent for bar in self.bars)
        converted = sum(bar.day.converted for bar in self.bars)
        return (
            f"From {self.first} to {self.last}: {sent} sent and {converted} converted; "
            f"at most {self.peak} sent on one day."
        )


def chart(days: list[Day], rule_id: str, start: date, end: date) -> Chart:
    """Bars for every day from `start` to `end`, empty days included, so that gaps show."""
    on = {day.day: day for day in days}
    count = (end - start).days + 1
    peak = max((day.sent for day in days), default=0)
    slot = WIDTH / count
    bars = []
    for index in range(count):
        name = (start + timedelta(days=index)).isoformat()
        day = on.get(name, Day(rule_id, name, 0, 0))
        scale = (HEIGHT - TOP) / peak if peak else 0
        bars.append(Bar(day, index * slot + slot * 0.1, slot * 0.8, day.sent * scale, day.converted * scale))
    return Chart(bars, peak, start.isoformat(), end.isoformat())


@router.get("/results")
def results_page(request: Request, days: int = 30, viewer: Viewer = Depends(allowed("view"))) -> Response:
    """Per rule, step and variant: sent, bounced, unsubscribed, converted, rate and revenue."""
    console = console_of(request)
    period = days if days in PERIODS else 30
    error = None if days in PERIODS else f"“days” is 7, 30 or 90, not {days}: showing the last 30 days"
    now: datetime = console.clock()
    since = now - timedelta(days=period)
    rules = console.project.ruleset.rules
    with console.store.session() as session:
        outcomes = store_results.outcomes(session, rules, since)
        per_day = store_results.days(session, rules, since)
    report = assemble(rules, outcomes, per_day, since=since)
    charts = {r.rule_id: chart(r.days, r.rule_id, since.date(), now.date()) for r in report.rules}
    return render(
        request,
        viewer,
        "results.html",
        section="results",
        error=error,
        report=report,
        charts=charts,
        period=period,
        periods=PERIODS,
        since=since,
        width=WIDTH,
        height=HEIGHT,
        money=money,
        percent=percent,
        rate=rate,
        shown_rows=_shown_rows,
    )


def _shown_rows(results: RuleResults) -> list[object]:
    """Each step and variant, then the rule's total when there are several."""
    return [*results.rows, results.total] if len(results.rows) > 1 else list(results.rows)
