"""`automator rules` lists each rule with its conditions, priority and whether it runs;
`rules disable|enable ID` flip `enabled:` in the rule's file and change nothing else."""

from pathlib import Path


def test_the_listing_shows_conditions_priority_and_disabled_rules(cli, project_dir):
    cart = project_dir / "rules" / "abandoned_cart.yaml"
    cart.write_text(cart.read_text(encoding="utf-8") + "enabled: false\n", encoding="utf-8")
    line = next(line for line in cli("rules").stdout.splitlines() if line.startswith("abandoned_cart "))
    assert line.endswith("; when event.total > 0; priority 20; disabled")


def test_disable_adds_one_line_after_the_id_and_keeps_the_rest_byte_for_byte(cli, project_dir):
    cart = project_dir / "rules" / "abandoned_cart.yaml"
    before = cart.read_bytes()
    result = cli("rules", "disable", "abandoned_cart")
    assert result.exit_code == 0
    assert result.stdout.startswith(
        "disabled abandoned_cart: rules/abandoned_cart.yaml:3 now says enabled: false"
    )
    lines = before.split(b"\n")
    assert cart.read_bytes() == b"\n".join([*lines[:2], b"enabled: false", *lines[2:]])
    assert "abandoned_cart" not in [rule.id for rule in _running(cli, project_dir)]


def test_enable_changes_only_the_value_and_keeps_its_comment(cli, project_dir):
    cart = project_dir / "rules" / "abandoned_cart.yaml"
    text = cart.read_text(encoding="utf-8") + "enabled: false   # paused for the sale\n"
    cart.write_text(text, encoding="utf-8")
    assert cli("rules", "enable", "abandoned_cart").exit_code == 0
    assert cart.read_text(encoding="utf-8") == text.replace("enabled: false ", "enabled: true ")


def test_disable_then_enable_says_when_there_is_nothing_to_do(cli, project_dir):
    assert (
        cli("rules", "enable", "trial_ending").stdout
        == "trial_ending is already enabled (rules/trial_ending.yaml)\n"
    )
    cli("rules", "disable", "trial_ending")
    again = cli("rules", "disable", "trial_ending")
    assert again.stdout == "trial_ending is already disabled (rules/trial_ending.yaml)\n"


def test_an_unknown_id_is_a_clear_error(cli, project_dir):
    before = {path: path.read_bytes() for path in (project_dir / "rules").glob("*.yaml")}
    result = cli("rules", "disable", "abandoned_kart")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: no rule 'abandoned_kart' (rules: abandoned_cart, ")
    assert before == {path: path.read_bytes() for path in (project_dir / "rules").glob("*.yaml")}


def test_a_rule_in_flow_style_is_left_as_it_is_with_a_clear_error(cli, project_dir):
    flow = project_dir / "rules" / "flow.yaml"
    text = (
        "{id: flowrule, stages: [awareness], trigger: {event: signed_up}, send: {template: trial_ending}}\n"
    )
    flow.write_text(text, encoding="utf-8")

    result = cli("rules", "disable", "flowrule")

    assert result.exit_code == 1
    assert result.stderr == (
        "error: rules/flow.yaml: enabled: cannot be written in this file's layout; "
        "write `enabled: false` by hand\n"
    )
    assert flow.read_text(encoding="utf-8") == text
    assert cli("check").exit_code == 0


def test_crlf_files_keep_their_line_ends(cli, project_dir):
    cart = project_dir / "rules" / "abandoned_cart.yaml"
    cart.write_bytes(cart.read_bytes().replace(b"\n", b"\r\n"))
    cli("rules", "disable", "abandoned_cart")
    assert b"\nenabled: false\r\n" in cart.read_bytes()
    assert b"\n" not in cart.read_bytes().replace(b"\r\n", b"")


def _running(cli, project_dir: Path):
    from automator.project import load_project

    return load_project(project_dir).rules
