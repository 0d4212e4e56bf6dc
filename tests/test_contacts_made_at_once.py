"""Two writers making the same new contact at once (two API requests, an API request beside
an import) both get its id: the second takes the row the first made, and the contact gets
one first stage, not two. On both stores."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from automator.store import Store, contacts
from automator.tables import StageChange
from tests.conftest import utc

NOW = utc("2026-12-05 09:00")


def test_the_second_writer_takes_the_contact_the_first_made(store: Store) -> None:
    first = store.writing()
    made_first = contacts.ensure(first, ["lan@example.com"], NOW, "awareness")
    answers: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def second_writer() -> None:
        try:
            with store.session() as session:
                answers.append(contacts.ensure(session, ["lan@example.com"], NOW, "awareness"))
        except BaseException as exc:  # reported below, where the test can fail on it
            errors.append(exc)

    other = threading.Thread(target=second_writer)
    other.start()
    other.join(timeout=0.5)  # it waits for the first writer's transaction (row lock or write lock)
    first.commit()
    first.close()
    other.join(timeout=30)

    assert not other.is_alive()
    assert errors == []
    assert answers == [made_first]
    with store.session() as session:
        stages = session.execute(select(func.count()).select_from(StageChange)).scalar_one()
    assert stages == 1
