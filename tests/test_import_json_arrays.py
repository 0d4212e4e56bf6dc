"""A .json file that holds one JSON array of records, as an export writes it over many lines:
every record is imported, or, when the array's text breaks off, none is, with the place."""

import json

from automator.importing import json_arrays
from tests.importing import cart_event, contact, event_keys, write_raw


def pretty(records):
    return json.dumps(records, indent=2, ensure_ascii=False) + "\n"


def test_a_pretty_printed_array_of_contacts_is_imported_whole(cli, store, tmp_path):
    people = [{"email": f"c{number}@example.com", "first_name": "Lan", "plan": "pro"} for number in range(3)]
    path = write_raw(tmp_path / "contacts.json", pretty(people))

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout, result.stderr) == (0, "imported 3 contacts, rejected 0\n", "")
    assert [contact(store, f"c{number}@example.com").first_name for number in range(3)] == ["Lan"] * 3


def test_an_item_that_is_wrong_is_rejected_by_the_line_it_starts_on(cli, store, tmp_path):
    events = [cart_event(id="evt-1"), cart_event(id="evt-2", type="cart updated"), cart_event(id="evt-3")]
    path = write_raw(tmp_path / "events.json", pretty(events))
    starts = [number for number, line in enumerate(pretty(events).splitlines(), start=1) if line == "  {"]

    result = cli("events", "import", str(path))

    assert result.exit_code == 1
    assert result.stderr.startswith(f"rejected {path}:{starts[1]}: type: ")
    assert result.stdout == "imported 2 events, rejected 1\n"
    assert sorted(event_keys(store, "lan@example.com")) == ["evt-1", "evt-3"]


def test_an_item_longer_than_a_read_is_read_whole(cli, store, tmp_path, monkeypatch):
    monkeypatch.setattr(json_arrays, "_CHUNK", 16)
    events = [cart_event(id=f"evt-{number}", properties={"note": "x" * 100}) for number in range(4)]
    path = write_raw(tmp_path / "events.json", pretty(events))

    result = cli("events", "import", str(path))

    assert (result.exit_code, result.stdout) == (0, "imported 4 events, rejected 0\n")


def test_an_array_whose_text_breaks_off_is_refused_before_any_record(cli, store, tmp_path):
    people = [{"email": f"{name}@example.com"} for name in ("an", "binh", "cuong")]
    text = pretty(people)
    broken = text.replace('"binh@example.com"\n  },', '"binh@example.com"\n  }')  # a comma left out
    path = write_raw(tmp_path / "contacts.json", broken)

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: {path}:8:3: expected , or ] after an item of the array; nothing was imported from the file\n"
    )
    assert contact(store, "an@example.com") is None


def test_an_array_cut_short_is_refused(cli, store, tmp_path):
    text = pretty([{"email": "an@example.com"}, {"email": "binh@example.com"}])
    path = write_raw(tmp_path / "contacts.json", text[: text.rindex("]")])

    result = cli("contacts", "import", str(path))

    assert result.exit_code == 1
    assert "the file ends before the array's ]" in result.stderr
    assert contact(store, "an@example.com") is None
