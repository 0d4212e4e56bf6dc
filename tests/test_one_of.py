"""`one_of`: an IN whose values are bound as one parameter, one SQL text for any number of
values, on SQLite (a JSON array) and PostgreSQL (an array)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import event, select

from automator.store import Store, table
from automator.store.statements import listed, one_of
from automator.tables import Contact

CONTACTS = table(Contact)
BY_ID = select(CONTACTS.c.email).where(one_of(CONTACTS.c.id, listed("ids", CONTACTS.c.id)))


def test_one_of_finds_the_rows_whose_value_is_listed(store: Store, make_contact: Callable[..., int]) -> None:
    ids = [make_contact(f"shopper{number}@example.com") for number in range(3)]
    with store.session() as session:
        found = session.execute(BY_ID, {"ids": [ids[0], ids[2], 999_999]}).scalars().all()
    assert sorted(found) == ["shopper0@example.com", "shopper2@example.com"]


def test_one_of_an_empty_list_finds_nothing(store: Store, make_contact: Callable[..., int]) -> None:
    make_contact("lan@example.com")
    with store.session() as session:
        assert session.execute(BY_ID, {"ids": []}).scalars().all() == []


def test_one_of_binds_text_as_it_is(store: Store, make_contact: Callable[..., int]) -> None:
    """Addresses with a quote and letters beyond ASCII go through the JSON text unchanged."""
    emails = ["o'brien@example.com", "nguyễn@ví-dụ.vn"]
    for email in emails:
        make_contact(email)
    with store.session() as session:
        query = select(CONTACTS.c.email).where(one_of(CONTACTS.c.email, [*emails, "nobody@example.com"]))
        assert sorted(session.execute(query).scalars()) == sorted(emails)


def test_one_of_is_one_statement_for_any_number_of_values(
    store: Store, make_contact: Callable[..., int]
) -> None:
    ids = [make_contact(f"shopper{number}@example.com") for number in range(5)]
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        with store.session() as session:
            counts = [len(session.execute(BY_ID, {"ids": ids[:n]}).all()) for n in (1, 2, 5)]
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert counts == [1, 2, 5]
    assert len(set(statement for statement in statements if "contact" in statement)) == 1
