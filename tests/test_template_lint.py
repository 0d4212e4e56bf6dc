"""Template lint in `automator check`: every name a template reads is one the message's
context holds, every HTML part has its unsubscribe link, and what the data carries comes from
automator.toml or, with --store, from the store."""

import shutil
from pathlib import Path

from automator import template_lint
from tests.conftest import REPO, cart, utc


def edit(path: Path, old: str, new: str) -> int:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) >= 1, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def line_of(path: Path, text: str) -> int:
    content = path.read_text(encoding="utf-8")
    return content[: content.index(text)].count("\n") + 1


def test_a_misspelt_contact_field_fails_check_with_a_suggestion(cli, project_dir):
    body = project_dir / "email_templates" / "abandoned_cart" / "body.txt"
    line = edit(body, "contact.first_name", "contact.frist_name")
    result = cli("check")
    assert result.exit_code == 1
    assert result.stdout.startswith(
        f"email_templates/abandoned_cart/body.txt:{line}: contact.frist_name: contacts have no field "
        "'frist_name' (did you mean 'first_name'?)"
    )


def test_an_html_part_without_unsubscribe_link_is_an_error(cli, project_dir):
    edit(project_dir / "email_templates" / "_layout.html", "{{ unsubscribe_url }}", "#")
    edit(project_dir / "email_templates" / "_layout.html", "{{ unsubscribe_url }}", "#")
    result = cli("check")
    assert result.exit_code == 1
    assert "email_templates/trial_ending/body.vi.html: unsubscribe_url: never used" in result.stdout


def test_the_link_in_the_layout_counts_for_the_templates_that_extend_it(cli):
    assert cli("check").stdout == "ok: 4 rules\n"


def test_an_undefined_name_is_reported_with_its_line(cli, project_dir):
    body = project_dir / "email_templates" / "renewal_offer" / "body.txt"
    body.write_text(body.read_text(encoding="utf-8") + "{{ nme }}\n", encoding="utf-8")
    line = len(body.read_text(encoding="utf-8").splitlines())
    result = cli("check")
    assert (result.exit_code, result.stdout.splitlines()[0].split(" (")[0]) == (
        1,
        f"email_templates/renewal_offer/body.txt:{line}: nme: undefined name",
    )


def test_names_the_template_sets_itself_are_not_undefined(cli, project_dir):
    body = project_dir / "email_templates" / "renewal_offer" / "body.txt"
    body.write_text(
        body.read_text(encoding="utf-8") + "{% set n = 2 %}{% for i in range(n) %}{{ i }}{% endfor %}\n",
        encoding="utf-8",
    )
    assert cli("check").exit_code == 0


def test_an_attribute_declared_in_settings_may_be_read(cli, project_dir):
    edit(
        project_dir / "email_templates" / "abandoned_cart" / "body.txt", "contact.first_name", "contact.plan"
    )
    assert "contact.plan: contacts have no field 'plan'" in cli("check").stdout
    with (project_dir / "automator.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[contacts]\nattributes = ["plan"]\n')
    assert cli("check").exit_code == 0


def test_an_attribute_tested_with_is_defined_needs_no_declaration(cli, project_dir):
    edit(
        project_dir / "email_templates" / "abandoned_cart" / "body.txt",
        "{{ contact.first_name",
        "{% if contact.plan is defined %}{{ contact.plan }}{% endif %}{{ contact.first_name",
    )
    assert cli("check").exit_code == 0


def test_event_properties_are_checked_only_when_declared(cli, project_dir):
    edit(project_dir / "email_templates" / "abandoned_cart" / "body.txt", "event.cart_url", "event.cart_urls")
    assert cli("check").exit_code == 0  # nothing known of cart_updated events: no guess
    with (project_dir / "automator.toml").open("a", encoding="utf-8") as toml:
        toml.write(
            '\n[events.cart_updated]\nproperties = ["cart_id", "total", "currency", "items", "cart_url"]\n'
        )
    result = cli("check")
    assert result.exit_code == 1
    assert (
        "event.cart_urls: cart_updated events carry no property 'cart_urls' (did you mean 'cart_url'?)"
        in result.stdout
    )


def test_a_template_of_a_date_rule_that_reads_event_fails_check(cli, project_dir):
    body = project_dir / "email_templates" / "renewal_offer" / "body.txt"
    body.write_text(body.read_text(encoding="utf-8") + "Your order: {{ event.total }}\n", encoding="utf-8")
    line = len(body.read_text(encoding="utf-8").splitlines())
    trigger = line_of(project_dir / "rules" / "renewal_offer.yaml", "date: contact.renews_at")
    result = cli("check")
    assert (result.exit_code, result.stdout) == (
        1,
        f"email_templates/renewal_offer/body.txt:{line}: event: read here, but rule renewal_offer's "
        f"trigger (rules/renewal_offer.yaml:{trigger}: trigger.date) has no event; only an event "
        "trigger gives a template one\n",
    )


def test_a_schedule_rule_names_its_own_trigger_when_its_template_reads_event(cli, project_dir):
    rule = project_dir / "rules" / "renewal_offer.yaml"
    line = edit(rule, "  date: contact.renews_at\n  before: 30d", '  schedule: "0 9 * * mon"')
    edit(project_dir / "email_templates" / "renewal_offer" / "subject.txt", "{{", "{{ event.order_id }} {{")
    assert (
        f"email_templates/renewal_offer/subject.txt:1: event: read here, but rule renewal_offer's "
        f"trigger (rules/renewal_offer.yaml:{line}: trigger.schedule) has no event"
    ) in cli("check").stdout


def test_a_template_that_tests_whether_event_is_defined_may_read_it(cli, project_dir):
    body = project_dir / "email_templates" / "renewal_offer" / "body.txt"
    body.write_text(
        body.read_text(encoding="utf-8") + "{% if event is defined %}{{ event.total }}{% endif %}\n",
        encoding="utf-8",
    )
    assert cli("check").stdout == "ok: 4 rules\n"


def test_with_store_the_properties_of_stored_events_are_known(cli, project_dir, make_contact, make_event):
    make_contact("lan@example.com")
    make_event("cart_updated", utc("2026-11-20 10:00"), **cart())
    edit(project_dir / "email_templates" / "abandoned_cart" / "body.txt", "event.cart_url", "event.cart_urls")
    result = cli("check", "--store")
    assert result.exit_code == 1
    assert "event.cart_urls: cart_updated events carry no property 'cart_urls'" in result.stdout


def test_with_store_the_attributes_contacts_have_are_known(cli, project_dir, make_contact):
    make_contact("lan@example.com", plan="pro")
    edit(
        project_dir / "email_templates" / "abandoned_cart" / "body.txt", "contact.first_name", "contact.plan"
    )
    assert cli("check", "--store").exit_code == 0


def test_the_marketing_examples_pass_the_lint(cli, project_dir):
    examples = REPO / "examples" / "marketing"
    for rule in (examples / "rules").glob("*.yaml"):
        shutil.copy(rule, project_dir / "rules")
    shutil.copytree(examples / "email_templates", project_dir / "email_templates", dirs_exist_ok=True)
    assert cli("check").stdout == "ok: 9 rules\n"


def test_check_lints_again_once_a_template_or_the_vocabulary_changes(cli, project_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # this test's own kept lint
    linted: list[str] = []
    original = template_lint.lint_template

    def counting(env, name, *args):  # type: ignore[no-untyped-def]
        linted.append(name)
        return original(env, name, *args)

    monkeypatch.setattr(template_lint, "lint_template", counting)
    assert cli("check").stdout == "ok: 4 rules\n"
    assert sorted(linted) == ["abandoned_cart", "post_purchase_thank_you", "renewal_offer", "trial_ending"]

    linted.clear()
    assert cli("check").stdout == "ok: 4 rules\n"
    assert linted == []  # nothing changed: the last run's findings

    edit(project_dir / "email_templates" / "_layout.html", "{{ unsubscribe_url }}", "{{ contact.plan }}")
    assert "contact.plan: contacts have no field 'plan'" in cli("check").stdout
    assert len(linted) == 4  # a layout they all reach changed

    linted.clear()
    with (project_dir / "automator.toml").open("a", encoding="utf-8") as toml:
        toml.write('\n[contacts]\nattributes = ["plan"]\n')
    assert "contact.plan" not in cli("check").stdout
    assert len(linted) == 4


def test_a_kept_lint_is_not_used_once_a_layout_in_a_linked_folder_changes(
    cli, project_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    templates = project_dir / "email_templates"
    shared = tmp_path / "shared"  # a layout several projects share, linked into this one
    shared.mkdir()
    (templates / "_layout.html").rename(shared / "_layout.html")
    (templates / "shared").symlink_to(shared, target_is_directory=True)
    for body in templates.glob("*/body*.html"):
        edit(body, '"_layout.html"', '"shared/_layout.html"')
    assert cli("check").stdout == "ok: 4 rules\n"

    edit(shared / "_layout.html", "{{ unsubscribe_url }}", "{{ contact.plan }}")

    assert "contact.plan: contacts have no field 'plan'" in cli("check").stdout
