"""An import file that holds no record (empty, only a header, an empty array) is said to
be so, with exit code 2, so that a cron job whose export came out empty hears of it."""

import pytest

from tests.importing import write_raw

NO_RECORDS = 2


@pytest.mark.parametrize(
    ("name", "text", "held"),
    [
        ("contacts.csv", "", "the file is empty"),
        ("contacts.csv", "email,first_name\n", "only a header"),
        ("contacts.csv", "\ufeffEmail,First Name\r\n\r\n", "only a header"),
        ("contacts.jsonl", "\n  \n", "only white space"),
        ("contacts.json", "[\n]\n", "an empty JSON array"),
    ],
)
def test_a_contacts_file_without_records_is_said_to_be_so(cli, store, tmp_path, name, text, held):
    path = write_raw(tmp_path / name, text)

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stderr) == (NO_RECORDS, f"error: {path}: no records ({held})\n")
    assert result.stdout == "imported 0 contacts, rejected 0\n"


def test_an_empty_events_file_is_said_to_be_so(cli, store, tmp_path):
    path = write_raw(tmp_path / "events.jsonl", "")

    result = cli("events", "import", str(path))

    assert (result.exit_code, result.stderr) == (
        NO_RECORDS,
        f"error: {path}: no records (the file is empty)\n",
    )


def test_a_file_of_rejected_records_is_not_called_empty(cli, store, tmp_path):
    path = write_raw(tmp_path / "contacts.csv", "email\nnot-an-address\n")

    result = cli("contacts", "import", str(path))

    assert result.exit_code == 1
    assert "no records" not in result.stderr
