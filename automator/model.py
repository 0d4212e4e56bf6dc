"""Pure types of the rule language: triggers, conditions, sends and actions.

Rule files are validated into these frozen pydantic models. Nothing here touches a
database, the network or the clock. The conditions (`model_conditions`) and what a rule
sends (`model_sends`) have modules of their own; their names are found here too.
"""

from __future__ import annotations

import functools
import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

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

from automator.display import has_control, printable
from automator.model_base import CONTACT_COLUMNS as CONTACT_COLUMNS
from automator.model_base import DEFAULT_STAGES as DEFAULT_STAGES
from automator.model_base import MAX_PRIORITY
from automator.model_base import OPERATORS as OPERATORS
from automator.model_base import Duration as Duration
from automator.model_base import Identifier as Identifier
from automator.model_base import Strict as Strict
from automator.model_conditions import AnyCondition as AnyCondition
from automator.model_conditions import Condition as Condition
from automator.model_conditions import Conditions as Conditions
from automator.model_conditions import HistoryCondition as HistoryCondition
from automator.model_sends import CouponSpec as CouponSpec
from automator.model_sends import Goal as Goal
from automator.model_sends import Limit as Limit
from automator.model_sends import Send as Send
from automator.model_sends import Step as Step
from automator.model_sends import Then as Then
from automator.model_sends import Variant as Variant


class CancelIf(Strict):
    """An event that, occurring after the trigger, means the message must not go out."""

    model_config = ConfigDict(title="cancel_if")

    event: Identifier = Field(description="the event type that cancels the message, e.g. order_placed")
    within: Duration | None = Field(
        default=None,
        description="date triggers: events this long before the date count too",
    )


def _one_or_more(raw: Any) -> Any:
    """`cancel_if: {event: x}` or a list of them: always a list once read."""
    if raw is None:
        return ()
    return raw if isinstance(raw, list | tuple) else [raw]


CancelList = Annotated[
    tuple[CancelIf, ...],
    BeforeValidator(_one_or_more, json_schema_input_type=CancelIf | list[CancelIf]),
]


class EventTrigger(Strict):
    """Fires `delay` after an event of type `event`."""

    model_config = ConfigDict(title="event trigger")

    event: Identifier = Field(description="the event type that starts the clock, e.g. cart_updated")
    delay: Duration = Field(default=timedelta(0), description="the message is due this long after the event")
    latest_per: str | None = Field(default=None, description="only the newest event per value")
    once_per: str | None = Field(default=None, description="one message per value of this property")
    cancel_if: CancelList = Field(
        default=(), description="a later event (or a list of them) that cancels the message"
    )

    @model_validator(mode="after")
    def _within_is_for_dates(self) -> EventTrigger:
        _no_within(self.cancel_if)
        return self

    @property
    def default_max_lateness(self) -> timedelta:
        return timedelta(days=1)


def _no_within(cancels: tuple[CancelIf, ...]) -> None:
    if any(cancel.within is not None for cancel in cancels):
        raise ValueError(
            "cancel_if.within applies to date triggers only (events after the trigger cancel it)"
        )


class DateTrigger(Strict):
    """Fires `before` or `after` a contact's date attribute."""

    model_config = ConfigDict(title="date trigger")

    date: str = Field(description="a contact attribute holding a date, e.g. contact.renews_at")
    before: Duration | None = Field(default=None, description="due this long before the date")
    after: Duration | None = Field(default=None, description="due this long after the date")
    yearly: bool = Field(
        default=False, description="every year on the date's month and day (29 February: 28 February)"
    )
    cancel_if: CancelList = Field(
        default=(), description="an event (or a list of them) that cancels the message"
    )

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
    cancel_if: CancelList = Field(
        default=(), description="a later event (or a list of them) that cancels the message"
    )

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
    timezone: Literal["contact"] | None = Field(
        default=None, description="contact: the crontab line is read in each contact's own time zone"
    )
    cancel_if: CancelList = Field(
        default=(), description="a later event (or a list of them) that cancels the message"
    )

    @model_validator(mode="after")
    def _one_kind(self) -> ScheduleTrigger:
        if (self.schedule is None) == (self.every is None):
            raise ValueError("give either schedule (a crontab line) or every (a duration)")
        if self.schedule is not None:
            from automator.crontab import cron, never_fires

            try:
                cron(self.schedule, ZoneInfo("UTC"))
            except ValueError as exc:
                raise ValueError(f'schedule: "{self.schedule}" is not a crontab line ({exc})') from exc
            why = never_fires(self.schedule)
            if why is not None:
                raise ValueError(f'schedule: "{self.schedule}" never fires ({why})')
        if self.every is not None and self.every < timedelta(minutes=1):
            raise ValueError("every: at least 1m")
        if self.timezone is not None and self.schedule is None:
            raise ValueError("timezone: contact needs a crontab schedule (every: counts the same everywhere)")
        _no_within(self.cancel_if)
        return self

    @property
    def default_max_lateness(self) -> timedelta:
        return timedelta(hours=6)


EVENT_ONLY = "only event triggers can test event properties"


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


class Rule(Strict):
    """One rule file: whom it targets, when it fires, what it sends."""

    model_config = ConfigDict(title="automator rule")

    id: Identifier = Field(description="the rule's identity, part of every message's dedupe key")
    name: str = Field(default="", description="shown to people; templates see it as rule.name")
    description: str = Field(default="", description="for people reading the file")

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        """A name goes into subjects and the console: a line break would end a header there."""
        if has_control(value):
            raise ValueError(
                f"holds a control character or line break ({printable(value)}); a name is one line"
            )
        return value

    stages: list[Identifier] = Field(min_length=1, description="contacts whose current stage is one of these")
    trigger: Trigger = Field(
        description="what makes a message due: event, date, stage_entered, schedule or every"
    )
    when: Conditions = Field(
        default=[], description="conditions that must all hold, e.g. - event.total: {gte: 100000}"
    )
    send: Send | None = Field(default=None, description="what to send: a template and an optional coupon")
    steps: list[Step] | None = Field(
        default=None, min_length=1, description="a journey: messages in order, each after the one before"
    )
    goal: Goal | None = Field(
        default=None, description="an event that ends the journey and counts as a conversion"
    )
    limit: Limit | None = Field(
        default=None, description="at most this many messages per contact, e.g. {max: 1, per: 7d}"
    )
    priority: int = Field(
        default=0,
        ge=-MAX_PRIORITY,
        le=MAX_PRIORITY,
        description="higher goes first when the frequency cap lets only some go",
    )
    max_lateness: Duration | None = Field(default=None, description="how late a message may still go out")
    then: Then = Field(default=Then(), description="what happens to the contact once the message is sent")
    enabled: bool = Field(default=True, description="false: the file is checked but the rule does not run")

    # Where the rule came from, for error messages; not part of the rule language.
    file: str = Field(default="", exclude=True)
    lines: dict[str, int] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _send_or_steps(self) -> Rule:
        if (self.send is None) == (self.steps is None):
            raise ValueError("give either send (one message) or steps (a journey)")
        if self.steps and self.steps[0].delay:
            raise ValueError(
                "steps.0.delay: the first step goes when the trigger fires; give the trigger a delay"
            )
        return self

    @model_validator(mode="after")
    def _event_conditions_need_event_trigger(self) -> Rule:
        if not isinstance(self.trigger, EventTrigger):
            for where, conditions in [("", self.when)] + [
                (f"steps.{number}.", step.when) for number, step in enumerate(self.steps or [])
            ]:
                for index, cond in enumerate(conditions):
                    if isinstance(cond, Condition) and cond.scope == "event":
                        raise ValueError(f"{where}condition {index + 1}: {cond.field}: {EVENT_ONLY}")
        return self

    @functools.cached_property
    def journey(self) -> tuple[Step, ...]:
        """The rule's messages in order: its steps, or its one `send` as a one-step journey.
        Made once per rule: queueing asks for it for every message."""
        if self.steps is not None:
            return tuple(self.steps)
        assert self.send is not None, "a rule has send or steps"
        return (Step(send=self.send),)

    def step(self, number: int) -> Step:
        """Step `number`, counted from 1 as messages and people count them."""
        return self.journey[number - 1]

    def sending(self, step: int = 1, variant: str | None = None) -> Variant:
        """What a message of step `step` (from 1) and variant `variant` sends."""
        return self.step(step).send.variant(variant)

    @property
    def templates(self) -> list[str]:
        """Every template the rule may send, each once, in the order the file names them."""
        return list(dict.fromkeys(name for step in self.journey for name in step.send.templates))

    @property
    def stopping_goal(self) -> Goal | None:
        """The goal, when reaching it stops the rule's messages: not when it is the very
        event type that triggers the rule (a thank-you for an order, whose goal is the next
        order), which would stop the messages its own kind of event starts. Such a goal only
        counts conversions."""
        goal = self.goal
        if goal is None or (isinstance(self.trigger, EventTrigger) and goal.event == self.trigger.event):
            return None
        return goal

    @property
    def cancel_events(self) -> list[str]:
        """The event types that stop a message before it goes: cancel_if's and the goal's."""
        events = [cancel.event for cancel in self.trigger.cancel_if]
        goal = self.stopping_goal
        if goal is not None and goal.event not in events:
            events.append(goal.event)
        return events

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


# Every model of the rule language, with the fields a rule file may give it.
PARTS: tuple[type[BaseModel], ...] = (
    Rule,
    EventTrigger,
    DateTrigger,
    StageTrigger,
    ScheduleTrigger,
    CancelIf,
    CouponSpec,
    Send,
    Variant,
    Step,
    Goal,
    Limit,
    Then,
)


def field_names() -> set[str]:
    """Every field name of the rule language, for "did you mean" suggestions."""
    return {name for model in PARTS for name in model.model_fields if name not in ("file", "lines")}


def field_owners(name: str) -> list[str]:
    """The parts of a rule that have a field `name` (`event trigger`, `step`), by title."""
    return [str(model.model_config.get("title")) for model in PARTS if name in model.model_fields]
