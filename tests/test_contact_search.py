"""A contact is found by the start of an address or of a first or last name, in any case and
in any alphabet, through indexes: every statement a search runs reads an index range (the
plans are asked of each store with EXPLAIN; no timing here, see bench/search.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event

from automator import casing
from automator.store import Store
from automator.store.console import contacts_matching


@pytest.fixture
def statements(store: Store) -> Iterator[list[tuple[str, Any]]]:
    """The statements the store runs while the test looks, with their parameters."""
    seen: list[tuple[str, Any]] = []

    def record(connection: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(store.engine, "before_cursor_execute", record)
    yield seen
    event.remove(store.engine, "before_cursor_execute", record)


def plans(store: Store, statements: list[tuple[str, Any]]) -> list[str]:
    """Each statement's plan, as the store's EXPLAIN prints it. PostgreSQL is told to avoid
    reading a whole table where it can (a table of a few rows is cheaper read whole): the plan
    then shows whether an index answers the statement at all."""
    explain = "EXPLAIN QUERY PLAN " if store.engine.dialect.name == "sqlite" else "EXPLAIN "
    found = []
    with store.engine.connect() as connection:
        if store.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in statements:
            rows = connection.exec_driver_sql(explain + statement, parameters).all()
            found.append("\n".join(str(row[-1]) for row in rows))
    return found


def test_a_name_search_reads_the_name_indexes_and_never_the_whole_table(
    store: Store, make_contact, statements
) -> None:
    make_contact("duc@example.com", first_name="Đức", last_name="Phạm")
    statements.clear()

    with store.session() as session:
        found, _ = contacts_matching(session, "ĐỨC")
    explained = plans(store, statements)

    assert [contact.email for contact in found] == ["duc@example.com"]
    assert len(explained) == 1 + 2 * len(casing.stored_spellings("đức")[0])  # the address, each name
    for name in ("first_name", "last_name"):
        assert any(f"ix_contact_{name}_key" in plan for plan in explained), explained
    for plan in explained:
        assert "SCAN contact" not in plan and "Seq Scan" not in plan, plan  # the whole table
        assert "USING INDEX" in plan or "Index Scan" in plan or "USING COVERING INDEX" in plan, plan


TYPED = ("đức", "ĐứC", "Đ", "d")


def test_a_name_is_found_whatever_the_stores_lower_does_with_letters_beyond_a_to_z(store, make_contact):
    """SQLite's lower() leaves "Đ" as it is; a PostgreSQL in the "C" locale does too."""
    make_contact("one@example.com", first_name="ĐỨc")
    make_contact("two@example.com", first_name="Dũng")

    with store.session() as session:
        typed = {text: [c.email for c in contacts_matching(session, text)[0]] for text in TYPED}

    assert typed == {
        "đức": ["one@example.com"],
        "ĐứC": ["one@example.com"],
        "Đ": ["one@example.com"],
        "d": ["two@example.com"],
    }


def test_a_long_prefix_is_looked_up_in_few_spellings_and_checked_whole(store, make_contact) -> None:
    make_contact("a@example.com", last_name="Đặng Thị Hồng Đào")
    make_contact("b@example.com", last_name="Đặng Thị Hồng Anh")

    with store.session() as session:
        found, more = contacts_matching(session, "đặng thị hồng đ")

    assert casing.stored_spellings("đặng thị hồng đ") == (casing.stored_spellings("đặng thị h")[0], True)
    assert ([c.email for c in found], more) == (["a@example.com"], False)


def test_contacts_find_prints_the_contacts_whose_name_starts_with_the_text(cli, make_contact) -> None:
    make_contact("lan@example.com", first_name="Lan", last_name="Nguyễn")
    make_contact("minh@example.com", first_name="Minh", last_name="Trần")

    found = cli("contacts", "find", "NGUYỄN")
    none = cli("contacts", "find", "zed")

    assert (found.exit_code, found.stdout) == (0, "lan@example.com\tLan Nguyễn\tconsideration\n")
    assert none.exit_code == 1 and "no contact's email or name starts with 'zed'" in none.stderr


def test_a_whole_name_is_found_first_name_then_last_or_last_then_first(store, make_contact, statements):
    make_contact("duc@example.com", first_name="Đức", last_name="Phạm")
    make_contact("duc.nguyen@example.com", first_name="Đức", last_name="Nguyễn Văn")
    make_contact("mary@example.com", first_name="Mary Ann", last_name="Smith")
    make_contact("phuong@example.com", first_name="Phương")
    statements.clear()

    with store.session() as session:
        typed = {
            text: [c.email for c in contacts_matching(session, text)[0]]
            for text in ("đức ph", "ĐỨC  P", "phạm đ", "đức nguyễn v", "nguyễn văn đ", "mary ann s", "đức x")
        }
    explained = plans(store, statements)

    assert typed == {
        "đức ph": ["duc@example.com"],
        "ĐỨC  P": ["duc@example.com"],
        "phạm đ": ["duc@example.com"],
        "đức nguyễn v": ["duc.nguyen@example.com"],
        "nguyễn văn đ": ["duc.nguyen@example.com"],
        "mary ann s": ["mary@example.com"],
        "đức x": [],
    }
    for plan in explained:
        assert "SCAN contact" not in plan and "Seq Scan" not in plan, plan  # the whole table


def test_contacts_find_takes_a_whole_name(cli, make_contact) -> None:
    make_contact("lan@example.com", first_name="Lan", last_name="Nguyễn")
    make_contact("lan.tran@example.com", first_name="Lan", last_name="Trần")

    found = cli("contacts", "find", "Lan Ng")

    assert (found.exit_code, found.stdout) == (0, "lan@example.com\tLan Nguyễn\tconsideration\n")
