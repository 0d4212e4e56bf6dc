"""Dates that are not dates: an attribute that looks like a date but is not ISO 8601 is
imported as text, with a warning naming its line and field, and `automator check --store`
says which date rules will never fire for the contacts holding such text."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from automator.importing import import_contacts
from automator.importing.contacts import date_like
from automator.store import contacts
from tests.conftest import utc
from tests.importing import contact, write_csv

NOW = datetime(2026, 11, 20, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    "value, told",
    [
        ("17/05/1990", "is not an ISO 8601 date; write YYYY-MM-DD (1990-05-17)"),
        ("05/17/1990", "is not an ISO 8601 date; write YYYY-MM-DD (1990-05-17)"),
        ("17.05.1990", "is not an ISO 8601 date; write YYYY-MM-DD (1990-05-17)"),
        ("05/06/1990", "is not an ISO 8601 date; write YYYY-MM-DD (day and month could be either way round)"),
        ("17/05/90", "is not an ISO 8601 date; write YYYY-MM-DD"),
        ("1990/05/17", "is not an ISO 8601 date; write 1990-05-17"),
        ("2026-13-01", "is not a date (month 13, day 1)"),
        ("1985-02-29", "is not a date: February 1985 has no day 29"),
        ("2026-04-31T10:00:00Z", "is not a date: April 2026 has no day 31"),
        ("17/05/1990 10:30", "is not an ISO 8601 date; write YYYY-MM-DD (1990-05-17)"),
    ],
)
def test_a_date_that_is_not_iso_8601_is_told_how_to_write_it(value, told):
    assert date_like(value) == f'"{value}" {told}'


@pytest.mark.parametrize(
    "value",
    ["1990-05-17", "2026-12-20T09:30:00+07:00", "2026-99-01-A", "1.2.10", "12-34-5678", "pro", "", 1990],
)
def test_an_iso_date_or_text_that_is_no_date_is_not_warned_about(value):
    assert date_like(value) is None


def test_an_attribute_that_looks_like_a_date_is_imported_as_text_with_a_warning(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        "email,birthday,renews_at",
        "lan@example.com,17/05/1990,2026-12-20",
        "minh@example.com,1990-05-17,05/17/2027",
    )
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 0
    assert result.stderr == (
        f'warning {path}:2: birthday: "17/05/1990" is not an ISO 8601 date; write YYYY-MM-DD (1990-05-17); '
        "kept as text\n"
        f'warning {path}:3: renews_at: "05/17/2027" is not an ISO 8601 date; write YYYY-MM-DD (2027-05-17); '
        "kept as text\n"
    )
    assert result.stdout == "imported 2 contacts, rejected 0, 2 warnings\n"
    assert contact(store, "lan@example.com").attributes == {
        "birthday": "17/05/1990",
        "renews_at": "2026-12-20",
    }


def test_check_with_store_warns_about_a_date_rule_whose_attribute_holds_text(cli, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        "email,renews_at",
        "lan@example.com,20/12/2026",
        "minh@example.com,2026-12-20",
        "hoa@example.com,soon",
    )
    cli("contacts", "import", str(path))
    result = cli("check", "--store")
    assert (result.exit_code, result.stdout) == (
        0,
        "warning: rules/renewal_offer.yaml:6: trigger.date: 2 contact(s) hold a renews_at that is not "
        'an ISO 8601 date (e.g. lan@example.com "20/12/2026", hoa@example.com "soon"); '
        "the rule never fires for them\n"
        "ok: 4 rules\n",
    )


def test_check_with_store_is_quiet_when_every_date_is_a_date(cli, tmp_path):
    cli(
        "contacts",
        "import",
        str(write_csv(tmp_path / "c.csv", "email,renews_at", "lan@example.com,2026-12-20")),
    )
    assert cli("check", "--store").stdout == "ok: 4 rules\n"


def test_check_with_store_makes_no_database(cli, project_dir):
    assert cli("check", "--store").stdout == "ok: 4 rules\n"
    assert not (project_dir / "automator.db").exists()


def test_a_date_imported_alone_is_midnight_in_the_zone_the_contact_already_has(cli, store, tmp_path):
    """A `birthday` column imported without a `timezone` column, for contacts an earlier
    import gave a zone: midnight in that zone, not in the project's; a contact without one
    (or a new one) gets the project's (Asia/Ho_Chi_Minh)."""
    first = write_csv(
        tmp_path / "first.csv",
        "email,timezone",
        "bob@example.com,America/New_York",
        "lan@example.com,",
    )
    later = write_csv(
        tmp_path / "later.csv",
        "email,birthday",
        "bob@example.com,1988-12-03",
        "lan@example.com,1994-12-02",
        "new@example.com,1990-01-01",
    )
    assert cli("contacts", "import", str(first)).exit_code == 0
    assert cli("contacts", "import", str(later)).exit_code == 0

    with store.session() as session:
        assert contacts.dates(session, contact(store, "bob@example.com").id) == {
            "birthday": utc("1988-12-03 05:00")
        }
        assert contacts.dates(session, contact(store, "lan@example.com").id) == {
            "birthday": utc("1994-12-01 17:00")
        }
        assert contacts.dates(session, contact(store, "new@example.com").id) == {
            "birthday": utc("1989-12-31 17:00")
        }


def test_the_calendar_s_first_day_stays_where_the_import_put_it_when_its_stored_zone_cannot_hold_it(
    project, store, tmp_path
):
    """0001-01-01 at midnight in Tokyo is a time before year 1 in UTC: a project west of
    Greenwich takes it, and a contact stored in Tokyo keeps it where the project put it,
    rather than failing the whole import."""
    west = ZoneInfo("America/New_York")
    first = write_csv(tmp_path / "first.csv", "email,timezone", "yuki@example.com,Asia/Tokyo")
    later = write_csv(
        tmp_path / "later.csv", "email,founded,joined", "yuki@example.com,0001-01-01,2020-01-01"
    )

    import_contacts(store, first, project.journey, west, NOW)
    report = import_contacts(store, later, project.journey, west, NOW)

    assert (report.imported, report.rejected) == (1, 0)
    with store.session() as session:
        assert contacts.dates(session, contact(store, "yuki@example.com").id) == {
            "founded": datetime(1, 1, 1, tzinfo=west).astimezone(UTC),  # New York's local mean time
            "joined": utc("2019-12-31 15:00"),
        }
