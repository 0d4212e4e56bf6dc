"""Alembic owns the database's schema: its environment (`env.py`) and revisions
(`versions/`), configured in code (`automator.store.schema`), so an installed automator
needs no alembic.ini."""
