"""Loading rule files: every field checked, every problem named by file, line and field."""

from datetime import timedelta
from pathlib import Path
from textwrap import dedent

import pytest

from automator.journey import Journey, load_journey
from automator.model import Condition, DateTrigger, EventTrigger
from automator.rules import describe_trigger, load_rules, rule_files

CART_RULE = dedent(
    """\
    id: cart
    stages: [consideration]
    trigger:
      event: cart_updated
      delay: 1h
    send:
      template: abandoned_cart
    """
)


def write_rule(root: Path, name: str, text: str) -> Path:
    rules = root / "rules"
    rules.mkdir(exist_ok=True)
    path = rules / name
    path.write_text(dedent(text), encoding="utf-8")
    return path


def load(root: Path, journey: Journey | None = None):
    return load_rules(root / "rules", journey or Journey(), root)


def only_error(root: Path):
    ruleset = load(root)
    assert len(ruleset.errors) == 1, ruleset.errors
    return ruleset.errors[0]


def test_the_shipped_rules_all_load(project):
    assert project.ruleset.errors == []
    assert sorted(rule.id for rule in project.ruleset.rules) == [
        "abandoned_cart",
        "post_purchase_thank_you",
        "renewal_offer",
        "trial_ending",
    ]


def test_durations_in_a_rule_are_parsed_once_at_load_time(project):
    rule = project.rule("abandoned_cart")
    assert isinstance(rule.trigger, EventTrigger)
    assert rule.trigger.delay == timedelta(hours=1)
    assert rule.lateness == timedelta(days=1)


def test_a_date_trigger_before_the_date_has_a_negative_offset(project):
    trigger = project.rule("renewal_offer").trigger
    assert isinstance(trigger, DateTrigger)
    assert (trigger.attribute, trigger.offset) == ("renews_at", -timedelta(days=30))


def test_triggers_are_described_in_one_readable_line(project):
    assert describe_trigger(project.rule("abandoned_cart")) == (
        "1h after cart_updated (latest per cart_id), cancelled by order_placed"
    )
    assert describe_trigger(project.rule("renewal_offer")) == "30d before contact.renews_at"


def test_journey_yaml_is_not_read_as_a_rule(project_dir):
    names = [path.name for path in rule_files(project_dir / "rules")]
    assert "journey.yaml" not in names
    assert "abandoned_cart.yaml" in names


def test_a_rule_error_names_the_file_line_and_field(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("delay: 1h", "delay: soon"))
    error = only_error(tmp_path)
    assert (error.file, error.line, error.field) == ("rules/cart.yaml", 5, "trigger.delay")
    assert error.message == '"soon" is not a duration (use 1h, 30m, 3d)'


def test_every_problem_in_one_file_is_reported(tmp_path):
    text = CART_RULE.replace("delay: 1h", "delay: soon").replace("id: cart", "id: cart\npriorty: 3")
    write_rule(tmp_path, "cart.yaml", text)
    errors = load(tmp_path).errors
    assert sorted(str(error) for error in errors) == [
        "rules/cart.yaml:2: priorty: unknown field (did you mean 'priority'?)",
        'rules/cart.yaml:6: trigger.delay: "soon" is not a duration (use 1h, 30m, 3d)',
    ]


def test_a_misspelt_nested_field_suggests_the_right_one(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("template:", "templte:"))
    errors = [str(error) for error in load(tmp_path).errors]
    assert "rules/cart.yaml:7: send.templte: unknown field (did you mean 'template'?)" in errors


def test_a_field_unlike_any_other_gets_no_suggestion(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE + "colour: red\n")
    assert str(only_error(tmp_path)) == "rules/cart.yaml:8: colour: unknown field"


def test_a_trigger_must_say_what_kind_it_is(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("event: cart_updated", "evnt: cart_updated"))
    assert str(only_error(tmp_path)) == (
        "rules/cart.yaml:3: trigger: a trigger needs one of: event, date, stage_entered, schedule, every"
    )


def test_a_required_field_that_is_missing_is_named(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("stages: [consideration]\n", ""))
    error = only_error(tmp_path)
    assert (error.field, error.message) == ("stages", "is required")


def test_a_date_trigger_must_name_a_contact_attribute(tmp_path):
    write_rule(
        tmp_path,
        "renewal.yaml",
        """\
        id: renewal
        stages: [retention]
        trigger:
          date: renews_at
          before: 30d
        send:
          template: renewal_offer
        """,
    )
    error = only_error(tmp_path)
    assert (error.line, error.field) == (4, "trigger.date")
    assert error.message == '"renews_at" must name a contact attribute, e.g. contact.renews_at'


def test_a_date_trigger_takes_before_or_after_not_both(tmp_path):
    write_rule(
        tmp_path,
        "renewal.yaml",
        """\
        id: renewal
        stages: [retention]
        trigger:
          date: contact.renews_at
          before: 30d
          after: 1d
        send:
          template: renewal_offer
        """,
    )
    assert str(only_error(tmp_path)) == "rules/renewal.yaml:3: trigger: give either before or after, not both"


def test_conditions_are_read_from_the_short_form(tmp_path):
    write_rule(
        tmp_path, "cart.yaml", CART_RULE + "when:\n  - event.total: {gte: 100}\n  - contact.plan: pro\n"
    )
    (rule,) = load(tmp_path).rules
    assert rule.when == [
        Condition(field="event.total", op="gte", value=100),
        Condition(field="contact.plan", op="eq", value="pro"),
    ]


def test_an_unknown_condition_operator_lists_the_known_ones(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE + "when:\n  - event.total: {bigger: 100}\n")
    assert str(only_error(tmp_path)) == (
        "rules/cart.yaml:9: when.0: condition 1: unknown operator 'bigger' "
        "(use one of eq, ne, gt, gte, lt, lte, in, not_in, exists)"
    )


def test_an_in_condition_needs_a_list(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE + "when:\n  - contact.plan: {in: pro}\n")
    assert only_error(tmp_path).message == "condition 1: in needs a list"


def test_a_condition_must_test_a_contact_or_event_field(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE + "when:\n  - order.total: 5\n")
    expected = 'condition 1: "order.total" must be contact.<field>, event.<field> or history'
    assert only_error(tmp_path).message == expected


def test_only_event_triggers_may_test_event_properties(tmp_path):
    write_rule(
        tmp_path,
        "renewal.yaml",
        """\
        id: renewal
        stages: [retention]
        trigger:
          date: contact.renews_at
          before: 30d
        when:
          - event.total: {gt: 0}
        send:
          template: renewal_offer
        """,
    )
    error = only_error(tmp_path)
    assert error.message == "condition 1: event.total: only event triggers can test event properties"
    assert (error.line, error.field) == (7, "when.0")


def test_an_unknown_stage_suggests_the_closest_one(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("[consideration]", "[considration]"))
    assert str(only_error(tmp_path)) == (
        "rules/cart.yaml:2: stages.0: unknown stage 'considration' (did you mean 'consideration'?); "
        "stages are awareness, consideration, conversion, retention, loyalty"
    )


def test_stages_come_from_the_projects_journey(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("[consideration]", "[lead]"))
    journey = Journey(stages=("visitor", "lead", "customer"))
    ruleset = load(tmp_path, journey)
    assert (ruleset.errors, [rule.id for rule in ruleset.rules]) == ([], ["cart"])


def test_a_move_to_an_unknown_stage_is_an_error(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE + "then:\n  move_to: buyer\n")
    error = only_error(tmp_path)
    assert (error.line, error.field) == (9, "then.move_to")
    assert error.message.startswith("unknown stage 'buyer'")


def test_a_second_rule_with_the_same_id_is_refused_and_the_first_kept(tmp_path):
    write_rule(tmp_path, "a_cart.yaml", CART_RULE)
    write_rule(tmp_path, "b_cart.yaml", CART_RULE)
    ruleset = load(tmp_path)
    assert [rule.file for rule in ruleset.rules] == ["rules/a_cart.yaml"]
    assert [str(error) for error in ruleset.errors] == [
        "rules/b_cart.yaml:1: id: 'cart' is already used by rules/a_cart.yaml"
    ]


def test_a_file_that_is_not_a_mapping_is_an_error(tmp_path):
    write_rule(tmp_path, "cart.yaml", "- id: cart\n")
    assert str(only_error(tmp_path)) == "rules/cart.yaml:1: a rule file must be a mapping of fields"


def test_an_empty_rule_file_is_an_error(tmp_path):
    write_rule(tmp_path, "cart.yaml", "# nothing yet\n")
    assert only_error(tmp_path).message == "a rule file must be a mapping of fields"


def test_a_rule_id_must_be_a_lowercase_identifier(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE.replace("id: cart", "id: Cart-Reminder"))
    error = only_error(tmp_path)
    assert (error.line, error.field) == (1, "id")
    assert '"Cart-Reminder" is not allowed here' in error.message


def test_a_broken_file_does_not_stop_the_next_one(tmp_path):
    write_rule(tmp_path, "a_broken.yaml", "id: [\n")
    write_rule(tmp_path, "b_cart.yaml", CART_RULE)
    ruleset = load(tmp_path)
    assert [rule.id for rule in ruleset.rules] == ["cart"]
    assert [error.file for error in ruleset.errors] == ["rules/a_broken.yaml"]


def test_the_journey_file_gives_stages_and_forward_moves(project_dir):
    journey = load_journey(project_dir / "rules", project_dir)
    assert journey.stages[0] == "awareness"
    assert journey.move_for("order_placed", "consideration") == "retention"


def test_events_never_move_a_contact_backwards(project_dir):
    journey = load_journey(project_dir / "rules", project_dir)
    assert journey.move_for("cart_updated", "loyalty") is None
    assert journey.move_for("cart_updated", "consideration") is None


def test_without_a_journey_file_the_default_stages_apply(tmp_path):
    (tmp_path / "rules").mkdir()
    journey = load_journey(tmp_path / "rules", tmp_path)
    assert journey.stages == ("awareness", "consideration", "conversion", "retention", "loyalty")
    assert journey.moves == {}


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_both_yaml_suffixes_are_rule_files(tmp_path, suffix):
    write_rule(tmp_path, f"cart{suffix}", CART_RULE)
    assert [rule.id for rule in load(tmp_path).rules] == ["cart"]


def test_a_list_in_the_shorthand_means_one_of(tmp_path):
    write_rule(tmp_path, "cart.yaml", CART_RULE + "when:\n  - contact.plan: [pro, business]\n")
    rule = load_rules(tmp_path / "rules", Journey(), tmp_path).rules[0]
    assert (rule.when[0].op, rule.when[0].value) == ("in", ["pro", "business"])


def test_cancel_if_within_is_refused_on_an_event_trigger(tmp_path):
    write_rule(
        tmp_path,
        "cart.yaml",
        CART_RULE.replace("  delay: 1h", "  delay: 1h\n  cancel_if: {event: order_placed, within: 1d}"),
    )
    assert "within applies to date triggers only" in only_error(tmp_path).message


NEVER = {
    "0 9 31 4 *": "April has 30 days",
    "0 9 30 2 *": "February has at most 29 days",
    "0 9 31 apr,jun *": "April and June have 30 days",
    "0 9 30-31 2 1": "February has at most 29 days",  # a weekday must match as well, not instead
}


@pytest.mark.parametrize(("schedule", "why"), NEVER.items(), ids=NEVER.keys())
def test_a_schedule_on_a_day_no_month_has_is_refused(tmp_path, schedule, why):
    write_rule(
        tmp_path,
        "yearly.yaml",
        CART_RULE.replace("  event: cart_updated\n  delay: 1h\n", f'  schedule: "{schedule}"\n'),
    )
    error = only_error(tmp_path)
    assert (error.field, error.message) == ("trigger.schedule", f'"{schedule}" never fires ({why})')


@pytest.mark.parametrize(
    "schedule", ["0 9 29 2 *", "0 9 29 2 mon", "0 9 30 2,4 *", "0 9 31 */2 *", "0 9 last 2 *"]
)
def test_a_schedule_that_fires_some_year_loads(tmp_path, schedule):
    write_rule(
        tmp_path,
        "yearly.yaml",
        CART_RULE.replace("  event: cart_updated\n  delay: 1h\n", f'  schedule: "{schedule}"\n'),
    )
    assert load(tmp_path).errors == []


def test_a_schedule_trigger_needs_a_valid_crontab_line(tmp_path):
    write_rule(
        tmp_path,
        "weekly.yaml",
        CART_RULE.replace("  event: cart_updated\n  delay: 1h\n", '  schedule: "0 9 * mon"\n'),
    )
    assert "is not a crontab line" in only_error(tmp_path).message
