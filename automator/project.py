"""A project folder: settings, journey, rules and templates, loaded and checked together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from automator import template_lint
from automator.config import Settings, load_settings, read_settings
from automator.errors import AutomatorError, ConfigError, RuleError, TemplateError
from automator.journey import Journey, read_journey
from automator.model import EventTrigger, Rule
from automator.rules import RuleSet, load_rules
from automator.template_lint import Vocabulary
from automator.templates import Templates

if TYPE_CHECKING:
    from automator.store import Store


@dataclass
class Project:
    settings: Settings
    journey: Journey
    ruleset: RuleSet
    templates: Templates
    errors: list[AutomatorError] = field(default_factory=list)
    broken_templates: set[str] = field(default_factory=set)

    @property
    def rules(self) -> list[Rule]:
        """Rules that run: loaded, enabled, and with a template that parses."""
        return [rule for rule in self.ruleset.rules if rule.enabled and rule.id not in self.broken_templates]

    def rule(self, rule_id: str) -> Rule | None:
        return self.ruleset.get(rule_id)

    def lint(self, vocabulary: Vocabulary) -> list[TemplateError]:
        """Template lint (automator/template_lint.py) of every template a rule sends, enabled
        or not: each of their files that parses, also beside one that does not (or is missing),
        so that one run lists every problem; each problem once."""
        linted: list[tuple[str, str | None, str | None]] = []
        for rule in self.ruleset.rules:
            event_type = rule.trigger.event if isinstance(rule.trigger, EventTrigger) else None
            eventless = None if event_type else _eventless(rule)
            linted += [(template, event_type, eventless) for _, template in _templates_named(rule)]
        env = self.templates.env
        key = template_lint.lint_key(env, linted, vocabulary)
        problems = template_lint.cached(key)
        if problems is None:
            problems = []
            for template, event_type, eventless in linted:
                found = template_lint.lint_template(env, template, event_type, vocabulary, eventless)
                problems.extend(problem for problem in found if str(problem) not in map(str, problems))
            template_lint.keep(key, problems)
        return problems

    def open_store(self) -> Store:
        from automator.store import Store  # here: `automator check` loads a project without a database

        store = Store(self.settings.database)
        store.create_schema()
        return store


def load_project(
    directory: Path, environ: dict[str, str] | None = None, settings_problems: bool = False
) -> Project:
    """Load everything; problems are collected in `errors` instead of stopping the load. A
    setting that cannot be used raises ConfigError (nothing should run on it), unless
    `settings_problems` asks for them in `errors` too (what `automator check` shows)."""
    errors: list[AutomatorError] = []
    if settings_problems:
        settings, unusable = read_settings(directory, environ)
        errors.extend(unusable)
    else:
        settings = load_settings(directory, environ)
    if not settings.rules_dir.is_dir():
        raise ConfigError(_not_a_project(directory))
    journey, journey_problems = read_journey(settings.rules_dir, directory)
    errors.extend(journey_problems)
    ruleset = load_rules(settings.rules_dir, journey, directory)
    errors.extend(ruleset.errors)
    templates = Templates(settings.templates_dir, settings.timezone)
    errors.extend(_unloaded_template_problems(ruleset, templates))
    errors.extend(templates.check_shared())
    broken: set[str] = set()
    for rule in ruleset.rules:
        problems = _template_problems(rule, templates)
        errors.extend(problem for problem in problems if str(problem) not in map(str, errors))
        if problems:
            broken.add(rule.id)
    errors.extend(_priority_problems(settings, ruleset))
    return Project(settings, journey or Journey(), ruleset, templates, errors, broken)


def _not_a_project(directory: Path) -> str:
    """Why `directory` is no project: a daemon started in the wrong folder would otherwise
    run no rule at all, and `check` would say "ok: 0 rules"."""
    if not directory.is_dir():
        return f"the project folder {directory.resolve()} does not exist (give --project DIR)"
    return (
        f"{directory.resolve()} is not an automator project: it has no rules/ folder "
        "(run in the project's folder, or give --project DIR; an empty rules/ folder is a project "
        "without rules)"
    )


def _unloaded_template_problems(ruleset: RuleSet, templates: Templates) -> list[AutomatorError]:
    """Templates named by rule files that did not load, which do not exist."""
    return [
        RuleError(file, line, named_in, _no_template(template))
        for file, line, named_in, template in ruleset.unloaded_templates
        if not templates.exists(template)
    ]


def _no_template(template: str) -> str:
    return f"template '{template}' does not exist (no folder email_templates/{template}/)"


def _template_problems(rule: Rule, templates: Templates) -> list[AutomatorError]:
    problems: list[AutomatorError] = []
    for named_in, template in _templates_named(rule):
        if not templates.exists(template):
            problems.append(RuleError(rule.file, rule.line_of(named_in), named_in, _no_template(template)))
        else:
            problems.extend(templates.check(template))
    return problems


def _templates_named(rule: Rule) -> list[tuple[str, str]]:
    """Each template the rule names, with the field that names it (`send.template`,
    `steps.1.send.variants.b.template`)."""
    sends = [("send", rule.send)] if rule.send else []
    sends += [(f"steps.{number}.send", step.send) for number, step in enumerate(rule.steps or [])]
    named = []
    for where, send in sends:
        if send.template is not None:
            named.append((f"{where}.template", send.template))
        for name, variant in (send.variants or {}).items():
            named.append((f"{where}.variants.{name}.template", variant.template))
    return named


def _eventless(rule: Rule) -> str:
    """How a template's lint names a rule whose trigger has no event, and that trigger:
    `renewal_offer's trigger (rules/renewal_offer.yaml:6: trigger.date)`."""
    kind = next(
        key for key in ("date", "stage_entered", "schedule", "every") if getattr(rule.trigger, key, None)
    )
    field = f"trigger.{kind}"
    return f"{rule.id}'s trigger ({rule.file}:{rule.line_of(field)}: {field})"


def _priority_problems(settings: Settings, ruleset: RuleSet) -> list[AutomatorError]:
    known = {rule.id for rule in ruleset.rules} | ruleset.broken_ids
    return [
        RuleError("automator.toml", None, f"priorities.{rule_id}", "no rule has this id")
        for rule_id in settings.priorities
        if rule_id not in known
    ]
