"""Pure types of the rule language: triggers, conditions, sends and actions.

Rule files are validated into these frozen pydantic models. Nothing here touches a
database, the network or the clock.
"""

from __future__ import annotations

import hashlib
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
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.schedule)
            except ValueError as exc:
                raise ValueError(f'schedule: "{self.schedule}" is not a crontab line ({exc})') from exc
        if self.every is not None and self.every < timedelta(minutes=1):
            raise ValueError("every: at least 1m")
        if self.timezone is not None and self.schedule is None:
            raise ValueError("timezone: contact needs a crontab schedule (every: counts the same everywhere)")
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


def _conditions(raw: Any) -> Any:
    """`- event.total: {gte: 100}`, `- contact.plan: pro`, `- contact.tags: {contains: vip}`
    or `- history: {event: order_placed, count: {gte: 2}}` → condition dicts."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("when must be a list of conditions, e.g. - event.total: {gte: 100}")
    return [_condition(item, index) for index, item in enumerate(raw)]


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


Conditions = Annotated[list[AnyCondition], BeforeValidator(_conditions)]


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


class Variant(Strict):
    """One version of an A/B test: its template, its coupon, and its share of the contacts."""

    model_config = ConfigDict(title="variant")

    template: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="a folder under email_templates/")
    coupon: CouponSpec | None = Field(default=None, description="one coupon code for each message")
    weight: int | None = Field(
        default=None,
        ge=1,
        description="its share of the contacts in percent; variants without one share what is left",
    )


class Send(Strict):
    """What to send: a template folder under email_templates/ and an optional coupon, or
    `variants` of an A/B test, one of which each contact always gets."""

    model_config = ConfigDict(title="send")

    template: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_-]+$", description="a folder under email_templates/"
    )
    coupon: CouponSpec | None = Field(default=None, description="one coupon code for each message")
    variants: dict[Identifier, Variant] | None = Field(
        default=None, description="an A/B test: name → template (and weight); a contact always gets the same"
    )

    @model_validator(mode="after")
    def _template_or_variants(self) -> Send:
        if (self.template is None) == (self.variants is None):
            raise ValueError("give either template or variants")
        if self.variants is not None and len(self.variants) < 2:
            raise ValueError("variants: give at least two")
        if self.variants is not None:
            given = sum(variant.weight or 0 for variant in self.variants.values())
            if given >= 100 and any(variant.weight is None for variant in self.variants.values()):
                raise ValueError(
                    f"variants: the weights given add up to {given}, "
                    "leaving nothing of 100 for the variants without one"
                )
        return self

    @property
    def weights(self) -> dict[str, float]:
        """Each variant's share, in percent when some weights are given (the variants
        without one share what is left of 100), equal when none are."""
        variants = self.variants or {}
        given = sum(variant.weight or 0 for variant in variants.values())
        unweighted = [name for name, variant in variants.items() if variant.weight is None]
        left = (100 - given) / len(unweighted) if unweighted else 0
        return {name: float(variant.weight) if variant.weight else left for name, variant in variants.items()}

    def variant(self, name: str | None) -> Variant:
        """What a message of variant `name` sends (None: the send without variants). A
        variant without a coupon of its own takes the send's."""
        if self.variants is None or name is None:
            assert self.template is not None, "a send with variants needs a variant's name"
            return Variant(template=self.template, coupon=self.coupon)
        chosen = self.variants[name]
        return chosen if chosen.coupon is not None else chosen.model_copy(update={"coupon": self.coupon})

    def choose(self, rule_id: str, contact_id: int) -> str | None:
        """The variant a contact gets: a hash of rule and contact, spread by the weights, so
        that the same contact always gets the same one. None for a send without variants."""
        if self.variants is None:
            return None
        shares = self.weights
        names = sorted(shares)
        weights = [shares[name] for name in names]
        digest = hashlib.sha256(f"{rule_id}:{contact_id}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64 * sum(weights)
        for name, weight in zip(names, weights, strict=True):
            if point < weight:
                return name
            point -= weight
        return names[-1]

    @property
    def templates(self) -> list[str]:
        if self.variants is None:
            return [self.template] if self.template else []
        return [variant.template for variant in self.variants.values()]

    @property
    def coupons(self) -> list[CouponSpec]:
        """Every coupon a message of this send may take."""
        found = [self.coupon] if self.coupon else []
        found += [variant.coupon for variant in (self.variants or {}).values() if variant.coupon]
        return found


class Step(Strict):
    """One message of a journey: sent `delay` after the previous step was sent, and skipped
    (the journey goes on) when its `when` does not hold then."""

    model_config = ConfigDict(title="step")

    delay: Duration = Field(default=timedelta(0), description="after the previous step was sent")
    when: Conditions = Field(default=[], description="this step is skipped unless these hold then")
    send: Send = Field(description="what this step sends")


class Goal(Strict):
    """What the rule is for: an event that, once the contact has it, ends the journey (later
    steps are cancelled) and counts as a conversion when it comes within `within` of a message."""

    model_config = ConfigDict(title="goal")

    event: Identifier = Field(description="the event type that reaches the goal, e.g. order_placed")
    within: Duration = Field(
        default=timedelta(days=7), description="a conversion counts this long after a message"
    )


class Limit(Strict):
    """At most `max` messages of the rule per contact in any span of `per`; one more is not
    queued (it is recorded as skipped), it does not wait."""

    model_config = ConfigDict(title="limit")

    max: int = Field(ge=1, description="messages of this rule per contact")
    per: Duration = Field(description="in any span this long, e.g. 7d")


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
    priority: int = Field(default=0, description="higher goes first when the frequency cap lets only some go")
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
                        raise ValueError(
                            f"{where}condition {index + 1}: {cond.field}: "
                            "only event triggers can test event properties"
                        )
        return self

    @property
    def journey(self) -> list[Step]:
        """The rule's messages in order: its steps, or its one `send` as a one-step journey."""
        if self.steps is not None:
            return list(self.steps)
        assert self.send is not None, "a rule has send or steps"
        return [Step(send=self.send)]

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
    def cancel_events(self) -> list[str]:
        """The event types that stop a message before it goes: cancel_if's and the goal's."""
        events = [cancel.event for cancel in self.trigger.cancel_if]
        if self.goal is not None and self.goal.event not in events:
            events.append(self.goal.event)
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
        Variant,
        Step,
        Goal,
        Limit,
        Then,
    ):
        names.update(name for name in model.model_fields if name not in ("file", "lines"))
    return names
