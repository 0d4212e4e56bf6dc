"""A project folder: settings, journey, rules and templates, loaded and checked together."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from automator.config import Settings, load_settings
from automator.errors import AutomatorError, RuleError
from automator.journey import Journey, load_journey
from automator.model import Rule
from automator.rules import RuleSet, load_rules
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

    def open_store(self) -> Store:
        from automator.store import Store  # here: `automator check` loads a project without a database

        store = Store(self.settings.database)
        store.create_schema()
        return store


def load_project(directory: Path, environ: dict[str, str] | None = None) -> Project:
    """Load everything; problems are collected in `errors` instead of stopping the load."""
    settings = load_settings(directory, environ)
    errors: list[AutomatorError] = []
    try:
        journey = load_journey(settings.rules_dir, directory)
    except RuleError as exc:
        errors.append(exc)
        journey = Journey()
    ruleset = load_rules(settings.rules_dir, journey, directory)
    errors.extend(ruleset.errors)
    templates = Templates(settings.templates_dir, settings.timezone)
    errors.extend(templates.check_shared())
    broken: set[str] = set()
    for rule in ruleset.rules:
        problems = _template_problems(rule, templates)
        errors.extend(problem for problem in problems if str(problem) not in map(str, errors))
        if problems:
            broken.add(rule.id)
    errors.extend(_priority_problems(settings, ruleset))
    return Project(settings, journey, ruleset, templates, errors, broken)


def _template_problems(rule: Rule, templates: Templates) -> list[AutomatorError]:
    problems: list[AutomatorError] = []
    for named_in, template in _templates_named(rule):
        if not templates.exists(template):
            problems.append(
                RuleError(
                    rule.file,
                    rule.line_of(named_in),
                    named_in,
                    f"template '{template}' does not exist (no folder email_templates/{template}/)",
                )
            )
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


def _priority_problems(settings: Settings, ruleset: RuleSet) -> list[AutomatorError]:
    known = {rule.id for rule in ruleset.rules} | ruleset.broken_ids
    return [
        RuleError("automator.toml", None, f"priorities.{rule_id}", "no rule has this id")
        for rule_id in settings.priorities
        if rule_id not in known
    ]
