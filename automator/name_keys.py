"""The expression the contact name indexes hold (`tables.Contact`): a name in lower case, in
byte order, so that a prefix is a range of the index (`automator.store.contacts.by_name`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class name_key(FunctionElement[str]):
    """A name in lower case as the name indexes hold it, for a prefix to be looked up in
    their order (see `automator.store.contacts.by_name`): byte order, so on PostgreSQL in
    the "C" collation (the database's own would not order by prefix)."""

    type = String()
    name = "name_key"
    inherit_cache = True


@compiles(name_key)
def _name_key(element: name_key, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(name_key, "postgresql")
def _name_key_c(element: name_key, compiler: Any, **kw: Any) -> str:
    return f'lower({compiler.process(element.clauses, **kw)}) COLLATE "C"'
