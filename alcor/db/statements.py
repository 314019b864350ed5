"""Hot-path SQL: simple statements rendered once per shape and run on the driver's cursor.

Building and compiling a SQLAlchemy statement costs tens of microseconds per call, more than
SQLite takes to run it.  For the handful of shapes the services use all the time (insert rows,
select by equality / any-of, update, delete, count) this module renders plain SQL once per
(table, columns, condition shape, dialect), caches it, and converts result rows back to
attribute-keyed dicts with the column types' Python values (booleans, parsed JSON).
Anything more complex (listing with sorting and pagination) goes through SQLAlchemy Core.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa

from alcor.db import tables

Where = Mapping[str, Any]
Shape = tuple[tuple[str, str, int], ...]
_SEQUENCES = (list, tuple, set, frozenset)


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    attrs: tuple[str, ...]
    """Attribute keys in column order."""
    columns: dict[str, str]
    """Attribute key -> quoted column name."""
    json_attrs: frozenset[str]
    bool_attrs: frozenset[str]


def _info(table: sa.Table) -> TableInfo:
    attrs = tuple(c.key for c in table.c)
    return TableInfo(
        name=f'"{table.name}"',
        attrs=attrs,
        columns={c.key: f'"{c.name}"' for c in table.c},
        json_attrs=frozenset(c.key for c in table.c if isinstance(c.type, sa.JSON)),
        bool_attrs=frozenset(c.key for c in table.c if isinstance(c.type, sa.Boolean)),
    )


INFO: dict[str, TableInfo] = {name: _info(t) for name, t in tables.TABLES.items()}


def shape_of(where: Where | None) -> tuple[Shape, list[Any]]:
    """The condition's shape (cache key) and its flattened parameters."""
    shape: list[tuple[str, str, int]] = []
    params: list[Any] = []
    for attr, value in (where or {}).items():
        if isinstance(value, _SEQUENCES):
            items = list(value)
            shape.append((attr, "in", len(items)))
            params.extend(items)
        elif value is None:
            shape.append((attr, "null", 0))
        else:
            shape.append((attr, "eq", 1))
            params.append(value)
    return tuple(shape), params


def _where_sql(info: TableInfo, shape: Shape, ph: str) -> str:
    parts = []
    for attr, kind, n in shape:
        col = info.columns[attr]
        if kind == "null":
            parts.append(f"{col} IS NULL")
        elif kind == "eq":
            parts.append(f"{col} = {ph}")
        elif n == 0:
            parts.append("1 = 0")
        else:
            parts.append(f"{col} IN ({', '.join([ph] * n)})")
    return f" WHERE {' AND '.join(parts)}" if parts else ""


@functools.lru_cache(maxsize=4096)
def select_sql(
    table: str, columns: tuple[str, ...], shape: Shape, order_by: tuple[str, ...], ph: str,
    limit_one: bool = False, for_update: bool = False,
) -> str:
    info = INFO[table]
    cols = ", ".join(info.columns[c] for c in columns)
    sql = f"SELECT {cols} FROM {info.name}{_where_sql(info, shape, ph)}"
    if order_by:
        sql += " ORDER BY " + ", ".join(info.columns[c] for c in order_by)
    if limit_one:
        sql += " LIMIT 1"
    if for_update:
        sql += " FOR UPDATE"
    return sql


@functools.lru_cache(maxsize=1024)
def insert_sql(table: str, columns: tuple[str, ...], ph: str) -> str:
    info = INFO[table]
    cols = ", ".join(info.columns[c] for c in columns)
    return f"INSERT INTO {info.name} ({cols}) VALUES ({', '.join([ph] * len(columns))})"


@functools.lru_cache(maxsize=4096)
def update_sql(table: str, columns: tuple[str, ...], shape: Shape, ph: str) -> str:
    info = INFO[table]
    sets = ", ".join(f"{info.columns[c]} = {ph}" for c in columns)
    return f"UPDATE {info.name} SET {sets}{_where_sql(info, shape, ph)}"


@functools.lru_cache(maxsize=4096)
def delete_sql(table: str, shape: Shape, ph: str) -> str:
    info = INFO[table]
    return f"DELETE FROM {info.name}{_where_sql(info, shape, ph)}"


@functools.lru_cache(maxsize=4096)
def count_sql(table: str, shape: Shape, ph: str) -> str:
    info = INFO[table]
    return f"SELECT COUNT(*) FROM {info.name}{_where_sql(info, shape, ph)}"


@functools.lru_cache(maxsize=1024)
def _row_plan(table: str, columns: tuple[str, ...]) -> tuple[Any, tuple[int, ...]]:
    json_attrs = INFO[table].json_attrs
    getter = operator.itemgetter(*columns) if len(columns) > 1 else (
        lambda row: (row[columns[0]],))
    return getter, tuple(i for i, c in enumerate(columns) if c in json_attrs)


def row_values(
    table: str, columns: tuple[str, ...], rows: Sequence[Mapping[str, Any]]
) -> list[Sequence[Any]]:
    """Parameter tuples for inserting ``rows`` (JSON columns serialized)."""
    getter, json_positions = _row_plan(table, columns)
    if not json_positions:
        return [getter(row) for row in rows]
    out: list[Sequence[Any]] = []
    dumps = orjson.dumps
    for row in rows:
        values = list(getter(row))
        for i in json_positions:
            if values[i] is not None:
                values[i] = dumps(values[i]).decode()
        out.append(values)
    return out


def dump(info: TableInfo, attr: str, value: Any) -> Any:
    """A Python value as the driver takes it for this column."""
    if attr in info.json_attrs and value is not None:
        return orjson.dumps(value).decode()
    return value


def load_row(info: TableInfo, columns: Sequence[str], row: Iterable[Any]) -> dict[str, Any]:
    out = dict(zip(columns, row, strict=True))
    for attr in info.json_attrs.intersection(columns):
        value = out[attr]
        if isinstance(value, (str, bytes)):
            out[attr] = orjson.loads(value)
    for attr in info.bool_attrs.intersection(columns):
        value = out[attr]
        if value is not None and not isinstance(value, bool):
            out[attr] = bool(value)
    return out
