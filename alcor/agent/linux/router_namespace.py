"""One router's network namespace on this host and what lives in it: its legs (veth pairs from
a bridge of the host namespace into the router namespace), their addresses, permanent
neighbour entries, routes of a table, policy rules and an nftables table.

- The namespace is ``alcr-<host tag>-<router id>`` (``router.py`` names it); it is made with
  IPv6 off, forwarding on and reverse-path filtering off (a distributed router sees one
  direction of a flow only, and traffic from other hosts' routers arrives on its transit leg
  from addresses routed through its interface legs).
- A leg (``Leg``) has its router end ``<role>-<id[:11]>`` in the router namespace (the role's
  MAC, MTU and addresses) and its host end ``al<role><id[:11]>`` enslaved to a bridge of the
  host namespace, IPv6 off, ifalias ``alcor:router:<router id>:<role>:<id>`` (the ownership
  mark the sweep reads), with a static FDB entry for the router end's MAC, so the bridge
  never floods frames for it and never learns it elsewhere.
- Every change reads the kernel first and writes only what differs, so a restarted agent
  re-applying its routers changes nothing.

Devices, routes and rules go through pyroute2 (one socket per calling thread and namespace),
neighbour entries through the raw rtnetlink channel, the NAT table through libnftables
opened inside the namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nftables

from alcor.agent.linux.namespaces import (
    ThreadRoutes,
    create_netns,
    delete_link,
    disable_ipv6,
    entered,
    get_link,
    is_netns,
    link_alias,
    link_kind,
    ns_path,
    remove_netns,
    write_sysctl,
)
from alcor.agent.linux.overlay import OWNER
from alcor.agent.linux.rtnetlink import (
    NUD_NOARP,
    NUD_PERMANENT,
    NeighMessage,
    RawNetlink,
    fdb_master,
    neigh,
)

ROUTER_ALIAS = f"{OWNER}router:"
IFF_UP = 1
RTPROT_KERNEL = 2
RTPROT_STATIC = 4
RTNH_F_ONLINK = 4
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_NOWHERE = 255
RTN_UNICAST = 1
MAIN_TABLE = 254
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST = 1
SYSCTLS = (
    ("net/ipv6/conf/all/disable_ipv6", "1"),
    ("net/ipv6/conf/default/disable_ipv6", "1"),
    ("net/ipv4/ip_forward", "1"),
    ("net/ipv4/conf/all/rp_filter", "0"),
    ("net/ipv4/conf/default/rp_filter", "0"),
)
"""In this order: IPv6 goes off before any device exists, so no leg ever speaks it."""


class RouterNamespaceError(RuntimeError):
    """The kernel refused part of a router's namespace."""


def leg_alias(router_id: str, role: str, key: str) -> str:
    return f"{ROUTER_ALIAS}{router_id}:{role}:{key}"


def alias_router(alias: str) -> str | None:
    """The router id an owned leg's ifalias names (None: not a router leg)."""
    if not alias.startswith(ROUTER_ALIAS):
        return None
    parts = alias[len(ROUTER_ALIAS):].rsplit(":", 2)
    return parts[0] if len(parts) == 3 else None


@dataclass(frozen=True, slots=True)
class Leg:
    """A veth pair from a host bridge into the router namespace."""

    role: str
    """"qr" (an interface on a subnet), "qt" (transit), "qg" (external)."""
    key: str
    """The interface port id (qr) or the router id (qt, qg)."""
    bridge: int
    """The host bridge's ifindex."""
    mtu: int
    mac: str
    addresses: tuple[tuple[str, int], ...] = ()
    """(address, prefix length) on the router end."""

    @property
    def router_end(self) -> str:
        return f"{self.role}-{self.key[:11]}"

    @property
    def host_end(self) -> str:
        return f"al{self.role}{self.key[:11]}"


@dataclass(frozen=True, slots=True)
class Route:
    """A route of one table: ``gateway`` None is an on-link route through ``oif``."""

    gateway: str | None
    oif: int | None = None
    onlink: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """A policy rule: ``src`` (a CIDR or None for every source) looks ``table`` up; with
    ``suppress`` the lookup ignores routes of that prefix length or shorter."""

    priority: int
    table: int
    src: str | None = None
    suppress: int | None = None


class RouterNamespace:
    """A router's namespace; ``host`` is the host namespace's sockets (pyroute2 per thread,
    raw rtnetlink) and ``host_netns`` its name (None: the agent's own)."""

    def __init__(self, name: str, host: ThreadRoutes, host_raw: RawNetlink,
                 host_netns: str | None) -> None:
        self.name = name
        self.host = host
        self.host_raw = host_raw
        self.host_netns = host_netns
        self.routes = ThreadRoutes(name)
        self._raw: RawNetlink | None = None
        self._nft: nftables.Nftables | None = None
        self.nat_script: str | None = None
        """The NAT script last applied (None: not since this object was made)."""

    @property
    def ipr(self) -> Any:
        return self.routes.get()

    @property
    def host_ipr(self) -> Any:
        return self.host.get()

    @property
    def raw(self) -> RawNetlink:
        if self._raw is None:
            self._raw = RawNetlink(self.name)
        return self._raw

    def close(self) -> None:
        self.routes.close()
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        self._nft = None

    # the namespace

    def ensure(self) -> None:
        """Make the namespace exist, with its sysctls and ``lo`` up."""
        if not is_netns(self.name):
            self.close()
            if os.path.lexists(ns_path(self.name)):
                remove_netns(self.name)  # a mount point whose namespace is gone
            create_netns(self.name)
        for name, value in SYSCTLS:
            write_sysctl(self.name, name, value)
        lo = get_link(self.ipr, "lo")
        if lo is not None and not lo["flags"] & IFF_UP:
            self.ipr.link("set", index=lo["index"], state="up")

    def destroy(self, host_ends: Iterable[str]) -> None:
        """Delete the legs' host ends (which takes their router ends) and the namespace."""
        for name in host_ends:
            link = get_link(self.host_ipr, name)
            if link is not None and alias_router(link_alias(link)) is not None:
                delete_link(self.host_ipr, int(link["index"]))
        self.close()
        remove_netns(self.name)

    # legs

    def plug(self, leg: Leg, alias: str, announce: bool = False) -> int:
        """Make the leg exist and be right; returns its router end's ifindex.  With
        ``announce``, addresses it gains (all of them when its MAC changed) are announced by
        gratuitous ARP: on an external leg the outside learns at once which host holds a
        floating IP now; on a subnet's leg, workloads that asked for the gateway before it
        existed here, or hold a previous interface's MAC for it, learn the new one."""
        host = get_link(self.host_ipr, leg.host_end)
        inner = get_link(self.ipr, leg.router_end)
        if host is not None and (link_alias(host) != alias or inner is None
                                 or link_kind(inner) != "veth"
                                 or host.get_attr("IFLA_LINK") != inner["index"]):
            delete_link(self.host_ipr, int(host["index"]))
            host = None
            inner = get_link(self.ipr, leg.router_end)
        if host is None:
            if inner is not None:
                delete_link(self.ipr, int(inner["index"]))
            self._create_pair(leg)
            host = get_link(self.host_ipr, leg.host_end)
            inner = get_link(self.ipr, leg.router_end)
            if host is None or inner is None:
                raise RouterNamespaceError(f"veth {leg.host_end}/{leg.router_end} vanished")
        assert inner is not None  # a kept host end has its router end
        self._converge_host_end(leg, host, alias)
        index = int(inner["index"])
        changes: dict[str, Any] = {}
        if str(inner.get_attr("IFLA_ADDRESS")).lower() != leg.mac:
            changes["address"] = leg.mac
        if inner.get_attr("IFLA_MTU") != leg.mtu:
            changes["mtu"] = leg.mtu
        if not inner["flags"] & IFF_UP:
            changes["state"] = "up"
        if changes:
            self.ipr.link("set", index=index, **changes)
        added = self.set_addresses(index, leg.addresses)
        if announce and "address" in changes:
            added = [address for address, _ in leg.addresses]
        added = [a for a in added if ipaddress.ip_address(a).version == 4]
        if announce and added:
            self.announce(leg.router_end, leg.mac, added)
        return index

    def _create_pair(self, leg: Leg) -> None:
        fd = os.open(ns_path(self.name), os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.host_ipr.link("add", ifname=leg.host_end, kind="veth", mtu=leg.mtu,
                               peer={"ifname": leg.router_end, "net_ns_fd": fd,
                                     "address": leg.mac, "mtu": leg.mtu})
        finally:
            os.close(fd)

    def _converge_host_end(self, leg: Leg, link: Any, alias: str) -> None:
        disable_ipv6(self.host_netns, leg.host_end)
        index = int(link["index"])
        changes: dict[str, Any] = {}
        if link_alias(link) != alias:
            changes["ifalias"] = alias
        if link.get_attr("IFLA_MTU") != leg.mtu:
            changes["mtu"] = leg.mtu
        if link.get_attr("IFLA_MASTER") != leg.bridge:
            changes["master"] = leg.bridge
        if not link["flags"] & IFF_UP:
            changes["state"] = "up"
        if changes:
            self.host_ipr.link("set", index=index, **changes)
        static = [e for e in self.host_raw.dump_neigh(socket.AF_BRIDGE, index)
                  if e.master and e.mac == leg.mac and e.state & NUD_NOARP]
        if not static:
            message = [fdb_master(index, leg.mac, leg.host_end, False)]
            _check(self.host_raw.request(message), message)

    def unplug(self, host_end: str) -> None:
        link = get_link(self.host_ipr, host_end)
        if link is not None and alias_router(link_alias(link)) is not None:
            delete_link(self.host_ipr, int(link["index"]))

    def index(self, name: str) -> int | None:
        link = get_link(self.ipr, name)
        return None if link is None else int(link["index"])

    # addresses

    def set_addresses(self, index: int, wanted: Iterable[tuple[str, int]]) -> list[str]:
        """Exactly ``wanted`` (IPv4, global scope) on the device; returns those added."""
        have = {(str(a.get_attr("IFA_ADDRESS")), int(a["prefixlen"]))
                for a in self.ipr.addr("dump", family=socket.AF_INET)
                if a["index"] == index and a["scope"] == RT_SCOPE_UNIVERSE}
        want = {(str(ipaddress.ip_address(ip)), plen) for ip, plen in wanted}
        for address, prefixlen in sorted(have - want):
            self.ipr.addr("del", index=index, address=address, prefixlen=prefixlen)
        for address, prefixlen in sorted(want - have):
            self.ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
        return [address for address, _ in sorted(want - have)]

    def announce(self, name: str, mac: str, addresses: Iterable[str]) -> None:
        """Broadcast a gratuitous ARP request for each address from the device ``name``."""
        with entered(self.name):
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        try:
            sock.bind((name, 0))
            for address in addresses:
                sock.send(gratuitous_arp(mac, address))
        finally:
            sock.close()

    # neighbours

    def set_neighbours(self, index: int, name: str, wanted: Mapping[str, str]) -> None:
        """Exactly ``wanted`` (IPv4 address -> MAC) as the device's permanent entries."""
        have = {e.dst: e.mac for e in self.raw.dump_neigh(socket.AF_INET, index)
                if e.state & NUD_PERMANENT and e.dst}
        put = {ip: mac for ip, mac in wanted.items() if have.get(ip) != mac}
        self.put_neighbours(index, name, put, have.keys() - wanted.keys())

    def put_neighbours(self, index: int, name: str, put: Mapping[str, str],
                       drop: Iterable[str]) -> None:
        messages = [neigh(index, ip, None, name, True) for ip in sorted(drop)]
        messages += [neigh(index, ip, mac, name, False) for ip, mac in sorted(put.items())]
        if messages:
            _check(self.raw.request(messages), messages)

    # routes and rules

    def set_routes(self, table: int, wanted: Mapping[str, Route]) -> None:
        """Exactly ``wanted`` (destination CIDR -> route) as the table's IPv4 routes, leaving
        the kernel's own (connected and local) routes alone."""
        have: dict[str, Route] = {}
        for route in self.ipr.route("dump", family=socket.AF_INET, table=table):
            if route["proto"] == RTPROT_KERNEL or route["type"] != RTN_UNICAST:
                continue
            dst = route.get_attr("RTA_DST") or "0.0.0.0"
            gateway = route.get_attr("RTA_GATEWAY")
            have[f"{dst}/{route['dst_len']}"] = Route(
                str(gateway) if gateway else None, route.get_attr("RTA_OIF"),
                bool(route["flags"] & RTNH_F_ONLINK))
        want = {str(ipaddress.ip_network(dst, strict=False)): r for dst, r in wanted.items()}
        for dst in sorted(have.keys() - want.keys()):
            self.ipr.route("del", dst=dst, table=table, scope=RT_SCOPE_NOWHERE)  # any scope
        for dst, route in sorted(want.items(), key=lambda i: (i[1].gateway is not None, i[0])):
            held = have.get(dst)
            if held is not None and _same_route(held, route):
                continue
            spec: dict[str, Any] = {"dst": dst, "table": table, "proto": RTPROT_STATIC}
            if route.gateway is not None:
                spec["gateway"] = route.gateway
            else:
                spec["scope"] = RT_SCOPE_LINK
            if route.oif is not None:
                spec["oif"] = route.oif
            if route.onlink:
                spec["flags"] = RTNH_F_ONLINK
            self.ipr.route("replace", **spec)

    def set_rules(self, priorities: Iterable[int], wanted: Iterable[Rule]) -> None:
        """Exactly ``wanted`` among the IPv4 rules at ``priorities``."""
        owned = set(priorities)
        have: set[Rule] = set()
        for rule in self.ipr.rule("dump", family=socket.AF_INET):
            priority = rule.get_attr("FRA_PRIORITY")
            if priority not in owned:
                continue
            src = rule.get_attr("FRA_SRC")
            suppress = rule.get_attr("FRA_SUPPRESS_PREFIXLEN")
            have.add(Rule(int(priority), int(rule.get_attr("FRA_TABLE") or rule["table"]),
                          f"{src}/{rule['src_len']}" if src else None,
                          None if suppress in (None, 0xFFFFFFFF) else int(suppress)))
        want = {Rule(r.priority, r.table,
                     str(ipaddress.ip_network(r.src, strict=False)) if r.src else None,
                     r.suppress) for r in wanted}
        for rule in sorted(have - want, key=_rule_order):
            self.ipr.rule("del", **_rule_spec(rule))
        for rule in sorted(want - have, key=_rule_order):
            self.ipr.rule("add", **_rule_spec(rule))

    # nftables

    def set_nat(self, script: str) -> None:
        """Replace the namespace's nftables ruleset by ``script`` (one transaction; an empty
        script removes it); skipped when it is what was applied last."""
        if script == self.nat_script:
            return
        if self._nft is None:
            with entered(self.name):
                self._nft = nftables.Nftables()  # its socket stays in the router namespace
            self._nft.set_handle_output(False)
        rc, _, err = self._nft.cmd(script)
        if rc != 0:
            raise RouterNamespaceError(f"nft in {self.name}: {str(err).strip()}")
        self.nat_script = script


def gratuitous_arp(mac: str, address: str) -> bytes:
    """An Ethernet frame: the ARP request "who has ``address``, tell ``address``" from
    ``mac``, broadcast (neighbours holding an entry for the address update it)."""
    own = bytes.fromhex(mac.replace(":", ""))
    ip = ipaddress.IPv4Address(address).packed
    return (b"\xff" * 6 + own + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, ARP_REQUEST)
            + own + ip + b"\x00" * 6 + ip)


def _same_route(held: Route, wanted: Route) -> bool:
    return (held.gateway == wanted.gateway and held.onlink == wanted.onlink
            and (wanted.oif is None or held.oif == wanted.oif))


def _rule_order(rule: Rule) -> tuple[int, str]:
    return rule.priority, rule.src or ""


def _rule_spec(rule: Rule) -> dict[str, Any]:
    spec: dict[str, Any] = {"priority": rule.priority, "table": rule.table}
    if rule.src is not None:
        network = ipaddress.ip_network(rule.src)
        spec |= {"src": str(network.network_address), "src_len": network.prefixlen}
    if rule.suppress is not None:
        spec["suppress_prefixlen"] = rule.suppress
    return spec


def _check(codes: list[int], messages: list[NeighMessage]) -> None:
    bad = [f"{m.what}: {os.strerror(c)}" for m, c in zip(messages, codes, strict=True)
           if c not in (0, errno.ENOENT)]
    if bad:
        raise RouterNamespaceError("; ".join(bad))


