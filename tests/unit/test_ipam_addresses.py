"""Fixed IP allocation on a real SQLite store: no address handed out twice, pools respected,
exhaustion exactly when the pools are full, freed addresses reusable, requested addresses
honoured or refused, large pools served by probes and dense ones by the gap scan."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alcor import errors
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import RESOURCES
from alcor.cli.wiring import build_services
from alcor.config import load
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.ipam import addresses
from alcor.ipam.addresses import Ranges, gaps

CTX = RequestContext.admin("proj-a")
Row = dict[str, Any]


@dataclass
class World:
    store: Store
    services: Services

    def create(self, collection: str, **body: Any) -> Row:
        checked = apply_create(RESOURCES[collection], body, "proj-a")
        return self.services.by_collection[collection].create(CTX, [checked])[0]

    def ports(self, bodies: list[Row]) -> list[Row]:
        checked = [apply_create(RESOURCES["ports"], b, "proj-a") for b in bodies]
        return self.services.by_collection["ports"].create(CTX, checked)

    def delete_port(self, port_id: str) -> None:
        self.services.by_collection["ports"].delete(CTX, port_id)

    def allocated(self, subnet_id: str) -> list[str]:
        return list(self.store.read(lambda txn: txn.scalars(
            "ip_allocations", "ip_address", {"subnet_id": subnet_id})))


@contextmanager
def world() -> Iterator[World]:
    cfg = load({}, db__url="sqlite://", quotas__port=-1)  # thousands of ports per pool
    store = Store.connect(cfg.db)
    store.create_schema()
    try:
        yield World(store, build_services(cfg, store))
    finally:
        store.dispose()


def ip_int(text: str) -> int:
    return int(ipaddress.ip_address(text))


def pool_set(pools: list[Row]) -> set[int]:
    return {v for p in pools for v in range(ip_int(p["start"]), ip_int(p["end"]) + 1)}


def port_ips(ports: list[Row]) -> list[int]:
    return [ip_int(f["ip_address"]) for p in ports for f in p["fixed_ips"]]


# --- pure parts ------------------------------------------------------------------------------


spans = st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=5).map(
    lambda raw: sorted({(a, a + n) for a, n in raw}))


@given(spans, st.sets(st.integers(0, 400), max_size=200))
def test_gaps_are_the_pools_minus_the_taken(pools: list[tuple[int, int]], taken: set[int]
                                            ) -> None:
    pools = _disjoint(pools)
    want = {v for a, b in pools for v in range(a, b + 1)} - taken
    got_ranges = gaps(pools, sorted(taken))
    got = [v for a, b in got_ranges for v in range(a, b + 1)]
    assert sorted(got) == sorted(want) and len(got) == len(set(got))


@given(spans, st.integers(0, 60))
def test_ranges_sample_distinct_members(pools: list[tuple[int, int]], n: int) -> None:
    pools = _disjoint(pools)
    ranges = Ranges(pools)
    members = {v for a, b in pools for v in range(a, b + 1)}
    picked = ranges.sample(n)
    assert len(picked) == len(set(picked)) == min(n, len(members))
    assert set(picked) <= members


def _disjoint(pools: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in pools:
        if out and a <= out[-1][1] + 1:
            continue
        out.append((a, b))
    return out


def test_ranges_sample_a_huge_space_without_enumerating() -> None:
    ranges = Ranges([(0, 2**64 - 1), (2**70, 2**70 + 5)])
    picked = ranges.sample(1000)
    assert len(set(picked)) == 1000
    assert all(0 <= v < 2**64 or 2**70 <= v <= 2**70 + 5 for v in picked)


def test_eui64_matches_neutron() -> None:
    sub = addresses.Subnet.from_row({
        "id": "s", "network_id": "n", "cidr": "2001:db8::/64", "gateway_ip": None,
        "allocation_pools": [], "ipv6_address_mode": "slaac", "ipv6_ra_mode": None})
    assert sub.auto_address
    assert sub.text(sub.eui64("00:16:3e:33:44:55")) == "2001:db8::216:3eff:fe33:4455"


# --- allocation through the port service -----------------------------------------------------


@st.composite
def v4_subnets(draw: st.DrawFn) -> tuple[str, list[Row]]:
    """A v4 subnet of 4 to 1,024 addresses with one or two pools that leave the gateway out
    (small pools are served from the allocated set, larger ones by probes)."""
    prefix = draw(st.integers(22, 30))
    hosts = range(2, 2 ** (32 - prefix) - 1)  # .1 is the gateway
    cuts = sorted(draw(st.sets(st.sampled_from(hosts), min_size=1, max_size=4)))
    if len(cuts) % 2:
        cuts.append(cuts[-1])
    base = ipaddress.IPv4Address("10.0.0.0")
    pools = [{"start": str(base + a), "end": str(base + b)}
             for a, b in zip(cuts[::2], cuts[1::2], strict=True)]
    return f"10.0.0.0/{prefix}", pools


steps = st.lists(
    st.one_of(st.tuples(st.just("create"), st.integers(1, 40)),
              st.tuples(st.just("delete"), st.integers(0, 1000))),
    min_size=1, max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(v4_subnets(), steps)
def test_allocation_respects_pools_and_reuses_frees(
    spec: tuple[str, list[Row]], ops: list[tuple[str, int]]
) -> None:
    cidr, pools = spec
    free = pool_set(pools)
    with world() as w:
        net = w.create("networks", name="n")
        sub = w.create("subnets", network_id=net["id"], cidr=cidr, ip_version=4,
                       gateway_ip="10.0.0.1", allocation_pools=pools)
        held: dict[str, list[int]] = {}
        for op, arg in ops:
            if op == "create":
                _create_step(w, net["id"], arg, free, held)
            elif held:
                victim = sorted(held)[arg % len(held)]
                w.delete_port(victim)
                free |= set(held.pop(victim))
        assert sorted(ip_int(a) for a in w.allocated(sub["id"])) == sorted(
            v for vs in held.values() for v in vs)
        rest = w.ports([{"network_id": net["id"]}] * len(free)) if free else []
        assert set(port_ips(rest)) == free
        with pytest.raises(errors.IpAddressGenerationFailure):
            w.ports([{"network_id": net["id"]}])


def _create_step(w: World, net_id: str, count: int, free: set[int],
                 held: dict[str, list[int]]) -> None:
    if count > len(free):
        with pytest.raises(errors.IpAddressGenerationFailure):
            w.ports([{"network_id": net_id}] * count)
        return
    ports = w.ports([{"network_id": net_id}] * count)
    got = port_ips(ports)
    assert len(got) == len(set(got)) == count
    assert set(got) <= free
    free -= set(got)
    held.update({p["id"]: port_ips([p]) for p in ports})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(2, 30), min_size=1, max_size=15))
def test_requested_addresses_are_given_once(wanted: list[int]) -> None:
    with world() as w:
        net = w.create("networks", name="n")
        sub = w.create("subnets", network_id=net["id"], cidr="10.0.0.0/27", ip_version=4)
        owned: set[int] = set()
        for last in wanted:
            address = f"10.0.0.{last}"
            body = {"network_id": net["id"], "fixed_ips": [{"ip_address": address}]}
            if last in owned:
                with pytest.raises(errors.IpAddressAlreadyAllocated):
                    w.ports([body])
            else:
                assert port_ips(w.ports([body])) == [ip_int(address)]
                owned.add(last)
        auto = w.ports([{"network_id": net["id"]}] * (29 - len(owned)))
        assert not {v & 0xFF for v in port_ips(auto)} & owned
        assert len(w.allocated(sub["id"])) == 29


# --- large and dense pools ------------------------------------------------------------------


def test_large_v4_pool_is_probed() -> None:
    with world() as w:
        net = w.create("networks", name="n")
        sub = w.create("subnets", network_id=net["id"], cidr="10.0.0.0/8", ip_version=4)
        ports = w.ports([{"network_id": net["id"]}] * 2000)
        got = port_ips(ports)
        assert len(set(got)) == 2000
        assert sub["allocation_pools"] == [{"start": "10.0.0.2", "end": "10.255.255.254"}]
        assert all(ip_int("10.0.0.2") <= v <= ip_int("10.255.255.254") for v in got)


def test_v6_slash64_pool_is_never_enumerated() -> None:
    with world() as w:
        net = w.create("networks", name="n")
        w.create("subnets", network_id=net["id"], cidr="fd00:9::/64", ip_version=6)
        ports = w.ports([{"network_id": net["id"]}] * 3000)
        got = port_ips(ports)
        assert len(set(got)) == 3000
        net6 = ipaddress.ip_network("fd00:9::/64")
        assert all(ipaddress.ip_address(v) in net6 and v != int(net6.network_address) + 1
                   for v in got)


def test_dense_large_pool_falls_back_to_the_gap_scan() -> None:
    """A /19 pool (beyond SMALL_POOL) with all but five addresses taken: probes find the pool
    dense, the scan of the gaps finds exactly the five, and the sixth request fails."""
    with world() as w:
        net = w.create("networks", name="n")
        sub = w.create("subnets", network_id=net["id"], cidr="10.1.0.0/19", ip_version=4)
        pool = sorted(pool_set(sub["allocation_pools"]))
        assert len(pool) > addresses.SMALL_POOL
        keep_free = set(pool[100::1700])
        assert len(keep_free) == 5
        holder = w.ports([{"network_id": net["id"], "fixed_ips": []}])[0]
        rows = [{"subnet_id": sub["id"], "ip_address": str(ipaddress.ip_address(v)),
                 "network_id": net["id"], "port_id": holder["id"]}
                for v in pool if v not in keep_free]
        w.store.write(lambda txn: txn.insert("ip_allocations", rows))
        got = port_ips(w.ports([{"network_id": net["id"]}] * 5))
        assert set(got) == keep_free
        with pytest.raises(errors.IpAddressGenerationFailure):
            w.ports([{"network_id": net["id"]}])
