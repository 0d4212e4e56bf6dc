"""Which templates show the send time, so that a wait renders them again: decided once per
template from the names its files read, and on the safe side when that cannot be told."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from automator.dispatch.rerender import SEND_TIME_NAMES, Rerender
from automator.project import Project, load_project
from automator.rendering import Links, Renderer
from tests.conftest import utc


@pytest.fixture
def shipped(project_dir: Path) -> Project:
    """The shipped project, without a database (nothing here reads one)."""
    return load_project(project_dir, {"AUTOMATOR_DATABASE_URL": "sqlite://"})


@pytest.fixture
def renderer(shipped: Project) -> Renderer:
    settings = shipped.settings
    return Renderer(shipped.templates, Links(settings.base_url, settings.secret), settings.timezone)


def test_a_cart_reminder_does_not_show_the_send_time(renderer: Renderer) -> None:
    assert not Rerender(renderer).shows_send_time("abandoned_cart")


def test_a_trial_ending_shows_the_days_left(renderer: Renderer) -> None:
    assert Rerender(renderer).shows_send_time("trial_ending")


def test_a_layout_that_shows_now_counts_for_every_template_extending_it(
    renderer: Renderer, project_dir: Path
) -> None:
    layout = project_dir / "email_templates" / "_layout.html"
    layout.write_text(layout.read_text(encoding="utf-8") + "{{ now|date }}", encoding="utf-8")

    assert Rerender(renderer).shows_send_time("abandoned_cart")


def test_a_computed_include_counts_as_showing_the_send_time(renderer: Renderer, project_dir: Path) -> None:
    body = project_dir / "email_templates" / "abandoned_cart" / "body.txt"
    body.write_text('{% include "abandoned_cart/" ~ contact.locale ~ ".txt" %}', encoding="utf-8")

    assert Rerender(renderer).shows_send_time("abandoned_cart")


def test_the_send_time_names_are_all_the_context_takes_from_the_send_time(
    shipped: Project, renderer: Renderer
) -> None:
    rule = shipped.rule("trial_ending")
    assert rule is not None
    contact = {
        "email": "lan@example.com",
        "first_name": "Lan",
        "last_name": None,
        "locale": "en",
        "timezone": None,
        "stage": "consideration",
        "attributes": {},
    }
    job = renderer.job(rule, _Fields(contact), None, utc("2026-11-23 03:00"), utc("2026-11-20 03:00"), None)
    later = replace(job, send_at=job.send_at + timedelta(days=1, hours=5))

    before, after = renderer.context(job), renderer.context(later)

    assert {name for name in before if before[name] != after[name]} <= SEND_TIME_NAMES


class _Fields:
    """A contact's fields as attributes."""

    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)
