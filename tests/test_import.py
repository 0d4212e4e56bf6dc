"""Importing contacts (CSV, JSONL), events (JSONL) and coupon codes (CSV) from files.

A bad record is reported with its line number and reason; every good one is still imported.
"""

import json

import pytest

from automator.importing import files
from automator.store import contacts as contact_store
from tests.conftest import cart, utc, write_jsonl
from tests.importing import cart_event, contact, event_keys, stored_events, write_csv


def contact_dates(store, email):
    with store.session() as session:
        return contact_store.dates(session, contact_store.by_email(session, email).id)


def stage_changes(store, email):
    with store.session() as session:
        found = contact_store.by_email(session, email)
        return [(c.from_stage, c.to_stage, c.cause) for c in contact_store.stage_history(session, found.id)]


HEADER = "email,first_name,last_name,locale,timezone,stage,plan"


# Contacts


def test_csv_contacts_are_imported_with_their_known_fields(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv", HEADER, "lan@example.com,Lan,Nguyen,vi,Asia/Ho_Chi_Minh,consideration,pro"
    )
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stdout) == (0, "imported 1 contacts, rejected 0\n")
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.last_name, lan.locale, lan.timezone, lan.stage) == (
        "Lan",
        "Nguyen",
        "vi",
        "Asia/Ho_Chi_Minh",
        "consideration",
    )


def test_other_columns_are_kept_as_attributes(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,plan,city", "lan@example.com,pro,Huế")
    cli("contacts", "import", str(path))
    assert contact(store, "lan@example.com").attributes == {"plan": "pro", "city": "Huế"}


def test_email_is_lowercased(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,first_name", "  Lan.Nguyen@Example.COM ,Lan")
    cli("contacts", "import", str(path))
    assert contact(store, "lan.nguyen@example.com").first_name == "Lan"


def test_an_iso_date_becomes_a_contact_date_at_local_midnight(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv", "email,timezone,trial_ends_at", "lan@example.com,Asia/Ho_Chi_Minh,2026-12-01"
    )
    cli("contacts", "import", str(path))
    assert contact(store, "lan@example.com").attributes == {"trial_ends_at": "2026-12-01"}
    assert contact_dates(store, "lan@example.com") == {"trial_ends_at": utc("2026-11-30 17:00")}


def test_an_iso_time_with_an_offset_is_stored_in_utc(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"email": "lan@example.com", "renews_at": "2026-12-20T09:30:00+07:00"}]
    )
    cli("contacts", "import", str(path))
    assert contact(store, "lan@example.com").attributes == {"renews_at": "2026-12-20T02:30:00+00:00"}
    assert contact_dates(store, "lan@example.com") == {"renews_at": utc("2026-12-20 02:30")}


def test_an_iso_time_without_an_offset_is_read_in_the_contacts_time_zone(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [{"email": "amy@example.com", "timezone": "America/New_York", "renews_at": "2026-12-20T09:00:00"}],
    )
    cli("contacts", "import", str(path))
    assert contact_dates(store, "amy@example.com") == {"renews_at": utc("2026-12-20 14:00")}


def test_a_date_without_a_contact_time_zone_uses_the_projects(cli, store, tmp_path):
    # automator.toml says Asia/Ho_Chi_Minh.
    path = write_csv(tmp_path / "c.csv", "email,trial_ends_at", "lan@example.com,2026-12-01")
    cli("contacts", "import", str(path))
    assert contact_dates(store, "lan@example.com") == {"trial_ends_at": utc("2026-11-30 17:00")}


def test_text_that_only_looks_like_a_date_stays_text(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,order_ref", "lan@example.com,2026-99-01-A")
    cli("contacts", "import", str(path))
    assert contact(store, "lan@example.com").attributes == {"order_ref": "2026-99-01-A"}
    assert contact_dates(store, "lan@example.com") == {}


def test_importing_twice_updates_the_contact_instead_of_adding_one(cli, store, tmp_path):
    first = write_csv(tmp_path / "a.csv", "email,first_name,plan", "lan@example.com,Lan,basic")
    second = write_csv(tmp_path / "b.csv", "email,first_name,plan", "LAN@example.com,Lan Anh,pro")
    cli("contacts", "import", str(first))
    before = contact(store, "lan@example.com").id
    assert cli("contacts", "import", str(second)).stdout == "imported 1 contacts, rejected 0\n"
    after = contact(store, "lan@example.com")
    assert (after.id, after.first_name, after.attributes) == (before, "Lan Anh", {"plan": "pro"})


def test_a_reimport_keeps_attributes_it_does_not_mention(cli, store, tmp_path):
    cli("contacts", "import", str(write_csv(tmp_path / "a.csv", "email,plan", "lan@example.com,pro")))
    cli("contacts", "import", str(write_csv(tmp_path / "b.csv", "email,city", "lan@example.com,Huế")))
    assert contact(store, "lan@example.com").attributes == {"plan": "pro", "city": "Huế"}


def test_a_changed_date_replaces_the_old_one(cli, store, tmp_path):
    cli(
        "contacts",
        "import",
        str(write_csv(tmp_path / "a.csv", "email,renews_at", "lan@example.com,2026-12-20")),
    )
    cli(
        "contacts",
        "import",
        str(write_csv(tmp_path / "b.csv", "email,renews_at", "lan@example.com,2027-01-05")),
    )
    assert contact_dates(store, "lan@example.com") == {"renews_at": utc("2027-01-04 17:00")}


def test_an_attribute_that_is_no_longer_a_date_leaves_the_date_index(cli, store, tmp_path):
    cli(
        "contacts",
        "import",
        str(write_csv(tmp_path / "a.csv", "email,renews_at", "lan@example.com,2026-12-20")),
    )
    cli(
        "contacts",
        "import",
        str(write_csv(tmp_path / "b.csv", "email,renews_at", "lan@example.com,cancelled")),
    )
    assert contact(store, "lan@example.com").attributes == {"renews_at": "cancelled"}
    assert contact_dates(store, "lan@example.com") == {}


def test_an_imported_stage_is_recorded_with_its_cause(cli, store, tmp_path):
    cli("contacts", "import", str(write_csv(tmp_path / "c.csv", "email,stage", "lan@example.com,retention")))
    assert stage_changes(store, "lan@example.com") == [(None, "retention", "import")]


def test_a_bad_email_is_rejected_with_its_line_and_the_others_imported(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        "email,first_name",
        "lan@example.com,Lan",
        "lan-at-example.com,X",
        "minh@example.com,Minh",
    )
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f'rejected {path}:3: email: email "lan-at-example.com" is not valid: '
        "An email address must have an @-sign.\n"
    )
    assert result.stdout == "imported 2 contacts, rejected 1\n"
    assert contact(store, "minh@example.com") is not None


def test_a_record_without_an_email_is_rejected(cli, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"first_name": "Lan"}])
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (1, f"rejected {path}:1: email: Field required\n")


def test_an_unknown_time_zone_is_rejected_with_a_hint(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        "email,timezone",
        "lan@example.com,Asia/Saigon City",
        "minh@example.com,Asia/Bangkok",
    )
    result = cli("contacts", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == (
        f'rejected {path}:2: timezone: unknown time zone "Asia/Saigon City" '
        "(use an IANA name such as Asia/Ho_Chi_Minh)\n"
    )
    assert (contact(store, "lan@example.com"), contact(store, "minh@example.com").timezone) == (
        None,
        "Asia/Bangkok",
    )


@pytest.mark.parametrize("locale", ["vi", "en", "haw", "en-GB", "pt_BR", "zh-Hant-TW", "es-419"])
def test_a_language_tag_is_taken_as_the_locale_as_given(cli, store, tmp_path, locale):
    path = write_csv(tmp_path / "c.csv", "email,locale", f"lan@example.com,{locale}")
    assert cli("contacts", "import", str(path)).exit_code == 0
    assert contact(store, "lan@example.com").locale == locale


@pytest.mark.parametrize("locale", ["fr FR", "english", "e", "en-", "en_GB_", "fr-a", "12", "en-toolongtag"])
def test_a_locale_that_is_not_a_language_tag_is_rejected(cli, store, tmp_path, locale):
    path = write_csv(tmp_path / "c.csv", "email,locale", f"lan@example.com,{locale}", "minh@example.com,vi")
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f'rejected {path}:2: locale: "{locale}" is not a language tag (such as vi, en-GB or pt_BR)\n',
    )
    assert (contact(store, "lan@example.com"), contact(store, "minh@example.com").locale) == (None, "vi")


def test_a_refused_locale_is_shown_with_its_invisible_characters_escaped(cli, store, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"email": "lan@example.com", "locale": "en\u202eGB"}])
    result = cli("contacts", "import", str(path))
    assert result.stderr == (
        f'rejected {path}:1: locale: "en\\u202eGB" is not a language tag (such as vi, en-GB or pt_BR)\n'
    )


def test_an_unknown_stage_is_rejected_with_the_journeys_stages(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,stage", "lan@example.com,shopping")
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f'rejected {path}:2: stage: unknown stage "shopping" '
        "(stages are awareness, consideration, conversion, retention, loyalty)\n",
    )
    assert contact(store, "lan@example.com") is None


def test_a_csv_row_with_too_many_columns_is_rejected(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv", "email,first_name", "lan@example.com,Lan,extra", "minh@example.com,Minh"
    )
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f"rejected {path}:2: 3 fields where the header has 2 columns; the ones past it belong to no column\n",
    )
    assert contact(store, "lan@example.com") is None
    assert contact(store, "minh@example.com") is not None


def test_a_csv_row_shorter_than_its_header_is_imported_with_a_warning(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv", "email,first_name,plan", "lan@example.com,Lan", "minh@example.com,Minh,pro"
    )

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "imported 2 contacts, rejected 0, 1 warning\n",
        f"warning {path}:2: 2 fields where the header has 3 columns; the missing ones are empty\n",
    )
    lan = contact(store, "lan@example.com")
    assert lan is not None and (lan.first_name, lan.attributes) == ("Lan", {})


def test_an_events_csv_row_shorter_than_its_header_is_imported_with_a_warning(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "e.csv", "type,email,at,id", "order_placed,lan@example.com,2026-11-20T10:00:00Z"
    )

    result = cli("events", "import", str(path))

    assert (result.exit_code, result.stdout, result.stderr) == (
        0,
        "imported 1 events, rejected 0, 1 warning\n",
        f"warning {path}:2: 3 fields where the header has 4 columns; the missing ones are empty\n",
    )
    assert [event.type for event in stored_events(store, "lan@example.com")] == ["order_placed"]


def test_a_value_under_a_column_the_header_leaves_unnamed_rejects_its_row(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,,plan", "lan@example.com,,pro", "minh@example.com,vip,pro")

    result = cli("contacts", "import", str(path))

    assert (result.stdout, result.stderr) == (
        "imported 1 contacts, rejected 1\n",
        f"rejected {path}:3: a value in column 2, which the header row leaves without a name\n",
    )
    assert contact(store, "lan@example.com").attributes == {"plan": "pro"}
    assert contact(store, "minh@example.com") is None


def test_a_header_naming_a_column_twice_is_refused_before_any_row(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,first_name,email", "d1@example.com,D,d2@example.com")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stderr) == (1, f"error: {path}:1: the header row names email twice\n")
    assert contact(store, "d1@example.com") is None
    assert contact(store, "d2@example.com") is None


def test_a_csv_header_naming_the_fields_as_a_spreadsheet_does_is_read(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "Email,First Name,LAST_NAME,Plan", "lan@example.com,Lan,Nguyen,pro")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout) == (0, "imported 1 contacts, rejected 0\n")
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.last_name, lan.attributes) == ("Lan", "Nguyen", {"Plan": "pro"})


def test_an_export_naming_its_address_column_email_address_is_read(cli, store, tmp_path):
    """As Mailchimp's export names it; without the alias every row was rejected for lacking
    an email."""
    path = write_csv(tmp_path / "c.csv", "Email Address,First Name,Plan", "lan@example.com,Lan,pro")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout) == (0, "imported 1 contacts, rejected 0\n")
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.attributes) == ("Lan", {"Plan": "pro"})


def test_an_email_column_leaves_an_email_address_column_an_attribute(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,Email Address", "lan@example.com,lan.old@example.com")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout) == (0, "imported 1 contacts, rejected 0\n")
    assert contact(store, "lan@example.com").attributes == {"Email Address": "lan.old@example.com"}
    assert contact(store, "lan.old@example.com") is None


def test_two_columns_that_could_each_be_the_address_are_refused_before_any_row(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "E-mail,Email Address", "d1@example.com,d2@example.com")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stderr) == (
        1,
        f'error: {path}:1: the header row: "E-mail" and "Email Address" could each be the email address: '
        "name one of them email\n",
    )
    assert contact(store, "d1@example.com") is None


def test_an_address_column_named_twice_is_said_to_be_named_twice(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "Email Address, Email Address", "d1@example.com,d2@example.com")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {path}:1: the header row names Email Address twice\n",
    )


def test_an_events_csv_naming_its_address_column_e_mail_is_read(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "e.csv", "id,type,E-mail,at", "evt-1,cart_updated,lan@example.com,2026-11-20T03:00:00Z"
    )

    assert cli("events", "import", str(path)).stdout == "imported 1 events, rejected 0\n"
    assert event_keys(store, "lan@example.com") == ["evt-1"]


def test_an_events_csv_header_in_capitals_is_read(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "e.csv", "ID,Type,Email,At", "evt-1,cart_updated,lan@example.com,2026-11-20T03:00:00Z"
    )

    assert cli("events", "import", str(path)).stdout == "imported 1 events, rejected 0\n"
    assert event_keys(store, "lan@example.com") == ["evt-1"]


def test_an_events_csv_carries_its_other_columns_as_properties(cli, store, tmp_path):
    """As a contacts CSV's other columns are attributes: an order export imports as it is,
    its values as text, an empty cell leaving its property out."""
    path = write_csv(
        tmp_path / "e.csv",
        "id,type,email,at,Order ID,total",
        "evt-1,order_placed,lan@example.com,2026-11-20T03:00:00Z,O-17,420000",
        "evt-2,order_placed,minh@example.com,2026-11-20T04:00:00Z,,99",
    )

    assert cli("events", "import", str(path)).stdout == "imported 2 events, rejected 0\n"
    [lan] = stored_events(store, "lan@example.com")
    [minh] = stored_events(store, "minh@example.com")
    assert (lan.key, lan.properties) == ("evt-1", {"Order ID": "O-17", "total": "420000"})
    assert (minh.key, minh.properties) == ("evt-2", {"total": "99"})


def test_an_events_csv_column_named_properties_rejects_its_rows(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "e.csv",
        "type,email,at,properties",
        'order_placed,lan@example.com,2026-11-20T03:00:00Z,"{}"',
    )

    result = cli("events", "import", str(path))

    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "imported 0 events, rejected 1\n",
        f"rejected {path}:2: properties: a CSV has no properties column; every column other than id, "
        "type, email and at is a property, named by its header\n",
    )
    assert stored_events(store, "lan@example.com") == []


def test_a_header_naming_a_field_twice_in_two_cases_is_refused(cli, store, tmp_path):
    path = write_csv(tmp_path / "c.csv", "email,Email", "d1@example.com,d2@example.com")

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stderr) == (1, f"error: {path}:1: the header row names email twice\n")


def test_a_csv_saved_with_a_byte_order_mark_is_read(cli, store, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("email,first_name\nlan@example.com,Lan\n", encoding="utf-8-sig")
    assert cli("contacts", "import", str(path)).exit_code == 0
    assert contact(store, "lan@example.com").first_name == "Lan"


def test_jsonl_contacts_are_imported(cli, store, tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"email": "lan@example.com", "locale": "vi", "vip": True}])
    assert cli("contacts", "import", str(path)).exit_code == 0
    lan = contact(store, "lan@example.com")
    assert (lan.locale, lan.attributes) == ("vi", {"vip": True})


def test_a_file_that_is_neither_csv_nor_jsonl_is_refused(cli, tmp_path):
    path = tmp_path / "contacts.xlsx"
    path.write_text("email\nlan@example.com\n", encoding="utf-8")
    result = cli("contacts", "import", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: {path}: use a .csv (with a header row), .jsonl or .json file\n",
    )


# Events


def test_an_event_is_stored_with_its_time_in_utc(cli, store, tmp_path):
    result = cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [cart_event()])))
    assert (result.exit_code, result.stdout) == (0, "imported 1 events, rejected 0\n")
    (event,) = stored_events(store, "lan@example.com")
    assert (event.key, event.type, event.at, event.properties) == (
        "evt-1",
        "cart_updated",
        utc("2026-11-20 03:00"),
        cart(),
    )


def test_an_event_id_seen_twice_is_stored_once(cli, store, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(), cart_event()])
    assert cli("events", "import", str(path)).stdout == "imported 1 events, 1 already known, rejected 0\n"
    assert len(stored_events(store, "lan@example.com")) == 1


def test_an_event_id_longer_than_the_store_keeps_is_rejected_alone(cli, store, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id="x" * 201), cart_event(id="evt-1")])
    result = cli("events", "import", str(path))
    assert result.stdout == "imported 1 events, rejected 1\n"
    assert result.stderr.startswith(f"rejected {path}:1: id: ")
    assert "at most 200 characters" in result.stderr
    assert len(stored_events(store, "lan@example.com")) == 1


def test_reimporting_the_same_file_stores_nothing_new(cli, store, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id="evt-1"), cart_event(id="evt-2")])
    cli("events", "import", str(path))
    assert cli("events", "import", str(path)).stdout == "imported 0 events, 2 already known, rejected 0\n"
    assert len(stored_events(store, "lan@example.com")) == 2


def test_an_identical_line_without_an_id_is_stored_once(cli, store, tmp_path):
    event = cart_event()
    del event["id"]
    path = write_jsonl(tmp_path / "e.jsonl", [event, event])
    assert cli("events", "import", str(path)).stdout == "imported 1 events, 1 already known, rejected 0\n"
    assert len(stored_events(store, "lan@example.com")) == 1


def test_events_with_a_blank_id_are_known_by_their_content_not_the_blank(cli, store, tmp_path):
    first, second = cart_event(id=" "), cart_event(id=" ", at="2026-11-20T11:00:00+07:00")
    path = write_jsonl(tmp_path / "e.jsonl", [first, second, second])

    assert cli("events", "import", str(path)).stdout == "imported 2 events, 1 already known, rejected 0\n"
    assert len(stored_events(store, "lan@example.com")) == 2


def test_the_same_moment_written_with_another_offset_is_the_same_event(cli, store, tmp_path):
    local, utc_form = cart_event(), cart_event(at="2026-11-20T03:00:00Z")
    del local["id"], utc_form["id"]
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [local, utc_form])))
    assert len(stored_events(store, "lan@example.com")) == 1


def test_events_without_an_id_that_differ_are_both_stored(cli, store, tmp_path):
    first, second = cart_event(), cart_event(properties=cart(total=990_000))
    del first["id"], second["id"]
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [first, second])))
    assert len(stored_events(store, "lan@example.com")) == 2


def test_an_event_for_an_unknown_email_creates_the_contact(cli, store, tmp_path):
    cli(
        "events",
        "import",
        str(write_jsonl(tmp_path / "e.jsonl", [cart_event(email="New.Buyer@Example.com")])),
    )
    assert contact(store, "new.buyer@example.com") is not None


def test_a_contact_created_by_an_event_starts_in_the_first_stage(cli, store, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(type="page_viewed", email="new@example.com")])
    cli("events", "import", str(path))
    assert contact(store, "new@example.com").stage == "awareness"


@pytest.mark.parametrize(
    "at, reason",
    [
        ("2026-11-20T10:00:00", "has no time zone offset (add Z or +07:00)"),
        ("20/11/2026 10:00", "is not an ISO 8601 time, e.g. 2026-11-20T10:00:00+07:00"),
        ("9999-12-31T23:00:00-05:00", "is out of range: its UTC time is before year 1 or after 9999"),
        ("0001-01-01T00:00:00+07:00", "is out of range: its UTC time is before year 1 or after 9999"),
    ],
)
def test_a_time_without_an_offset_or_not_iso_8601_is_rejected_with_a_clear_reason(
    cli, store, tmp_path, at, reason
):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(at=at), cart_event(id="evt-2")])
    result = cli("events", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr == f'rejected {path}:1: at: "{at}" {reason}\n'
    assert [event.key for event in stored_events(store, "lan@example.com")] == ["evt-2"]


def test_a_line_that_is_not_json_is_rejected_with_its_line_number(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "e.jsonl", [cart_event(id="evt-1"), '{"type": "cart_updated",', cart_event(id="evt-3")]
    )
    result = cli("events", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"rejected {path}:2: not valid JSON: ")
    assert result.stdout == "imported 2 events, rejected 1\n"


def test_a_line_ended_by_a_comma_is_rejected_for_the_comma(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "e.jsonl", [json.dumps(cart_event(id="evt-1")) + ",", cart_event(id="evt-2")]
    )

    result = cli("events", "import", str(path))

    assert result.stderr == (
        f"rejected {path}:1: a comma after the JSON value: "
        "a JSON Lines file holds one value per line, with no comma\n"
    )
    assert result.stdout == "imported 1 events, rejected 1\n"


def test_a_line_nested_too_deep_is_rejected_with_its_line_number(cli, store, tmp_path):
    deep = '{"id": "evt-2", "type": "x", "email": "lan@example.com", "at": "2026-11-20T10:00:00Z", '
    deep += '"properties": {"a": ' + "[" * 100 + "]" * 100 + "}}"
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(id="evt-1"), deep, cart_event(id="evt-3")])

    result = cli("events", "import", str(path))

    assert result.stderr == f"rejected {path}:2: not valid JSON: lists and objects nested more than 32 deep\n"
    assert result.stdout == "imported 2 events, rejected 1\n"


def test_bytes_that_are_not_utf8_reject_their_record_and_the_others_are_imported(cli, store, tmp_path):
    contacts_csv = tmp_path / "c.csv"
    contacts_csv.write_bytes(
        b"email,first_name\nbefore@example.com,B\nlatin@example.com,Jos\xe9\nafter@example.com,A\n"
    )
    events_jsonl = tmp_path / "e.jsonl"
    good = [json.dumps(cart_event(id=f"evt-{n}")).encode() for n in (1, 3)]
    events_jsonl.write_bytes(good[0] + b'\n{"note": "caf\xe9"}\n' + good[1] + b"\n")

    imported = cli("contacts", "import", str(contacts_csv))
    stored = cli("events", "import", str(events_jsonl))

    assert imported.stderr == f"rejected {contacts_csv}:3: not UTF-8 text: byte 0xe9 at character 22\n"
    assert imported.stdout == "imported 2 contacts, rejected 1\n"
    assert contact(store, "after@example.com") is not None
    assert contact(store, "latin@example.com") is None
    assert stored.stderr == f"rejected {events_jsonl}:2: not UTF-8 text: byte 0xe9 at character 14\n"
    assert [event.key for event in stored_events(store, "lan@example.com")] == ["evt-3", "evt-1"]


def test_a_date_attribute_outside_the_calendar_in_utc_rejects_its_record(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        "email,timezone,renews_at",
        "east@example.com,Asia/Ho_Chi_Minh,0001-01-01",
        "west@example.com,America/New_York,9999-12-31T23:00:00-05:00",
        "fine@example.com,Asia/Ho_Chi_Minh,2027-01-01",
    )

    result = cli("contacts", "import", str(path))

    assert result.stderr.splitlines() == [
        f'rejected {path}:2: renews_at: "0001-01-01" is out of range: its UTC time is before year 1 or '
        "after 9999",
        f'rejected {path}:3: renews_at: "9999-12-31T23:00:00-05:00" is out of range: its UTC time is before '
        "year 1 or after 9999",
    ]
    assert result.stdout == "imported 1 contacts, rejected 2\n"


def test_an_events_properties_are_stored_as_the_file_gives_them(cli, store, tmp_path):
    properties = {
        "order_id": 123456789012345678901234567890,  # beyond 64 bits: kept exact
        "largest_64_bit": 18446744073709551615,
        "below_64_bits": -9223372036854775809,  # 19 digits, and still beyond 64 bits
        "city": "Huế",
        "items": [{"name": "Nón lá", "price": 52.5, "gift": True, "note": None}],
    }
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(properties=properties)])
    assert cli("events", "import", str(path)).stdout == "imported 1 events, rejected 0\n"
    assert [event.properties for event in stored_events(store, "lan@example.com")] == [properties]


@pytest.mark.parametrize(
    ("text", "long"),
    [
        ('{"n": 1234567890123456789}', True),  # 19 digits
        ('{"n": 123456789012345678}', False),  # 18
        ('{"n": 12345678901234567.89}', False),  # 19 digits, split by the point
        ('{"city": "Huế1234567890123456789"}', True),  # right after a character beyond ASCII
        ('{"s": "\\ud800", "t": "\ud800"}', False),  # a lone surrogate, escaped and as it is
    ],
)
def test_a_run_of_19_digits_is_found_wherever_it_is(text: str, long: bool) -> None:
    assert files._has_long_number(text) is long  # such a line is decoded by the standard library


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_number_json_does_not_have_is_rejected_with_its_line(cli, store, tmp_path, value):
    event = '{"id": "%s", "type": "cart_updated", "email": "lan@example.com", "at": "2026-11-20T10:00:00Z"'
    plain = event % "evt-2" + f', "properties": {{"total": {value}}}}}'
    # A line with a number beyond 64 bits is read another way: it refuses them too.
    order = 123456789012345678901234567890
    long = event % "evt-3" + f', "properties": {{"order": {order}, "total": {value}}}}}'
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(), plain, long])
    result = cli("events", "import", str(path))
    assert result.stderr.splitlines()[0].startswith(f"rejected {path}:2: not valid JSON: ")
    assert result.stderr.splitlines()[1].startswith(f"rejected {path}:3: not valid JSON: ")
    assert result.stdout == "imported 1 events, rejected 2\n"


def test_a_json_line_that_is_not_an_object_is_rejected(cli, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", ['["cart_updated"]'])
    result = cli("events", "import", str(path))
    assert result.stderr == f"rejected {path}:1: each line must be a JSON object\n"


def test_an_event_with_a_bad_email_is_rejected(cli, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(email="lan")])
    result = cli("events", "import", str(path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f'rejected {path}:1: email: email "lan" is not valid')


def test_a_cart_update_moves_the_contact_to_consideration_with_its_cause(cli, store, make_contact, tmp_path):
    make_contact("lan@example.com", stage="awareness")
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [cart_event()])))
    assert contact(store, "lan@example.com").stage == "consideration"
    assert ("awareness", "consideration", "event cart_updated (evt-1)") in stage_changes(
        store, "lan@example.com"
    )


def test_an_order_moves_the_contact_to_retention_at_the_time_of_the_order(cli, store, make_contact, tmp_path):
    make_contact("lan@example.com", stage="consideration")
    order = cart_event(
        id="ord-1", type="order_placed", at="2026-11-20T12:00:00Z", properties={"order_id": "o1"}
    )
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [order])))
    lan = contact(store, "lan@example.com")
    assert (lan.stage, lan.stage_entered_at) == ("retention", utc("2026-11-20 12:00"))
    assert ("consideration", "retention", "event order_placed (ord-1)") in stage_changes(
        store, "lan@example.com"
    )


def test_moves_in_one_file_are_applied_in_event_order(cli, store, make_contact, tmp_path):
    make_contact("lan@example.com", stage="awareness")
    order = cart_event(id="ord-1", type="order_placed", at="2026-11-20T12:00:00Z")
    cart_update = cart_event(id="evt-1", at="2026-11-20T11:00:00Z")
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [order, cart_update])))
    moves = [change for change in stage_changes(store, "lan@example.com") if change[2] != "import"]
    assert moves == [
        ("awareness", "consideration", "event cart_updated (evt-1)"),
        ("consideration", "retention", "event order_placed (ord-1)"),
    ]


def test_events_only_move_contacts_forward(cli, store, make_contact, tmp_path):
    make_contact("lan@example.com", stage="retention")
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [cart_event()])))
    assert contact(store, "lan@example.com").stage == "retention"
    assert stage_changes(store, "lan@example.com") == [(None, "retention", "import")]


def test_a_duplicate_id_in_one_file_does_not_move_the_contact(cli, store, make_contact, tmp_path):
    make_contact("lan@example.com", stage="consideration")
    reused = cart_event(type="order_placed", at="2026-11-20T12:00:00Z", properties={"order_id": "o1"})
    cli("events", "import", str(write_jsonl(tmp_path / "e.jsonl", [cart_event(), reused])))
    assert [event.type for event in stored_events(store, "lan@example.com")] == ["cart_updated"]
    assert contact(store, "lan@example.com").stage == "consideration"


def test_an_event_with_an_unknown_top_level_field_is_rejected(cli, tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [cart_event(total=5)])
    result = cli("events", "import", str(path))
    assert (result.exit_code, result.stderr) == (
        1,
        f"rejected {path}:1: total: Extra inputs are not permitted\n",
    )


# Coupons


def test_coupon_codes_are_imported_into_a_pool_and_listed(cli, tmp_path):
    path = write_csv(tmp_path / "codes.csv", "code", "RENEW-001", "RENEW-002", "RENEW-003")
    result = cli("coupons", "import", "renewal", str(path), "--percent-off", "15")
    assert (result.exit_code, result.stdout) == (
        0,
        "pool renewal: added 3 codes, 0 already known, rejected 0\n",
    )
    assert cli("coupons", "list").stdout == "renewal\tfree 3\ttaken 0\n"


def test_reimported_codes_are_not_added_twice(cli, tmp_path):
    path = write_csv(tmp_path / "codes.csv", "code", "RENEW-001", "RENEW-002")
    cli("coupons", "import", "renewal", str(path))
    assert cli("coupons", "import", "renewal", str(path)).stdout == (
        "pool renewal: added 0 codes, 2 already known, rejected 0\n"
    )
    assert cli("coupons", "list").stdout == "renewal\tfree 2\ttaken 0\n"


def test_a_file_of_bare_codes_without_a_header_is_read(cli, tmp_path):
    cli("coupons", "import", "vip", str(write_csv(tmp_path / "codes.csv", "VIP1", "VIP2")))
    assert cli("coupons", "list").stdout == "vip\tfree 2\ttaken 0\n"


def test_a_bad_code_is_rejected_with_its_line_and_the_others_imported(cli, tmp_path):
    path = write_csv(tmp_path / "codes.csv", "code", "RENEW-001", "RENEW 002!", "RENEW-003")
    result = cli("coupons", "import", "renewal", str(path))
    assert result.exit_code == 1
    assert result.stderr == f'rejected {path}:3: "RENEW 002!" is not a coupon code\n'
    assert cli("coupons", "list").stdout == "renewal\tfree 2\ttaken 0\n"


def test_pools_are_listed_separately(cli, tmp_path):
    cli("coupons", "import", "renewal", str(write_csv(tmp_path / "a.csv", "code", "R1")))
    cli("coupons", "import", "winback", str(write_csv(tmp_path / "b.csv", "code", "W1", "W2")))
    assert cli("coupons", "list").stdout == "renewal\tfree 1\ttaken 0\nwinback\tfree 2\ttaken 0\n"


def test_a_renewal_offer_takes_one_code_from_the_pool(cli, make_contact, tmp_path):
    cli("coupons", "import", "renewal", str(write_csv(tmp_path / "codes.csv", "code", "R1", "R2", "R3")))
    # Renews on Dec 20 (Saigon); the offer is due 30 days before, at 17:00 UTC on Nov 19.
    make_contact("lan@example.com", stage="retention", renews_at="2026-12-20")
    assert cli("tick", "--now", "2026-11-20T03:00:00Z").exit_code == 0
    assert cli("coupons", "list").stdout == "renewal\tfree 2\ttaken 1\n"
    (message,) = json.loads(cli("queue", "list", "--json").stdout)
    assert (message["rule"], message["status"]) == ("renewal_offer", "sent")


def test_two_lines_for_one_address_in_any_case_are_merged_and_counted_so(cli, store, tmp_path):
    path = write_csv(
        tmp_path / "c.csv",
        "email,first_name,plan,city",
        "Lan@Example.com,Lan,pro,",
        "lan@example.com,,,Huế",
    )

    result = cli("contacts", "import", str(path))

    assert result.stdout == (
        "imported 2 contacts (1 merged into an earlier record for the same address), rejected 0\n"
    )
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.attributes) == ("Lan", {"plan": "pro", "city": "Huế"})


def test_a_date_in_a_merged_line_is_placed_in_the_time_zone_an_earlier_line_set(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"email": "lan@example.com", "timezone": "Europe/Paris"},
            {"email": "lan@example.com", "trial_ends_at": "2026-12-01"},
        ],
    )

    cli("contacts", "import", str(path))

    assert contact_dates(store, "lan@example.com") == {"trial_ends_at": utc("2026-11-30 23:00")}


def test_json_keys_name_the_fields_whatever_their_case_as_csv_headers_do(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"Email": "lan@example.com", "First Name": "Lan", "plan": "pro"}]
    )

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout) == (0, "imported 1 contacts, rejected 0\n")
    lan = contact(store, "lan@example.com")
    assert (lan.first_name, lan.attributes) == ("Lan", {"plan": "pro"})


def test_a_json_contact_may_name_its_email_email_address(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"email_address": "lan@example.com", "first_name": "Lan"},
            {"E-mail": "minh@example.com", "Email Address": "minh@example.org"},
        ],
    )

    result = cli("contacts", "import", str(path))

    assert (result.exit_code, result.stdout, result.stderr) == (
        1,
        "imported 1 contacts, rejected 1\n",
        f'rejected {path}:2: "E-mail" and "Email Address" could each be the email address: '
        "name one of them email\n",
    )
    assert contact(store, "lan@example.com").first_name == "Lan"
    assert contact(store, "minh@example.com") is None


def test_a_json_key_that_is_empty_is_refused_with_its_line(cli, store, tmp_path):
    path = write_jsonl(
        tmp_path / "c.jsonl", [{"email": "an@example.com"}, {"email": "lan@example.com", "": "pro"}]
    )

    result = cli("contacts", "import", str(path))

    assert result.exit_code == 1
    assert result.stderr == f'rejected {path}:2: a field with an empty name (""): every field needs a name\n'
    assert contact(store, "lan@example.com") is None
