"""VNIs from network segment ranges on every backend: concurrent creators of one range get
distinct VNIs; on PostgreSQL a range's delete and a network taking a VNI from it are ordered
by the range row's lock, whichever comes first, and overlapping ranges written at once by the
type's default row; networks made before segments get theirs."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.cli.wiring import build_services, open_store
from alcor.config import Settings, load
from alcor.context import RequestContext
from alcor.db.migrate import upgrade
from alcor.db.store import Store, Transaction
from alcor.query import ListQuery

ADMIN = RequestContext.admin("proj-a")
THREADS = 16
DEFAULT = (1000, 1000)
"""The configured default range: one VNI, so where a network's VNI came from is plain."""


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ranges.db"
    return str(request.getfixturevalue("pg_url"))


def settings_for(url: str) -> Settings:
    return load({}, db__url=url, db__max_retries=THREADS + 1, db__pool_size=THREADS + 2,
                ipam__vni_min=DEFAULT[0], ipam__vni_max=DEFAULT[1])


@pytest.fixture
def world(backend_url: str) -> Iterator[tuple[Store, Services]]:
    settings = settings_for(backend_url)
    store = open_store(settings)
    yield store, build_services(settings, store)
    store.dispose()


def network_body(project: str = "proj-a") -> dict[str, Any]:
    return apply_create(RESOURCES["networks"], {"name": "n"}, project)


def add_range(services: Services, minimum: int, maximum: int) -> dict[str, Any]:
    body = apply_create(RESOURCES["network_segment_ranges"], {
        "network_type": "vxlan", "minimum": minimum, "maximum": maximum, "shared": False},
        "proj-a")
    return dict(services.by_collection["network_segment_ranges"].create(ADMIN, [body])[0])


def test_concurrent_networks_take_distinct_vnis_of_a_range(
    world: tuple[Store, Services]
) -> None:
    store, services = world
    add_range(services, 10, 10 + THREADS - 1)
    networks = services.by_collection["networks"]
    with ThreadPoolExecutor(THREADS) as pool:
        made = list(pool.map(lambda _: networks.create(ADMIN, [network_body()])[0],
                             range(THREADS)))
    assert sorted(n["provider:segmentation_id"] for n in made) == list(
        range(10, 10 + THREADS))
    segments = store.read(lambda txn: txn.select("segments"))
    assert sorted(s["segmentation_id"] for s in segments) == list(range(10, 10 + THREADS))
    # The range is full: the next network takes the default range's VNI.
    assert networks.create(ADMIN, [network_body()])[0]["provider:segmentation_id"] == 1000


def waiting_for_a_lock(store: Store, deadline: float = 30.0) -> None:
    """Return once some PostgreSQL session waits for a lock another one holds."""
    end = time.monotonic() + deadline
    with store.engine.connect() as conn:
        while time.monotonic() < end:
            waiting = conn.execute(sa.text("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waiting.scalar_one():
                return
            conn.rollback()
            threading.Event().wait(0.01)
    raise AssertionError("nobody waited for the range's lock")


def held(fn: Callable[[Transaction], Any], done: threading.Event,
         release: threading.Event) -> Callable[[Transaction], Any]:
    """``fn`` in a transaction that stays open (its locks held) until ``release``."""
    def run(txn: Transaction) -> Any:
        result = fn(txn)
        done.set()
        assert release.wait(60)
        return result

    return run


def pg_world(pg_url: str) -> tuple[Store, Services]:
    settings = settings_for(pg_url)
    store = open_store(settings)
    return store, build_services(settings, store)


def test_a_range_delete_waits_for_the_network_taking_a_vni_from_it(pg_url: str) -> None:
    store, services = pg_world(pg_url)
    try:
        taken = add_range(services, 10, 10)
        networks = services.by_collection["networks"]
        ranges = services.by_collection["network_segment_ranges"]
        done, release = threading.Event(), threading.Event()
        create = held(lambda txn: networks.create_txn(txn, ADMIN, [network_body()]),
                      done, release)
        with ThreadPoolExecutor(2) as pool:
            made: Future[Any] = pool.submit(store.write, create)
            assert done.wait(60)
            deleted = pool.submit(ranges.delete, ADMIN, taken["id"])
            try:
                waiting_for_a_lock(store)
            finally:
                release.set()
            assert made.result()[0]["provider:segmentation_id"] == 10
            with pytest.raises(errors.NetworkSegmentRangeReferencedByProject):
                deleted.result()
        assert ranges.get(ADMIN, taken["id"])["used"] == {"10": "proj-a"}
    finally:
        store.dispose()


def test_a_network_waits_for_the_delete_of_its_range_and_goes_elsewhere(pg_url: str) -> None:
    store, services = pg_world(pg_url)
    try:
        gone = add_range(services, 10, 10)
        networks = services.by_collection["networks"]
        ranges = services.by_collection["network_segment_ranges"]
        done, release = threading.Event(), threading.Event()
        delete = held(lambda txn: ranges.delete_txn(txn, ADMIN, gone["id"], None), done,
                      release)
        with ThreadPoolExecutor(2) as pool:
            deleted = pool.submit(store.write, delete)
            assert done.wait(60)
            made = pool.submit(networks.create, ADMIN, [network_body()])
            try:
                waiting_for_a_lock(store)
            finally:
                release.set()
            deleted.result()
            assert made.result()[0]["provider:segmentation_id"] == DEFAULT[0]
        with pytest.raises(errors.NetworkSegmentRangeNotFound):
            ranges.get(ADMIN, gone["id"])
    finally:
        store.dispose()


def test_overlapping_ranges_written_at_once_do_not_both_pass(pg_url: str) -> None:
    store, services = pg_world(pg_url)
    try:
        ranges = services.by_collection["network_segment_ranges"]
        ranges.list(ADMIN, ListQuery())  # the default ranges exist before either write
        done, release = threading.Event(), threading.Event()
        first = apply_create(RESOURCES["network_segment_ranges"], {
            "network_type": "vxlan", "minimum": 10, "maximum": 20}, "proj-a")
        create = held(lambda txn: ranges.create_txn(txn, ADMIN, [first]), done, release)
        with ThreadPoolExecutor(2) as pool:
            made = pool.submit(store.write, create)
            assert done.wait(60)
            second = pool.submit(add_range, services, 15, 25)
            try:
                waiting_for_a_lock(store)
            finally:
                release.set()
            made.result()
            with pytest.raises(errors.NetworkSegmentRangeOverlaps):
                second.result()
    finally:
        store.dispose()


def test_networks_made_before_segments_get_theirs(backend_url: str) -> None:
    store = Store.connect(settings_for(backend_url).db)
    try:
        upgrade(store, "153c2c78eb21")
        net_id = str(uuid.uuid4())
        with store.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO networks (id, project_id, name, description, tags, "
                "revision_number, created_at, updated_at, admin_state_up, status, shared, mtu, "
                "router_external, port_security_enabled, network_type, physical_network, "
                "segmentation_id, dns_domain, vlan_transparent, is_default, qos_policy_id, "
                "availability_zone_hints) VALUES (:id, 'proj-a', 'old', '', '[]', 3, "
                "'2024-01-01T00:00:00Z', '2024-01-02T00:00:00Z', true, 'ACTIVE', false, 1450, "
                "false, true, 'vxlan', NULL, 4242, '', false, false, NULL, '[]')"),
                {"id": net_id})
        upgrade(store)
        [segment] = store.read(lambda txn: txn.select("segments"))
        assert uuid.UUID(segment.pop("id"))
        assert segment == {
            "project_id": "proj-a", "network_id": net_id, "name": None, "description": None,
            "network_type": "vxlan", "physical_network": None, "segmentation_id": 4242,
            "revision_number": 0, "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z"}
    finally:
        store.dispose()
