"""A rule's `limit`: at most `max` journeys per contact in any span of `per`; one more is
recorded as skipped, with why, and counted in the tick's summary; it does not wait."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import all_messages, history_of, utc

BROWSE = """\
id: browse_reminder
stages: [awareness, consideration]
trigger: {event: product_viewed, delay: 1h}
limit: {max: 1, per: 7d}
send: {template: browse}
"""


@pytest.fixture(autouse=True)
def browse_reminder(project_dir: Path) -> None:
    """A reminder after a product was viewed, at most once a week per contact."""
    (project_dir / "rules" / "browse_reminder.yaml").write_text(BROWSE, encoding="utf-8")
    template = project_dir / "email_templates" / "browse"
    template.mkdir()
    (template / "subject.txt").write_text("Still thinking about it?", encoding="utf-8")
    (template / "body.txt").write_text("Hello {{ contact.first_name }}", encoding="utf-8")
    (template / "body.html").write_text("<p>Hello</p>", encoding="utf-8")


@pytest.fixture(autouse=True)
def lan(make_contact) -> None:
    make_contact("lan@example.com", stage="awareness", timezone="UTC")


def reminders(store) -> list[tuple[str, str]]:
    """The reminders' (occurrence, status), oldest first."""
    found = [m for m in all_messages(store) if m.rule_id == "browse_reminder"]
    return sorted((m.occurrence, m.status) for m in found)


def test_a_second_occurrence_within_the_span_is_skipped_with_why(make_event, tick, store, transport):
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    tick(utc("2026-12-01 10:00"))
    make_event("product_viewed", utc("2026-12-03 09:00"), id="view-2")

    report = tick(utc("2026-12-03 10:00"))

    assert reminders(store) == [("view-1", "sent"), ("view-2", "skipped")]
    assert len(transport.sent) == 1
    assert report.rule("browse_reminder").outcomes["skipped: limit"] == 1
    assert report.rule("browse_reminder").enqueued == 0
    [skipped] = [m for m in all_messages(store) if m.occurrence == "view-2"]
    assert history_of(store, skipped.id)[-1].reason == "limit: at most 1 per 7d; last on 2026-12-01 10:00Z"


def test_an_occurrence_after_the_span_is_queued(make_event, tick, store, transport):
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    tick(utc("2026-12-01 10:00"))
    make_event("product_viewed", utc("2026-12-08 09:30"), id="view-2")

    tick(utc("2026-12-08 10:30"))

    assert reminders(store) == [("view-1", "sent"), ("view-2", "sent")]
    assert len(transport.sent) == 2


def test_a_skipped_occurrence_does_not_count_against_the_limit(make_event, tick, store):
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    tick(utc("2026-12-01 10:00"))
    make_event("product_viewed", utc("2026-12-07 09:00"), id="view-2")
    tick(utc("2026-12-07 10:00"))  # within the week of view-1: skipped
    make_event("product_viewed", utc("2026-12-08 11:00"), id="view-3")

    tick(utc("2026-12-08 12:00"))

    assert reminders(store) == [("view-1", "sent"), ("view-2", "skipped"), ("view-3", "sent")]


def test_two_occurrences_found_by_one_tick_start_one_journey(make_event, tick, store, transport):
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    make_event("product_viewed", utc("2026-12-01 09:10"), id="view-2")

    tick(utc("2026-12-01 10:10"))
    tick(utc("2026-12-01 10:10"))

    assert reminders(store) == [("view-1", "sent"), ("view-2", "skipped")]
    assert len(transport.sent) == 1


def test_the_limit_counts_per_contact(make_contact, make_event, tick, store):
    make_contact("an@example.com", stage="awareness", timezone="UTC")
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    make_event("product_viewed", utc("2026-12-01 09:00"), email="an@example.com", id="view-2")

    tick(utc("2026-12-01 10:00"))

    assert reminders(store) == [("view-1", "sent"), ("view-2", "sent")]


def test_tick_says_how_many_the_limit_skipped(make_event, cli, store):
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    assert cli("tick", "--now", "2026-12-01T10:00:00Z").exit_code == 0
    make_event("product_viewed", utc("2026-12-02 09:00"), id="view-2")

    result = cli("tick", "--now", "2026-12-02T10:00:00Z")

    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("browse_reminder")]
    assert line.endswith("skipped: limit ×1")
    assert reminders(store) == [("view-1", "sent"), ("view-2", "skipped")]


DAILY = """\
id: daily_deal
stages: [awareness, consideration]
trigger: {schedule: "0 9 * * *"}
limit: {max: 1, per: 7d}
send: {template: browse}
"""


def test_a_schedule_over_its_limit_writes_nothing_until_the_span_has_passed(
    project_dir, make_contact, cli, store
):
    # Lan, in Saigon, would be found at every daily firing (09:00 there, 02:00 UTC): over the
    # limit she is left out by the lookup, not recorded skipped once a day.
    (project_dir / "rules" / "daily_deal.yaml").write_text(DAILY, encoding="utf-8")
    make_contact("lan@example.com", stage="awareness", timezone="Asia/Ho_Chi_Minh")

    for day in range(1, 10):
        ticked = cli("tick", "--now", f"2026-12-{day:02d}T02:05:00Z")
        assert ticked.exit_code == 0, ticked.output

    deals = sorted((m.occurred_at, m.status) for m in all_messages(store) if m.rule_id == "daily_deal")
    assert deals == [(utc("2026-12-01 02:00"), "sent"), (utc("2026-12-08 02:00"), "sent")]


JOURNEY = """\
id: browse_series
stages: [awareness, consideration]
trigger: {event: product_viewed, delay: 1h}
limit: {max: 1, per: 7d}
steps:
  - send: {template: browse}
  - delay: 1d
    send: {template: browse}
"""


def test_a_journey_the_limit_keeps_from_starting_sends_no_later_step(project_dir, make_event, store, cli):
    (project_dir / "rules" / "browse_reminder.yaml").unlink()
    (project_dir / "rules" / "browse_series.yaml").write_text(JOURNEY, encoding="utf-8")
    make_event("product_viewed", utc("2026-12-01 09:00"), id="view-1")
    make_event("product_viewed", utc("2026-12-01 15:00"), id="view-2")
    for moment in ("2026-12-01T10:00Z", "2026-12-01T16:00Z", "2026-12-02T10:00Z", "2026-12-02T16:00Z"):
        assert cli("tick", "--now", moment).exit_code == 0  # reads the rule files as they are now

    series = sorted(
        (m.occurrence, m.step, m.status) for m in all_messages(store) if m.rule_id == "browse_series"
    )
    shown = cli("contacts", "show", "lan@example.com").stdout

    assert series == [("view-1", 1, "sent"), ("view-1#2", 2, "sent"), ("view-2", 1, "skipped")]
    assert "browse_series: finished (step 2 of 2 sent 2026-12-02 10:00Z)" in shown
