"""Did it work? Each rule's results per step and variant — sent, bounced, unsubscribed,
converted, conversion rate, revenue — and for an A/B split, whether one variant converts
better than the other by more than chance (a two-proportion z-test).

The figures come from `store.results`; this module only adds them up, tests them and words
them, so `automator report` and the console's Results page say the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from automator import formats
from automator.durations import format_duration
from automator.errors import AutomatorError
from automator.model import Rule
from automator.store.results import Day, Outcome

MIN_SENDS = 30  # fewer sends per variant than this and no test is worth reading
SIGNIFICANCE = 0.05


def two_proportion_p(converted_a: int, sent_a: int, converted_b: int, sent_b: int) -> float | None:
    """The two-sided p-value of a two-proportion z-test with a pooled proportion: how likely
    a difference at least this large is when both variants really convert alike."""
    if sent_a == 0 or sent_b == 0:
        return None
    pooled = (converted_a + converted_b) / (sent_a + sent_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / sent_a + 1 / sent_b))
    if spread == 0:
        return 1.0  # both converted none, or all: no difference to test
    z = (converted_a / sent_a - converted_b / sent_b) / spread
    return math.erfc(abs(z) / math.sqrt(2))


def rate(outcome: Outcome) -> float | None:
    return outcome.converted / outcome.sent if outcome.sent else None


@dataclass(frozen=True)
class VariantTest:
    """One variant of a step compared with the step's first variant."""

    step: int
    a: Outcome
    b: Outcome
    p_value: float | None
    verdict: str

    def as_dict(self) -> dict[str, Any]:
        rate_a, rate_b = rate(self.a) or 0.0, rate(self.b) or 0.0
        return {
            "step": self.step,
            "a": self.a.variant,
            "b": self.b.variant,
            "rate_a": rate_a,
            "rate_b": rate_b,
            "difference": rate_b - rate_a,
            "p_value": self.p_value,
            "verdict": self.verdict,
        }


def compare(step: int, a: Outcome, b: Outcome) -> VariantTest:
    """Test variant `b` against `a` and say in a sentence what a marketer may conclude."""
    p = two_proportion_p(a.converted, a.sent, b.converted, b.sent)
    rate_a, rate_b = rate(a) or 0.0, rate(b) or 0.0
    rates = f"{percent(rate_b)} vs {percent(rate_a)}"
    few = [o for o in (a, b) if o.sent < MIN_SENDS]
    if few:
        shown = ", ".join(f"{o.variant} has {o.sent}" for o in few)
        verdict = f"not enough data yet: fewer than {MIN_SENDS} sends per variant ({shown})"
    elif p is None or p >= SIGNIFICANCE:
        verdict = f"not enough data yet: no clear difference ({rates}, {p_text(p)})"
    else:
        better, worse = (b, a) if rate_b > rate_a else (a, b)
        verdict = (
            f"{better.variant} converts better than {worse.variant} "
            f"({percent(rate(better) or 0)} vs {percent(rate(worse) or 0)}), {p_text(p)}"
        )
    return VariantTest(step, a, b, p, verdict)


def percent(value: float) -> str:
    return f"{value * 100:.1f} %"


def p_text(p: float | None) -> str:
    if p is None:
        return "p = n/a"
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}".rstrip("0").rstrip(".")


@dataclass
class RuleResults:
    """One rule's rows (one per step and variant), its total and its variant tests."""

    rule_id: str
    rule: Rule | None  # None for a rule whose file is gone but whose messages remain
    rows: list[Outcome] = field(default_factory=list)
    tests: list[VariantTest] = field(default_factory=list)
    days: list[Day] = field(default_factory=list)

    @property
    def goal(self) -> str | None:
        if self.rule is None or self.rule.goal is None:
            return None
        return f"{self.rule.goal.event} within {format_duration(self.rule.goal.within)}"

    @property
    def total(self) -> Outcome:
        total = Outcome(self.rule_id, 0, None)
        for row in self.rows:
            total.sent += row.sent
            total.bounced += row.bounced
            total.unsubscribed += row.unsubscribed
            total.converted += row.converted
            total.clicks += row.clicks
            for currency, amount in row.revenue.items():
                total.revenue[currency] = total.revenue.get(currency, 0) + amount
        return total

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule_id,
            "goal": self.goal,
            "total": outcome_dict(self.total, self.goal is not None),
            "rows": [outcome_dict(row, self.goal is not None) for row in self.rows],
            "variant_tests": [test.as_dict() for test in self.tests],
        }


def outcome_dict(outcome: Outcome, has_goal: bool) -> dict[str, Any]:
    return {
        "step": outcome.step or None,
        "variant": outcome.variant,
        "sent": outcome.sent,
        "bounced": outcome.bounced,
        "unsubscribed": outcome.unsubscribed,
        "converted": outcome.converted if has_goal else None,
        "conversion_rate": rate(outcome) if has_goal else None,
        "revenue": dict(sorted(outcome.revenue.items())),
        "clicks": outcome.clicks,
    }


@dataclass
class Report:
    since: datetime | None
    rules: list[RuleResults]

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None,
            "rules": [rule.as_dict() for rule in self.rules],
        }


def assemble(
    rules: Sequence[Rule],
    outcomes: Iterable[Outcome],
    days: Iterable[Day] = (),
    since: datetime | None = None,
    only: str | None = None,
) -> Report:
    """Group the store's rows per rule (every rule of the project, and any other rule that
    has messages), test the variants of each step, and keep `only` that rule when given."""
    known = {rule.id: rule for rule in rules}
    if only is not None and only not in known:
        raise AutomatorError(f"--rule {only}: no rule has this id (see automator rules)")
    by_rule = {rule.id: RuleResults(rule.id, rule) for rule in rules}
    for outcome in outcomes:
        by_rule.setdefault(outcome.rule_id, RuleResults(outcome.rule_id, None)).rows.append(outcome)
    for day in days:
        if day.rule_id in by_rule:
            by_rule[day.rule_id].days.append(day)
    for results in by_rule.values():
        results.tests = _tests(results.rows) if results.goal else []
    chosen = [r for r in by_rule.values() if only is None or r.rule_id == only]
    return Report(since, sorted(chosen, key=lambda r: r.rule_id))


def _tests(rows: list[Outcome]) -> list[VariantTest]:
    tests = []
    for step in sorted({row.step for row in rows}):
        variants = sorted((r for r in rows if r.step == step and r.variant), key=lambda r: r.variant or "")
        tests += [compare(step, variants[0], other) for other in variants[1:]]
    return tests


def money(revenue: dict[str, float]) -> str:
    """Revenue per currency, written as the templates' `money` filter writes amounts in
    English: `₫1,340,000 + $98.00`; a code Babel does not know stays as it is."""
    if not revenue:
        return "-"
    return " + ".join(_amount(amount, currency) for currency, amount in sorted(revenue.items()))


def _amount(value: float, currency: str) -> str:
    try:
        return formats.money(value, currency, "en")
    except (ValueError, ArithmeticError):
        shown = f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"
        return f"{shown} {currency}"
