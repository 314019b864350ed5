"""Distributed routers on this host: one network namespace per (router, host), holding the
router's interfaces on every attached subnet, its routes, its neighbours and its way out.

There is no VRF in these kernels, so each router gets a namespace of its own (Neutron's
``qrouter-``), named ``alcr-<host tag>-<router id>``: the host tag is the host namespace's
inode in hex, so agents of simulated hosts sharing /run/netns never touch each other's
routers, and a real host's agent finds its own again after a restart.

- Interfaces (east-west): per subnet routing table a ``qr-`` leg (``router_namespace.Leg``)
  on the subnet's bridge ``alcbr<vni>`` with the interface's address and MAC, the same on
  every host (an anycast gateway: workloads reach their gateway on their own host, and the
  VXLAN port does not learn, so the MAC never moves).  A packet is routed on the sender's
  host and crosses the tunnel once, on the destination subnet's VNI.
- Neighbours: every remote port on an attached subnet is a permanent neighbour entry on the
  matching ``qr-`` device (its FDB entries are the overlay's, as for any neighbour), so the
  router never ARPs across the tunnel.
- Extra routes: ``destination via next_hop`` in the main table.
- The way out (``nat.py``): external and transit legs, default route, floating IPs, SNAT.

``Routers`` keeps what it applied (``specs``) and converges each router whole on ``apply``,
reading the kernel first; legs of a router nobody asks for any more go on ``apply`` (legs the
new spec lacks), ``delete`` and ``sweep`` (every owned namespace and leg of this host whose
router is not kept).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from alcor.agent.linux import nat
from alcor.agent.linux.namespaces import (
    ThreadRoutes,
    delete_link,
    is_netns,
    link_alias,
    netns_inode,
    netns_names,
    remove_netns,
)
from alcor.agent.linux.provider import ProviderBridge
from alcor.agent.linux.router_namespace import (
    MAIN_TABLE,
    Leg,
    Route,
    RouterNamespace,
    alias_router,
    leg_alias,
)
from alcor.agent.linux.rtnetlink import RawNetlink
from alcor.rpc._generated import common_pb2, router_pb2

log = logging.getLogger(__name__)

NETNS_PREFIX = "alcr-"


def host_tag(netns: str | None) -> str:
    """The tag of the host namespace ``netns`` (None: the calling thread's)."""
    return f"{netns_inode(netns):x}"


def router_netns(tag: str, router_id: str) -> str:
    return f"{NETNS_PREFIX}{tag}-{router_id}"


@dataclass(frozen=True, slots=True)
class Interface:
    """The router's interface on one subnet."""

    subnet_id: str
    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    leg: Leg


@dataclass(frozen=True, slots=True)
class RouterSpec:
    """What one router asks of this host."""

    router_id: str
    interfaces: tuple[Interface, ...]
    routes: tuple[tuple[str, str], ...] = ()
    """Extra routes (destination CIDR, next hop)."""
    gateway: nat.Gateway | None = None


class Routers:
    """The routers of one host namespace (``netns`` None: the agent's own)."""

    def __init__(self, host: ThreadRoutes, host_raw: RawNetlink, netns: str | None,
                 tag: str | None = None) -> None:
        self.host = host
        self.host_raw = host_raw
        self.netns = netns
        self.tag = tag or host_tag(netns)
        self.specs: dict[str, RouterSpec] = {}
        self.namespaces: dict[str, RouterNamespace] = {}
        self._qr: dict[str, dict[str, tuple[int, str, Interface]]] = {}
        """Router id -> subnet id -> (qr ifindex, qr name, interface)."""

    def netns_name(self, router_id: str) -> str:
        return router_netns(self.tag, router_id)

    def close(self) -> None:
        for ns in self.namespaces.values():
            ns.close()
        self.namespaces.clear()

    def _namespace(self, router_id: str) -> RouterNamespace:
        ns = self.namespaces.get(router_id)
        if ns is None:
            ns = RouterNamespace(self.netns_name(router_id), self.host, self.host_raw,
                                 self.netns)
            self.namespaces[router_id] = ns
        return ns

    # apply / delete

    def apply(self, spec: RouterSpec, neighbours: Mapping[str, Mapping[str, str]]) -> None:
        """Converge one router; ``neighbours``: subnet id -> {address: MAC} of the remote
        ports on each subnet."""
        rid = spec.router_id
        ns = self._namespace(rid)
        ns.ensure()
        self.specs.pop(rid, None)
        self._qr.pop(rid, None)
        qr: dict[str, tuple[int, str, Interface]] = {}
        aliases: set[str] = set()
        for interface in spec.interfaces:
            alias = leg_alias(rid, "qr", interface.leg.key)
            aliases.add(alias)
            index = ns.plug(interface.leg, alias, announce=True)
            qr[interface.subnet_id] = (index, interface.leg.router_end, interface)
        default, way_out = nat.apply(ns, rid, spec.gateway)
        self._unplug_others(rid, aliases | way_out)
        routes = {dst: Route(via) for dst, via in spec.routes}
        if default is not None:
            routes["0.0.0.0/0"] = default
        ns.set_routes(MAIN_TABLE, routes)
        for index, name, interface in qr.values():
            ns.set_neighbours(index, name, _within(interface, neighbours.get(
                interface.subnet_id, {})))
        self.specs[rid] = spec
        self._qr[rid] = qr

    def delete(self, router_id: str) -> None:
        ns = self._namespace(router_id)
        ns.destroy(self._host_ends(router_id))
        self.namespaces.pop(router_id, None)
        self.specs.pop(router_id, None)
        self._qr.pop(router_id, None)

    def neighbours(self, subnet_id: str, put: Mapping[str, str], drop: Iterable[str]) -> None:
        """Remote ports on ``subnet_id`` changed: their entries on every router's qr there."""
        dropped = list(drop)
        for rid, qr in self._qr.items():
            held = qr.get(subnet_id)
            if held is None:
                continue
            index, name, interface = held
            self.namespaces[rid].put_neighbours(index, name, _within(interface, put),
                                                dropped)

    # convergence

    def sweep(self, keep: set[str]) -> int:
        """Remove this host's router namespaces and legs whose router is not in ``keep``;
        returns how many went."""
        removed = 0
        for link in self.host.get().link("dump"):
            rid = alias_router(link_alias(link))
            if rid is not None and rid not in keep:
                self._delete_link(int(link["index"]))
                removed += 1
        prefix = router_netns(self.tag, "")
        for name in netns_names():
            if name.startswith(prefix) and name[len(prefix):] not in keep:
                remove_netns(name)
                removed += 1
        for rid in set(self.namespaces) - keep:
            self.namespaces.pop(rid).close()
            self.specs.pop(rid, None)
            self._qr.pop(rid, None)
        return removed

    def held(self) -> set[str]:
        """The routers whose namespace exists on this host."""
        prefix = router_netns(self.tag, "")
        return {name[len(prefix):] for name in netns_names()
                if name.startswith(prefix) and is_netns(name)}

    def _host_ends(self, router_id: str) -> list[str]:
        return [str(link.get_attr("IFLA_IFNAME")) for link in self.host.get().link("dump")
                if alias_router(link_alias(link)) == router_id]

    def _unplug_others(self, router_id: str, aliases: set[str]) -> None:
        for link in self.host.get().link("dump"):
            alias = link_alias(link)
            if alias_router(alias) == router_id and alias not in aliases:
                self._delete_link(int(link["index"]))

    def _delete_link(self, index: int) -> None:
        delete_link(self.host.get(), index)


def _within(interface: Interface, entries: Mapping[str, str]) -> dict[str, str]:
    """The entries whose address is on the interface's subnet (not the interface's own)."""
    own = {address for address, _ in interface.leg.addresses}
    return {ip: mac for ip, mac in entries.items()
            if ip not in own and ipaddress.ip_address(ip) in interface.network}


# --- what a RouterConfiguration asks of this host ------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    """Where a subnet lives on this host: its network, bridge and MTU."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    bridge: int
    mtu: int


def router_spec(config: router_pb2.RouterConfiguration, segments: Mapping[str, Segment],
                provider: Callable[[str], ProviderBridge], *, gateway: bool = True
                ) -> RouterSpec:
    """The spec of a router's configuration; ``segments`` must hold every subnet it names
    (its routing tables' and the transit subnet), ``provider`` gives a physical network's
    bridge (or raises).  IPv6 subnets are left out (the router namespace routes IPv4).
    ``gateway`` False: the spec without its external gateway (east-west only)."""
    interfaces: list[Interface] = []
    routes: dict[str, str] = {}
    for table in config.subnet_routing_tables:
        segment = segments[table.subnet_id]
        if segment.network.version != 4:
            continue
        address = ipaddress.ip_interface(table.interface_ip) if table.interface_ip else None
        if address is None or address.version != 4:
            raise RouterConfigError(f"router {config.id}: subnet {table.subnet_id} has no "
                                    f"IPv4 interface address ({table.interface_ip!r})")
        leg = Leg("qr", table.interface_port_id or table.subnet_id, segment.bridge,
                  segment.mtu, table.interface_mac.lower(),
                  ((str(address.ip), address.network.prefixlen),))
        interfaces.append(Interface(table.subnet_id, segment.network, leg))
        for rule in table.routing_rules:
            if rule.destination and rule.next_hop_ip and not _is_default(rule.destination):
                dst = str(ipaddress.ip_network(rule.destination, strict=False))
                routes.setdefault(dst, rule.next_hop_ip)
    way_out = None
    if gateway and config.HasField("external_gateway"):
        way_out = _gateway(config, segments, provider, interfaces)
    return RouterSpec(config.id, tuple(interfaces), tuple(sorted(routes.items())), way_out)


class RouterConfigError(ValueError):
    """A router configuration this host cannot realize."""


def _is_default(destination: str) -> bool:
    return ipaddress.ip_network(destination, strict=False).prefixlen == 0


def _gateway(config: router_pb2.RouterConfiguration, segments: Mapping[str, Segment],
             provider: Callable[[str], ProviderBridge], interfaces: list[Interface]
             ) -> nat.Gateway:
    gw = config.external_gateway
    if gw.segmentation_id or not gw.physical_network:
        raise RouterConfigError(
            f"router {config.id}: external network {gw.network_id} is not a flat provider "
            f"network (type {common_pb2.NetworkType.Name(gw.network_type)}, segmentation id "
            f"{gw.segmentation_id}); only flat ones are supported on this data plane")
    address = ipaddress.ip_interface(gw.ip_address) if gw.ip_address else None
    if not isinstance(address, ipaddress.IPv4Interface):
        raise RouterConfigError(f"router {config.id}: external address {gw.ip_address!r} "
                                "is not an IPv4 address with its prefix")
    bridge = provider(gw.physical_network)
    mac = (gw.mac_address if gw.is_snat_host and gw.mac_address
           else gw.external_mac_address).lower()
    if not mac:
        raise RouterConfigError(f"router {config.id}: no external MAC for this host")
    fips = tuple(nat.FloatingIp(f.floating_ip_address, f.fixed_ip_address)
                 for f in config.floating_ips if f.floating_ip_address and f.fixed_ip_address)
    addresses = [(str(address.ip), address.network.prefixlen)] if gw.is_snat_host else []
    addresses += [(f.address, 32) for f in fips if f.address != str(address.ip)]
    external = Leg("qg", config.id, bridge.index, bridge.mtu, mac, tuple(addresses))
    transit = None
    if gw.transit_subnet_id:
        segment = segments[gw.transit_subnet_id]
        transit = Leg("qt", config.id, segment.bridge, segment.mtu, gw.transit_mac.lower())
    snat = str(address.ip) if gw.is_snat_host and gw.enable_snat else None
    return nat.Gateway(
        external=external, transit=transit, network=address.network,
        gateway_ip=gw.gateway_ip, is_snat_host=gw.is_snat_host, snat_address=snat,
        snat_transit_mac=gw.snat_transit_mac.lower(), floating_ips=fips,
        internal=tuple(str(i.network) for i in interfaces))
