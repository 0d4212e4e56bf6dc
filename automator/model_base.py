"""What every node of the rule language shares: frozen models that refuse unknown fields,
durations as marketers write them, identifiers, and the contact's own columns."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from automator.durations import parse_duration

DEFAULT_STAGES = ("awareness", "consideration", "conversion", "retention", "loyalty")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
# Priorities only rank rules against each other; the message's column is a 32-bit integer
# on PostgreSQL, and a number beyond even SQLite's failed the rule at every tick.
MAX_PRIORITY = 1_000_000
Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists")
CONTACT_COLUMNS = ("email", "first_name", "last_name", "locale", "timezone", "stage")


class Strict(BaseModel):
    """Base of every rule-file node: unknown fields are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)
