"""Journeys: a rule's later steps go their delay after the step before was sent, are skipped
(and the journey goes on) when their `when` does not hold, and never go once the goal is
reached or a step was stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import event

from automator.store import steps
from tests.conftest import all_messages, history_of, utc

WELCOME = """\
id: welcome_series
stages: [awareness, consideration, retention]  # an order moves a contact to retention: the goal ends it
trigger: {event: signed_up}
goal: {event: order_placed}
steps:
  - send: {template: welcome_1}
  - delay: 2d
    send: {template: welcome_2}
  - delay: 3d
    when:
      - contact.locale: vi
    send: {template: welcome_3}
  - delay: 1d
    send: {template: welcome_4}
"""

# Its first step has a `when` of its own.
CLUB = """\
id: club_series
stages: [awareness, consideration]
trigger: {event: club_joined}
steps:
  - when:
      - contact.locale: vi
    send: {template: welcome_1}
  - delay: 1d
    send: {template: welcome_2}
"""


@pytest.fixture(autouse=True)
def welcome_series(project_dir: Path) -> None:
    """A four-step welcome journey, its third step for Vietnamese speakers only."""
    (project_dir / "rules" / "welcome_series.yaml").write_text(WELCOME, encoding="utf-8")
    (project_dir / "rules" / "club_series.yaml").write_text(CLUB, encoding="utf-8")
    for number in range(1, 5):
        template = project_dir / "email_templates" / f"welcome_{number}"
        template.mkdir()
        # A later step's template still sees the event that began the journey.
        source = "{% if event.source is defined %} from {{ event.source }}{% endif %}"
        (template / "subject.txt").write_text(f"Welcome {number}{source}", encoding="utf-8")
        (template / "body.txt").write_text(f"Hello {{{{ contact.first_name }}}}, {number}", encoding="utf-8")
        (template / "body.html").write_text(f"<p>Welcome {number}</p>", encoding="utf-8")


def signed_up(make_contact, make_event, email: str = "lan@example.com", locale: str = "vi") -> int:
    """A contact who signed up on 1 December at 09:00 UTC; their id."""
    contact_id = make_contact(email, stage="awareness", timezone="UTC", locale=locale)
    make_event("signed_up", utc("2026-12-01 09:00"), email=email, id=f"signup-{email}")
    return contact_id


def journey(store, email: str = "lan@example.com") -> list[tuple[int, str, object]]:
    """The welcome series' messages of a contact: (step, status, sent_at), by step."""
    found = [m for m in all_messages(store) if m.rule_id == "welcome_series" and m.email == email]
    return sorted((m.step, m.status, m.sent_at) for m in found)


def subjects(transport) -> list[str]:
    return [email["Subject"] for email in transport.sent]


def test_a_journey_sends_each_step_its_delay_after_the_one_before(
    make_contact, make_event, tick, store, transport
):
    signed_up(make_contact, make_event)

    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 08:59"))
    assert subjects(transport) == ["Welcome 1"]
    tick(utc("2026-12-03 09:00"))
    tick(utc("2026-12-06 09:00"))
    tick(utc("2026-12-07 09:00"))

    assert subjects(transport) == ["Welcome 1", "Welcome 2", "Welcome 3", "Welcome 4"]
    assert journey(store) == [
        (1, "sent", utc("2026-12-01 09:00")),
        (2, "sent", utc("2026-12-03 09:00")),
        (3, "sent", utc("2026-12-06 09:00")),
        (4, "sent", utc("2026-12-07 09:00")),
    ]


def test_a_later_step_sees_the_triggering_event(make_contact, make_event, tick, store):
    make_contact("lan@example.com", stage="awareness", timezone="UTC")
    make_event("signed_up", utc("2026-12-01 09:00"), id="signup-1", source="app")

    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:00"))

    assert [m.subject for m in all_messages(store) if m.step == 2] == ["Welcome 2 from app"]


def test_reaching_the_goal_between_steps_ends_the_journey(make_contact, make_event, tick, store, transport):
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:00"))
    make_event("order_placed", utc("2026-12-04 10:00"), id="order-1", order_id="A-1", total=1, currency="VND")

    for day in range(5, 12):
        tick(utc(f"2026-12-{day:02} 09:00"))

    assert [s for s in subjects(transport) if s.startswith("Welcome")] == ["Welcome 1", "Welcome 2"]
    assert [step for step, _, _ in journey(store)] == [1, 2]


def test_a_step_queued_when_the_goal_is_reached_is_cancelled_and_says_the_journey_ends(
    make_contact, make_event, tick, store, transport
):
    # Step 2 is queued into quiet hours, then the goal is reached before it goes.
    make_contact("an@example.com", stage="awareness", timezone="Asia/Ho_Chi_Minh")
    make_event("signed_up", utc("2026-12-01 12:00"), email="an@example.com", id="signup-2")
    tick(utc("2026-12-01 12:00"))  # 19:00 local: step 1 goes
    tick(utc("2026-12-03 14:30"))  # 21:30 local: step 2 is queued until 08:00
    make_event("order_placed", utc("2026-12-03 15:00"), email="an@example.com", id="order-2")
    tick(utc("2026-12-04 01:00"))

    [(_, _, _), (step, status, _)] = journey(store, "an@example.com")
    assert (step, status) == (2, "cancelled")
    [message] = [m for m in all_messages(store) if m.email == "an@example.com" and m.step == 2]
    reason = history_of(store, message.id)[-1].reason
    assert reason.startswith("goal reached: order_placed")
    assert reason.endswith("the journey ends at step 2 of 4")


def test_a_suppressed_step_ends_the_journey(make_contact, make_event, tick, store, cli):
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))
    result = cli("suppressions", "add", "lan@example.com", "--note", "asked to stop")
    assert result.exit_code == 0, result.output

    for day in range(3, 12):
        tick(utc(f"2026-12-{day:02} 09:00"))

    assert [(step, status) for step, status, _ in journey(store)] == [(1, "sent"), (2, "suppressed")]


def test_a_step_cancelled_by_a_person_ends_the_journey(make_contact, make_event, tick, store, cli):
    make_contact("an@example.com", stage="awareness", timezone="Asia/Ho_Chi_Minh")
    make_event("signed_up", utc("2026-12-01 12:00"), email="an@example.com", id="signup-2")
    tick(utc("2026-12-01 12:00"))
    tick(utc("2026-12-03 14:30"))  # step 2 waits for the end of quiet hours
    [second] = [m for m in all_messages(store) if m.step == 2]

    result = cli("queue", "cancel", str(second.id), "--reason", "asked by phone")
    for day in range(4, 12):
        tick(utc(f"2026-12-{day:02} 09:00"))

    assert result.exit_code == 0, result.output
    assert [(step, status) for step, status, _ in journey(store, "an@example.com")] == [
        (1, "sent"),
        (2, "cancelled"),
    ]
    assert history_of(store, second.id)[-1].reason == "asked by phone; the journey ends at step 2 of 4"


def test_a_step_whose_when_does_not_hold_is_skipped_and_the_journey_goes_on(
    make_contact, make_event, tick, store, transport
):
    signed_up(make_contact, make_event, locale="en")

    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:00"))
    tick(utc("2026-12-06 09:00"))
    tick(utc("2026-12-07 09:00"))

    assert subjects(transport) == ["Welcome 1", "Welcome 2", "Welcome 4"]
    assert journey(store) == [
        (1, "sent", utc("2026-12-01 09:00")),
        (2, "sent", utc("2026-12-03 09:00")),
        (3, "skipped", utc("2026-12-06 09:00")),
        (4, "sent", utc("2026-12-07 09:00")),
    ]
    [skipped] = [m for m in all_messages(store) if m.step == 3]
    assert "condition 1 (contact.locale eq 'vi') does not hold" in history_of(store, skipped.id)[-1].reason


def test_a_first_step_whose_when_does_not_hold_is_skipped_and_the_journey_goes_on(
    make_contact, make_event, tick, store, transport
):
    make_contact("lan@example.com", stage="awareness", timezone="UTC", locale="vi")
    make_contact("bob@example.com", stage="awareness", timezone="UTC", locale="en")
    for email in ("lan@example.com", "bob@example.com"):
        make_event("club_joined", utc("2026-12-01 09:00"), email=email, id=f"club-{email}")

    report = tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-02 09:00"))

    club = [m for m in all_messages(store) if m.rule_id == "club_series"]
    assert sorted((m.email, m.step, m.status) for m in club) == [
        ("bob@example.com", 1, "skipped"),
        ("bob@example.com", 2, "sent"),
        ("lan@example.com", 1, "sent"),
        ("lan@example.com", 2, "sent"),
    ]
    assert report.rule("club_series").outcomes["skipped: when"] == 1


def test_re_ticking_sends_no_step_twice(make_contact, make_event, tick, store, transport):
    signed_up(make_contact, make_event)

    for at in ("2026-12-01 09:00", "2026-12-03 09:00", "2026-12-03 09:00", "2026-12-03 09:05"):
        tick(utc(at))
    tick(utc("2026-12-06 09:00"))
    tick(utc("2026-12-06 09:00"))
    tick(utc("2026-12-06 09:30"))

    assert subjects(transport) == ["Welcome 1", "Welcome 2", "Welcome 3"]
    assert [step for step, _, _ in journey(store)] == [1, 2, 3]


def test_two_engines_ticking_at_the_same_time_send_each_step_once(
    make_contact, make_event, project, store, engine, transport
):
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from automator.engine import Engine

    signed_up(make_contact, make_event)
    other = Engine(project, store, transport)
    try:
        for at in ("2026-12-01 09:00", "2026-12-03 09:00"):
            with ThreadPoolExecutor(2) as pool:
                ticks = [pool.submit(asyncio.run, each.tick(utc(at))) for each in (engine, other)]
                for done in ticks:
                    done.result()
    finally:
        other.close()

    assert subjects(transport) == ["Welcome 1", "Welcome 2"]
    assert [step for step, _, _ in journey(store)] == [1, 2]


def test_a_step_sent_late_counts_its_delay_from_when_it_was_sent(make_contact, make_event, tick, store):
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 15:00"))  # step 2 found six hours late, within max lateness

    tick(utc("2026-12-06 09:00"))
    assert [step for step, _, _ in journey(store)] == [1, 2]
    tick(utc("2026-12-06 15:00"))

    assert journey(store)[2] == (3, "sent", utc("2026-12-06 15:00"))


def test_a_later_steps_lookup_reads_the_index_of_sent_messages(project, store, database_url) -> None:
    if not database_url.startswith("sqlite"):
        pytest.skip("the plan of SQLite, which has no statistics to go by")
    rule = project.rule("welcome_series")
    now = utc("2026-12-03 09:00")
    values = {"now": now, "sent_from": utc("2026-11-30 09:00"), "sent_until": utc("2026-12-01 09:00")}

    with store.session() as session:
        connection = session.connection()
        event.listen(connection, "before_cursor_execute", as_plan, retval=True)
        plan = [row[-1] for row in session.execute(steps.statement(rule, 2), values)]

    # The steps before, by rule, step and send time: the index keeps sent messages only, and
    # the lookup's bounds on the send time are what let SQLite use it.
    used = "USING INDEX ix_message_rule_step_sent (rule_id=? AND step=? AND sent_at>? AND sent_at<?)"
    assert used in plan[0], plan


def as_plan(connection, cursor, statement, parameters, context, executemany):
    return f"EXPLAIN QUERY PLAN {statement}", parameters


def explained(cli, now: str) -> str:
    """`automator explain`'s verdict for Lan and the welcome series at `now`."""
    result = cli("explain", "welcome_series", "--contact", "lan@example.com", "--now", now)
    assert result.exit_code == 0, result.output
    return result.output.splitlines()[-1].removeprefix("verdict: ")


def test_explain_follows_the_journey_to_its_next_step_as_the_tick_does(
    make_contact, make_event, tick, cli, transport
):
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))

    assert explained(cli, "2026-12-02T09:00Z") == "not yet due (step 2 of 4 due at 2026-12-03 09:00Z)"
    assert explained(cli, "2026-12-03T09:30Z") == "would queue now: step 2 of 4"
    assert explained(cli, "2026-12-05T09:30Z") == (
        "not eligible: too late: step 2 of 4 was due at 2026-12-03 09:00Z, max lateness passed"
    )
    tick(utc("2026-12-03 09:30"))  # as explained: step 2 goes
    assert subjects(transport) == ["Welcome 1", "Welcome 2"]
    assert explained(cli, "2026-12-04T09:00Z") == "not yet due (step 3 of 4 due at 2026-12-06 09:30Z)"
    tick(utc("2026-12-06 09:30"))
    tick(utc("2026-12-07 09:30"))
    assert explained(cli, "2026-12-08T09:00Z") == "sent (step 4 of 4: message 4 at 2026-12-07 09:30Z)"


def test_preview_renders_the_step_its_verdict_is_about(make_contact, make_event, tick, cli) -> None:
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))

    def previewed(now: str) -> tuple[str, str]:
        result = cli("preview", "welcome_series", "--contact", "lan@example.com", "--now", now, "--force")
        assert result.exit_code == 0, result.output
        subject = next(line for line in result.stdout.splitlines() if line.startswith("Subject: "))
        return result.stderr.strip().split(": ", 1)[1].removeprefix(
            "lan@example.com would not get it: "
        ), subject

    assert previewed("2026-12-01T10:00Z") == (
        "not yet due (step 2 of 4 due at 2026-12-03 09:00Z)",
        "Subject: Welcome 2",
    )
    assert previewed("2026-12-03T09:30Z") == ("would queue now: step 2 of 4", "Subject: Welcome 2")
    tick(utc("2026-12-03 09:30"))
    tick(utc("2026-12-06 09:30"))
    tick(utc("2026-12-07 09:30"))
    verdict, subject = previewed("2026-12-08T09:00Z")
    assert (verdict.split(":")[0], subject) == ("sent (step 4 of 4", "Subject: Welcome 4")


def test_explains_checks_follow_the_journey_to_its_next_step(make_contact, make_event, tick, cli) -> None:
    signed_up(make_contact, make_event, locale="en")
    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:30"))

    def lines(now: str) -> list[str]:
        result = cli("explain", "welcome_series", "--contact", "lan@example.com", "--now", now)
        return [line.strip() for line in result.output.splitlines()]

    late = lines("2026-12-08T09:40Z")
    # How the journey began is a fact, no longer a reason: neither passed nor failed.
    assert "· due: step 1: 2026-12-01 09:00Z" in late
    assert "· already messaged: step 1: message 1, sent 2026-12-01 09:00Z" in late
    assert (
        "✗ step 3 due: 2026-12-06 09:30Z  (expected 3d after step 2 went (2026-12-03 09:30Z),"
        " between 2026-12-07 09:40Z and 2026-12-08 09:40Z (max lateness 1d))"
    ) in late
    on_time = lines("2026-12-06T09:40Z")
    assert "✓ step 3 due: 2026-12-06 09:30Z" in on_time
    assert "✗ step 3 when contact.locale: en  (expected eq vi)" in on_time
    assert on_time[-1].startswith("verdict: not eligible: step 3 of 4 would be skipped")


def test_explain_says_a_journey_ended_at_the_goal_or_will_skip_a_step(
    make_contact, make_event, tick, cli, transport
):
    signed_up(make_contact, make_event, locale="en")
    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:00"))

    # Step 3 is for Vietnamese speakers: a tick at its time skips it, and the journey goes on.
    assert explained(cli, "2026-12-06T09:00Z") == (
        "not eligible: step 3 of 4 would be skipped: step 3's condition 1 (contact.locale eq 'vi')"
        " does not hold; the journey goes on"
    )
    make_event("order_placed", utc("2026-12-04 10:00"), id="order-1", order_id="A-1", total=1, currency="VND")
    assert explained(cli, "2026-12-06T09:00Z") == (
        "not eligible: the journey ended after step 2 of 4: goal reached: order_placed at 2026-12-04 10:00Z"
    )
    tick(utc("2026-12-06 09:00"))
    assert [s for s in subjects(transport) if s.startswith("Welcome")] == ["Welcome 1", "Welcome 2"]


def test_explain_as_of_an_earlier_time_reads_the_journey_and_the_stage_as_they_were(
    make_contact, make_event, tick, cli
):
    signed_up(make_contact, make_event)
    for moment in ("2026-12-01 09:00", "2026-12-03 09:30", "2026-12-06 09:30", "2026-12-07 09:30"):
        tick(utc(moment))
    make_event("order_placed", utc("2026-12-08 10:00"), id="order-1", order_id="A-1", total=1, currency="VND")
    make_contact("lan@example.com", stage="loyalty", _now=utc("2026-12-08 11:00"))

    result = cli("explain", "welcome_series", "--contact", "lan@example.com", "--now", "2026-12-04T09:00Z")

    lines = [line.strip() for line in result.output.splitlines()]
    assert "✓ stage: consideration (in loyalty since)" in lines  # the sign-up moved her on
    # Steps 3 and 4 went later, and the order that would have ended the journey came later.
    assert "· journey: step 2 of 4 sent 2026-12-03 09:30Z; step 3 due about 2026-12-06 09:30Z" in lines
    assert lines[-1] == "verdict: not yet due (step 3 of 4 due at 2026-12-06 09:30Z)"


def test_contacts_show_says_where_the_contact_is_in_the_journey(make_contact, make_event, tick, cli):
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:00"))

    result = cli("contacts", "show", "lan@example.com")

    assert result.exit_code == 0, result.output
    assert (
        "welcome_series: step 2 of 4 sent 2026-12-03 09:00Z; step 3 due about 2026-12-06 09:00Z"
        in result.output
    )


def test_contacts_show_says_a_journey_ended_at_the_goal(make_contact, make_event, tick, cli):
    make_contact("an@example.com", stage="awareness", timezone="Asia/Ho_Chi_Minh")
    make_event("signed_up", utc("2026-12-01 12:00"), email="an@example.com", id="signup-2")
    tick(utc("2026-12-01 12:00"))
    tick(utc("2026-12-03 14:30"))  # step 2 waits for the end of quiet hours
    make_event("order_placed", utc("2026-12-03 15:00"), email="an@example.com", id="order-2")
    tick(utc("2026-12-04 01:00"))

    result = cli("contacts", "show", "an@example.com")

    assert "welcome_series: ended at step 2 of 4: goal reached: order_placed at" in result.output


def test_contacts_show_says_a_journey_ended_at_the_goal_reached_between_steps(
    make_contact, make_event, tick, cli
):
    """The goal came after a step was sent and before the next was queued: no message says
    so, and the journey must not read as if the next step were coming."""
    signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))
    make_event("order_placed", utc("2026-12-01 10:00"), id="order-1", order_id="A-1", total=1, currency="VND")

    result = cli("contacts", "show", "lan@example.com")

    assert "welcome_series: ended after step 1 of 4 sent" in result.output
    assert "goal reached: order_placed at 2026-12-01 10:00Z" in result.output
    assert "step 2 due" not in result.output


def test_queue_show_says_where_the_message_is_in_its_journey(make_contact, make_event, tick, store, cli):
    signed_up(make_contact, make_event, locale="en")
    for at in ("2026-12-01 09:00", "2026-12-03 09:00", "2026-12-06 09:00", "2026-12-07 09:00"):
        tick(utc(at))
    [first] = [m for m in all_messages(store) if m.step == 1]

    result = cli("queue", "show", str(first.id))

    assert result.exit_code == 0, result.output
    assert (
        "Journey: step 1 of 4; welcome_series: finished (step 4 of 4 sent 2026-12-07 09:00Z)" in result.output
    )


def test_a_journey_through_the_cli_with_tick_now(make_contact, make_event, cli, store, project_dir):
    signed_up(make_contact, make_event)

    for at in ("2026-12-01T09:00:00Z", "2026-12-03T09:00:00Z", "2026-12-03T09:00:00Z"):
        result = cli("tick", "--now", at)
        assert result.exit_code == 0, result.output

    assert [(step, status) for step, status, _ in journey(store)] == [(1, "sent"), (2, "sent")]
    assert len(list((project_dir / "outbox").glob("*.eml"))) == 2


def test_the_consoles_contact_page_says_where_the_contact_is_in_the_journey(
    make_contact, make_event, tick, project, store, engine, cheap_password_hashing
):
    from automator.console import create_app
    from tests.logins import add_accounts, client_for, log_in

    contact_id = signed_up(make_contact, make_event)
    tick(utc("2026-12-01 09:00"))
    tick(utc("2026-12-03 09:00"))
    now = utc("2026-12-03 10:00")
    add_accounts(store, now)
    client = client_for(create_app(project, store, clock=lambda: now, engine=engine))
    assert log_in(client, "sam").status_code == 303

    page = client.get(f"/contacts/{contact_id}").text

    assert "<h2>Journeys</h2>" in page
    # In the viewer's zone, as the rest of the page: the project's, Asia/Ho_Chi_Minh (UTC+7).
    assert "<td>step 2 of 4 sent 2026-12-03 16:00; step 3 due about 2026-12-06 16:00</td>" in page
