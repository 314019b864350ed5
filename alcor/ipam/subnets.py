"""Subnet address arithmetic: CIDR parsing, the default gateway, the usable range, default
allocation pools around the gateway, and validation of pools a client gives.

Pure functions over the stdlib ``ipaddress`` types.  Ranges are handled as integer bounds,
so an IPv6 /64 costs the same as an IPv4 /30: no address is ever enumerated.  The rules are
Neutron's (``neutron/ipam/utils.py`` and ``IpamBackendMixin``): IPv4 keeps the network and
broadcast addresses out of pools (a /31 or /32 has neither), IPv6 keeps the subnet-router
anycast address (the network address) out.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alcor import errors

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True, order=True)
class Pool:
    """An inclusive range of addresses, held as integers (``first <= last``)."""

    first: int
    last: int
    version: int

    @classmethod
    def of(cls, start: IPAddress, end: IPAddress) -> Pool:
        return cls(int(start), int(end), start.version)

    @property
    def start(self) -> IPAddress:
        return address(self.first, self.version)

    @property
    def end(self) -> IPAddress:
        return address(self.last, self.version)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def __contains__(self, ip: object) -> bool:
        if not isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            return False
        return ip.version == self.version and self.first <= int(ip) <= self.last

    def overlaps(self, other: Pool) -> bool:
        return self.first <= other.last and other.first <= self.last

    def as_dict(self) -> dict[str, str]:
        return {"start": str(self.start), "end": str(self.end)}

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def address(value: int, version: int) -> IPAddress:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def parse_cidr(value: str) -> IPNetwork:
    """The network a CIDR names, host bits dropped (``10.0.0.5/24`` is ``10.0.0.0/24``)."""
    return ipaddress.ip_network(value, strict=False)


def default_gateway(net: IPNetwork) -> IPAddress | None:
    """Neutron's default gateway: the address after the network address.

    A /32 or /128 yields the address just past the subnet, as in Neutron; None only when
    that address does not exist (the last address of the family).
    """
    value = int(net.network_address) + 1
    if value >= 2**net.max_prefixlen:
        return None
    return address(value, net.version)


def gateway_is_invalid(net: IPNetwork, gateway: IPAddress) -> bool:
    """True for an IPv4 gateway that is the subnet's network or broadcast address.

    A gateway outside the subnet is allowed (it may be reached through an on-link route),
    and IPv6 may use the subnet-router anycast address as its gateway.
    """
    return (
        net.version == 4
        and gateway in net
        and gateway in (net.network_address, net.broadcast_address)
    )


def usable_bounds(net: IPNetwork) -> tuple[int, int]:
    """First and last address pools may hold.

    IPv4 up to /30 drops the network and broadcast addresses; /31 (RFC 3021) and /32 use
    every address.  IPv6 drops the subnet-router anycast address except in a /128.
    """
    first, last = int(net.network_address), int(net.broadcast_address)
    if first == last:
        return first, last
    if net.version == 4:
        return (first + 1, last - 1) if net.prefixlen <= 30 else (first, last)
    return first + 1, last


def default_pools(net: IPNetwork, gateway: IPAddress | None) -> list[Pool]:
    """Every usable address except the gateway, as one pool or two around the gateway."""
    first, last = usable_bounds(net)
    if gateway is None or gateway.version != net.version or not first <= int(gateway) <= last:
        return [Pool(first, last, net.version)]
    gw = int(gateway)
    pools = [Pool(first, gw - 1, net.version), Pool(gw + 1, last, net.version)]
    return [p for p in pools if p.first <= p.last]


def _pool_text(entry: Mapping[str, Any]) -> str:
    """A pool as Neutron prints the request entry it could not parse."""
    return str({"start": entry.get("start"), "end": entry.get("end")})


def parse_pool(entry: Mapping[str, Any]) -> Pool:
    """A pool from ``{"start", "end"}``.

    Raises:
        InvalidAllocationPool: an address does not parse, the two differ in version, or
            start is after end.
    """
    try:
        start = ipaddress.ip_address(entry["start"])
        end = ipaddress.ip_address(entry["end"])
    except (KeyError, TypeError, ValueError):
        raise errors.InvalidAllocationPool(pool=_pool_text(entry)) from None
    if start.version != end.version or int(start) > int(end):
        raise errors.InvalidAllocationPool(pool=_pool_text(entry))
    return Pool.of(start, end)


def validate_pools(net: IPNetwork, pools: list[Pool]) -> None:
    """Check pools against their subnet and each other.

    Raises:
        InvalidAllocationPool: a pool of the other IP version.
        OutOfBoundsAllocationPool: a pool reaching outside the usable addresses.
        OverlappingAllocationPools: two pools sharing an address.
    """
    first, last = usable_bounds(net)
    for pool in pools:
        if pool.version != net.version:
            raise errors.InvalidAllocationPool(pool=str(pool))
        if pool.first < first or pool.last > last:
            raise errors.OutOfBoundsAllocationPool(pool=str(pool), subnet_cidr=str(net))
    order = sorted(range(len(pools)), key=lambda i: (pools[i].first, pools[i].last))
    for a, b in itertools.pairwise(order):
        if pools[a].overlaps(pools[b]):
            left, right = sorted((a, b))
            raise errors.OverlappingAllocationPools(
                pool_1=str(pools[left]), pool_2=str(pools[right]), subnet_cidr=str(net)
            )


def pools_from_request(net: IPNetwork, entries: Iterable[Mapping[str, Any]]) -> list[Pool]:
    """Parse and validate the pools of a request; return them in address order."""
    pools = [parse_pool(e) for e in entries]
    validate_pools(net, pools)
    return sorted(pools)


def check_gateway_outside_pools(gateway: IPAddress | None, pools: Iterable[Pool]) -> None:
    """Raises GatewayConflictWithAllocationPools when a pool holds the gateway."""
    if gateway is None:
        return
    for pool in pools:
        if gateway in pool:
            raise errors.GatewayConflictWithAllocationPools(
                ip_address=str(gateway), pool=str(pool)
            )


def pools_from_rows(entries: Iterable[Mapping[str, str]]) -> list[Pool]:
    """Stored pools (already valid) back into ranges."""
    return [Pool.of(ipaddress.ip_address(e["start"]), ipaddress.ip_address(e["end"]))
            for e in entries]
