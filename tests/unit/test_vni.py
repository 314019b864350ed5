"""VNI allocation: interval arithmetic, picking a free id in a union of ranges, and the tiers
a tenant network's VNI comes from (own ranges, shared ranges, the default range less other
projects' ranges), on one store."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.ipam import vni
from alcor.ipam.vni import Interval

ADMIN = RequestContext.admin("proj-a")

intervals = st.lists(st.tuples(st.integers(0, 60), st.integers(0, 60)), max_size=6)


def ids(runs: list[Interval]) -> set[int]:
    return {i for low, high in runs for i in range(low, high + 1)}


@given(intervals)
def test_merge_keeps_the_same_ids_in_sorted_disjoint_runs(runs: list[Interval]) -> None:
    merged = vni.merge(runs)
    assert ids(merged) == ids(runs)
    assert all(high < nxt_low - 1 for (_, high), (nxt_low, _) in itertools.pairwise(merged))


@given(st.tuples(st.integers(0, 60), st.integers(0, 60)), intervals)
def test_subtract_removes_exactly_the_holes(interval: Interval, holes: list[Interval]) -> None:
    left = vni.subtract(interval, holes)
    assert ids(left) == ids([interval]) - ids(holes)
    assert left == vni.merge(left)


def network(services: Services, project: str = "proj-a", **attrs: Any) -> int:
    ctx = RequestContext.admin(project)
    body = apply_create(RESOURCES["networks"], {"name": "n", **attrs}, project)
    return int(services.by_collection["networks"].create(ctx, [body])[0][
        "provider:segmentation_id"])


def add_range(services: Services, minimum: int, maximum: int, *, shared: bool = True,
              project: str = "proj-a", network_type: str = "vxlan") -> None:
    body = apply_create(RESOURCES["network_segment_ranges"], {
        "network_type": network_type, "minimum": minimum, "maximum": maximum,
        "shared": shared}, project)
    services.by_collection["network_segment_ranges"].create(ADMIN, [body])


def pick(store: Store, runs: list[Interval]) -> int | None:
    return store.read(lambda txn: vni.pick_vni(txn, runs, "vxlan"))


def test_pick_finds_the_free_ids_of_a_union(services: Services, store: Store) -> None:
    for taken in (10, 11, 13, 20):
        network(services, **{"provider:segmentation_id": taken})
    runs = [(10, 13), (20, 20)]
    assert {pick(store, runs) for _ in range(50)} == {12}
    network(services, **{"provider:segmentation_id": 12})
    assert pick(store, runs) is None
    assert pick(store, []) is None


def test_pick_counts_only_networks_of_its_type(services: Services, store: Store) -> None:
    network(services, **{"provider:network_type": "geneve", "provider:segmentation_id": 5})
    assert pick(store, [(5, 5)]) == 5


def test_pick_in_a_huge_union_avoids_taken_ids(services: Services, store: Store) -> None:
    network(services, **{"provider:segmentation_id": 1})
    runs = [(1, 1), (100, 100), (1_000_000, 16_000_000)]
    got = {pick(store, runs) for _ in range(30)}
    assert 1 not in got
    assert all(v == 100 or 1_000_000 <= v <= 16_000_000 for v in got if v is not None)
    assert None not in got


def test_allocate_vni_raises_when_the_range_is_full(services: Services, store: Store) -> None:
    network(services, **{"provider:segmentation_id": 7})
    with pytest.raises(errors.NoNetworkAvailable):
        store.read(lambda txn: vni.allocate_vni(txn, 7, 7))
    assert store.read(lambda txn: vni.allocate_vni(txn, 7, 8)) == 8


def tenant(store: Store, project: str, default: Interval = (1, 9)) -> int:
    def fn(txn: Transaction) -> int:
        return vni.tenant_vni(txn, project, "vxlan", default)

    return store.read(fn)


def test_without_ranges_the_default_range_is_used(store: Store) -> None:
    assert 1 <= tenant(store, "proj-a") <= 9


def test_own_range_then_shared_then_default(services: Services, store: Store) -> None:
    add_range(services, 100, 100, shared=False, project="proj-a")
    add_range(services, 200, 200)
    assert tenant(store, "proj-a") == 100
    assert tenant(store, "proj-b") == 200
    network(services, "proj-a", **{"provider:segmentation_id": 100})
    assert tenant(store, "proj-a") == 200
    network(services, "proj-b", **{"provider:segmentation_id": 200})
    assert 1 <= tenant(store, "proj-a") <= 9


def test_the_default_range_excludes_other_projects_ranges(
    services: Services, store: Store
) -> None:
    add_range(services, 2, 9, shared=False, project="proj-a")
    assert {tenant(store, "proj-b") for _ in range(20)} == {1}
    network(services, "proj-b", **{"provider:segmentation_id": 1})
    with pytest.raises(errors.NoNetworkAvailable):
        tenant(store, "proj-b")
    assert 2 <= tenant(store, "proj-a") <= 9


def test_ranges_of_another_type_do_not_count(services: Services, store: Store) -> None:
    add_range(services, 100, 100, shared=False, project="proj-a", network_type="geneve")
    assert 1 <= tenant(store, "proj-a") <= 9
    assert store.read(lambda txn: vni.tenant_vni(txn, "proj-a", "geneve", (1, 9))) == 100


def test_used_in_maps_vnis_to_projects(services: Services, store: Store) -> None:
    network(services, "proj-a", **{"provider:segmentation_id": 3})
    network(services, "proj-b", **{"provider:segmentation_id": 5})
    network(services, "proj-b", **{"provider:segmentation_id": 50})
    assert store.read(lambda txn: vni.used_in(txn, "vxlan", 1, 10)) == {3: "proj-a",
                                                                         5: "proj-b"}
