"""Shared fixtures: settings on a throwaway SQLite file, a migrated store, the services, and a
client that drives the ASGI app in-process.  Markers come from the test's directory."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from alcor.api.app import Services
from alcor.cli.wiring import build_server_app, build_services, open_store
from alcor.config import Settings, load
from alcor.context import RequestContext
from alcor.db.store import Store
from tests.postgres import PostgresCluster, PostgresUnavailable, find_bin_dir

LAYERS = ("unit", "contract", "functional", "linux", "fullstack")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        layer = next((p for p in parts if p in LAYERS), None)
        if layer is None:
            raise pytest.UsageError(f"{item.nodeid} is not under tests/{{{','.join(LAYERS)}}}/")
        item.add_marker(getattr(pytest.mark, layer))


ROOT_LAYERS = ("linux", "fullstack")
"""Layers that make network namespaces, links and nftables rules: they need root (CI runs as
root) and fail, never skip, without it."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    layer = next((m.name for m in item.iter_markers() if m.name in ROOT_LAYERS), None)
    if layer is not None and os.geteuid() != 0:
        pytest.fail(f"tests/{layer} need root (network namespaces, veth, VXLAN, nftables); "
                    "CI runs them as root", pytrace=False)


NAMESPACE_TOOLS = {"ip": "iproute2", "bridge": "iproute2", "nft": "nftables",
                   "busybox": "busybox", "ping": "iputils-ping", "sysctl": "procps"}
"""Commands the tests in ROOT_LAYERS run, and the Debian package of each."""


def needs_postgresql(item: pytest.Item) -> bool:
    """Whether ``item`` starts the PostgreSQL cluster: it asks for ``pg_cluster`` (or
    ``pg_url``), or it is the ``postgresql`` case of a backend-parametrized fixture."""
    if "pg_cluster" in getattr(item, "fixturenames", ()):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def missing_tools(items: list[pytest.Item]) -> dict[str, str]:
    """Command -> Debian package, for every system tool the collected tests need but the
    machine lacks."""
    missing: dict[str, str] = {}
    if any(m.name in ROOT_LAYERS for item in items for m in item.iter_markers()):
        missing.update((cmd, pkg) for cmd, pkg in NAMESPACE_TOOLS.items()
                       if shutil.which(cmd) is None)
    if any(needs_postgresql(item) for item in items):
        try:
            find_bin_dir()
        except PostgresUnavailable:
            missing["initdb"] = "postgresql"
    return missing


def pytest_collection_finish(session: pytest.Session) -> None:
    """A missing system tool stops the run before any test: an error, never a skip, and
    one line rather than a failure deep inside the first test that runs it."""
    if session.config.option.collectonly:
        return
    missing = missing_tools(session.items)
    if missing:
        packages = " ".join(sorted(set(missing.values())))
        raise pytest.UsageError(
            f"system tools the tests need are missing: {', '.join(missing)} (Debian: "
            f"{packages}); run `bash .ci/run` as root, which installs them and runs the tests")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load({}, db__url=f"sqlite:///{tmp_path}/alcor.db")


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    yield s
    s.dispose()


@pytest.fixture
def services(settings: Settings, store: Store) -> Services:
    return build_services(settings, store)


@pytest.fixture
def ctx() -> RequestContext:
    return RequestContext.admin("proj-a")


@pytest.fixture
def client(settings: Settings, store: Store) -> Iterator[TestClient]:
    with TestClient(build_server_app(settings, store), base_url="http://testserver") as c:
        c.headers["X-Project-Id"] = "proj-a"
        yield c


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster per session, started by the first test that asks."""
    try:
        cluster = PostgresCluster.start()
    except PostgresUnavailable as exc:
        raise pytest.fail.Exception(str(exc), pytrace=False) from None
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """The SQLAlchemy URL of a fresh, empty PostgreSQL database."""
    return pg_cluster.create_database()
