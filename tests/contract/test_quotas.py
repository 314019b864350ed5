"""Quota enforcement under concurrency, on SQLite and PostgreSQL: many creators racing for the
last free slots of a small quota, through one store or through two (two API replicas on one
PostgreSQL database), never take more than the limit, and a bulk is taken whole or not at all."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.cli.wiring import build_services
from alcor.config import QuotaSettings, load
from alcor.context import RequestContext
from alcor.db.migrate import upgrade
from alcor.db.store import Store
from alcor.services.quotas import QuotaService

CREATORS = 24
LIMIT = 5
CTX = RequestContext.admin("proj-q")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/quotas.db"
    return str(request.getfixturevalue("pg_url"))


def replica(url: str) -> tuple[Store, Services]:
    """One API replica's store and services, with a default network quota of ``LIMIT``."""
    settings = load({}, db__url=url, db__pool_size=CREATORS, quotas__network=LIMIT)
    store = Store.connect(settings.db)
    upgrade(store)
    return store, build_services(settings, store)


@pytest.fixture
def replicas(backend_url: str) -> Iterator[list[Services]]:
    """Two replicas on one database (PostgreSQL), or one (a SQLite file has one writer)."""
    opened = [replica(backend_url)]
    if not backend_url.startswith("sqlite"):
        opened.append(replica(backend_url))
    yield [services for _, services in opened]
    for store, _ in opened:
        store.dispose()


def networks(count: int) -> list[dict[str, Any]]:
    return [apply_create(RESOURCES["networks"], {"name": f"q{i}"}, CTX.project_id)
            for i in range(count)]


def race(replicas: list[Services], bulk: int) -> list[BaseException | None]:
    """``CREATORS`` threads, spread over the replicas, each create ``bulk`` networks at once."""
    start = threading.Barrier(CREATORS)

    def create(i: int) -> BaseException | None:
        service = replicas[i % len(replicas)].by_collection["networks"]
        start.wait()
        try:
            service.create(CTX, networks(bulk))
        except errors.AlcorError as exc:
            return exc
        return None

    with ThreadPoolExecutor(CREATORS) as pool:
        return list(pool.map(create, range(CREATORS)))


def stored(services: Services) -> int:
    return services.store.read(
        lambda txn: int(txn.count("networks", {"project_id": CTX.project_id})))


def test_concurrent_creators_never_pass_the_limit(replicas: list[Services]) -> None:
    outcomes = race(replicas, bulk=1)
    assert outcomes.count(None) == LIMIT
    assert all(isinstance(o, errors.OverQuota) for o in outcomes if o is not None)
    assert stored(replicas[0]) == LIMIT


def test_concurrent_bulks_are_taken_whole_or_not_at_all(replicas: list[Services]) -> None:
    outcomes = race(replicas, bulk=2)
    assert outcomes.count(None) == LIMIT // 2
    assert all(isinstance(o, errors.OverQuota) for o in outcomes if o is not None)
    assert stored(replicas[0]) == LIMIT // 2 * 2


def test_a_project_limit_raised_meanwhile_lets_that_many_more_in(
    replicas: list[Services],
) -> None:
    race(replicas, bulk=1)
    quotas = QuotaService(replicas[0].store, QuotaSettings(network=LIMIT))
    quotas.update(CTX, CTX.project_id, {"network": LIMIT + 3})
    outcomes = race(replicas, bulk=1)
    assert outcomes.count(None) == 3
    assert stored(replicas[0]) == LIMIT + 3
