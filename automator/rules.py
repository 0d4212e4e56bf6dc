"""Load and validate rule files (`rules/*.yaml`) into frozen `Rule` objects.

Every problem becomes a `RuleError` naming the file, the line and the field, so that one
broken rule is reported and the others still load.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from automator.durations import format_duration
from automator.errors import RuleError
from automator.journey import Journey
from automator.model import (
    EVENT_ONLY,
    DateTrigger,
    EventTrigger,
    Rule,
    ScheduleTrigger,
    StageTrigger,
    field_names,
    field_owners,
)
from automator.yamlfile import load_yaml


@dataclass
class RuleSet:
    """The rules that loaded, and one error per problem in the ones that did not."""

    rules: list[Rule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    broken_ids: set[str] = field(default_factory=set)  # ids read from files that did not load
    # (file, line, field, template) named by files that did not load: checked all the same
    unloaded_templates: list[tuple[str, int | None, str, str]] = field(default_factory=list)

    def get(self, rule_id: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.id == rule_id), None)


def rule_files(rules_dir: Path) -> list[Path]:
    """Every rule file: `*.yaml`/`*.yml` in rules/, except journey.yaml."""
    files = [*rules_dir.glob("*.yaml"), *rules_dir.glob("*.yml")]
    return sorted(path for path in files if path.stem != "journey")


def load_rules(rules_dir: Path, journey: Journey | None, display_root: Path) -> RuleSet:
    """Load every rule file; a broken file adds errors and never stops the others. With no
    journey (journey.yaml is broken) stage names are not checked."""
    ruleset = RuleSet()
    seen: dict[str, str] = {}
    for path in rule_files(rules_dir):
        shown = _display(path, display_root)
        try:
            rule = load_rule(path, journey, shown)
        except RuleErrors as exc:
            ruleset.errors.extend(exc.errors)
            if exc.rule_id:
                ruleset.broken_ids.add(exc.rule_id)
            ruleset.unloaded_templates.extend(exc.templates)
            continue
        if rule.id in seen:
            ruleset.errors.append(
                RuleError(
                    shown,
                    rule.line_of("id"),
                    "id",
                    f"'{rule.id}' is already used by {seen[rule.id]}",
                )
            )
            continue
        seen[rule.id] = shown
        ruleset.rules.append(rule)
    return ruleset


class RuleErrors(Exception):
    """Several RuleErrors found in one file."""

    def __init__(
        self,
        errors: list[RuleError],
        rule_id: str | None = None,
        templates: list[tuple[str, int | None, str, str]] | None = None,
    ) -> None:
        self.errors = errors
        self.rule_id = rule_id
        self.templates = templates or []
        super().__init__("\n".join(str(error) for error in errors))


def load_rule(path: Path, journey: Journey | None, shown: str) -> Rule:
    """Parse and validate one rule file. Raises RuleErrors listing every problem found."""
    try:
        data, lines = load_yaml(path)
    except OSError as exc:
        raise RuleErrors([RuleError(shown, None, None, f"cannot be read: {exc.strerror}")]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise RuleErrors(
            [RuleError(shown, line, None, f"not valid YAML: {getattr(exc, 'problem', exc)}")],
            _id_as_written(path),
        ) from exc
    if not isinstance(data, dict):
        raise RuleErrors([RuleError(shown, 1, None, "a rule file must be a mapping of fields")])
    problems = _journey_problems(data, lines, shown, journey)  # reported with the others
    try:
        rule = Rule.model_validate({**data, "file": shown, "lines": lines})
    except ValidationError as exc:
        rule_id = data.get("id") if isinstance(data.get("id"), str) else None
        invalid = [_rule_error(shown, lines, error) for error in exc.errors()]
        fields = {error.field for error in invalid}
        problems = [problem for problem in problems if problem.field not in fields]
        named = _templates_as_written(data, lines, shown)
        raise RuleErrors(
            sorted(invalid + problems, key=lambda error: error.line or 0), rule_id, named
        ) from exc
    if problems:
        raise RuleErrors(problems, rule.id, _templates_as_written(data, lines, shown))
    return rule


def _templates_as_written(
    data: dict[str, Any], lines: dict[str, int], shown: str
) -> list[tuple[str, int | None, str, str]]:
    """(file, line, field, template) for each template a file names, read from its data as it
    is: a rule with mistakes gets its missing template reported in the same run."""
    sends = [("send", data.get("send"))]
    steps = data.get("steps")
    sends += (
        [(f"steps.{n}.send", step.get("send")) for n, step in enumerate(steps) if isinstance(step, dict)]
        if isinstance(steps, list)
        else []
    )
    named = []
    for where, send in sends:
        if not isinstance(send, dict):
            continue
        if isinstance(send.get("template"), str):
            named.append((f"{where}.template", send["template"]))
        variants = send.get("variants")
        for name, variant in variants.items() if isinstance(variants, dict) else ():
            if isinstance(variant, dict) and isinstance(variant.get("template"), str):
                named.append((f"{where}.variants.{name}.template", variant["template"]))
    return [(shown, _line(lines, path), path, template) for path, template in named]


ID_LINE = re.compile(r"^id:[ \t]*['\"]?([a-z][a-z0-9_]*)['\"]?[ \t]*(#.*)?$", re.MULTILINE)


def _id_as_written(path: Path) -> str | None:
    """The `id:` line of a file that is not valid YAML, so that what names the rule
    elsewhere (a priority in automator.toml) is not reported as naming no rule."""
    try:
        found = ID_LINE.search(path.read_text())
    except (OSError, UnicodeDecodeError):
        return None
    return found.group(1) if found else None


def _rule_error(shown: str, lines: dict[str, int], error: Any) -> RuleError:
    """One pydantic error as file, line, field and a plain-words message: the field is the
    deepest one the message names (a condition's own line, `steps.1.when.0`), and no
    message shows an internal class name."""
    loc = [str(part) for part in error["loc"] if not str(part).endswith("-trigger")]
    path = ".".join(loc)
    if error["type"] == "extra_forbidden":
        if loc[0] == "trigger" and len(loc) == 2 and loc[1] in TRIGGER_KEYS:
            return RuleError(shown, _line(lines, path), path, _other_kinds_key(loc[1], lines))
        return RuleError(shown, _line(lines, path), path, _unknown_field(loc[-1], nested=len(loc) > 1))
    if error["type"] == "missing":
        return RuleError(shown, _line(lines, path), path, "is required")
    message = _plain(error)
    path, message = _named_in_message(path, message, lines)
    return RuleError(shown, _line(lines, path), path or None, message)


def _plain(error: Any) -> str:
    """The message of a pydantic error in the words of the rule language."""
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "string_pattern_mismatch":
        allowed = PATTERN_HINTS.get(str(ctx.get("pattern")), "see docs/rules.md")
        return f'"{error["input"]}" is not allowed here ({allowed})'
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        example = MAPPING_EXAMPLES.get(str(ctx.get("class_name")))
        return "must be a mapping of fields" + (f", e.g. {example}" if example else "")
    if kind == "too_short":
        return TOO_SHORT.get(str(error["loc"][-1]), f"needs at least {ctx.get('min_length')} item(s)")
    if kind in ("greater_than_equal", "less_than_equal"):
        bound = ctx.get("ge", ctx.get("le"))
        return f"must be at {'least' if kind == 'greater_than_equal' else 'most'} {bound}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return re.sub(r"^Input should be\b", "must be", message)


TOO_SHORT = {
    "steps": "a journey needs at least one step, e.g. [{send: {template: welcome_1}}]",
    "stages": "a rule targets at least one stage, e.g. [consideration]",
}

MAPPING_EXAMPLES = {
    "Send": "{template: welcome_1}",
    "Variant": "{template: cart_b, weight: 30}",
    "Step": "{delay: 2d, send: {template: welcome_2}}",
    "CouponSpec": "{prefix: WELCOME, percent_off: 10}",
    "CancelIf": "{event: order_placed}",
    "Goal": "{event: order_placed}",
    "Limit": "{max: 1, per: 7d}",
    "Then": "{tag: customer}",
}


def _named_in_message(path: str, message: str, lines: dict[str, int]) -> tuple[str, str]:
    """A rule-wide check names the step (`steps.0.delay: ...`, `steps.1.condition 2: ...`)
    and a check on a list of conditions names the condition (`condition 2: ...`): point the
    error at that field. A message that starts with a field of `path` (`variants: ...`
    under `send`) points there too."""
    step = re.match(r"(steps\.\d+)\.(?:(condition \d+: )|([a-z_.]+): )", message)
    if step and step.group(2):
        path, message = f"{step.group(1)}.when", message.removeprefix(f"{step.group(1)}.")
    elif step:
        return f"{step.group(1)}.{step.group(3)}", message.removeprefix(f"{step.group(1)}.{step.group(3)}: ")
    condition = re.match(r"condition (\d+): ", message)
    if condition and re.search(r"(^|\.)when\.\d+$", path):
        return path, message  # read on its own: the error is at the condition already
    if condition:
        where = path if path.endswith("when") else "when"
        return f"{where}.{int(condition.group(1)) - 1}", message
    if message.startswith("give either send (one message) or steps"):
        return ("steps" if "steps" in lines and "send" in lines else "send"), message
    named = re.match(r"([a-z_]+): ", message)
    if named and f"{path}.{named.group(1)}".lstrip(".") in lines:
        return f"{path}.{named.group(1)}".lstrip("."), message.removeprefix(named.group(0))
    return path, message


PATTERN_HINTS = {
    "^[a-z][a-z0-9_]*$": "lowercase letters, digits and _, starting with a letter",
    "^[A-Z0-9-]{0,12}$": "capital letters, digits and -, at most 12",
    "^[A-Za-z0-9_-]+$": "letters, digits, _ and -",
}


def _unknown_field(name: str, nested: bool) -> str:
    """`unknown field`, with the closest field name; never the name itself (a field of
    another part of the rule, given here)."""
    if nested and name in Rule.model_fields:
        return f"unknown field here ({name} belongs at the top level of the rule)"
    if name in field_names():
        return f"unknown field here ({name} is a field of {', '.join(field_owners(name))})"
    close = difflib.get_close_matches(name, sorted(field_names()), n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown field{hint}"


# Each kind of trigger by the key that makes it that kind (as `model._trigger_kind` reads
# them), and the fields it takes.
TRIGGER_KINDS: dict[str, type[BaseModel]] = {
    "event": EventTrigger,
    "date": DateTrigger,
    "stage_entered": StageTrigger,
    "schedule": ScheduleTrigger,
    "every": ScheduleTrigger,
}
TRIGGER_KEYS = frozenset(name for model in TRIGGER_KINDS.values() for name in model.model_fields)


def _other_kinds_key(name: str, lines: dict[str, int]) -> str:
    """A field of one kind of trigger given in another (`yearly` beside `event`): which kind
    this trigger is, and which kinds take the field."""
    kind = next((key for key in TRIGGER_KINDS if f"trigger.{key}" in lines and key != name), "")
    takes = [key for key, model in TRIGGER_KINDS.items() if name in model.model_fields and key != "every"]
    return (
        f"not allowed with trigger.{kind}; {name} belongs to {' and '.join(takes)} triggers "
        "(a trigger has one of event, date, stage_entered, schedule or every)"
    )


def _line(lines: dict[str, int], path: str) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path.rpartition(".")[0]
    return lines.get("", 1)


def _journey_problems(
    data: dict[str, Any], lines: dict[str, int], shown: str, journey: Journey | None
) -> list[RuleError]:
    """Stage names must exist in the journey. Read from the file's data as it is, so that a
    rule with other mistakes gets its unknown stages reported in the same run."""
    named = []
    if isinstance(data.get("stages"), list):
        named = [(f"stages.{i}", stage) for i, stage in enumerate(data["stages"])]
    for section, key in (("then", "move_to"), ("trigger", "stage_entered")):
        if isinstance(data.get(section), dict) and key in data[section]:
            named.append((f"{section}.{key}", data[section][key]))
    problems = _send_or_steps(data, lines, shown) + _event_conditions(data, lines, shown)
    if journey is None:
        return problems
    for path, stage in named:
        if isinstance(stage, str) and stage not in journey.stages:
            close = difflib.get_close_matches(stage, journey.stages, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            known = ", ".join(journey.stages)
            problems.append(
                RuleError(
                    shown, _line(lines, path), path, f"unknown stage '{stage}'{hint}; stages are {known}"
                )
            )
    return problems


def _send_or_steps(data: dict[str, Any], lines: dict[str, int], shown: str) -> list[RuleError]:
    """A rule has `send` or `steps`, not both nor neither: read from the file as it is, so
    that it is reported with the rule's other mistakes (the model checks it only once every
    field is valid)."""
    if ("send" in data) == ("steps" in data):
        path = "steps" if "steps" in data else "send"
        message = "give either send (one message) or steps (a journey)"
        return [RuleError(shown, _line(lines, path), path, message)]
    return []


def _event_conditions(data: dict[str, Any], lines: dict[str, int], shown: str) -> list[RuleError]:
    """Every condition on `event.` in a rule whose trigger is not an event, read from the
    file as it is: the model stops at the first, and only once every other field is valid."""
    trigger = data.get("trigger")
    if not isinstance(trigger, dict) or "event" in trigger:
        return []
    steps = data["steps"] if isinstance(data.get("steps"), list) else []
    whens = [("when", data.get("when"))]
    whens += [(f"steps.{n}.when", step.get("when")) for n, step in enumerate(steps) if isinstance(step, dict)]
    problems = []
    for where, conditions in whens:
        for index, condition in enumerate(conditions if isinstance(conditions, list) else []):
            field = next(iter(condition)) if isinstance(condition, dict) and len(condition) == 1 else None
            if isinstance(field, str) and field.startswith("event."):
                path = f"{where}.{index}"
                message = f"condition {index + 1}: {field}: {EVENT_ONLY}"
                problems.append(RuleError(shown, _line(lines, path), path, message))
    return problems


def _display(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def describe_trigger(rule: Rule) -> str:
    """A one-line human description of a rule's trigger, for summaries and the console."""
    trigger = rule.trigger
    if isinstance(trigger, EventTrigger):
        text = f"{format_duration(trigger.delay)} after {trigger.event}"
        if trigger.latest_per:
            text += f" (latest per {trigger.latest_per})"
    elif isinstance(trigger, DateTrigger):
        text = _describe_date(trigger)
    elif isinstance(trigger, ScheduleTrigger):
        text = (
            f"on schedule {trigger.schedule}"
            if trigger.schedule
            else f"every {format_duration(trigger.every or timedelta(0))}"
        )
        if trigger.timezone == "contact":
            text += " in each contact's zone"
    else:
        text = f"{format_duration(trigger.delay)} after entering {trigger.stage_entered}"
    if trigger.cancel_if:
        text += f", cancelled by {' or '.join(cancel.event for cancel in trigger.cancel_if)}"
    return text


def _describe_date(trigger: DateTrigger) -> str:
    """`30d before contact.renews_at`, `every year on contact.birthday`, `every year 3d before
    contact.birthday`: a yearly date is its month and day, the year left out."""
    if trigger.before is None and trigger.after is None:
        where = f"on {trigger.date}"
    else:
        side = "before" if trigger.before is not None else "after"
        where = f"{format_duration(abs(trigger.offset))} {side} {trigger.date}"
    return f"every year {where}" if trigger.yearly else where


ENABLED_LINE = re.compile(r"^enabled:[ \t]*([^\s#]+)", re.MULTILINE)
ID_LINE_END = re.compile(r"^id:[^\n]*(\n|$)", re.MULTILINE)


def set_enabled(path: Path, enabled: bool, shown: str | None = None) -> int | None:
    """Write `enabled:` in a rule file, changing only that value (or adding the line after
    `id:`), so comments and everything else stay as written. The line written, or None when
    the file already says so. `shown`: the file's name in an error (its path by default)."""
    text = original = path.read_bytes().decode("utf-8")
    value = "true" if enabled else "false"
    found = ENABLED_LINE.search(text)
    if found:
        if yaml.safe_load(found.group(1)) is enabled:
            return None
        text = text[: found.start(1)] + value + text[found.end(1) :]
        at = found.start()
    else:
        if enabled:
            return None  # a rule is enabled unless its file says otherwise
        id_line = ID_LINE_END.search(text)
        at = id_line.end() if id_line else 0
        newline = "\r\n" if id_line and text[: id_line.end()].endswith("\r\n") else "\n"
        if id_line and not id_line.group(1):
            text, at = text + newline, at + len(newline)  # `id:` was the last line, without an end
        text = text[:at] + f"enabled: {value}{newline}" + text[at:]
    _check_only_enabled_changed(shown or str(path), original, text, enabled)
    path.write_bytes(text.encode("utf-8"))
    return text[:at].count("\n") + 1


def _check_only_enabled_changed(shown: str, before: str, after: str, enabled: bool) -> None:
    """RuleError, and nothing written, unless `after` reads as `before` with `enabled` set:
    a file in another layout (a YAML flow mapping, `{id: x, …}` on one line) would be broken
    by the line written into it."""
    old = yaml.safe_load(before)
    try:
        new = yaml.safe_load(after)
    except yaml.YAMLError:
        new = None
    if not isinstance(old, dict) or new != {**old, "enabled": enabled}:
        raise RuleError(
            shown,
            None,
            "enabled",
            f"cannot be written in this file's layout; write `enabled: {str(enabled).lower()}` by hand",
        )


SYMBOLS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "not_in": "not in"}


def describe_conditions(conditions: list[Any]) -> str:
    """`event.total > 0 and contact.plan in [pro, team]`, for summaries."""
    from automator.model_conditions import HistoryCondition

    parts = []
    for condition in conditions:
        if isinstance(condition, HistoryCondition):
            within = f" in {format_duration(condition.within)}" if condition.within else ""
            symbol = SYMBOLS.get(condition.op, condition.op)
            parts.append(f"{condition.event} {symbol} {condition.count} times{within}")
        elif condition.op == "exists":
            parts.append(f"{condition.field} {'exists' if condition.value is not False else 'is missing'}")
        else:
            value = condition.value
            shown = f"[{', '.join(map(str, value))}]" if isinstance(value, list | tuple) else value
            parts.append(f"{condition.field} {SYMBOLS.get(condition.op, condition.op)} {shown}")
    return " and ".join(parts)
