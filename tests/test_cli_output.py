"""What the CLI prints from the store or a file cannot act on the terminal, and a database
password never reaches it.

The rows below are written straight into the database, as an older import or another tool
could have left them: an ESC sequence in them is shown as the text `\\x1b`, never sent as ESC.
"""

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from automator.store import users
from tests.conftest import cart, utc

FAKE = "\x1b[2K\rSuppressed: yes"  # erase the line, back to its start, paint a lie
SHOWN = "\\x1b[2K\\rSuppressed: yes"


def write(store, sql, **values):
    with store.session() as session:
        session.execute(text(sql), values)


def no_control_characters(output):
    return not any(char in output for char in "\x1b\r\x00\x9b")


@pytest.fixture
def lan(make_contact, store):
    """Lan, whose first name in the database holds an escape sequence."""
    make_contact("lan@example.com", first_name="Lan", locale="vi", timezone="Asia/Ho_Chi_Minh")
    write(store, "UPDATE contact SET first_name = :name WHERE email = 'lan@example.com'", name=FAKE)
    return "lan@example.com"


@pytest.fixture
def message(cli, lan, store, make_event):
    """A reminder to Lan whose subject and rule id in the database hold escape sequences."""
    make_event("cart_updated", utc("2026-11-20 14:00"), email=lan, id="cart-1", **cart())
    assert cli("tick", "--now", "2026-11-20T15:00:00Z").exit_code == 0
    write(store, "UPDATE message SET subject = :subject", subject=f"Your cart{FAKE}\x9b31m")
    return 1


def test_contacts_show_escapes_an_escape_sequence_in_a_name(cli, lan):
    result = cli("contacts", "show", lan)
    assert result.exit_code == 0
    assert no_control_characters(result.stdout)
    assert result.stdout.startswith(f"Contact lan@example.com ({SHOWN})\n")
    assert "\nSuppressed: no\n" in result.stdout


def test_contacts_show_escapes_attributes(cli, lan, store):
    write(
        store,
        "UPDATE contact SET attributes = :attributes WHERE email = :email",
        attributes=json.dumps({f"plan{FAKE}": f"pro{FAKE}"}),
        email=lan,
    )
    result = cli("contacts", "show", lan)
    assert no_control_characters(result.stdout)
    assert f"  plan{SHOWN}: pro{SHOWN}\n" in result.stdout


def test_queue_list_and_show_escape_the_subject(cli, message):
    listing, shown = cli("queue", "list").stdout, cli("queue", "show", str(message)).stdout
    assert no_control_characters(listing + shown)
    assert f"Your cart{SHOWN}\\x9b31m\n" in listing
    assert f"\nSubject: Your cart{SHOWN}\\x9b31m\n" in shown


def test_queue_list_json_escapes_the_subject_and_keeps_it(cli, message):
    output = cli("queue", "list", "--json").stdout
    assert no_control_characters(output)
    assert json.loads(output)[0]["subject"] == f"Your cart{FAKE}\x9b31m"


def test_preview_keeps_the_lines_of_the_body_and_escapes_the_rest(cli, lan, make_event):
    make_event("cart_updated", utc("2026-11-20 14:00"), email=lan, id="cart-1", **cart())
    result = cli("preview", "abandoned_cart", "--contact", lan, "--now", "2026-11-20T15:00:00Z")
    assert no_control_characters(result.stdout)
    assert f"\n\nChào {SHOWN},\n\n" in result.stdout


def test_status_escapes_the_oldest_waiting_message(cli, message, store):
    write(store, "UPDATE message SET rule_id = :rule", rule=f"abandoned_cart{FAKE}")
    result = cli("status")
    assert no_control_characters(result.stdout)
    assert f"(abandoned_cart{SHOWN} to lan@example.com, " in result.stdout


def test_suppressions_list_escapes_the_note(cli):
    cli("suppressions", "add", "lan@example.com", "--note", f"asked by phone{FAKE}")
    result = cli("suppressions", "list")
    assert no_control_characters(result.stdout)
    assert result.stdout.startswith("lan@example.com\tblocked\t")
    assert f"\tasked by phone{SHOWN}\n" in result.stdout


def test_coupons_list_escapes_the_pool_name(cli, tmp_path):
    (tmp_path / "codes.csv").write_text("code\nVIP-1\n", encoding="utf-8")
    imported = cli("coupons", "import", f"vip{FAKE}", str(tmp_path / "codes.csv")).stdout
    listed = cli("coupons", "list").stdout
    assert no_control_characters(imported + listed)
    assert listed == f"vip{SHOWN}\tfree 1\ttaken 0\n"


def test_users_list_escapes_a_name(cli, store):
    with store.session() as session:
        users.add(session, f"mallory{FAKE}", "not-a-hash", "support", datetime.now(UTC))
    result = cli("users", "list")
    assert no_control_characters(result.stdout)
    assert result.stdout.startswith(f"mallory{SHOWN}\tsupport\tsince ")


def test_an_import_rejection_escapes_what_it_quotes_from_the_file(cli, tmp_path):
    path = tmp_path / "contacts.csv"
    # The column name is quoted, so its CR is part of it: the header runs over two lines.
    path.write_text(f'email,"plan{FAKE}"\nlan@example.com,pro\n', encoding="utf-8")
    result = cli("contacts", "import", str(path))
    assert no_control_characters(result.stderr)
    assert result.stderr.startswith(
        f"rejected {path}:3: plan{SHOWN} (its name): holds a control character (\\x1b); "
    )


def test_an_error_escapes_what_it_quotes(cli):
    result = cli("contacts", "show", f"nobody{FAKE}")
    assert (result.exit_code, result.stderr) == (1, f"error: no contact with email nobody{SHOWN}\n")


# The database password


@pytest.mark.parametrize(
    "url, shown",
    [
        (  # does not parse: the port is not a number
            "postgresql+psycopg://automator:S3cret-Pa55@db.example.com:notaport/automator",
            "postgresql+psycopg://automator:***@db.example.com:notaport/automator",
        ),
        (  # parses, but names a driver SQLAlchemy does not have
            "postgresqlx://automator:S3cret-Pa55@db.example.com/automator",
            "postgresqlx://automator:***@db.example.com/automator",
        ),
        (  # an @ in the password, not percent-encoded
            "postgresqlx://automator:S3cret@Pa55@db.example.com/automator",
            "postgresqlx://automator:***@db.example.com/automator",
        ),
        (  # the password as libpq also takes it, in the query; the URL does not parse
            "postgresql+psycopg://automator@db.example.com:notaport/automator?password=S3cret-Pa55",
            "postgresql+psycopg://automator@db.example.com:notaport/automator?password=***",
        ),
        (  # the same in a URL that parses
            "postgres://automator@db.example.com/automator?sslmode=require&password=S3cret-Pa55",
            "postgres://automator@db.example.com/automator?sslmode=require&password=***",
        ),
    ],
)
def test_a_bad_database_url_is_reported_without_its_password(cli, monkeypatch, url, shown):
    monkeypatch.setenv("AUTOMATOR_DATABASE_URL", url)
    result = cli("status")
    assert result.exit_code == 1
    assert "S3cret" not in result.output and "Pa55" not in result.output
    assert result.stderr.startswith(f"error: database_url '{shown}': ")
