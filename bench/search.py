"""Times the console's contact search (`store.console.contacts_matching`, which `automator
contacts find` runs too) at a million contacts, on SQLite and on PostgreSQL: the start of an
address, a last name shared by many, first names in letters beyond A–Z, and a prefix that
finds nothing. Each figure is the median of --runs warm searches.

    python bench/search.py                        # 1M contacts, SQLite then a throw-away PostgreSQL
    python bench/search.py --contacts 100000 --only sqlite
    python bench/search.py --database-url postgresql+psycopg://user@host:port/db --only postgresql
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, text
from sqlalchemy.pool import NullPool

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from automator.store import Store  # noqa: E402
from automator.store.console import contacts_matching  # noqa: E402
from automator.tables import Contact  # noqa: E402

FIRST = [
    "Lan",
    "Minh",
    "Hoa",
    "Tuấn",
    "Mai",
    "Hà",
    "Nam",
    "Thảo",
    "Đức",
    "Linh",
    "Quang",
    "Hương",
    "Khánh",
    "Phương",
    "Sơn",
    "Yến",
    "Bảo",
    "Trang",
    "Vy",
    "An",
    "Long",
    "Émile",
    "Zoë",
    "Ørjan",
    "Bob",
    "Cara",
    "Grace",
    "Oliver",
    "Emily",
    "James",
    "Sophie",
    "Daniel",
    "Olivia",
    "Harry",
    "Amelia",
    "Noah",
    "Mia",
]
LAST = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
    "Smith",
    "Jones",
    "Brown",
    "Étienne",
]
SEARCHES = {
    "an address's start": "minh.tr",
    "a common last name": "nguy",
    "a first name, in capitals": "ĐỨC",
    "a first name with an accent": "émi",
    "nothing": "zzq",
}
BATCH = 50_000


def fill(url: str, contacts: int, seed: int) -> None:
    """`contacts` contacts with names drawn from FIRST and LAST (and a few with none)."""
    Store(url).create_schema()
    rng = random.Random(seed)
    now = datetime(2026, 11, 20, tzinfo=UTC)
    engine = create_engine(url, poolclass=NullPool)
    started = time.perf_counter()
    with engine.begin() as connection:
        for start in range(0, contacts, BATCH):
            rows = []
            for n in range(start, min(start + BATCH, contacts)):
                first, last = rng.choice(FIRST), rng.choice(LAST)
                named = rng.random() > 0.02
                rows.append(
                    {
                        "email": f"{first.lower()}.{last.lower()}.{n}@example.com",
                        "first_name": first if named else None,
                        "last_name": last if named else None,
                        "stage": "awareness",
                        "attributes": {},
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            connection.execute(insert(Contact), rows)
        if engine.dialect.name == "postgresql":
            connection.execute(text("ANALYZE contact"))
    engine.dispose()
    print(f"  made {contacts:,} contacts in {time.perf_counter() - started:.1f} s", flush=True)


def measure(url: str, runs: int) -> None:
    store = Store(url)
    with store.session() as session:
        for label, typed in SEARCHES.items():
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                found, more = contacts_matching(session, typed)
                times.append(time.perf_counter() - started)
            shown = f"{len(found)}{'+' if more else ''} found"
            median = statistics.median(times) * 1000
            print(f"  {label:<28} {typed!r:<10} {median:8.2f} ms  ({shown})", flush=True)
    store.dispose()


@contextmanager
def postgres_database(url: str | None) -> Iterator[str]:
    """A new database on the server `url` names (its user may create databases), or on a
    throw-away server started as tests/postgres.py does."""
    if url:
        admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as connection:
            connection.execute(text("DROP DATABASE IF EXISTS automator_bench_search"))
            connection.execute(text("CREATE DATABASE automator_bench_search"))
        try:
            yield str(admin.url.set(database="automator_bench_search").render_as_string(hide_password=False))
        finally:
            with admin.connect() as connection:
                connection.execute(text("DROP DATABASE automator_bench_search"))
        return
    from tests.postgres import PostgresServer

    with tempfile.TemporaryDirectory(prefix="automator-pg-") as root:
        server = PostgresServer(Path(root))
        server.start()
        try:
            yield server.new_database(empty=True)
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=20, help="searches timed of each kind (the median)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--database-url", help="a PostgreSQL server whose user may create databases")
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory(prefix="automator-search-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.db'}"
            print("SQLite", flush=True)
            fill(url, args.contacts, args.seed)
            measure(url, args.runs)
    if args.only != "sqlite":
        with postgres_database(args.database_url) as url:
            print("PostgreSQL", flush=True)
            fill(url, args.contacts, args.seed)
            measure(url, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
