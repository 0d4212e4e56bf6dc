"""The `when` of a rule or a step: tests on a contact's fields, an event's properties, the
contact's tags and its history of events, as a rule file writes them (`- event.total:
{gte: 100}`) read into frozen models. automator/conditions.py compiles them to SQL."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    BaseModel,
    BeforeValidator,
    Discriminator,
    Field,
    Tag,
)

from automator.durations import parse_duration
from automator.model_base import OPERATORS, Duration, Identifier, Strict


class Condition(Strict):
    """One test on a contact field or an event property, e.g. `event.total >= 100000`, or on
    the contact's tags (`contact.tags: {contains: vip}`)."""

    field: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists", "contains", "not_contains"]
    value: Any = None

    @property
    def scope(self) -> str:
        return self.field.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.field.split(".", 1)[1]


class HistoryCondition(Strict):
    """How many events of a type the contact had (within a recent span), e.g. "ordered at
    least twice in 90 days": `- history: {event: order_placed, within: 90d, count: {gte: 2}}`."""

    event: Identifier
    within: Duration | None = None
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte"] = "gte"
    count: int = Field(default=1, ge=0)

    @property
    def scope(self) -> str:
        return "history"


AnyCondition = Annotated[
    Annotated[Condition, Tag("field")] | Annotated[HistoryCondition, Tag("history")],
    Discriminator(lambda value: "history" if _is_history(value) else "field"),
]


def _is_history(value: Any) -> bool:
    if isinstance(value, BaseModel):
        return isinstance(value, HistoryCondition)
    return isinstance(value, dict) and "event" in value


class Numbered(NamedTuple):
    """A condition as written with its place in the list, which its errors name."""

    position: int
    item: Any


def _conditions(raw: Any) -> Any:
    """A list of conditions, each numbered: every item is then read on its own (`_numbered`),
    so that a mistake in one does not hide the mistakes of those after it."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("when must be a list of conditions, e.g. - event.total: {gte: 100}")
    return [Numbered(index, item) for index, item in enumerate(raw)]


def _numbered(value: Any) -> Any:
    """`- event.total: {gte: 100}`, `- contact.plan: pro`, `- contact.tags: {contains: vip}`
    or `- history: {event: order_placed, count: {gte: 2}}` → a condition dict."""
    return _condition(value.item, value.position) if isinstance(value, Numbered) else value


TAG_OPERATORS = ("contains", "not_contains")
HISTORY_FIELDS = ("event", "within", "count")
COUNT_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte")


def _condition(item: Any, index: int) -> Any:
    if isinstance(item, Condition | HistoryCondition):
        return item
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"condition {index + 1} must be one 'field: test' pair")
    ((field, test),) = item.items()
    if field == "history":
        return _history(test, index)
    if not isinstance(field, str) or not re.fullmatch(r"(contact|event)\.[A-Za-z_][A-Za-z0-9_]*", field):
        raise ValueError(
            f'condition {index + 1}: "{field}" must be contact.<field>, event.<field> or history'
        )
    if field == "contact.tags":
        return _tags(test, index)
    if isinstance(test, dict):
        if len(test) != 1:
            raise ValueError(f"condition {index + 1}: one operator per condition ({', '.join(OPERATORS)})")
        ((op, value),) = test.items()
        if op not in OPERATORS:
            raise ValueError(
                f"condition {index + 1}: unknown operator '{op}' (use one of {', '.join(OPERATORS)})"
            )
    else:
        op, value = ("in" if isinstance(test, list) else "eq"), test  # `field: [a, b]` means in
    if isinstance(value, dict) or (
        isinstance(value, list) and any(isinstance(v, list | dict) for v in value)
    ):
        raise ValueError(f"condition {index + 1}: compare with a value or a list of values")
    if op in ("in", "not_in") and not isinstance(value, list):
        raise ValueError(f"condition {index + 1}: {op} needs a list")
    return {"field": field, "op": op, "value": value}


def _tags(test: Any, index: int) -> dict[str, Any]:
    """`contact.tags: {contains: vip}` (or a list: any of them), or `not_contains`."""
    if not isinstance(test, dict) or len(test) != 1 or next(iter(test)) not in TAG_OPERATORS:
        raise ValueError(
            f"condition {index + 1}: contact.tags takes contains or not_contains, e.g. {{contains: vip}}"
        )
    ((op, value),) = test.items()
    tags = value if isinstance(value, list) else [value]
    if not tags or not all(isinstance(tag, str) and re.fullmatch(r"[a-z][a-z0-9_]*", tag) for tag in tags):
        raise ValueError(
            f"condition {index + 1}: contact.tags: {op} needs a tag or a list of tags "
            "(lowercase letters, digits and _)"
        )
    return {"field": "contact.tags", "op": op, "value": tags}


def _history(test: Any, index: int) -> dict[str, Any]:
    """`history: {event: order_placed, within: 90d, count: {gte: 2}}`; count defaults to at
    least one, a plain number means exactly that many."""
    where = f"condition {index + 1}: history"
    if not isinstance(test, dict) or "event" not in test:
        raise ValueError(f"{where} needs an event, e.g. {{event: order_placed, within: 90d}}")
    unknown = sorted(set(test) - set(HISTORY_FIELDS))
    if unknown:
        raise ValueError(f"{where}: unknown field '{unknown[0]}' (use {', '.join(HISTORY_FIELDS)})")
    count = test.get("count", {"gte": 1})
    if isinstance(count, dict) and len(count) == 1 and next(iter(count)) in COUNT_OPERATORS:
        ((op, number),) = count.items()
    elif isinstance(count, int) and not isinstance(count, bool):
        op, number = "eq", count
    else:
        raise ValueError(
            f"{where}: count is a number or one of {', '.join(COUNT_OPERATORS)}, e.g. {{gte: 2}}"
        )
    if isinstance(number, bool) or not isinstance(number, int) or number < 0:
        raise ValueError(f"{where}: count compares with a whole number, 0 or more")
    within = test.get("within")
    if within is not None:
        try:
            parse_duration(within)
        except ValueError as exc:
            raise ValueError(f"{where}: within: {exc}") from exc
    return {"event": test["event"], "within": within, "op": op, "count": number}


Conditions = Annotated[
    list[Annotated[AnyCondition, BeforeValidator(_numbered)]], BeforeValidator(_conditions)
]
