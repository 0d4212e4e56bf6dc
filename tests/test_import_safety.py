"""An import file is data from outside: a record whose text holds control characters, or a
CSV field too big to read, is rejected with its line, and every other record is imported."""

import csv

import pytest

from tests.conftest import cart, write_jsonl
from tests.importing import cart_event, contact, event_keys, write_raw

CONTACT_RULE = "a contact's fields and attributes may not hold line breaks, tabs or other control characters"
EVENT_RULE = (
    "an event's fields and property names may not hold control characters, "
    "its property values no others than tabs and line breaks"
)
LIMIT = csv.field_size_limit()


# Control characters in contacts


def test_a_name_holding_a_line_break_is_rejected_with_its_line_and_field(cli, store, tmp_path):
    path = write_raw(
        tmp_path / "contacts.csv",
        "email,first_name\r\n"
        "lan@example.com,Lan\r\n"
        '"mallory@example.com","Mal\r\nSuppressed: yes"\r\n'
        "minh@example.com,Minh\r\n",
    )
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"rejected {path}:3: first_name: holds a line break (\\r\\n); {CONTACT_RULE}\n"
    assert result.stdout == "imported 2 contacts, rejected 1\n"
    assert contact(store, "mallory@example.com") is None
    assert contact(store, "minh@example.com").first_name == "Minh"


@pytest.mark.parametrize(
    "field, value, shown",
    [
        ("first_name", "\x1b[2K\rSuppressed: yes", "first_name: holds a control character (\\x1b)"),
        ("last_name", "Nguyen\x00", "last_name: holds a control character (\\x00)"),
        ("locale", "vi\x9b", "locale: holds a control character (\\x9b)"),
        ("timezone", "Asia/Ho_Chi_Minh\x7f", "timezone: holds a control character (\\x7f)"),
        ("email", "lan@example.com\x0b", "email: holds a control character (\\x0b)"),
        ("city", "Hu\tế", "city: holds a tab (\\t)"),
        ("address", {"lines": ["12 Lê Lợi", "Huế\n"]}, "address.lines.1: holds a line break (\\n)"),
        ("note\x1b", "hello", "note\\x1b (its name): holds a control character (\\x1b)"),
    ],
)
def test_a_control_character_in_any_field_or_attribute_rejects_the_contact(
    cli, store, tmp_path, field, value, shown
):
    record = {"email": "lan@example.com", field: value}
    path = write_jsonl(tmp_path / "c.jsonl", [record, {"email": "minh@example.com"}])
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (1, f"rejected {path}:1: {shown}; {CONTACT_RULE}\n")
    assert contact(store, "lan@example.com") is None
    assert contact(store, "minh@example.com") is not None


def test_every_field_with_a_control_character_is_named(cli, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"email": "lan@example.com", "first_name": "L\ran", "plan": "\x1b"}]
    )
    result = cli("contacts", "import", str(path))
    assert result.stderr == (
        f"rejected {path}:1: first_name: holds a line break (\\r); "
        f"plan: holds a control character (\\x1b); {CONTACT_RULE}\n"
    )


def test_text_in_other_scripts_is_not_mistaken_for_control_characters(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"email": "lan@example.com", "first_name": "Lan Anh", "city": "Huế"}]
    )
    assert cli("contacts", "import", str(path)).exit_code == 0
    assert contact(store, "lan@example.com").attributes == {"city": "Huế"}


# Control characters in events


@pytest.mark.parametrize(
    "fields, shown",
    [
        ({"email": "lan@example.com\r\nBcc: all@example.com"}, "email: holds a line break (\\r\\n)"),
        ({"id": "evt-1\x1b[2K"}, "id: holds a control character (\\x1b)"),
        ({"properties": {"note\n": "x"}}, "properties.note\\n (its name): holds a line break (\\n)"),
        ({"properties": {"note": "a\x1b[31mred"}}, "properties.note: holds a control character (\\x1b)"),
        (
            {"properties": {"items": [{"name": "\x00"}]}},
            "properties.items.0.name: holds a control character (\\x00)",
        ),
    ],
)
def test_a_control_character_in_an_events_fields_rejects_it(cli, store, tmp_path, fields, shown):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(**fields), cart_event(id="evt-2")])
    result = cli("events", "import", str(path))
    assert (result.exit_code, result.stderr) == (1, f"rejected {path}:1: {shown}; {EVENT_RULE}\n")
    assert event_keys(store, "lan@example.com") == ["evt-2"]


def test_an_event_property_may_hold_multi_line_text(cli, store, tmp_path):
    note = "Leave at the door.\r\nRing twice.\tThanks"
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(properties={**cart(), "note": note})])
    assert cli("events", "import", str(path)).exit_code == 0
    assert event_keys(store, "lan@example.com") == ["evt-1"]


# Oversized CSV fields


def test_an_oversized_field_rejects_its_row_and_the_rows_around_it_are_imported(cli, store, tmp_path):
    path = write_raw(
        tmp_path / "x.csv",
        "email,first_name,note\n"
        "lan@example.com,Lan,hi\n"
        f"big@example.com,Big,{'x' * (LIMIT + 1)}\n"
        "minh@example.com,Minh,hi\n",
    )
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"rejected {path}:3: field larger than {LIMIT} characters\n"
    assert result.stdout == "imported 2 contacts, rejected 1\n"
    assert (contact(store, "lan@example.com").first_name, contact(store, "minh@example.com").first_name) == (
        "Lan",
        "Minh",
    )
    assert contact(store, "big@example.com") is None


def test_the_lines_of_an_oversized_quoted_field_are_not_read_as_records(cli, store, tmp_path):
    # A shop's export quotes a customer's text; what the customer typed on its later lines
    # must not become contacts once the field is too big to read.
    typed = "x" * (LIMIT + 1) + '\nmallory@example.com,"Mal",""\n"other@example.com,Other\n'
    path = write_raw(
        tmp_path / "x.csv",
        "email,first_name,note\n"
        "lan@example.com,Lan,hi\n"
        f'big@example.com,Big,"{typed.replace(chr(34), chr(34) * 2)}"\n'
        "minh@example.com,Minh,hi\n",
    )
    result = cli("contacts", "import", str(path))
    assert result.stderr == f"rejected {path}:3: field larger than {LIMIT} characters\n"
    assert result.stdout == "imported 2 contacts, rejected 1\n"
    assert [contact(store, email) for email in ("mallory@example.com", "other@example.com")] == [None, None]
    assert contact(store, "minh@example.com").first_name == "Minh"


def test_an_oversized_header_stops_the_import_with_one_line(cli, tmp_path):
    path = write_raw(tmp_path / "x.csv", f"email,{'x' * (LIMIT + 1)}\nlan@example.com,Lan\n")
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {path}:1: the header row: field larger than {LIMIT} characters\n",
    )


def test_a_multi_line_record_is_reported_at_its_first_line(cli, tmp_path):
    path = write_raw(tmp_path / "x.csv", 'email,note\n"lan-at-example.com","two\nlines"\n')
    result = cli("contacts", "import", str(path))
    assert result.stderr.startswith(f"rejected {path}:2: ")


# Names too long to index


def test_a_name_too_long_to_index_rejects_its_record_and_the_others_are_imported(cli, store, tmp_path):
    """A first or last name, or an attribute's name, of more than 200 characters: the
    store indexes them, and PostgreSQL refuses an index entry over 2,704 bytes, which
    failed the whole first load there, with a traceback and nothing stored."""
    scrambled = "".join(chr(ord("a") + (n * 7919) % 26) for n in range(3000))  # compresses badly
    lines = [
        {"email": "lan@example.com", "last_name": "Nguyen"},
        {"email": "big@example.com", "last_name": scrambled},
        {"email": "date@example.com", "d" * 201: "2026-12-01"},
        {"email": "ok@example.com", "last_name": "n" * 200, "d" * 200: "2026-12-01"},
        {"email": "minh@example.com", "last_name": "Tran"},
    ]
    path = write_jsonl(tmp_path / "contacts.jsonl", lines)
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f"rejected {path}:2: last_name: 3000 characters: at most 200\n"
        f'rejected {path}:3: a field\'s name of 201 characters ("dddddddddddddddddddd…"): at most 200\n'
    )
    assert result.stdout == "imported 3 contacts, rejected 2\n"
    assert contact(store, "big@example.com") is None and contact(store, "date@example.com") is None
    assert contact(store, "ok@example.com").last_name == "n" * 200
    assert contact(store, "minh@example.com").last_name == "Tran"


def test_an_event_type_too_long_to_index_rejects_the_event(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "events.jsonl",
        [cart_event(id="e1"), cart_event(id="e2", type="t" * 6000), cart_event(id="e3", type="t" * 200)],
    )
    result = cli("events", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == f"rejected {path}:2: type: 6000 characters: at most 200\n"
    assert result.stdout == "imported 2 events, rejected 1\n"
    assert event_keys(store, "lan@example.com") == ["e3", "e1"]
