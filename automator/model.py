"""Pure types of the rule language: triggers, conditions, sends and actions.

Rule files are validated into these frozen pydantic models. Nothing here touches a
database, the network or the clock.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from automator.durations import parse_duration

DEFAULT_STAGES = ("awareness", "consideration", "conversion", "retention", "loyalty")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists")
CONTACT_COLUMNS = ("email", "first_name", "last_name", "locale", "timezone", "stage")


class Strict(BaseModel):
    """Base of every rule-file node: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CancelIf(Strict):
    """An event that, occurring after the trigger, means the message must not go out."""

    model_config = ConfigDict(title="cancel_if")

    event: Identifier = Field(description="the event type that cancels the message, e.g. order_placed")
    within: Duration | None = Field(
        default=None,
        description="date triggers: events this long before the date count too",
    )


class EventTrigger(Strict):
    """Fires `delay` after an event of type `event`."""

    model_config = ConfigDict(title="event trigger")

    event: Identifier = Field(description="the event type that starts the clock, e.g. cart_updated")
    delay: Duration = Field(default=timedelta(0), description="the message is due this long after the event")
    latest_per: str | None = Field(default=None, description="only the newest event per value")
    once_per: str | None = Field(default=None, description="one message per value of this property")
    cancel_if: CancelIf | None = Field(default=None, description="a later event that cancels the message")

    @model_validator(mode="after")
    def _within_is_for_dates(self) -> EventTrigger:
        _no_within(self.cancel_if)
        return self

    @property
    def default_max_lateness(self) -> timedelta:
        return timedelta(days=1)


def _no_within(cancel: CancelIf | None) -> None:
    if cancel is not None and cancel.within is not None:
        raise ValueError(
            "cancel_if.within applies to date triggers only (events after the trigger cancel it)"
        )


class DateTrigger(Strict):
    """Fires `before` or `after` a contact's date attribute."""

    model_config = ConfigDict(title="date trigger")

    date: str = Field(description="a contact attribute holding a date, e.g. contact.renews_at")
    before: Duration | None = Field(default=None, description="due this long before the date")
    after: Duration | None = Field(default=None, description="due this long after the date")
    cancel_if: CancelIf | None = Field(default=None, description="an event that cancels the message")

    @field_validator("date")
    @classmethod
    def _contact_attribute(cls, value: str) -> str:
        if not re.fullmatch(r"contact\.[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError(f'"{value}" must name a contact attribute, e.g. contact.renews_at')
        return value

    @model_validator(mode="after")
    def _one_offset(self) -> DateTrigger:
        if self.before is not None and self.after is not None:
            raise ValueError("give either before or after, not both")
        return self

    @property
    def attribute(self) -> str:
        return self.date.removeprefix("contact.")

    @property
    def offset(self) -> timedelta:
        """Signed distance from the date to the send time (negative = before)."""
        if self.before is not None:
            return -self.before
        return self.after or timedelta(0)

    @property
    def default_max_lateness(self) -> timedelta:
        return timedelta(days=2)


class StageTrigger(Strict):
    """Fires `delay` after a contact entered a stage."""

    model_config = ConfigDict(title="stage trigger")

    stage_entered: Identifier = Field(description="the stage the contact entered")
    delay: Duration = Field(default=timedelta(0), description="due this long after the stage change")
    cancel_if: CancelIf | None = Field(default=None, description="a later event that cancels the message")

    @model_validator(mode="after")
    def _within_is_for_dates(self) -> StageTrigger:
        _no_within(self.cancel_if)
        return self

    @property
    def default_max_lateness(self) -> timedelta:
        return timedelta(days=1)


class ScheduleTrigger(Strict):
    """Fires for every targeted contact on a schedule: a crontab line in the project's time
    zone (`schedule: "0 9 * * mon"`) or a fixed interval (`every: 7d`)."""

    model_config = ConfigDict(title="schedule trigger")

    schedule: str | None = Field(default=None, description='a crontab line, e.g. "0 9 * * mon"')
    every: Duration | None = Field(default=None, description="a fixed interval, at least 1m, e.g. 7d")
    cancel_if: CancelIf | None = Field(default=None, description="a later event that cancels the message")

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleTrigger:
        if (self.schedule is None) == (self.every is None):
            raise ValueError("give either schedule (a crontab line) or every (a duration)")
        if self.schedule is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.schedule)
            except ValueError as exc:
                raise ValueError(f'schedule: "{self.schedule}" is not a crontab line ({exc})') from exc
        if self.every is not None and self.every < timedelta(minutes=1):
            raise ValueError("every: at least 1m")
        _no_within(self.cancel_if)
        return self

    @property
    def default_max_lateness(self) -> timedelta:
        return timedelta(hours=6)


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if not isinstance(value, dict):
        return None
    for key, tag in (
        ("event", "event-trigger"),
        ("date", "date-trigger"),
        ("stage_entered", "stage-trigger"),
        ("schedule", "schedule-trigger"),
        ("every", "schedule-trigger"),
    ):
        if key in value:
            return tag
    return None


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event-trigger")]
    | Annotated[DateTrigger, Tag("date-trigger")]
    | Annotated[StageTrigger, Tag("stage-trigger")]
    | Annotated[ScheduleTrigger, Tag("schedule-trigger")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="a trigger needs one of: event, date, stage_entered, schedule, every",
    ),
]


class Condition(Strict):
    """One test on a contact field or an event property, e.g. `event.total >= 100000`."""

    field: str
    op: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists"]
    value: Any = None

    @property
    def scope(self) -> str:
        return self.field.split(".", 1)[0]

    @property
    def name(self) -> str:
        return self.field.split(".", 1)[1]


def _conditions(raw: Any) -> Any:
    """`- event.total: {gte: 100}` or `- contact.plan: pro` → Condition dicts."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("when must be a list of conditions, e.g. - event.total: {gte: 100}")
    return [_condition(item, index) for index, item in enumerate(raw)]


def _condition(item: Any, index: int) -> Any:
    if isinstance(item, Condition):
        return item
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"condition {index + 1} must be one 'field: test' pair")
    ((field, test),) = item.items()
    if not isinstance(field, str) or not re.fullmatch(r"(contact|event)\.[A-Za-z_][A-Za-z0-9_]*", field):
        raise ValueError(f'condition {index + 1}: "{field}" must be contact.<field> or event.<field>')
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


class CouponSpec(Strict):
    """A coupon attached to the message: taken from a pool, or generated."""

    model_config = ConfigDict(title="coupon")

    pool: Identifier | None = Field(default=None, description="take a code from this pool")
    when_empty: Literal["hold", "generate"] = Field(
        default="hold", description="what to do when the pool has no free code"
    )
    percent_off: int | None = Field(
        default=None, ge=1, le=100, description="the discount of a generated code"
    )
    expires_in: Duration = Field(
        default=timedelta(days=30), description="a generated code expires this long after it is queued"
    )
    prefix: str = Field(
        default="", pattern=r"^[A-Z0-9-]{0,12}$", description="a generated code starts with it, e.g. THANKS"
    )


class Send(Strict):
    """What to send: a template folder under email_templates/ and an optional coupon."""

    model_config = ConfigDict(title="send")

    template: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="a folder under email_templates/")
    coupon: CouponSpec | None = Field(default=None, description="one coupon code for each message")


class Then(Strict):
    """What happens to the contact once the message is sent."""

    model_config = ConfigDict(title="then")

    move_to: Identifier | None = Field(default=None, description="put the contact in this stage")
    tag: Identifier | None = Field(default=None, description="add this tag to the contact")


class Rule(Strict):
    """One rule file: whom it targets, when it fires, what it sends."""

    model_config = ConfigDict(title="automator rule")

    id: Identifier = Field(description="the rule's identity, part of every message's dedupe key")
    name: str = Field(default="", description="shown to people; templates see it as rule.name")
    description: str = Field(default="", description="for people reading the file")
    stages: list[Identifier] = Field(min_length=1, description="contacts whose current stage is one of these")
    trigger: Trigger = Field(
        description="what makes a message due: event, date, stage_entered, schedule or every"
    )
    when: Annotated[list[Condition], BeforeValidator(_conditions)] = Field(
        default=[], description="conditions that must all hold, e.g. - event.total: {gte: 100000}"
    )
    send: Send = Field(description="what to send: a template and an optional coupon")
    priority: int = Field(default=0, description="higher goes first when the frequency cap lets only some go")
    max_lateness: Duration | None = Field(default=None, description="how late a message may still go out")
    then: Then = Field(default=Then(), description="what happens to the contact once the message is sent")
    enabled: bool = Field(default=True, description="false: the file is checked but the rule does not run")

    # Where the rule came from, for error messages; not part of the rule language.
    file: str = Field(default="", exclude=True)
    lines: dict[str, int] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _event_conditions_need_event_trigger(self) -> Rule:
        if not isinstance(self.trigger, EventTrigger):
            for index, cond in enumerate(self.when):
                if cond.scope == "event":
                    raise ValueError(
                        f"condition {index + 1}: {cond.field}: only event triggers can test event properties"
                    )
        return self

    @property
    def lateness(self) -> timedelta:
        """How late a trigger may still be acted on; older occurrences are skipped."""
        return self.max_lateness or self.trigger.default_max_lateness

    @property
    def offset(self) -> timedelta:
        """Distance from a trigger occurrence to the moment its message is due."""
        trigger = self.trigger
        if isinstance(trigger, DateTrigger):
            return trigger.offset
        if isinstance(trigger, ScheduleTrigger):
            return timedelta(0)
        return trigger.delay

    def line_of(self, path: str) -> int | None:
        """The line of a dotted field path (or its closest parent) in the rule file."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return self.lines.get("")


def field_names() -> set[str]:
    """Every field name of the rule language, for "did you mean" suggestions."""
    names: set[str] = set()
    for model in (
        Rule,
        EventTrigger,
        DateTrigger,
        StageTrigger,
        ScheduleTrigger,
        CancelIf,
        CouponSpec,
        Send,
        Then,
    ):
        names.update(name for name in model.model_fields if name not in ("file", "lines"))
    return names
