"""The DHCP lease the Linux programmer hands to the DHCP responder: everything one local port's
client is told (its address, gateway, DNS, MTU, host routes, hostname), as a value."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Lease:
    """One port's DHCPv4 answer.  ``routes`` are (destination CIDR, nexthop) host routes;
    ``server_ip`` is the server identifier (the subnet's gateway, or a fallback)."""

    mac: str
    ip: str
    prefixlen: int
    gateway: str | None
    dns: tuple[str, ...]
    mtu: int
    routes: tuple[tuple[str, str], ...]
    hostname: str
    server_ip: str
    lease_seconds: int = 86400
