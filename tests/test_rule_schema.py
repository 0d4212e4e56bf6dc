"""`automator schema` prints a JSON Schema (draft 2020-12) of a rule file, made from the models
`automator check` validates with: every shipped rule and every example in docs/rules.md
passes it, and a mistake that `check` refuses an editor flags too, in words without our
class names."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from automator import model
from automator.cli import app
from automator.journey import Journey
from automator.model import DEFAULT_STAGES
from automator.rule_schema import rule_schema
from automator.rules import RuleErrors, load_rule
from tests.conftest import REPO

jsonschema = pytest.importorskip("jsonschema")

SCHEMA = rule_schema(DEFAULT_STAGES)
RULE_FILES = sorted(path for path in (REPO / "rules").glob("*.yaml") if path.stem != "journey")
MARKETING = sorted((REPO / "examples" / "marketing" / "rules").glob("*.yaml"))
CART = (REPO / "rules" / "abandoned_cart.yaml").read_text(encoding="utf-8")


def problems(data: Any, schema: dict[str, Any] = SCHEMA) -> list[str]:
    """What an editor would say about a rule file, one message per problem."""
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(data)]


def check_refuses(tmp_path: Path, rule: dict[str, Any]) -> bool:
    """Does `automator check` refuse this rule file?"""
    path = tmp_path / "rule.yaml"
    path.write_text(yaml.safe_dump(rule, allow_unicode=True), encoding="utf-8")
    try:
        load_rule(path, Journey(), "rules/rule.yaml")
    except RuleErrors:
        return True
    return False


def docs_examples() -> Iterator[Any]:
    """Every YAML example in docs/rules.md but the journey file's, each alternative apart,
    named by the section it is in."""
    text = (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
    for block in re.finditer(r"^```yaml\n(.*?)^```", text, flags=re.M | re.S):
        section = re.findall(r"^#+ (.+)$", text[: block.start()], flags=re.M)[-1]
        for example in re.split(r"^# or\n", block.group(1), flags=re.M):
            data = yaml.safe_load(example)
            if "moves" not in data:
                yield pytest.param(data, id=section)


def test_the_schema_is_a_draft_2020_12_schema_with_a_title() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["title"] == "automator rule"


def schema_command(project_dir: Path) -> Any:
    """`automator schema` in a project: it needs no database."""
    return CliRunner().invoke(app, ["--project", str(project_dir), "schema"], catch_exceptions=False)


def test_automator_schema_prints_it_with_the_projects_stages(project_dir: Path) -> None:
    (project_dir / "rules" / "journey.yaml").write_text("stages: [lead, customer, fan]\n", encoding="utf-8")

    result = schema_command(project_dir)

    assert result.exit_code == 0, result.output
    printed = json.loads(result.output)
    assert printed == rule_schema(("lead", "customer", "fan"))
    assert problems(cart_with({"stages": ["customer"], "then": {"move_to": "fan"}}), printed) == []
    assert problems(cart_with({"stages": ["customer"], "then": {"move_to": "conversion"}}), printed) != []


def test_automator_schema_names_a_broken_journey_instead_of_guessing_the_stages(project_dir: Path) -> None:
    (project_dir / "rules" / "journey.yaml").write_text("stages: [lead, lead]\n", encoding="utf-8")

    result = schema_command(project_dir)

    assert result.exit_code == 1
    assert "journey.yaml" in result.output
    assert "{" not in result.output


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_every_shipped_rule_passes(path: Path) -> None:
    assert problems(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


@pytest.mark.parametrize("example", list(docs_examples()))
def test_every_example_in_the_rule_reference_passes(example: dict[str, Any]) -> None:
    """Most examples show a few fields of a rule: the fields they show must be right."""
    whole = set(SCHEMA["required"]) <= example.keys()
    partial = {key: value for key, value in SCHEMA.items() if key != "oneOf"} | {"required": []}
    assert problems(example, SCHEMA if whole else partial) == []


def test_the_rule_reference_shows_every_new_construct() -> None:
    """Journeys, goals, limits, variants, yearly dates, local schedules, cancel_if lists, history
    and tag conditions each have a worked example in docs/rules.md that the schema checks."""
    shown = json.dumps([param.values[0] for param in docs_examples()])

    for construct in ('"steps"', '"goal"', '"limit"', '"variants"', '"weight"', '"yearly"', '"timezone"'):
        assert construct in shown, construct
    for construct in ('"history"', '"contact.tags"', '"cancel_if": [{'):
        assert construct in shown, construct


@pytest.mark.parametrize("path", MARKETING, ids=lambda path: path.name)
def test_every_marketing_example_passes(path: Path) -> None:
    assert problems(yaml.safe_load(path.read_text(encoding="utf-8"))) == []


DATE = {"date": "contact.renews_at", "before": "3d"}
SEND = {"send": {"template": "abandoned_cart"}}
# Each mistake replaces some top-level fields of the shipped cart reminder (None: removes one).
MISTAKES: dict[str, dict[str, Any]] = {
    "a typo in a field": {"trigger": None, "trigerr": {"event": "cart_updated"}},
    "a typo inside the trigger": {"trigger": {"event": "cart_updated", "dealy": "1h"}},
    "a field at the wrong level": {"priority": None, "send": {"template": "abandoned_cart", "priority": 20}},
    "a number for a duration": {"trigger": {"event": "cart_updated", "delay": 60}},
    "a duration spelt out": {"max_lateness": "1 day"},
    "text for a priority": {"priority": "high"},
    "an unknown stage": {"stages": ["consideraton"]},
    "an unknown stage to move to": {"then": {"move_to": "checkout"}},
    "an unknown stage entered": {"trigger": {"stage_entered": "vip"}, "when": None},
    "no stage at all": {"stages": []},
    "an unknown operator": {"when": [{"event.total": {"gte_": 0}}]},
    "two operators in one condition": {"when": [{"event.total": {"gt": 0, "lt": 10}}]},
    "in without a list": {"when": [{"event.total": {"in": 5}}]},
    "a condition on no scope": {"when": [{"total": {"gt": 0}}]},
    "an event condition on a date trigger": {"trigger": DATE},
    "within on an event trigger": {
        "trigger": {"event": "cart_updated", "cancel_if": {"event": "order_placed", "within": "3d"}}
    },
    "a trigger of no kind": {"trigger": {"cancel_if": {"event": "order_placed"}}},
    "a rule id with capitals": {"id": "AbandonedCart"},
    "no template": {"send": {"coupon": {"percent_off": 10}}},
    "an unknown coupon fallback": {
        "send": {"template": "x", "coupon": {"pool": "spring", "when_empty": "wait"}}
    },
    "a discount over 100%": {"send": {"template": "x", "coupon": {"percent_off": 150}}},
    "both before and after": {"trigger": {**DATE, "after": "1d"}, "when": None},
    "a schedule and an interval": {"trigger": {"schedule": "0 9 * * mon", "every": "7d"}, "when": None},
    # The journeys issue's constructs: steps, goal, limit, variants, yearly, timezone, cancel_if
    # lists, history and tags.
    "a typo in a step": {"send": None, "steps": [SEND, {"dealy": "2d", **SEND}]},
    "a delay on the first step": {"send": None, "steps": [{"delay": "1h", **SEND}, {"delay": "2d", **SEND}]},
    "both send and steps": {"steps": [SEND]},
    "neither send nor steps": {"send": None},
    "a step without a send": {"send": None, "steps": [SEND, {"delay": "2d"}]},
    "no steps at all": {"send": None, "steps": []},
    "a typo in the goal": {"goal": {"evnt": "order_placed"}},
    "a goal without an event": {"goal": {"within": "7d"}},
    "a typo in the limit": {"limit": {"max": 1, "pr": "7d"}},
    "a limit of none": {"limit": {"max": 0, "per": "7d"}},
    "a limit without its span": {"limit": {"max": 1}},
    "a typo in a variant": {
        "send": {"variants": {"a": {"template": "x"}, "b": {"template": "y", "weigth": 30}}}
    },
    "one variant alone": {"send": {"variants": {"a": {"template": "x"}}}},
    "a variant named in capitals": {"send": {"variants": {"A": {"template": "x"}, "b": {"template": "y"}}}},
    "a template beside the variants": {
        "send": {"template": "x", "variants": {"a": {"template": "x"}, "b": {"template": "y"}}}
    },
    "a weight of nothing": {
        "send": {"variants": {"a": {"template": "x"}, "b": {"template": "y", "weight": 0}}}
    },
    "a variant without a template": {"send": {"variants": {"a": {"template": "x"}, "b": {"weight": 30}}}},
    "yearly spelt out": {"trigger": {**DATE, "yearly": "annually"}, "when": None},
    "a typo in yearly": {"trigger": {**DATE, "yeraly": True}, "when": None},
    "a time zone other than the contact's": {
        "trigger": {"schedule": "0 9 * * 1", "timezone": "Europe/London"},
        "when": None,
    },
    "a contact's time zone on an interval": {"trigger": {"every": "7d", "timezone": "contact"}, "when": None},
    "a typo in a cancel_if list": {
        "trigger": {"event": "cart_updated", "cancel_if": [{"event": "order_placed"}, {"evnt": "refund"}]}
    },
    "within in an event trigger's cancel_if list": {
        "trigger": {"event": "cart_updated", "cancel_if": [{"event": "order_placed", "within": "3d"}]}
    },
    "a typo in a history condition": {"when": [{"history": {"event": "order_placed", "withn": "90d"}}]},
    "a history condition without an event": {"when": [{"history": {"within": "90d"}}]},
    "a negative history count": {"when": [{"history": {"event": "order_placed", "count": {"gte": -1}}}]},
    "an unknown history count operator": {
        "when": [{"history": {"event": "order_placed", "count": {"atleast": 2}}}]
    },
    "a tags test that is not contains": {"when": [{"contact.tags": {"eq": "vip"}}]},
    "a tag in capitals": {"when": [{"contact.tags": {"contains": "VIP"}}]},
    "an event condition in a step of a date rule": {
        "trigger": DATE,
        "when": None,
        "send": None,
        "steps": [SEND, {"delay": "1d", "when": [{"event.total": {"gt": 0}}], **SEND}],
    },
}


def cart_with(changes: dict[str, Any]) -> dict[str, Any]:
    rule = {**yaml.safe_load(CART), **changes}
    return {key: value for key, value in rule.items() if value is not None}


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_check_refuses_the_schema_refuses_too(mistake: str, tmp_path: Path) -> None:
    rule = cart_with(MISTAKES[mistake])

    assert check_refuses(tmp_path, rule)
    assert problems(rule) != []


def test_the_schema_accepts_the_shorthands_check_accepts(tmp_path: Path) -> None:
    conditions = [
        {"event.total": {"gt": 0}},
        {"contact.locale": "vi"},
        {"contact.plan": ["Pro", "Business"]},
        {"contact.orders": {"not_in": [0]}},
        {"contact.vip": {"exists": True}},
    ]
    rule = cart_with({"when": conditions, "max_lateness": "1d 12h"})

    assert not check_refuses(tmp_path, rule)
    assert problems(rule) == []


# Each of the journeys issue's constructs, written as the docs show it, replacing top-level
# fields of the shipped cart reminder (None: removes one).
NEW_CONSTRUCTS: dict[str, dict[str, Any]] = {
    "a journey with a goal": {
        "send": None,
        "goal": {"event": "order_placed", "within": "3d"},
        "steps": [
            SEND,
            {"delay": "2d", **SEND},
            {"delay": "3d", "when": [{"contact.locale": "vi"}], "send": {"template": "x", "coupon": {}}},
        ],
    },
    "a first step with no delay": {"send": None, "steps": [{"delay": "0s", **SEND}]},
    "a limit": {"limit": {"max": 1, "per": "7d"}},
    "variants with a weight": {
        "send": {"variants": {"a": {"template": "x"}, "b": {"template": "y", "weight": 30}}}
    },
    "variants with a coupon": {
        "send": {
            "coupon": {"percent_off": 5},
            "variants": {
                "plain": {"template": "x"},
                "discount": {"template": "y", "coupon": {"percent_off": 10}},
            },
        }
    },
    "a yearly date": {"trigger": {"date": "contact.birthday", "yearly": True}, "when": None},
    "a schedule in the contact's zone": {
        "trigger": {"schedule": "0 9 * * 1", "timezone": "contact"},
        "when": None,
    },
    "a cancel_if list": {
        "trigger": {
            "event": "product_viewed",
            "cancel_if": [{"event": "cart_updated"}, {"event": "order_placed"}],
        }
    },
    "a date trigger's cancel_if list with within": {
        "trigger": {**DATE, "cancel_if": [{"event": "renewed", "within": "30d"}, {"event": "churned"}]},
        "when": None,
    },
    "history and tags": {
        "when": [
            {"history": {"event": "order_placed", "within": "90d", "count": {"gte": 2}}},
            {"history": {"event": "refund_issued", "count": 0}},
            {"history": {"event": "order_placed"}},
            {"contact.tags": {"contains": "vip"}},
            {"contact.tags": {"not_contains": ["churned", "test_account"]}},
        ]
    },
    "history and tags in a step of a schedule rule": {
        "trigger": {"schedule": "0 9 * * mon"},
        "when": None,
        "send": None,
        "steps": [
            SEND,
            {
                "delay": "1d",
                "when": [{"history": {"event": "x"}}, {"contact.tags": {"contains": "a"}}],
                **SEND,
            },
        ],
    },
}


@pytest.mark.parametrize("construct", NEW_CONSTRUCTS)
def test_the_schema_accepts_what_check_accepts_of_the_new_constructs(construct: str, tmp_path: Path) -> None:
    rule = cart_with(NEW_CONSTRUCTS[construct])

    assert not check_refuses(tmp_path, rule)
    assert problems(rule) == []


def test_a_typo_is_named_in_the_editors_message() -> None:
    found = problems(cart_with(MISTAKES["a typo in a field"]))

    assert any("'trigerr' was unexpected" in message for message in found), found


def test_the_schema_speaks_the_rule_files_words_not_the_codes() -> None:
    """Titles and descriptions are what an editor shows: no class names, no ISO 8601 'P30D'."""
    classes = {name for name, value in vars(model).items() if isinstance(value, type)}
    shown = [
        value
        for key, value in _walk(SCHEMA)
        if key in ("title", "description", "default") and isinstance(value, str)
    ]

    assert shown
    assert [text for text in shown if set(re.findall(r"\w+", text)) & classes] == []
    assert [text for text in shown if re.fullmatch(r"P(T?\d+[DHMS])+", text)] == []


def _walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)
