"""Subnet address arithmetic: default gateway, usable range, default pools (with a property
test over every prefix length of both families) and validation of requested pools."""

from __future__ import annotations

import ipaddress
import itertools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alcor import errors
from alcor.ipam import subnets as cidrs
from alcor.ipam.subnets import IPAddress, IPNetwork, Pool


def net(text: str) -> IPNetwork:
    return cidrs.parse_cidr(text)


def ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def dicts(pools: list[Pool]) -> list[dict[str, str]]:
    return [p.as_dict() for p in pools]


# --- gateway ------------------------------------------------------------------------------


def test_parse_cidr_keeps_the_network_address() -> None:
    assert str(net("10.0.0.5/24")) == "10.0.0.0/24"
    assert str(net("2001:DB8::5/64")) == "2001:db8::/64"


def test_default_gateway_is_first_host() -> None:
    assert cidrs.default_gateway(net("10.0.0.0/24")) == ip("10.0.0.1")
    assert cidrs.default_gateway(net("2001:db8::/64")) == ip("2001:db8::1")


def test_default_gateway_of_a_single_address_lies_past_it_as_in_neutron() -> None:
    assert cidrs.default_gateway(net("10.0.0.5/32")) == ip("10.0.0.6")
    assert cidrs.default_gateway(net("255.255.255.255/32")) is None


@pytest.mark.parametrize(("cidr", "gateway", "invalid"), [
    ("10.0.0.0/24", "10.0.0.0", True),
    ("10.0.0.0/24", "10.0.0.255", True),
    ("10.0.0.0/24", "10.0.0.254", False),
    ("10.0.0.0/24", "192.168.0.1", False),  # outside: reachable through an on-link route
    ("2001:db8::/64", "2001:db8::", False),  # v6 may use the subnet-router anycast address
    ("2001:db8::/64", "2001:db8::ffff:ffff:ffff:ffff", False),
])
def test_gateway_validity(cidr: str, gateway: str, invalid: bool) -> None:
    assert cidrs.gateway_is_invalid(net(cidr), ip(gateway)) is invalid


# --- default pools ------------------------------------------------------------------------


def test_default_pool_of_v4_skips_network_gateway_and_broadcast() -> None:
    pools = cidrs.default_pools(net("10.0.0.0/24"), ip("10.0.0.1"))
    assert dicts(pools) == [{"start": "10.0.0.2", "end": "10.0.0.254"}]


def test_default_pools_split_around_a_gateway_in_the_middle() -> None:
    pools = cidrs.default_pools(net("10.0.0.0/24"), ip("10.0.0.100"))
    assert dicts(pools) == [{"start": "10.0.0.1", "end": "10.0.0.99"},
                            {"start": "10.0.0.101", "end": "10.0.0.254"}]


def test_default_pool_without_gateway_is_every_host() -> None:
    assert dicts(cidrs.default_pools(net("10.0.0.0/29"), None)) == [
        {"start": "10.0.0.1", "end": "10.0.0.6"}]


def test_default_pool_ignores_a_gateway_outside_the_subnet() -> None:
    assert dicts(cidrs.default_pools(net("10.0.0.0/29"), ip("10.9.9.9"))) == [
        {"start": "10.0.0.1", "end": "10.0.0.6"}]


def test_default_pool_of_v6_keeps_the_last_address() -> None:
    pools = cidrs.default_pools(net("2001:db8::/64"), ip("2001:db8::1"))
    assert dicts(pools) == [{"start": "2001:db8::2", "end": "2001:db8::ffff:ffff:ffff:ffff"}]


@pytest.mark.parametrize(("cidr", "gateway", "expected"), [
    ("10.0.0.4/31", None, [("10.0.0.4", "10.0.0.5")]),            # RFC 3021: both hosts
    ("10.0.0.4/31", "10.0.0.5", [("10.0.0.4", "10.0.0.4")]),
    ("10.0.0.5/32", "10.0.0.6", [("10.0.0.5", "10.0.0.5")]),
    ("10.0.0.4/30", "10.0.0.5", [("10.0.0.6", "10.0.0.6")]),
    ("2001:db8::/127", "2001:db8::1", []),
    ("2001:db8::/128", None, [("2001:db8::", "2001:db8::")]),
])
def test_default_pools_of_tiny_subnets(
    cidr: str, gateway: str | None, expected: list[tuple[str, str]]
) -> None:
    pools = cidrs.default_pools(net(cidr), ip(gateway) if gateway else None)
    assert [(str(p.start), str(p.end)) for p in pools] == expected


def test_default_pools_of_huge_v6_ranges_are_instant() -> None:
    began = time.perf_counter()
    for _ in range(1000):
        cidrs.default_pools(net("2001:db8::/8"), ip("2000::8000"))
        cidrs.validate_pools(net("2001:db8::/64"), [Pool(int(ip("2001:db8::2")),
                                                         int(ip("2001:db8::ffff")), 6)])
    assert time.perf_counter() - began < 1.0


@st.composite
def subnets_with_gateway(draw: st.DrawFn) -> tuple[IPNetwork, IPAddress | None]:
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    # Prefixes with room for hosts: v4 up to /30, v6 up to /127.
    prefix = draw(st.integers(min_value=1, max_value=bits - 2 if version == 4 else bits - 1))
    value = draw(st.integers(min_value=0, max_value=2**bits - 1))
    network: IPNetwork = (ipaddress.IPv4Network((value, prefix), strict=False) if version == 4
                          else ipaddress.IPv6Network((value, prefix), strict=False))
    first, last = int(network.network_address), int(network.broadcast_address)
    choice = draw(st.sampled_from(["none", "default", "inside", "edge", "outside"]))
    if choice == "none":
        return network, None
    if choice == "default":
        return network, cidrs.default_gateway(network)
    if choice == "edge":
        return network, cidrs.address(draw(st.sampled_from([first + 1, last - 1])), version)
    if choice == "inside":
        return network, cidrs.address(draw(st.integers(first + 1, last)), version)
    outside = draw(st.integers(0, 2**bits - 1).filter(lambda v: not first <= v <= last))
    return network, cidrs.address(outside, version)


@given(subnets_with_gateway())
def test_default_pools_cover_exactly_the_host_addresses(
    case: tuple[IPNetwork, IPAddress | None],
) -> None:
    network, gateway = case
    pools = cidrs.default_pools(network, gateway)
    first, last = int(network.network_address), int(network.broadcast_address)
    hosts_first = first + 1
    hosts_last = last - 1 if network.version == 4 else last
    excluded = {first, last} if network.version == 4 else {first}
    if gateway is not None:
        excluded.add(int(gateway))
    for pool in pools:
        assert hosts_first <= pool.first <= pool.last <= hosts_last
        assert not any(pool.first <= x <= pool.last for x in excluded)
    for left, right in itertools.pairwise(pools):
        assert left.last < right.first
    # Disjoint, in range, and the right count: every other host address is in some pool.
    gateway_is_host = gateway is not None and hosts_first <= int(gateway) <= hosts_last
    assert sum(p.size for p in pools) == hosts_last - hosts_first + 1 - gateway_is_host
    # Default pools always pass the validation requested pools get.
    cidrs.validate_pools(network, pools)
    cidrs.check_gateway_outside_pools(gateway, pools)


@given(st.integers(min_value=20, max_value=30), st.integers(0, 2**32 - 1), st.data())
def test_default_pools_enumerated_on_small_v4(prefix: int, value: int, data: st.DataObject
                                               ) -> None:
    network = ipaddress.IPv4Network((value, prefix), strict=False)
    hosts = list(network.hosts())
    gateway = data.draw(st.sampled_from(hosts))
    pools = cidrs.default_pools(network, gateway)
    covered = [a for p in pools for a in range(p.first, p.last + 1)]
    assert covered == [int(h) for h in hosts if h != gateway]


# --- requested pools ----------------------------------------------------------------------


def test_requested_pools_come_back_in_address_order() -> None:
    pools = cidrs.pools_from_request(net("10.0.0.0/24"), [
        {"start": "10.0.0.100", "end": "10.0.0.200"}, {"start": "10.0.0.2", "end": "10.0.0.9"}])
    assert dicts(pools) == [{"start": "10.0.0.2", "end": "10.0.0.9"},
                            {"start": "10.0.0.100", "end": "10.0.0.200"}]


def test_pool_with_start_after_end_is_invalid() -> None:
    with pytest.raises(errors.InvalidAllocationPool) as exc:
        cidrs.pools_from_request(net("10.0.0.0/24"), [{"start": "10.0.0.9", "end": "10.0.0.2"}])
    assert str(exc.value) == (
        "The allocation pool {'start': '10.0.0.9', 'end': '10.0.0.2'} is not valid.")


def test_pool_of_the_other_version_is_invalid() -> None:
    with pytest.raises(errors.InvalidAllocationPool):
        cidrs.pools_from_request(net("10.0.0.0/24"), [{"start": "::1", "end": "::5"}])


@pytest.mark.parametrize(("start", "end"), [
    ("10.0.0.0", "10.0.0.9"), ("10.0.0.2", "10.0.0.255"), ("10.0.1.1", "10.0.1.9")])
def test_pool_reaching_past_the_hosts_is_out_of_bounds(start: str, end: str) -> None:
    with pytest.raises(errors.OutOfBoundsAllocationPool) as exc:
        cidrs.pools_from_request(net("10.0.0.0/24"), [{"start": start, "end": end}])
    assert str(exc.value) == (
        f"The allocation pool {start}-{end} spans beyond the subnet cidr 10.0.0.0/24.")


def test_v6_pool_may_reach_the_last_address_but_not_the_anycast_one() -> None:
    cidrs.pools_from_request(net("2001:db8::/120"), [{"start": "2001:db8::1",
                                                      "end": "2001:db8::ff"}])
    with pytest.raises(errors.OutOfBoundsAllocationPool):
        cidrs.pools_from_request(net("2001:db8::/120"), [{"start": "2001:db8::",
                                                          "end": "2001:db8::ff"}])


def test_overlapping_pools_are_named_in_request_order() -> None:
    with pytest.raises(errors.OverlappingAllocationPools) as exc:
        cidrs.pools_from_request(net("10.0.0.0/24"), [
            {"start": "10.0.0.50", "end": "10.0.0.60"},
            {"start": "10.0.0.2", "end": "10.0.0.9"},
            {"start": "10.0.0.5", "end": "10.0.0.20"}])
    assert str(exc.value) == ("Found overlapping allocation pools: 10.0.0.2-10.0.0.9 "
                              "10.0.0.5-10.0.0.20 for subnet 10.0.0.0/24.")


def test_gateway_inside_a_pool_conflicts() -> None:
    pools = cidrs.pools_from_request(net("10.0.0.0/24"), [{"start": "10.0.0.1",
                                                           "end": "10.0.0.9"}])
    with pytest.raises(errors.GatewayConflictWithAllocationPools) as exc:
        cidrs.check_gateway_outside_pools(ip("10.0.0.1"), pools)
    assert str(exc.value) == "Gateway ip 10.0.0.1 conflicts with allocation pool 10.0.0.1-10.0.0.9."
    cidrs.check_gateway_outside_pools(ip("10.0.0.10"), pools)
    cidrs.check_gateway_outside_pools(None, pools)
