"""`automator check` on the new syntax (steps, variants, history and tag conditions, limits,
local-time schedules): every mistake is found in one run, each named by file, line and field,
in plain words (never an internal class name)."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from tests.conftest import REPO

ALL = "[awareness, consideration, conversion, retention, loyalty]"


def write(project_dir: Path, name: str, text: str) -> None:
    (project_dir / "rules" / name).write_text(dedent(text), encoding="utf-8")


def report(cli) -> list[str]:
    result = cli("check")
    assert result.exit_code != 0
    return result.stdout.splitlines()


JOURNEY = f"""\
    id: welcome_series
    stages: {ALL}
    trigger: {{event: signed_up}}
    steps:
      - send: {{template: abandoned_cart}}
      - delay: 2d
        sned: {{template: abandoned_cart}}
      - delay: 2 days
        when:
          - contact.locale: vi
          - contact.tags: vip
        send: {{template: abandoned_cart}}
    """


def test_every_mistake_of_a_journey_is_named_in_one_run(project_dir, cli):
    write(project_dir, "welcome_series.yaml", JOURNEY)

    assert report(cli) == [
        "rules/welcome_series.yaml:6: steps.1.send: is required",
        "rules/welcome_series.yaml:7: steps.1.sned: unknown field (did you mean 'send'?)",
        'rules/welcome_series.yaml:8: steps.2.delay: "2 days" is not a duration (use 1h, 30m, 3d)',
        "rules/welcome_series.yaml:11: steps.2.when.1: condition 2: contact.tags takes contains or "
        "not_contains, e.g. {contains: vip}",
    ]


def test_a_condition_of_a_step_is_placed_at_its_own_line(project_dir, cli):
    write(
        project_dir,
        "renewal_steps.yaml",
        f"""\
        id: renewal_steps
        stages: {ALL}
        trigger: {{date: contact.renews_at, before: 3d}}
        steps:
          - send: {{template: abandoned_cart}}
          - delay: 1d
            when:
              - contact.locale: vi
              - event.total: {{gt: 3}}
            send: {{template: abandoned_cart}}
        """,
    )

    assert report(cli) == [
        "rules/renewal_steps.yaml:9: steps.1.when.1: condition 2: event.total: "
        "only event triggers can test event properties",
    ]


def test_an_unknown_template_in_a_variant_of_a_step_names_the_variant(project_dir, cli):
    write(
        project_dir,
        "cart_ab.yaml",
        f"""\
        id: cart_ab
        stages: {ALL}
        trigger: {{event: cart_viewed}}
        steps:
          - send:
              variants:
                a: {{template: abandoned_cart}}
                b: {{template: cart_bb}}
        """,
    )

    assert report(cli) == [
        "rules/cart_ab.yaml:8: steps.0.send.variants.b.template: template 'cart_bb' does not exist "
        "(no folder email_templates/cart_bb/)",
    ]


def test_condition_limit_and_weight_mistakes_are_all_reported(project_dir, cli):
    write(
        project_dir,
        "weekly.yaml",
        f"""\
        id: weekly
        stages: {ALL}
        trigger: {{schedule: "0 9 * * 1", timezone: contact}}
        when:
          - history: {{within: 90d}}
        limit: {{max: 0, per: 7d}}
        send:
          variants:
            a: {{template: abandoned_cart, weight: 60}}
            b: {{template: abandoned_cart, weight: 40}}
            c: {{template: abandoned_cart}}
        """,
    )

    assert report(cli) == [
        "rules/weekly.yaml:5: when.0: condition 1: history needs an event, "
        "e.g. {event: order_placed, within: 90d}",
        "rules/weekly.yaml:6: limit.max: must be at least 1",
        "rules/weekly.yaml:8: send.variants: the weights given add up to 100, "
        "leaving nothing of 100 for the variants without one",
    ]


@pytest.mark.parametrize(("a", "b", "total"), [(5, 105, 110), (5, 15, 20)])
def test_weights_on_every_variant_add_up_to_100(project_dir, cli, a, b, total):
    write(
        project_dir,
        "split.yaml",
        f"""\
        id: split
        stages: {ALL}
        trigger: {{event: cart_updated}}
        send:
          variants:
            a: {{template: abandoned_cart, weight: {a}}}
            b: {{template: abandoned_cart, weight: {b}}}
        """,
    )

    assert report(cli) == [
        f"rules/split.yaml:5: send.variants: the weights add up to {total}; "
        "they are percent of the contacts, so they add up to 100",
    ]


def test_a_local_time_zone_needs_a_crontab_line_and_both_send_and_steps_is_one_too_many(project_dir, cli):
    write(
        project_dir,
        "every_week.yaml",
        f"""\
        id: every_week
        stages: {ALL}
        trigger: {{every: 7d, timezone: contact}}
        send: {{template: abandoned_cart}}
        steps:
          - send: {{template: abandoned_cart}}
        """,
    )

    assert report(cli) == [
        "rules/every_week.yaml:3: trigger.timezone: contact needs a crontab schedule "
        "(every: counts the same everywhere)",
        "rules/every_week.yaml:5: steps: give either send (one message) or steps (a journey)",
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "1: send: give either send (one message) or steps (a journey)"),
        (
            "send:\n  variants:\n    a: abandoned_cart\n    b: {template: abandoned_cart}\n",
            "6: send.variants.a: must be a mapping of fields, e.g. {template: cart_b, weight: 30}",
        ),
        ("send: abandoned_cart\n", "4: send: must be a mapping of fields, e.g. {template: welcome_1}"),
        (
            "steps:\n  - abandoned_cart\n",
            "5: steps.0: must be a mapping of fields, e.g. {delay: 2d, send: {template: welcome_2}}",
        ),
        (
            "send:\n  variants:\n    a: {template: abandoned_cart}\n",
            "5: send.variants: give at least two",
        ),
        (
            "when:\n  - history: {event: order_placed, times: 2}\nsend: {template: abandoned_cart}\n",
            "5: when.0: condition 1: history: unknown field 'times' (use event, within, count)",
        ),
    ],
)
def test_each_mistake_is_said_in_plain_words(project_dir, cli, body, expected):
    write(project_dir, "plain.yaml", f"id: plain\nstages: {ALL}\ntrigger: {{event: x}}\n{body}")

    [line] = report(cli)

    assert line == f"rules/plain.yaml:{expected}"
    assert "Input should" not in line and "instance of" not in line


def test_several_files_with_mistakes_are_reported_together(project_dir, cli):
    write(project_dir, "welcome_series.yaml", JOURNEY)
    write(project_dir, "nothing.yaml", f"id: nothing\nstages: {ALL}\ntrigger: {{event: x}}\n")

    lines = report(cli)

    assert len(lines) == 5
    assert "rules/nothing.yaml:1: send: give either send (one message) or steps (a journey)" in lines
    assert sum(line.startswith("rules/welcome_series.yaml:") for line in lines) == 4


def test_a_steps_then_is_refused_as_docs_rules_md_says(cli, project_dir):
    write(
        project_dir,
        "welcome_series.yaml",
        f"""\
        id: welcome_series
        stages: {ALL}
        trigger: {{event: signed_up}}
        steps:
          - send: {{template: abandoned_cart}}
          - delay: 2d
            send: {{template: abandoned_cart}}
            then: {{tag: welcomed}}
        """,
    )
    refused = "steps.1.then: unknown field here (then belongs at the top level of the rule)"
    assert report(cli) == [f"rules/welcome_series.yaml:8: {refused}"]
    assert f"`{refused}`" in (REPO / "docs" / "rules.md").read_text(encoding="utf-8")
