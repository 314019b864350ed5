"""The store: transactions over SQLite or PostgreSQL, with retry when a race is lost.

``Store.write(fn)`` runs ``fn(txn)`` in one transaction and commits; if a unique constraint
or a serialization check makes it lose a race, the whole function runs again (so ``fn``
must have no effect outside ``txn``).  ``Transaction`` offers attribute-keyed CRUD over the
tables in ``tables.py`` and Neutron-style listing.  This is the only package that imports
SQLAlchemy; its exceptions are translated here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from alcor import errors
from alcor.config import DbSettings
from alcor.db import tables
from alcor.db.listing import run_list
from alcor.query import ListQuery, Page

LOG = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Where = Mapping[str, Any]


class DuplicateEntry(errors.Conflict):
    """A unique constraint refused a row: the caller lost a race or repeated a value."""

    message = "Duplicate entry for {table}: {constraint}."


class RetriesExhausted(errors.Conflict):
    message = "The operation lost {attempts} races in a row; try again."


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _select_columns(table: sa.Table) -> list[sa.Label[Any]]:
    return [c.label(c.key) for c in table.c]


_COLUMNS = {name: _select_columns(t) for name, t in tables.TABLES.items()}


def _condition(table: sa.Table, attr: str, value: Any) -> sa.ColumnElement[bool]:
    col = table.c[attr]
    if isinstance(value, (list, tuple, set, frozenset)):
        return col.in_(list(value))
    if value is None:
        return col.is_(None)
    cond: sa.ColumnElement[bool] = col == value
    return cond


def where_clause(table: sa.Table, where: Where | None) -> list[sa.ColumnElement[bool]]:
    return [_condition(table, k, v) for k, v in (where or {}).items()]


class Transaction:
    """One open transaction; rows in and out are dicts keyed by API attribute names."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect

    def insert(self, table: str, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        batch = [rows] if isinstance(rows, Mapping) else rows
        if batch:
            self.conn.execute(tables.TABLES[table].insert(), list(batch))

    def get(self, table: str, id_: str) -> dict[str, Any] | None:
        t = tables.TABLES[table]
        row = self.conn.execute(sa.select(*_COLUMNS[table]).where(t.c.id == id_)).first()
        return dict(row._mapping) if row is not None else None

    def select(
        self,
        table: str,
        where: Where | None = None,
        *,
        columns: Iterable[str] | None = None,
        order_by: Iterable[str] = (),
        for_update: bool = False,
    ) -> list[dict[str, Any]]:
        t = tables.TABLES[table]
        cols = _COLUMNS[table] if columns is None else [t.c[c].label(c) for c in columns]
        stmt = sa.select(*cols).where(*where_clause(t, where))
        for attr in order_by:
            stmt = stmt.order_by(t.c[attr])
        if for_update and self.dialect == "postgresql":
            stmt = stmt.with_for_update()
        return [dict(r._mapping) for r in self.conn.execute(stmt)]

    def scalars(self, table: str, column: str, where: Where | None = None) -> list[Any]:
        t = tables.TABLES[table]
        stmt = sa.select(t.c[column]).where(*where_clause(t, where))
        return list(self.conn.execute(stmt).scalars())

    def count(self, table: str, where: Where | None = None) -> int:
        t = tables.TABLES[table]
        stmt = sa.select(sa.func.count()).select_from(t).where(*where_clause(t, where))
        return int(self.conn.execute(stmt).scalar_one())

    def exists(self, table: str, where: Where) -> bool:
        t = tables.TABLES[table]
        stmt = sa.select(sa.literal(1)).select_from(t).where(*where_clause(t, where)).limit(1)
        return self.conn.execute(stmt).first() is not None

    def update(self, table: str, where: Where, values: Mapping[str, Any]) -> int:
        t = tables.TABLES[table]
        result = self.conn.execute(t.update().where(*where_clause(t, where)).values(dict(values)))
        return int(result.rowcount)

    def delete(self, table: str, where: Where) -> int:
        t = tables.TABLES[table]
        return int(self.conn.execute(t.delete().where(*where_clause(t, where))).rowcount)

    def list(self, table: str, query: ListQuery) -> Page:
        return run_list(self.conn, tables.TABLES[table], _COLUMNS[table], query)


class Store:
    """Owns the engine; hands out transactions and retries the ones that lose a race."""

    def __init__(self, engine: Engine, settings: DbSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.dialect = engine.dialect.name
        self.is_sqlite = self.dialect == "sqlite"

    @classmethod
    def connect(cls, settings: DbSettings) -> Store:
        return cls(create_engine(settings), settings)

    def create_schema(self) -> None:
        """Create missing tables directly (tests); deployments run ``migrate``."""
        tables.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(txn, *args, **kwargs)`` in a write transaction, retrying lost races."""
        attempts = max(1, self.settings.max_retries)
        for attempt in range(1, attempts + 1):
            try:
                return self._run(fn, True, *args, **kwargs)
            except (DuplicateEntry, _SerializationFailure) as exc:
                if attempt == attempts:
                    if isinstance(exc, DuplicateEntry):
                        raise
                    raise RetriesExhausted(attempts=attempts) from exc
                LOG.debug("retrying transaction after %s (attempt %d)", exc, attempt)
        raise AssertionError("unreachable")

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(txn, *args, **kwargs)`` on one consistent snapshot."""
        return self._run(fn, False, *args, **kwargs)

    def _run(self, fn: Callable[..., T], write: bool, *args: Any, **kwargs: Any) -> T:
        with self.engine.connect() as conn:
            if self.is_sqlite:
                return self._run_sqlite(conn, fn, write, *args, **kwargs)
            try:
                with conn.begin():
                    return fn(Transaction(conn, self.dialect), *args, **kwargs)
            except sa.exc.DBAPIError as exc:
                raise translate(exc) from exc

    def _run_sqlite(
        self, conn: Connection, fn: Callable[..., T], write: bool, *args: Any, **kwargs: Any
    ) -> T:
        # The pysqlite connection is in autocommit mode; transactions are ours to open, and
        # a write takes the database lock up front (BEGIN IMMEDIATE) instead of failing
        # halfway with SQLITE_BUSY when it first writes.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = fn(Transaction(conn, self.dialect), *args, **kwargs)
        except BaseException as exc:
            conn.exec_driver_sql("ROLLBACK")
            if isinstance(exc, sa.exc.DBAPIError):
                raise translate(exc) from exc
            raise
        try:
            conn.exec_driver_sql("COMMIT")
        except sa.exc.DBAPIError as exc:
            conn.exec_driver_sql("ROLLBACK")
            raise translate(exc) from exc
        return result


class _SerializationFailure(errors.Conflict):
    message = "Transaction aborted by a concurrent one."


def translate(exc: sa.exc.DBAPIError) -> errors.AlcorError:
    """Turn a driver error into the Alcor family it belongs to."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig)
    if sqlstate == "23505" or "UNIQUE constraint failed" in text:
        constraint = getattr(getattr(orig, "diag", None), "constraint_name", None) or text
        table = getattr(getattr(orig, "diag", None), "table_name", None) or ""
        return DuplicateEntry(table=table, constraint=constraint)
    if sqlstate in ("40001", "40P01"):
        return _SerializationFailure()
    if sqlstate == "23503" or "FOREIGN KEY constraint failed" in text:
        return errors.Conflict()
    if "database is locked" in text or isinstance(exc, sa.exc.OperationalError):
        return errors.ServiceUnavailable(reason="database unavailable")
    return errors.AlcorError()


def create_engine(settings: DbSettings) -> Engine:
    url = sa.make_url(settings.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, settings)
    return sa.create_engine(
        url,
        pool_size=settings.pool_size,
        max_overflow=settings.pool_size,
        pool_pre_ping=True,
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )


def _sqlite_engine(url: sa.URL, settings: DbSettings) -> Engine:
    memory = url.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {}
    if memory:
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    else:
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": 30}}
    engine = sa.create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
        **kwargs,
    )
    synchronous = settings.sqlite_synchronous

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if not memory:
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA synchronous={synchronous}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine
