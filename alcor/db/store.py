"""The store: transactions over SQLite or PostgreSQL, with retry when a race is lost.

``Store.write(fn)`` runs ``fn(txn)`` in one transaction and commits; if a unique constraint
or a serialization check makes it lose a race, the whole function runs again (so ``fn``
must have no effect outside ``txn``).  ``Transaction`` offers attribute-keyed CRUD over the
tables in ``tables.py`` and Neutron-style listing.  This is the only package that imports
SQLAlchemy; its exceptions are translated here.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ParamSpec, TypeVar

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from alcor import errors
from alcor.config import DbSettings
from alcor.db import statements as stmt
from alcor.db import tables
from alcor.db.listing import run_list
from alcor.query import ListQuery, Page

LOG = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

Where = Mapping[str, Any]


DRIVER_ERRORS = (sa.exc.DBAPIError, sqlite3.Error, psycopg.Error)
"""Driver errors, raw (hot-path statements) or wrapped by SQLAlchemy (listing, migrations)."""


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


class Transaction:
    """One open transaction; rows in and out are dicts keyed by API attribute names.

    Simple statements run on the driver's cursor through ``statements.py`` (rendered once
    per shape); listing goes through SQLAlchemy Core (``listing.py``).
    """

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self._ph = "?" if dialect == "sqlite" else "%s"
        self._cursor: Any = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def _execute(self, sql: str, params: Sequence[Any]) -> Any:
        self._cursor.execute(sql, params)
        return self._cursor

    def savepoint(self, name: str) -> None:
        self._cursor.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        self._cursor.execute(f"ROLLBACK TO SAVEPOINT {name}")
        self._cursor.execute(f"RELEASE SAVEPOINT {name}")

    def release(self, name: str) -> None:
        self._cursor.execute(f"RELEASE SAVEPOINT {name}")

    def insert(self, table: str, rows: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        batch = [rows] if isinstance(rows, Mapping) else rows
        if not batch:
            return
        columns = tuple(batch[0])
        sql = stmt.insert_sql(table, columns, self._ph)
        values = stmt.row_values(table, columns, batch)
        if len(values) == 1:
            self._cursor.execute(sql, values[0])
        else:
            self._cursor.executemany(sql, values)

    def get(self, table: str, id_: str) -> dict[str, Any] | None:
        rows = self.select(table, {"id": id_})
        return rows[0] if rows else None

    def select(
        self,
        table: str,
        where: Where | None = None,
        *,
        columns: Iterable[str] | None = None,
        order_by: Iterable[str] = (),
        for_update: bool = False,
    ) -> list[dict[str, Any]]:
        info = stmt.INFO[table]
        cols = info.attrs if columns is None else tuple(columns)
        shape, params = stmt.shape_of(where)
        sql = stmt.select_sql(table, cols, shape, tuple(order_by), self._ph,
                              for_update=for_update and self.dialect == "postgresql")
        load = stmt.load_row
        return [load(info, cols, r) for r in self._execute(sql, params).fetchall()]

    def claim(self, table: str, order_by: str, limit: int) -> list[dict[str, Any]]:
        """The first ``limit`` rows by ``order_by``, locked until this transaction ends.

        On PostgreSQL rows another transaction holds are skipped (``FOR UPDATE SKIP
        LOCKED``), so concurrent consumers of a queue table claim disjoint rows; on SQLite
        the write transaction's database lock already serializes consumers."""
        info = stmt.INFO[table]
        cols = ", ".join(info.columns[c] for c in info.attrs)
        sql = (f"SELECT {cols} FROM {info.name} ORDER BY {info.columns[order_by]} "
               f"LIMIT {int(limit)}")
        if self.dialect == "postgresql":
            sql += " FOR UPDATE SKIP LOCKED"
        load = stmt.load_row
        return [load(info, info.attrs, r) for r in self._execute(sql, ()).fetchall()]

    def scalars(self, table: str, column: str, where: Where | None = None) -> list[Any]:
        return [r[column] for r in self.select(table, where, columns=(column,))]

    def count(self, table: str, where: Where | None = None) -> int:
        shape, params = stmt.shape_of(where)
        row = self._execute(stmt.count_sql(table, shape, self._ph), params).fetchone()
        return int(row[0])

    def exists(self, table: str, where: Where) -> bool:
        shape, params = stmt.shape_of(where)
        sql = stmt.select_sql(table, ("id",) if "id" in stmt.INFO[table].columns else
                              (next(iter(where)),), shape, (), self._ph, limit_one=True)
        return self._execute(sql, params).fetchone() is not None

    def update(self, table: str, where: Where, values: Mapping[str, Any]) -> int:
        if not values:
            return 0
        info = stmt.INFO[table]
        columns = tuple(values)
        shape, params = stmt.shape_of(where)
        sql = stmt.update_sql(table, columns, shape, self._ph)
        args = [stmt.dump(info, c, values[c]) for c in columns] + params
        return int(self._execute(sql, args).rowcount)

    def delete(self, table: str, where: Where) -> int:
        shape, params = stmt.shape_of(where)
        return int(self._execute(stmt.delete_sql(table, shape, self._ph), params).rowcount)

    def list(self, table: str, query: ListQuery) -> Page:
        return run_list(self.conn, tables.TABLES[table], _COLUMNS[table], query)


class Store:
    """Owns the engine; hands out transactions and retries the ones that lose a race."""

    def __init__(self, engine: Engine, settings: DbSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.dialect = engine.dialect.name
        self.is_sqlite = self.dialect == "sqlite"
        # SQLite: each thread keeps one connection open (checking one out of the pool per
        # transaction cost more than most transactions).
        self._local = threading.local()
        self._write_lock = threading.Lock()

    @classmethod
    def connect(cls, settings: DbSettings) -> Store:
        return cls(create_engine(settings), settings)

    def create_schema(self) -> None:
        """Create missing tables directly (tests); deployments run ``migrate``."""
        tables.metadata.create_all(self.engine)

    def dispose(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
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

    def write_each(self, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
        """Run every ``fn(txn, *args)`` in one transaction, each in its own savepoint.

        Returns each call's result, or the exception it raised (its changes rolled back to
        its savepoint, the others kept).  A call that loses a race is retried alone.  If the
        shared commit fails, that error is raised for all.
        """
        return self._run(self._each_txn, True, calls)

    def _each_txn(
        self, txn: Transaction, calls: Sequence[tuple[Callable[..., Any], tuple[Any, ...]]]
    ) -> list[Any]:
        outcomes: list[Any] = []
        for fn, args in calls:
            outcomes.append(self._savepoint_call(txn, fn, args))
        return outcomes

    def _savepoint_call(
        self, txn: Transaction, fn: Callable[..., Any], args: tuple[Any, ...]
    ) -> Any:
        attempts = max(1, self.settings.max_retries)
        for attempt in range(1, attempts + 1):
            txn.savepoint("call")
            try:
                result = fn(txn, *args)
            except BaseException as exc:
                txn.rollback_to("call")
                error = translate(exc) if isinstance(exc, DRIVER_ERRORS) else exc
                retryable = isinstance(error, (DuplicateEntry, _SerializationFailure))
                if retryable and attempt < attempts:
                    continue
                if not isinstance(error, Exception):
                    raise
                return error
            txn.release("call")
            return result
        raise AssertionError("unreachable")

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(txn, *args, **kwargs)`` on one consistent snapshot."""
        return self._run(fn, False, *args, **kwargs)

    def _run(self, fn: Callable[..., T], write: bool, *args: Any, **kwargs: Any) -> T:
        if self.is_sqlite:
            return self._run_sqlite(fn, write, *args, **kwargs)
        with self._connect() as conn:
            if not write:
                # Writes run READ COMMITTED (unique constraints settle their races); a read
                # sees one snapshot for all its statements, as on SQLite.
                conn.execution_options(isolation_level="REPEATABLE READ")
            try:
                with conn.begin():
                    return fn(Transaction(conn, self.dialect), *args, **kwargs)
            except DRIVER_ERRORS as exc:
                raise translate(exc) from exc

    def _connect(self) -> Connection:
        """A connection from the pool; an unreachable database or an exhausted pool is
        ServiceUnavailable (503), not an unexpected error."""
        try:
            return self.engine.connect()
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        except sa.exc.TimeoutError as exc:
            raise errors.ServiceUnavailable(reason="no database connection free") from exc

    def _sqlite_connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._connect()
            self._local.conn = conn
        return conn

    def _run_sqlite(self, fn: Callable[..., T], write: bool, *args: Any, **kwargs: Any) -> T:
        if not write:
            return self._run_sqlite_txn(fn, write, *args, **kwargs)
        # Writers of this process queue on a lock rather than on SQLite's busy handler, which
        # sleeps in growing steps (1, 2, 5, 10 ms ...) while the lock is held by a thread next
        # door.  The database lock (BEGIN IMMEDIATE) still guards against other processes.
        with self._write_lock:
            return self._run_sqlite_txn(fn, write, *args, **kwargs)

    def _run_sqlite_txn(
        self, fn: Callable[..., T], write: bool, *args: Any, **kwargs: Any
    ) -> T:
        # The pysqlite connection is in autocommit mode; transactions are ours to open, and
        # a write takes the database lock up front (BEGIN IMMEDIATE) instead of failing
        # halfway with SQLITE_BUSY when it first writes.
        conn = self._sqlite_connection()
        raw: Any = conn.connection.driver_connection
        try:
            raw.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except DRIVER_ERRORS as exc:
            raise translate(exc) from exc
        try:
            result = fn(Transaction(conn, self.dialect), *args, **kwargs)
        except BaseException as exc:
            self._rollback(raw)
            if isinstance(exc, DRIVER_ERRORS):
                raise translate(exc) from exc
            raise
        try:
            raw.execute("COMMIT")
        except DRIVER_ERRORS as exc:
            self._rollback(raw)
            raise translate(exc) from exc
        return result

    def _rollback(self, raw: Any) -> None:
        try:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
        except DRIVER_ERRORS:
            LOG.exception("rollback failed; dropping the connection")
            self._local.conn.invalidate()
            self._local.conn = None


class _SerializationFailure(errors.Conflict):
    message = "Transaction aborted by a concurrent one."


def translate(exc: BaseException) -> errors.AlcorError:
    """Turn a driver error (raw or wrapped by SQLAlchemy) into the Alcor family it belongs to."""
    orig = getattr(exc, "orig", None) or exc
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
    operational = (sa.exc.OperationalError, sqlite3.OperationalError, psycopg.OperationalError)
    if "database is locked" in text or isinstance(exc, operational):
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
        # Every thread keeps its own connection (``Store._sqlite_connection``), so the pool
        # must not cap how many are open: a bounded pool would starve the extra threads.
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": 30},
                  "max_overflow": -1}
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
        # Random UUID keys scatter inserts over the whole B-tree: keep the hot pages in
        # memory (the default page cache is 2 MiB) and map the file instead of copying it.
        cur.execute(f"PRAGMA cache_size=-{settings.sqlite_cache_mib * 1024}")
        cur.execute(f"PRAGMA mmap_size={settings.sqlite_cache_mib * 1024 * 1024}")
        cur.close()

    return engine
