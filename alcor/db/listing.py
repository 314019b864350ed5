"""Neutron-style listing in SQL: filters, tag and allocation filters, sorting, keyset pages.

Everything a ``ListQuery`` asks for runs in the database, so a page of a large table costs a
page, not a scan in Python.  NULLs sort first in ascending order on every backend.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from alcor.db import statements, tables
from alcor.query import ListQuery, Page, Sharing

BINDING_FILTERS: dict[tuple[str, str], tuple[sa.Table, str, str]] = {
    ("ports", "security_groups"): (tables.port_security_groups, "port_id", "security_group_id"),
}
"""List attributes whose truth is a binding table (table, owner column, member column):
filtering by them goes through it (port-security-groups-filtering)."""


def _binding_condition(
    table: sa.Table, binding: tuple[sa.Table, str, str], values: list[Any]
) -> sa.ColumnElement[bool]:
    """Rows bound to any of ``values``; a null value (``?security_groups=``) means none."""
    link, owner, member = binding
    non_null = [v for v in values if v is not None]
    parts: list[sa.ColumnElement[bool]] = []
    if non_null:
        bound = sa.select(link.c[owner]).where(link.c[member].in_(non_null))
        parts.append(table.c.id.in_(bound))
    if len(non_null) != len(values):
        parts.append(table.c.id.not_in(sa.select(link.c[owner])))
    return sa.or_(*parts)


def _filter_conditions(table: sa.Table, query: ListQuery) -> list[sa.ColumnElement[bool]]:
    conds: list[sa.ColumnElement[bool]] = []
    for attr, values in query.filters.items():
        binding = BINDING_FILTERS.get((table.name, attr))
        if binding is not None:
            conds.append(_binding_condition(table, binding, values))
            continue
        col = table.c[attr]
        non_null = [v for v in values if v is not None]
        parts: list[sa.ColumnElement[bool]] = []
        if non_null:
            parts.append(col.in_(non_null))
        if len(non_null) != len(values):
            parts.append(col.is_(None))
        conds.append(sa.or_(*parts))
    if query.project_ids is not None:
        conds.append(_visible(table, query.project_ids, query.shared))
    conds.extend(_tag_conditions(table, query))
    if query.fixed_ips:
        conds.append(_fixed_ip_condition(table, query.fixed_ips))
    return conds


def _visible(table: sa.Table, projects: list[str], sharing: Sharing | None
             ) -> sa.ColumnElement[bool]:
    """Rows of ``projects``, or shared with everyone as ``sharing`` says."""
    own = table.c.project_id.in_(projects)
    if sharing is None:
        return own
    parts = [own, *(table.c[c] == sa.true() for c in sharing.columns)]
    if sharing.parent_table:
        parent = tables.TABLES[sharing.parent_table]
        seen = sa.or_(parent.c.project_id.in_(projects),
                      *(parent.c[c] == sa.true() for c in sharing.parent_columns))
        parts.append(table.c[sharing.parent_key].in_(sa.select(parent.c.id).where(seen)))
    return sa.or_(*parts)


def _tag_conditions(table: sa.Table, query: ListQuery) -> list[sa.ColumnElement[bool]]:
    tag = tables.tags
    conds: list[sa.ColumnElement[bool]] = []

    def having_all(names: list[str]) -> sa.ColumnElement[bool]:
        sub = (
            sa.select(tag.c.resource_id)
            .where(tag.c.tag.in_(names))
            .group_by(tag.c.resource_id)
            .having(sa.func.count(sa.distinct(tag.c.tag)) == len(set(names)))
        )
        return table.c.id.in_(sub)

    def having_any(names: list[str]) -> sa.ColumnElement[bool]:
        return table.c.id.in_(sa.select(tag.c.resource_id).where(tag.c.tag.in_(names)))

    if query.tags_all:
        conds.append(having_all(query.tags_all))
    if query.tags_any:
        conds.append(having_any(query.tags_any))
    if query.not_tags_all:
        conds.append(sa.not_(having_all(query.not_tags_all)))
    if query.not_tags_any:
        conds.append(sa.not_(having_any(query.not_tags_any)))
    return conds


def _fixed_ip_condition(table: sa.Table, specs: list[dict[str, str]]) -> sa.ColumnElement[bool]:
    """Ports having an allocation that matches every key of any one spec."""
    alloc = tables.ip_allocations
    matches: list[sa.ColumnElement[bool]] = []
    for spec in specs:
        parts: list[sa.ColumnElement[bool]] = []
        if "ip_address" in spec:
            parts.append(alloc.c.ip_address == spec["ip_address"])
        if "subnet_id" in spec:
            parts.append(alloc.c.subnet_id == spec["subnet_id"])
        if "ip_address_substr" in spec:
            # Case-insensitive on every backend (SQLite's LIKE is, PostgreSQL's is not).
            substr = spec["ip_address_substr"]
            parts.append(alloc.c.ip_address.icontains(substr, autoescape=True))
        matches.append(sa.and_(*parts))
    return table.c.id.in_(sa.select(alloc.c.port_id).where(sa.or_(*matches)))


def _order(table: sa.Table, query: ListQuery) -> list[tuple[sa.Column[Any], bool]]:
    keys = [(table.c[attr], asc) for attr, asc in query.sorts if attr != "id"]
    id_asc = next((asc for attr, asc in query.sorts if attr == "id"), True)
    keys.append((table.c.id, id_asc))
    if query.page_reverse:
        keys = [(col, not asc) for col, asc in keys]
    return keys


def _after(col: sa.Column[Any], asc: bool, value: Any) -> sa.ColumnElement[bool]:
    """Rows strictly after ``value`` in this column's order (NULLs first when ascending)."""
    if asc:
        return col.is_not(None) if value is None else col > _bound(col, value)
    if value is None:
        return sa.false()
    return sa.or_(col < _bound(col, value), col.is_(None))


def _same(col: sa.Column[Any], value: Any) -> sa.ColumnElement[bool]:
    return col.is_(None) if value is None else col == _bound(col, value)


def _bound(col: sa.Column[Any], value: Any) -> sa.BindParameter[Any]:
    """The marker's value as a typed parameter (``col > True`` is refused for booleans)."""
    return sa.bindparam(None, value, type_=col.type)


def _keyset(
    order: list[tuple[sa.Column[Any], bool]], marker: dict[str, Any]
) -> sa.ColumnElement[bool]:
    """Lexicographic "after the marker row" over every sort key."""
    clauses: list[sa.ColumnElement[bool]] = []
    for i, (col, asc) in enumerate(order):
        prefix = [_same(c, marker[c.key]) for c, _ in order[:i]]
        clauses.append(sa.and_(*prefix, _after(col, asc, marker[col.key])))
    return sa.or_(*clauses)


def _order_by(col: sa.Column[Any], asc: bool) -> sa.UnaryExpression[Any]:
    return col.asc().nulls_first() if asc else col.desc().nulls_last()


def _fetch(conn: Connection, table: sa.Table, stmt: sa.Select[Any]) -> list[dict[str, Any]]:
    """Run a compiled listing on the driver's cursor and convert rows as ``statements`` does:
    SQLAlchemy's per-row result processing cost more than the query on large pages."""
    compiled = stmt.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    params: Any = compiled.construct_params()
    if compiled.positiontup is not None:
        params = [params[name] for name in compiled.positiontup]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        names = tuple(c.key for c in table.c)
        info = statements.INFO[table.name]
        return [statements.load_row(info, names, r) for r in cursor.fetchall()]
    finally:
        cursor.close()


def run_list(
    conn: Connection, table: sa.Table, columns: list[sa.Label[Any]], query: ListQuery
) -> Page:
    conds = _filter_conditions(table, query)
    order = _order(table, query)
    if query.marker is not None:
        marker_cols = [col.label(col.key) for col, _ in order]
        seen = ([] if query.project_ids is None
                else [_visible(table, query.project_ids, query.shared)])
        row = conn.execute(
            sa.select(*marker_cols).where(table.c.id == query.marker, *seen)).first()
        if row is not None:
            conds.append(_keyset(order, dict(row._mapping)))
    stmt = sa.select(*columns).where(*conds).order_by(*(_order_by(c, a) for c, a in order))
    if query.limit is not None:
        stmt = stmt.limit(query.limit + 1)
    items = _fetch(conn, table, stmt)
    has_more = query.limit is not None and len(items) > query.limit
    if has_more:
        items = items[: query.limit]
    if query.page_reverse:
        items.reverse()
    return Page(items=items, has_more=has_more)
