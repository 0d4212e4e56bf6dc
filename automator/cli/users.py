"""`automator users …`: who may log in to the support console, and with which role.

Every change is recorded in the audit log with who made it (`--by`)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from automator.cli.options import ActorOption
from automator.cli.output import command_group, reports_errors, say, say_columns
from automator.cli.state import state
from automator.display import has_control, printable
from automator.errors import AutomatorError, NotFoundError

if TYPE_CHECKING:
    from sqlmodel import Session

    from automator.tables import User

app = command_group("Who may log in to the support console.", no_args_is_help=True)

PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from standard input.")
]


@app.command("add")
@reports_errors
def users_add(
    name: str,
    role: Annotated[
        str,
        typer.Option(metavar="<role>", help="support (view, hold, release, suppress) or admin (everything)"),
    ],
    password_stdin: PasswordStdinOption = False,
    by: ActorOption = "cli",
) -> None:
    """Create a console user. The password is asked for (or read from stdin) and kept hashed."""
    from automator.console.auth import hash_password
    from automator.store import audit, users

    _check_new_user(name, role)
    password_hash = hash_password(_new_password(password_stdin))
    now = datetime.now(UTC)
    with state().store.session() as session:
        if not users.add(session, name, password_hash, role, now):
            raise AutomatorError(f"there is already a user named {name}")
        audit.record(session, now, by, "add user", f"{name} ({role})")
    typer.echo(printable(f"added {role} {name}"))


def _check_new_user(name: str, role: str) -> None:
    """AutomatorError unless `role` is a role and `name` a name a user may have."""
    from automator.console.auth import ROLES
    from automator.store import users

    if role not in ROLES:
        raise AutomatorError(f"--role must be one of {', '.join(ROLES)}")
    if not name.strip() or name != name.strip():
        raise AutomatorError("a user name cannot be empty or start or end with a space")
    if len(name) > users.NAME_KEPT:
        raise AutomatorError(f"a user name has at most {users.NAME_KEPT} characters")
    if has_control(name):
        raise AutomatorError(f"a user name cannot hold control characters ({printable(name)})")


@app.command("list")
@reports_errors
def users_list() -> None:
    """Every console user with their role."""
    from automator.store import users

    with state().store.session() as session:
        rows = users.listing(session)
    for user in rows:
        say_columns(user.name, user.role, f"since {user.created_at:%Y-%m-%d}")
    typer.echo(f"{len(rows)} user{'' if len(rows) == 1 else 's'}")


@app.command("remove")
@reports_errors
def users_remove(name: str, by: ActorOption = "cli") -> None:
    """Remove a console user; their sessions end at once."""
    from automator.store import audit, users

    now = datetime.now(UTC)
    with state().store.session() as session:
        _existing_user(session, name)
        users.remove(session, name)
        audit.record(session, now, by, "remove user", name)
    say(f"removed {name}")


@app.command("passwd")
@reports_errors
def users_passwd(name: str, password_stdin: PasswordStdinOption = False, by: ActorOption = "cli") -> None:
    """Give a console user a new password (asked for, or read from stdin); their sessions end."""
    from automator.console.auth import hash_password
    from automator.store import audit, users

    with state().store.session() as session:
        _existing_user(session, name)
    password_hash = hash_password(_new_password(password_stdin))
    now = datetime.now(UTC)
    with state().store.session() as session:
        _existing_user(session, name)  # again: it may have been removed while the password was typed
        users.set_password(session, name, password_hash)
        audit.record(session, now, by, "change password", name)
    say(f"changed the password of {name}; their sessions have ended")


@app.command("role")
@reports_errors
def users_role(name: str, role: str, by: ActorOption = "cli") -> None:
    """Give a console user another role (support or admin); their sessions end."""
    from automator.console.auth import ROLES
    from automator.store import audit, users

    if role not in ROLES:
        raise AutomatorError(f"unknown role {role} (roles: {', '.join(ROLES)})")
    now = datetime.now(UTC)
    with state().store.session() as session:
        before = _existing_user(session, name).role
        users.set_role(session, name, role)
        audit.record(session, now, by, "change role", f"{name}: {before} → {role}")
    say(f"{name} is now {role}; their sessions have ended")


def _new_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


def _existing_user(session: Session, name: str) -> User:
    """The user called `name`, or NotFoundError naming the users there are."""
    from automator.store import users

    user = users.get(session, name)
    if user is None:
        known = ", ".join(row.name for row in users.listing(session)) or "none yet"
        raise NotFoundError(f"no console user named {name} (users: {known})")
    return user
