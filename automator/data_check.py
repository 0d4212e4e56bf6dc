"""What `automator check` learns from the data: the vocabulary templates may use (declared in
automator.toml, and with `--store` what the store's contacts and events carry), and warnings
for conditions on attributes or values no contact has, and for event types no event has,
which would match nobody, and for contacts' locales that a template has no version in."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator
from typing import TYPE_CHECKING

from automator.model import EventTrigger, Rule
from automator.model_conditions import Condition, HistoryCondition
from automator.template_lint import CONTACT_FIELDS, Vocabulary
from automator.templates import DEFAULT_LOCALE, Templates, language

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


def event_type_warnings(session: Session, rules: list[Rule], declared: Collection[str]) -> Iterator[str]:
    """A warning for each event type a rule names (trigger, cancel_if, goal, history) that
    no stored event has and automator.toml does not declare (`[events.TYPE]`: one that has
    not happened yet), most often a misspelling; none while the store holds no events."""
    from automator.store import vocabulary

    held = vocabulary.event_types(session)
    if not held:
        return
    for rule in rules:
        for where, name in _event_types(rule):
            if name in held or name in declared:
                continue
            close = difflib.get_close_matches(name, held, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            yield f"{rule.file}:{rule.line_of(where)}: {where}: no event in the store has type '{name}'{hint}"


def locale_warnings(session: Session, rules: list[Rule], templates: Templates) -> Iterator[str]:
    """A warning for each template and each locale contacts have that it has no version in:
    those contacts get the default (English) version, which may not be what was meant."""
    from automator.store import vocabulary

    held = vocabulary.locales(session)
    names = dict.fromkeys(name for rule in rules for name in rule.templates if templates.exists(name))
    for name in names:
        for locale, count in sorted(held.items()):
            if templates.language_for(name, locale) != language(locale):
                have = "1 contact has" if count == 1 else f"{count} contacts have"
                yield (
                    f"email_templates/{name}: {have} locale '{locale}', which has no version here; "
                    f"they get the '{DEFAULT_LOCALE}' one"
                )


def _event_types(rule: Rule) -> Iterator[tuple[str, str]]:
    """(field, event type) for each event type the rule names, the field as its file has it."""
    trigger = rule.trigger
    if isinstance(trigger, EventTrigger):
        yield "trigger.event", trigger.event
    for index, cancel in enumerate(trigger.cancel_if):
        listed = f"trigger.cancel_if.{index}" in rule.lines  # a list, not one {event: …}
        yield (f"trigger.cancel_if.{index}.event" if listed else "trigger.cancel_if.event"), cancel.event
    if rule.goal is not None:
        yield "goal.event", rule.goal.event
    for where, condition in _conditions(rule):
        if isinstance(condition, HistoryCondition):
            yield f"{where}.history.event", condition.event


def _conditions(rule: Rule) -> Iterator[tuple[str, object]]:
    for index, condition in enumerate(rule.when):
        yield f"when.{index}", condition
    for number, step in enumerate(rule.steps or []):
        for index, condition in enumerate(step.when):
            yield f"steps.{number}.when.{index}", condition
