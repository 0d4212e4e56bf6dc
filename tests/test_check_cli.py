"""`automator check`: every rule file, journey.yaml and every template a rule uses, with one
readable line per problem; and `--help` on the commands."""

from pathlib import Path

import pytest

ALL_STAGES = "stages are awareness, consideration, conversion, retention, loyalty"


def edit(path: Path, old: str, new: str) -> int:
    """Replace the one occurrence of `old` in a copied project file; return its line number."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


@pytest.fixture
def cart_rule(project_dir: Path) -> Path:
    return project_dir / "rules" / "abandoned_cart.yaml"


def lines(result) -> list[str]:
    return result.stdout.splitlines()


def test_a_good_project_checks_ok(cli):
    result = cli("check")
    assert (result.exit_code, result.stdout) == (0, "ok: 4 rules\n")


def test_a_word_duration_points_at_its_line_and_shows_the_short_forms(cli, cart_rule):
    line = edit(cart_rule, "delay: 1h", "delay: 1 hour")
    result = cli("check")
    assert result.exit_code == 1
    assert (
        f'rules/abandoned_cart.yaml:{line}: trigger.delay: "1 hour" is not a duration (use 1h, 30m, 3d)'
        in lines(result)
    )


def test_an_unknown_field_suggests_the_closest_name(cli, cart_rule):
    line = edit(cart_rule, "priority: 20", "priorty: 20")
    result = cli("check")
    assert result.exit_code == 1
    assert f"rules/abandoned_cart.yaml:{line}: priorty: unknown field (did you mean 'priority'?)" in lines(
        result
    )


def test_an_unknown_nested_field_names_its_full_path(cli, cart_rule):
    line = edit(cart_rule, "latest_per: cart_id", "latest_pr: cart_id")
    result = cli("check")
    assert result.exit_code == 1
    assert (
        f"rules/abandoned_cart.yaml:{line}: trigger.latest_pr: unknown field (did you mean 'latest_per'?)"
        in lines(result)
    )


def test_an_unknown_stage_suggests_the_closest_and_lists_the_journey(cli, cart_rule):
    line = edit(cart_rule, "stages: [consideration, conversion]", "stages: [consideration, convertion]")
    result = cli("check")
    assert result.exit_code == 1
    assert (
        f"rules/abandoned_cart.yaml:{line}: stages.1: unknown stage 'convertion' "
        f"(did you mean 'conversion'?); {ALL_STAGES}" in lines(result)
    )


def test_moving_a_contact_to_an_unknown_stage_is_reported(cli, cart_rule):
    line = edit(cart_rule, "move_to: conversion", "move_to: checkout")
    result = cli("check")
    assert result.exit_code == 1
    assert f"rules/abandoned_cart.yaml:{line}: then.move_to: unknown stage 'checkout'; {ALL_STAGES}" in lines(
        result
    )


def test_a_template_that_does_not_exist_is_named_with_the_rule_line(cli, cart_rule):
    line = edit(cart_rule, "template: abandoned_cart", "template: abandoned_kart")
    result = cli("check")
    assert (result.exit_code, lines(result)) == (
        1,
        [
            f"rules/abandoned_cart.yaml:{line}: send.template: template 'abandoned_kart' does not exist "
            "(no folder email_templates/abandoned_kart/)"
        ],
    )


def test_a_template_that_does_not_parse_names_the_template_file_and_line(cli, project_dir):
    body = project_dir / "email_templates" / "abandoned_cart" / "body.txt"
    line = edit(body, "Total: {{ event.total|money(event.currency) }}", "Total: {{ event.total }")
    result = cli("check")
    assert (result.exit_code, lines(result)) == (
        1,
        [f"email_templates/abandoned_cart/body.txt:{line}: unexpected '}}'"],
    )


def test_a_broken_locale_variant_is_checked_too(cli, project_dir):
    body = project_dir / "email_templates" / "trial_ending" / "body.vi.txt"
    body.write_text("Chào {{ contact.first_name }\n", encoding="utf-8")
    result = cli("check")
    assert lines(result) == ["email_templates/trial_ending/body.vi.txt:1: unexpected '}'"]


def test_a_shared_layout_that_does_not_parse_is_reported(cli, project_dir):
    layout = project_dir / "email_templates" / "_layout.html"
    line = edit(layout, '<html lang="{{ locale }}">', '<html lang="{{ locale }">')
    result = cli("check")
    assert (result.exit_code, lines(result)) == (1, [f"email_templates/_layout.html:{line}: unexpected '}}'"])


def test_a_missing_template_part_is_reported(cli, project_dir):
    (project_dir / "email_templates" / "renewal_offer" / "subject.txt").unlink()
    result = cli("check")
    assert (result.exit_code, lines(result)) == (1, ["email_templates/renewal_offer/subject.txt: missing"])


def test_a_yaml_syntax_error_gives_the_line(cli, cart_rule):
    line = edit(cart_rule, "  latest_per: cart_id", " latest_per: cart_id")
    result = cli("check")
    assert result.exit_code == 1
    assert (
        f"rules/abandoned_cart.yaml:{line}: not valid YAML: expected <block end>, "
        "but found '<block mapping start>'" in lines(result)
    )


def test_a_broken_rule_does_not_stop_the_others_from_loading(cli, cart_rule):
    edit(cart_rule, "delay: 1h", "delay: 1 hour")
    assert cli("check").exit_code == 1
    listed = [line.split()[0] for line in lines(cli("rules"))]
    assert listed == ["post_purchase_thank_you", "renewal_offer", "trial_ending"]


def test_check_reports_only_the_broken_rule(cli, cart_rule):
    line = edit(cart_rule, "delay: 1h", "delay: 1 hour")
    assert lines(cli("check")) == [
        f'rules/abandoned_cart.yaml:{line}: trigger.delay: "1 hour" is not a duration (use 1h, 30m, 3d)'
    ]


def test_a_template_problem_in_one_rule_leaves_the_other_rules_clean(cli, project_dir):
    (project_dir / "email_templates" / "renewal_offer" / "body.html").write_text("{% if %}", encoding="utf-8")
    result = cli("check")
    assert [line.split(":")[0] for line in lines(result)] == ["email_templates/renewal_offer/body.html"]


def test_every_problem_is_listed_not_just_the_first(cli, project_dir, cart_rule):
    edit(cart_rule, "template: abandoned_cart", "template: abandoned_kart")
    (project_dir / "email_templates" / "renewal_offer" / "body.html").write_text("{% if %}", encoding="utf-8")
    result = cli("check")
    assert len(lines(result)) == 2


def test_a_rule_with_several_mistakes_gets_them_all_in_one_run_in_line_order(cli, cart_rule):
    stages = edit(cart_rule, "stages: [consideration, conversion]", "stages: [consideration, convertion]")
    delay = edit(cart_rule, "delay: 1h", "delay: 1 hour")
    move = edit(cart_rule, "move_to: conversion", "move_to: checkout")
    result = cli("check")
    assert result.exit_code == 1
    assert lines(result) == [
        f"rules/abandoned_cart.yaml:{stages}: stages.1: unknown stage 'convertion' "
        f"(did you mean 'conversion'?); {ALL_STAGES}",
        f'rules/abandoned_cart.yaml:{delay}: trigger.delay: "1 hour" is not a duration (use 1h, 30m, 3d)',
        f"rules/abandoned_cart.yaml:{move}: then.move_to: unknown stage 'checkout'; {ALL_STAGES}",
    ]


def test_an_unknown_stage_in_the_journey_is_reported(cli, project_dir):
    edit(project_dir / "rules" / "journey.yaml", "order_placed: retention", "order_placed: retension")
    result = cli("check")
    assert result.exit_code == 1
    assert any(
        line.startswith("rules/journey.yaml:")
        and "moves.order_placed: unknown stage 'retension' (did you mean 'retention'?)" in line
        for line in lines(result)
    )


def test_an_unknown_stage_in_the_journey_points_at_the_move(cli, project_dir):
    journey = project_dir / "rules" / "journey.yaml"
    line = edit(journey, "order_placed: retention", "order_placed: retension")
    expected = f"rules/journey.yaml:{line}: moves.order_placed: unknown stage 'retension'"
    assert any(shown.startswith(expected) for shown in lines(cli("check")))


def test_a_journey_yaml_syntax_error_gives_the_line(cli, project_dir):
    journey = project_dir / "rules" / "journey.yaml"
    line = edit(journey, "  signed_up: consideration", "  signed_up: [consideration")
    result = cli("check")
    assert result.exit_code == 1
    assert [text for text in lines(result) if text.startswith("rules/journey.yaml:")] == [
        f"rules/journey.yaml:{line + 1}: not valid YAML: expected ',' or ']', but got ':'"
    ]


def test_check_never_shows_a_traceback(cli, cart_rule):
    cart_rule.write_text("id: [\n", encoding="utf-8")
    result = cli("check")
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_a_bad_setting_is_one_readable_line(cli, project_dir):
    edit(project_dir / "automator.toml", 'timezone = "Asia/Ho_Chi_Minh"', 'timezone = "Asia/Saigon City"')
    result = cli("check")
    assert (result.exit_code, result.stderr) == (
        1,
        "error: automator.toml or environment: timezone: unknown time zone 'Asia/Saigon City' "
        "(use an IANA name such as Asia/Ho_Chi_Minh)\n",
    )


def test_the_main_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("check", "contacts", "events", "suppressions", "coupons", "tick", "queue", "preview"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        (["check"], "Validate every rule file"),
        (["contacts", "import"], ".csv"),
        (["contacts", "show"], "stage and its history"),
        (["events", "import"], ".jsonl"),
        (["queue", "hold"], "--reason"),
        (["queue", "list"], "--status"),
        (["preview"], "--contact"),
        (["suppressions", "add"], "unsubscribed"),
        (["coupons", "import"], "code"),
    ],
)
def test_every_command_explains_itself_with_help(cli, command, mentions):
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert mentions in result.stdout
