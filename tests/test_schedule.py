"""Rules on a schedule: a cron line or an interval sends once per firing to every targeted contact."""

from automator.engine import Engine
from automator.project import load_project
from tests.conftest import utc

WEEKLY = """\
id: weekly_digest
stages: [retention, loyalty]
trigger:
  schedule: "0 9 * * mon"
send:
  template: weekly
"""


def weekly_project(project_dir, environ):
    (project_dir / "rules" / "weekly.yaml").write_text(WEEKLY, encoding="utf-8")
    folder = project_dir / "email_templates" / "weekly"
    folder.mkdir()
    (folder / "subject.txt").write_text("This week at Lotus Shop", encoding="utf-8")
    (folder / "body.txt").write_text("Hi {{ contact.first_name }}\n{{ unsubscribe_url }}\n", encoding="utf-8")
    (folder / "body.html").write_text("<p>Hi {{ contact.first_name }}</p>", encoding="utf-8")
    return load_project(project_dir, environ)


def test_a_weekly_schedule_sends_once_per_week_to_targeted_contacts(
    project_dir, environ, store, transport, make_contact
):
    import asyncio

    engine = Engine(weekly_project(project_dir, environ), store, transport)
    make_contact("ann@example.com", first_name="Ann", stage="retention", timezone="Asia/Ho_Chi_Minh")
    make_contact("bo@example.com", first_name="Bo", stage="awareness", timezone="Asia/Ho_Chi_Minh")
    # Monday 9:00 in Ho Chi Minh City (the project's zone) is 02:00 UTC.
    assert asyncio.run(engine.tick(utc("2026-11-23 01:59"))).rules["weekly_digest"].enqueued == 0
    asyncio.run(engine.tick(utc("2026-11-23 02:01")))
    asyncio.run(engine.tick(utc("2026-11-23 03:00")))
    assert [str(email["To"]) for email in transport.sent] == ["Ann <ann@example.com>"]
    asyncio.run(engine.tick(utc("2026-11-30 02:05")))
    assert len(transport.sent) == 2
