"""`automator check` reports every problem in one run: settings, the journey file, rule
files, templates and the templates of rules that do not load; warnings with --store. No
message names an internal class."""

import re
from pathlib import Path

import pytest

from automator.errors import RuleError
from automator.journey import Journey
from automator.model import Rule
from automator.rules import RuleErrors, load_rule


def edit(path: Path, old: str, new: str) -> int:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def test_settings_journey_rules_and_templates_are_reported_together(cli, project_dir):
    toml = edit(
        project_dir / "automator.toml", 'timezone = "Asia/Ho_Chi_Minh"', 'timezone = "Asia/Saigon City"'
    )
    journey = edit(
        project_dir / "rules" / "journey.yaml", "order_placed: retention", "order_placed: retension"
    )
    delay = edit(project_dir / "rules" / "abandoned_cart.yaml", "delay: 1h", "delay: 1 hour")
    body = edit(
        project_dir / "email_templates" / "trial_ending" / "body.txt",
        "contact.first_name",
        "contact.frist_name",
    )
    result = cli("check")
    assert result.exit_code == 1
    assert [line.split(": ")[0] + ": " + line.split(": ")[1] for line in result.stdout.splitlines()] == [
        f"automator.toml:{toml}: timezone",
        f"rules/journey.yaml:{journey}: moves.order_placed",
        f"rules/abandoned_cart.yaml:{delay}: trigger.delay",
        f"email_templates/trial_ending/body.txt:{body}: contact.frist_name",
    ]


def test_a_missing_template_is_reported_with_the_rules_typos(cli, project_dir):
    cart = project_dir / "rules" / "abandoned_cart.yaml"
    delay = edit(cart, "delay: 1h", "delay: 1 hour")
    template = edit(cart, "template: abandoned_cart", "template: abandoned_kart")
    assert cli("check").stdout.splitlines() == [
        f'rules/abandoned_cart.yaml:{delay}: trigger.delay: "1 hour" is not a duration (use 1h, 30m, 3d)',
        f"rules/abandoned_cart.yaml:{template}: send.template: template 'abandoned_kart' does not exist "
        "(no folder email_templates/abandoned_kart/)",
    ]


def test_every_bad_setting_is_reported_at_its_line(cli, project_dir):
    toml = project_dir / "automator.toml"
    per = edit(toml, 'per = "24h"', 'per = "1 day"')
    start = edit(toml, 'start = "21:00"', 'start = "25:00"')
    result = cli("check")
    assert result.exit_code == 1
    assert {line.split(": must")[0].split(': "')[0] for line in result.stdout.splitlines()} == {
        f"automator.toml:{per}: frequency_cap.per",
        f"automator.toml:{start}: quiet_hours.start",
    }


def test_a_value_from_the_environment_names_its_variable(cli, monkeypatch):
    monkeypatch.setenv("AUTOMATOR_TIMEZONE", "Mars/Olympus")
    result = cli("check")
    assert result.stdout.startswith("environment: AUTOMATOR_TIMEZONE: unknown time zone 'Mars/Olympus'")


def test_a_broken_journey_does_not_make_every_stage_unknown(cli, project_dir):
    (project_dir / "rules" / "journey.yaml").write_text("stages: [a, b\n", encoding="utf-8")
    lines = cli("check").stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rules/journey.yaml:2: not valid YAML")


def test_every_journey_problem_is_listed(cli, project_dir):
    journey = project_dir / "rules" / "journey.yaml"
    edit(journey, "order_placed: retention", "order_placed: retension")
    edit(journey, "signed_up: consideration", "signed_up: considerashun")
    assert len(cli("check").stdout.splitlines()) == 2


def test_a_bad_history_condition_does_not_hide_the_conditions_after_it(cli, project_dir):
    line = edit(
        project_dir / "rules" / "abandoned_cart.yaml",
        "  - event.total: {gt: 0}",
        "  - history: {event: order_placed, count: {gte: -1}}\n"
        "  - event.total: {bigger: 0}\n"
        "  - contact.tags: {has: vip}",
    )
    assert cli("check").stdout.splitlines() == [
        f"rules/abandoned_cart.yaml:{line}: when.0: condition 1: history: count compares with a whole "
        "number, 0 or more",
        f"rules/abandoned_cart.yaml:{line + 1}: when.1: condition 2: unknown operator 'bigger' (use one "
        "of eq, ne, gt, gte, lt, lte, in, not_in, exists)",
        f"rules/abandoned_cart.yaml:{line + 2}: when.2: condition 3: contact.tags takes contains or "
        "not_contains, e.g. {contains: vip}",
    ]


def test_every_bad_condition_of_a_step_is_reported_at_its_own_line(cli, project_dir):
    line = edit(
        project_dir / "rules" / "abandoned_cart.yaml",
        "send:\n  template: abandoned_cart",
        "steps:\n"
        "  - send: {template: abandoned_cart}\n"
        "  - delay: 1d\n"
        "    send: {template: abandoned_cart}\n"
        "    when:\n"
        "      - history: {event: order_placed, times: 2}\n"
        "      - contact.plan: {in: pro}",
    )
    assert cli("check").stdout.splitlines() == [
        f"rules/abandoned_cart.yaml:{line + 5}: steps.1.when.0: condition 1: history: unknown field "
        "'times' (use event, within, count)",
        f"rules/abandoned_cart.yaml:{line + 6}: steps.1.when.1: condition 2: in needs a list",
    ]


def test_every_event_condition_of_a_date_rule_is_reported_with_its_other_mistakes(cli, project_dir):
    line = edit(
        project_dir / "rules" / "renewal_offer.yaml",
        "send:\n",
        "when:\n  - event.total: {gt: 0}\n  - contact.plan: {bigger: 1}\n  - event.currency: VND\nsend:\n",
    )
    assert cli("check").stdout.splitlines() == [
        f"rules/renewal_offer.yaml:{line + 1}: when.0: condition 1: event.total: only event triggers "
        "can test event properties",
        f"rules/renewal_offer.yaml:{line + 2}: when.1: condition 2: unknown operator 'bigger' (use one "
        "of eq, ne, gt, gte, lt, lte, in, not_in, exists)",
        f"rules/renewal_offer.yaml:{line + 3}: when.2: condition 3: event.currency: only event triggers "
        "can test event properties",
    ]


def test_warnings_alone_exit_zero(cli, project_dir, make_contact):
    make_contact("lan@example.com", plan="pro")
    cart = project_dir / "rules" / "abandoned_cart.yaml"
    line = edit(
        cart,
        "  - event.total: {gt: 0}",
        "  - event.total: {gt: 0}\n  - contact.plan: gold\n  - contact.tier: a",
    )
    result = cli("check", "--store")
    assert (result.exit_code, result.stdout.splitlines()) == (
        0,
        [
            f"warning: rules/abandoned_cart.yaml:{line + 1}: when.1: no contact has plan 'gold'",
            f"warning: rules/abandoned_cart.yaml:{line + 2}: when.2: no contact has attribute 'tier'",
            "ok: 4 rules",
        ],
    )


WRONG_VALUES = [{"x": 1}, [1, 2], "text", 3, True, None, [{"x": 1}]]


def _fields(model: type, prefix: str = "") -> list[str]:
    """Every field path of the rule model, one level into nested models."""
    paths = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        paths.append(prefix + name)
    return paths


@pytest.mark.parametrize("wrong", WRONG_VALUES, ids=[repr(value) for value in WRONG_VALUES])
def test_no_error_names_an_internal_class(tmp_path, wrong):
    """Each field of a rule (and of its send, trigger, goal, limit, then) given a wrong type."""
    base = {
        "id": "r",
        "stages": ["consideration"],
        "trigger": {"event": "e", "delay": "1h", "cancel_if": {"event": "o"}},
        "send": {"template": "t", "coupon": {"prefix": "A", "percent_off": 5}},
        "goal": {"event": "o"},
        "limit": {"max": 1, "per": "7d"},
        "then": {"tag": "x"},
    }
    internal = re.compile(r"\b(" + "|".join(_class_names()) + r")\b")
    for section, fields in [("", _fields(Rule)), *((name, list(base[name])) for name in _nested(base))]:
        for name in fields:
            data = _with(base, section, name, wrong)
            messages = _errors(tmp_path, data)
            for message in messages:
                assert not internal.search(message), f"{section}.{name} = {wrong!r}: {message}"


def _nested(base: dict) -> list[str]:
    return [name for name, value in base.items() if isinstance(value, dict)]


def _with(base: dict, section: str, name: str, wrong: object) -> dict:
    data = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    (data[section] if section else data)[name] = wrong
    return data


def _errors(tmp_path: Path, data: dict) -> list[str]:
    import yaml

    path = tmp_path / "rule.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        load_rule(path, Journey(), "rule.yaml")
    except RuleErrors as exc:
        return [str(error) for error in exc.errors]
    except RuleError as exc:
        return [str(exc)]
    return []


def _class_names() -> list[str]:
    from automator import model, model_conditions, model_sends

    names = set()
    for module in (model, model_sends, model_conditions):
        names |= {
            name for name, value in vars(module).items() if isinstance(value, type) and name[0].isupper()
        }
    return sorted(names - {"Any", "Literal", "Annotated", "BaseModel", "Field", "Tag"})


def test_an_unknown_setting_suggests_the_closest(cli, project_dir):
    toml = project_dir / "automator.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8") + '\n[contacts]\nattribute = ["plan"]\n', encoding="utf-8"
    )
    line = len(toml.read_text(encoding="utf-8").splitlines())
    assert cli("check").stdout == (
        f"automator.toml:{line}: contacts.attribute: unknown setting (did you mean 'attributes'?)\n"
    )


def test_a_stage_listed_twice_in_the_journey_is_reported_once_at_its_field(cli, project_dir):
    journey = project_dir / "rules" / "journey.yaml"
    edit(journey, "retention, loyalty]", "retention, retention, loyalty]")
    result = cli("check")
    assert result.exit_code == 1
    assert [line.split(": ", 1)[1] for line in result.stdout.splitlines()] == [
        "stages: a stage is listed twice"
    ]


def test_a_journey_that_does_not_validate_still_names_its_moves_to_unknown_stages(cli, project_dir):
    journey = project_dir / "rules" / "journey.yaml"
    edit(journey, "retention, loyalty]", "retention, retention, loyalty]")
    edit(journey, "order_placed: retention", "order_placed: retension")
    edit(journey, "signed_up: consideration", "signed_up: [consideration]")

    result = cli("check")

    assert result.exit_code == 1
    assert [line.split(": ", 1)[1] for line in result.stdout.splitlines()] == [
        "stages: a stage is listed twice",
        "moves.signed_up: must be a valid string",
        "moves.order_placed: unknown stage 'retension' (did you mean 'retention'?)",
    ]
