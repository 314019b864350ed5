"""Migrations on every backend: ``upgrade`` from empty reaches head, agrees with ``tables.py``
(nothing left for autogenerate, same reflected schema as ``create_all``), is idempotent, and
is safe when several processes start against one PostgreSQL database at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from alcor.config import load
from alcor.db import tables
from alcor.db.migrate import MIGRATIONS, pending_changes, upgrade
from alcor.db.store import Store


def connect(url: str) -> Store:
    return Store.connect(load({}, db__url=url).db)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/migrations.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def empty(empty_url: str) -> Iterator[Store]:
    store = connect(empty_url)
    yield store
    store.dispose()


def head() -> str:
    cfg_heads = ScriptDirectory(str(MIGRATIONS)).get_heads()
    assert len(cfg_heads) == 1, f"expected one head revision, found {cfg_heads}"
    return cfg_heads[0]


def current_revisions(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars())


def table_names(store: Store) -> set[str]:
    return set(sa.inspect(store.engine).get_table_names())


def test_there_is_one_initial_revision() -> None:
    script = ScriptDirectory(str(MIGRATIONS))
    revisions = list(script.walk_revisions())
    assert [r.revision for r in revisions if r.down_revision is None] == [revisions[-1].revision]
    assert revisions[0].revision == head()


def test_upgrade_from_empty_reaches_head_with_nothing_pending(empty: Store) -> None:
    assert table_names(empty) == set()
    upgrade(empty)
    assert current_revisions(empty) == [head()]
    assert table_names(empty) == {*tables.TABLES, "alembic_version"}
    assert pending_changes(empty) == []


def test_upgrade_twice_is_a_no_op(empty: Store) -> None:
    upgrade(empty)
    before = schema(empty)
    upgrade(empty)
    assert current_revisions(empty) == [head()]
    assert schema(empty) == before
    assert pending_changes(empty) == []


def schema(store: Store) -> dict[str, Any]:
    """What the database says about every table: columns, keys, constraints and indexes."""
    insp = sa.inspect(store.engine)
    out: dict[str, Any] = {}
    for name in sorted(tables.TABLES):
        fks = insp.get_foreign_keys(name)
        out[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in insp.get_columns(name)
            ],
            "pk": insp.get_pk_constraint(name)["constrained_columns"],
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(name)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in insp.get_indexes(name)
            ),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"],
                 tuple(f["referred_columns"]), (f.get("options") or {}).get("ondelete"))
                for f in fks
            ),
        }
    return out


def test_migrated_schema_equals_the_tables(empty_url: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    """The migrations build exactly what ``tables.metadata.create_all`` builds."""
    migrated = connect(empty_url)
    twin_url = (f"sqlite:///{tmp_path}/twin.db" if empty_url.startswith("sqlite")
                else str(request.getfixturevalue("pg_cluster").create_database("twin")))
    created = connect(twin_url)
    try:
        upgrade(migrated)
        created.create_schema()
        assert schema(migrated) == schema(created)
    finally:
        migrated.dispose()
        created.dispose()


def test_concurrent_upgrades_on_postgresql_are_safe(pg_url: str) -> None:
    """Replicas starting together: each process runs ``upgrade``; one migrates, the others
    wait for it (advisory lock) and find the database at head."""
    alcor = str(Path(sys.executable).with_name("alcor"))
    procs = [
        subprocess.Popen([alcor, "db-upgrade", "--db-url", pg_url], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(4)
    ]
    outputs = [proc.communicate(timeout=120)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * len(procs), "\n".join(outputs)
    store = connect(pg_url)
    try:
        assert current_revisions(store) == [head()]
        assert pending_changes(store) == []
    finally:
        store.dispose()
