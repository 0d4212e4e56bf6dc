"""What `automator check` learns from the data: the vocabulary templates may use (declared in
automator.toml, and with `--store` what the store's contacts and events carry), and warnings
for conditions on attributes or values no contact has, which would match nobody."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from automator.model import EventTrigger, Rule
from automator.model_conditions import Condition
from automator.template_lint import CONTACT_FIELDS, Vocabulary

if TYPE_CHECKING:
    from sqlmodel import Session

    from automator.config import Settings


def declared_vocabulary(settings: Settings) -> Vocabulary:
    """What automator.toml declares: `[contacts] attributes` and `[events.TYPE] properties`."""
    return Vocabulary(
        attributes=frozenset(settings.contacts.attributes),
        events={name: frozenset(event.properties) for name, event in settings.events.items()},
    )


def stored_vocabulary(session: Session, declared: Vocabulary, rules: list[Rule]) -> Vocabulary:
    """The declared vocabulary with what the store holds added: every attribute a contact
    has, and the properties of each rule's trigger event type that has events."""
    from automator.store import vocabulary

    types = {rule.trigger.event for rule in rules if isinstance(rule.trigger, EventTrigger)}
    events = {name: frozenset(found) for name, found in vocabulary.event_properties(session, types).items()}
    for name, properties in declared.events.items():
        events[name] = events.get(name, frozenset()) | properties
    return Vocabulary(declared.attributes | vocabulary.attribute_names(session), events)


def condition_warnings(session: Session, rules: list[Rule], attributes: set[str]) -> Iterator[str]:
    """A warning for each condition on a contact attribute no contact has, or (eq, in) on
    text no contact holds in it: such a condition matches nobody, which is most often a typo."""
    from automator.store import vocabulary

    for rule in rules:
        for where, condition in _conditions(rule):
            if not isinstance(condition, Condition) or condition.scope != "contact":
                continue
            name = condition.name
            if name in CONTACT_FIELDS or name == "tags":
                continue
            at = f"{rule.file}:{rule.line_of(where)}: {where}"
            if name not in attributes:
                yield f"{at}: no contact has attribute '{name}'"
                continue
            values = condition.value if condition.op == "in" else [condition.value]
            texts = condition.op in ("eq", "in") and values and all(isinstance(v, str) for v in values)
            if texts and not vocabulary.holds_any(session, name, values):
                shown = " or ".join(f"'{value}'" for value in values)
                yield f"{at}: no contact has {name} {shown}"


def _conditions(rule: Rule) -> Iterator[tuple[str, object]]:
    for index, condition in enumerate(rule.when):
        yield f"when.{index}", condition
    for number, step in enumerate(rule.steps or []):
        for index, condition in enumerate(step.when):
            yield f"steps.{number}.when.{index}", condition
