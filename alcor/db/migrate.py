"""Schema migrations (alembic) run from inside the package: ``upgrade`` brings a database to
the newest revision; ``pending_changes`` tells whether the tables and migrations disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from alcor.db.store import Store
from alcor.db.tables import metadata

MIGRATIONS = Path(__file__).with_name("migrations")


def _config(connection: Any) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


MIGRATION_LOCK = 0x616C636F72  # "alcor": the PostgreSQL advisory lock key of migrations
"""Held by the transaction that migrates, so replicas starting together take turns."""


def upgrade(store: Store, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe when several processes start at once.

    On PostgreSQL the whole upgrade is one transaction that first takes an advisory lock: the
    first process migrates, the others wait, then find the database at ``revision``.
    """
    with store.engine.connect() as conn:
        if store.is_sqlite:
            conn = conn.execution_options(isolation_level="SERIALIZABLE")
        else:
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        command.upgrade(_config(conn), revision)
        if conn.in_transaction():
            conn.commit()


def revision(store: Store, message: str) -> None:
    """Write a new migration for what the tables say and the database lacks (developers)."""
    with store.engine.connect() as conn:
        command.revision(_config(conn), message=message, autogenerate=True)


def pending_changes(store: Store) -> list[Any]:
    with store.engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))
