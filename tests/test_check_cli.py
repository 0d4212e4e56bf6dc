"""`automator check`: every rule file, journey.yaml and every template a rule uses, with one
readable line per problem; and `--help` on the commands."""

import subprocess
import sys
from pathlib import Path
from string import Template

import pytest

SCRIPT = Path(sys.executable).with_name("automator")
AUTOMATOR = (
    [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-c", "from automator.cli import app; app()"]
)
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


CART = "rules/abandoned_cart.yaml"

# One mistake in a copied project file, and all that `check` prints for it: the file, the line
# ($line: where the mistake is; $next_line: the line after it), the field and what is wrong.
MISTAKES = {
    "a word duration points at its line and shows the short forms": (
        CART, "delay: 1h", "delay: 1 hour",
        f'{CART}:$line: trigger.delay: "1 hour" is not a duration (use 1h, 30m, 3d)',
    ),
    "a duration beyond a hundred years is refused at its line": (
        CART, "delay: 1h", "delay: 1000000000d",
        f'{CART}:$line: trigger.delay: "1000000000d" is too long: at most 36525d (a hundred years)',
    ),
    "a priority beyond any rank is refused at its line": (
        CART, "priority: 20", "priority: 9223372036854775808",
        f"{CART}:$line: priority: must be at most 1000000",
    ),
    "a rule's name with a line break is refused": (
        CART, "name: Abandoned cart reminder", 'name: "Abandoned cart\\r\\nBcc: x@evil.test"',
        f"{CART}:$line: name: holds a control character or line break "
        "(Abandoned cart\\r\\nBcc: x@evil.test); a name is one line",
    ),
    "a raw control character in a rule file gives its line": (
        CART, "name: Abandoned cart reminder", "name: Abandoned \x1b[2Jcart reminder",
        f"{CART}:$line: not valid YAML: holds a character YAML does not allow (\\x1b)",
    ),
    "an unknown field suggests the closest name": (
        CART, "priority: 20", "priorty: 20",
        f"{CART}:$line: priorty: unknown field (did you mean 'priority'?)",
    ),
    "an unknown nested field names its full path": (
        CART, "latest_per: cart_id", "latest_pr: cart_id",
        f"{CART}:$line: trigger.latest_pr: unknown field (did you mean 'latest_per'?)",
    ),
    "a date trigger's field beside an event says which triggers take it": (
        CART, "delay: 1h", "delay: 1h\n  yearly: true",
        f"{CART}:$next_line: trigger.yearly: not allowed with trigger.event; yearly belongs to date "
        "triggers (a trigger has one of event, date, stage_entered, schedule or every)",
    ),
    "a field of another part of a rule never suggests itself": (
        CART, "template: abandoned_cart", "template: abandoned_cart\n  delay: 1h",
        f"{CART}:$next_line: send.delay: unknown field here (delay is a field of event trigger, "
        "stage trigger, step)",
    ),
    "a journey without steps says it needs one": (
        CART, "send:\n  template: abandoned_cart", "steps: []",
        f"{CART}:$line: steps: a journey needs at least one step, e.g. [{{send: {{template: welcome_1}}}}]",
    ),
    "a rule without stages says it needs one": (
        CART, "stages: [consideration, conversion]", "stages: []",
        f"{CART}:$line: stages: a rule targets at least one stage, e.g. [consideration]",
    ),
    "a schedule on a day the month does not have never fires": (
        "rules/renewal_offer.yaml", "  date: contact.renews_at\n  before: 30d", '  schedule: "0 9 31 4 *"',
        'rules/renewal_offer.yaml:$line: trigger.schedule: "0 9 31 4 *" never fires (April has 30 days)',
    ),
    "an unknown stage suggests the closest and lists the journey": (
        CART, "stages: [consideration, conversion]", "stages: [consideration, convertion]",
        f"{CART}:$line: stages.1: unknown stage 'convertion' (did you mean 'conversion'?); {ALL_STAGES}",
    ),
    "moving a contact to an unknown stage is reported": (
        CART, "move_to: conversion", "move_to: checkout",
        f"{CART}:$line: then.move_to: unknown stage 'checkout'; {ALL_STAGES}",
    ),
    "a template that does not exist is named with the rule's line": (
        CART, "template: abandoned_cart", "template: abandoned_kart",
        f"{CART}:$line: send.template: template 'abandoned_kart' does not exist "
        "(no folder email_templates/abandoned_kart/)",
    ),
    # The file's id line is read as written, so the rule's [priorities] entry still names it.
    "a YAML syntax error gives the line": (
        CART, "  latest_per: cart_id", " latest_per: cart_id",
        f"{CART}:$line: not valid YAML: expected <block end>, but found '<block mapping start>'",
    ),
    "a template that does not parse names the template file and line": (
        "email_templates/abandoned_cart/body.txt",
        "Total: {{ event.total|money(event.currency) }}", "Total: {{ event.total }",
        "email_templates/abandoned_cart/body.txt:$line: unexpected '}'",
    ),
    "a broken locale variant is checked too": (
        "email_templates/trial_ending/body.vi.txt",
        'Chào {{ contact.first_name or "bạn" }},', "Chào {{ contact.first_name }",
        "email_templates/trial_ending/body.vi.txt:$line: unexpected '}'",
    ),
    "a shared layout that does not parse is reported": (
        "email_templates/_layout.html", '<html lang="{{ locale }}">', '<html lang="{{ locale }">',
        "email_templates/_layout.html:$line: unexpected '}'",
    ),
    "an unknown stage in the journey points at the move": (
        "rules/journey.yaml", "order_placed: retention", "order_placed: retension",
        "rules/journey.yaml:$line: moves.order_placed: unknown stage 'retension' (did you mean 'retention'?)",
    ),
    # The parser notices the unclosed [ on the next line.
    "a journey YAML syntax error gives the line": (
        "rules/journey.yaml", "  signed_up: consideration", "  signed_up: [consideration",
        "rules/journey.yaml:$next_line: not valid YAML: expected ',' or ']', but got ':'",
    ),
}  # fmt: skip


@pytest.mark.parametrize(("path", "old", "new", "reported"), MISTAKES.values(), ids=MISTAKES.keys())
def test_check_reports_a_mistake_at_its_file_line_and_field(cli, project_dir, path, old, new, reported):
    line = edit(project_dir / path, old, new)

    result = cli("check")

    assert (result.exit_code, result.stdout) == (
        1,
        Template(reported).substitute(line=line, next_line=line + 1) + "\n",
    )


def test_a_missing_template_part_is_reported(cli, project_dir):
    (project_dir / "email_templates" / "renewal_offer" / "subject.txt").unlink()
    result = cli("check")
    assert (result.exit_code, lines(result)) == (1, ["email_templates/renewal_offer/subject.txt: missing"])


def test_a_missing_template_part_does_not_hide_the_problems_of_the_others(cli, project_dir):
    folder = project_dir / "email_templates" / "renewal_offer"
    (folder / "subject.txt").unlink()
    (folder / "body.txt").write_text("Hi {{ nickname }}\n{{ unsubscribe_url }}\n", encoding="utf-8")

    result = cli("check")

    assert result.exit_code == 1
    assert lines(result) == [
        "email_templates/renewal_offer/subject.txt: missing",
        "email_templates/renewal_offer/body.txt:1: nickname: undefined name (a template sees contact, "
        "event, coupon, rule, trigger, unsubscribe_url, base_url, now, locale)",
    ]


def test_a_broken_rule_does_not_stop_the_others_from_loading(cli, cart_rule):
    edit(cart_rule, "delay: 1h", "delay: 1 hour")
    assert cli("check").exit_code == 1
    listed = [line.split()[0] for line in lines(cli("rules"))]
    assert listed == ["post_purchase_thank_you", "renewal_offer", "trial_ending"]


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


def test_check_never_shows_a_traceback(cli, cart_rule):
    cart_rule.write_text("id: [\n", encoding="utf-8")
    result = cli("check")
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def spoil(path: Path) -> None:
    """A byte that is not UTF-8 at the start of a new line 2."""
    path.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n\xff rest\n")


def folder_in_place(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize(
    ("path", "spoiled", "reported"),
    [
        (
            "rules/abandoned_cart.yaml",
            spoil,
            "rules/abandoned_cart.yaml:2: not valid YAML: not UTF-8 text: byte 0xff",
        ),
        (
            "rules/abandoned_cart.yaml",
            folder_in_place,
            "rules/abandoned_cart.yaml: cannot be read: Is a directory",
        ),
        ("rules/journey.yaml", folder_in_place, "rules/journey.yaml: cannot be read: Is a directory"),
        ("automator.toml", spoil, "automator.toml:2: not UTF-8 text: byte 0xff"),
        ("automator.toml", folder_in_place, "automator.toml: cannot be read: Is a directory"),
        (
            "email_templates/renewal_offer/body.txt",
            spoil,
            "email_templates/renewal_offer/body.txt:2: not UTF-8 text: byte 0xff",
        ),
        (
            "email_templates/renewal_offer/body.txt",
            folder_in_place,
            "email_templates/renewal_offer/body.txt: cannot be read: not a file",
        ),
    ],
    ids=[
        "rule-bytes",
        "rule-folder",
        "journey-folder",
        "toml-bytes",
        "toml-folder",
        "template-bytes",
        "template-folder",
    ],
)
def test_a_file_that_cannot_be_read_as_text_is_one_line_naming_it(cli, project_dir, path, spoiled, reported):
    spoiled(project_dir / path)

    result = cli("check")

    assert result.exit_code == 1
    assert reported in lines(result)
    assert "Traceback" not in result.output


def test_a_bad_setting_is_one_readable_line(cli, project_dir):
    toml = project_dir / "automator.toml"
    line = edit(toml, 'timezone = "Asia/Ho_Chi_Minh"', 'timezone = "Asia/Saigon City"')
    result = cli("check")
    assert (result.exit_code, result.stdout) == (
        1,
        f"automator.toml:{line}: timezone: unknown time zone 'Asia/Saigon City' "
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


@pytest.mark.sqlite_only
@pytest.mark.parametrize("command", [["check"], ["tick"], ["run", "--tick-interval", "1"]])
def test_a_folder_without_rules_is_no_project(command, tmp_path, process_env):
    """A daemon started in the wrong folder ran no rule at all, and said nothing of it; `check`
    there said "ok: 0 rules". (A process with a deadline: the daemon ran on before.)"""
    elsewhere, missing = tmp_path / "elsewhere", tmp_path / "missing"
    elsewhere.mkdir()

    def automator(project: Path) -> subprocess.CompletedProcess[str]:
        arguments = [*AUTOMATOR, "--project", str(project), *command]
        return subprocess.run(arguments, env=process_env, capture_output=True, text=True, timeout=60)

    wrong, gone = automator(elsewhere), automator(missing)

    assert wrong.returncode == 1 and gone.returncode == 1
    assert f"{elsewhere} is not an automator project: it has no rules/ folder" in wrong.stderr
    assert f"the project folder {missing} does not exist" in gone.stderr
    assert not (elsewhere / "automator.db").exists()  # nothing was made there either
