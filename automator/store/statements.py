"""What the store's query modules build their statements from: a model's table, and an
INSERT that can skip or update a conflicting row on both SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, SQLModel


def insert(session: Session, table: Table) -> Any:
    """An INSERT that supports ON CONFLICT on both SQLite and PostgreSQL."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def table(model: type[SQLModel]) -> Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]
