"""Row ids as they come in from outside: a console URL, a form, a command's argument."""

# The largest id a row can have on either store (SQLite's INTEGER, PostgreSQL's bigint). A
# larger number names no row, and binding it would fail inside the database driver, so it
# is refused where it comes in.
MAX_ID = 2**63 - 1
