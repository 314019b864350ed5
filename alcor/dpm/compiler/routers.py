"""Router states: each router present on a host, as that host's share of a distributed router.

A router is present on a host when it has an interface on a subnet where the host has a
workload port (``alcor.dpm.compiler.presence`` reads which, and the rows below), or when its
gateway port is bound to the host (an admin pinning SNAT there: the SNAT host must hold the
router to do SNAT).  The state is CREATE with a FULL configuration whose ``revision_number``
is the router's own:

* ``host_dvr_mac_address``: the host's ``host_dvr_mac``; ``project_id``: the router's.
* ``subnet_routing_tables``, one per interface, sorted by subnet id: the interface's address
  with the subnet's prefix (``interface_ip``), MAC and port id (the same on every host: an
  anycast gateway), and as ``routing_rules`` the router's extra routes whose next hop lies in
  that subnet (id ``<destination>-<nexthop>``, VPC_GW), in stored order, then, when the router
  has an external gateway whose subnet has a gateway IP, a default route through it
  (INTERNET) on every table of that IP version (a v4 default means nothing to a v6 table).
* ``external_gateway`` when the router has a gateway port: the external network (physical
  network, type as subnets map it, segmentation id), the gateway port's address (its first
  IPv4 fixed IP, else its first) with its subnet's prefix, that subnet's gateway IP, the
  port's MAC, ``enable_snat``, and the SNAT host (``snat_host_ip``, ``is_snat_host``).  The
  SNAT host is the gateway port's ``binding:host_id`` when it names a registered node, else
  the node with the smallest node_name among those the router is present on through its
  interfaces.  On the SNAT host ``external_mac_address`` is the gateway port's MAC, on every
  other host a derived external MAC; ``transit_mac`` is this host's derived transit MAC,
  ``snat_transit_mac`` the SNAT host's, ``transit_subnet_id`` the first attached IPv4 subnet.
* ``floating_ips``: the router's associated floating IPs whose fixed port is bound to this
  host, sorted by id (only with a gateway: without one a floating IP has nowhere to live).

Derived MACs (``transit_mac``, ``external_mac``): ``fe:16:12`` / ``fe:16:13`` and the first
three bytes of the SHA-256 of ``<router_id>/<node_id>``: locally administered, unicast,
stable for a router on a node, and distinct from every other host's.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alcor.dpm.compiler.subnets import NETWORK_TYPES
from alcor.dpm.compiler.vpcs import vni
from alcor.rpc._generated import common_pb2, router_pb2

TRANSIT_MAC_PREFIX = "fe:16:12"
EXTERNAL_MAC_PREFIX = "fe:16:13"

Row = dict[str, Any]
Config = router_pb2.RouterConfiguration


def derived_mac(prefix: str, router_id: str, node_id: str) -> str:
    """``prefix`` (three bytes) followed by the first three bytes of the SHA-256 of
    ``<router_id>/<node_id>``."""
    digest = hashlib.sha256(f"{router_id}/{node_id}".encode()).hexdigest()
    return ":".join([prefix, digest[0:2], digest[2:4], digest[4:6]])


def transit_mac(router_id: str, node_id: str) -> str:
    """The MAC of a router's transit interface on a node (SNAT traffic between hosts)."""
    return derived_mac(TRANSIT_MAC_PREFIX, router_id, node_id)


def external_mac(router_id: str, node_id: str) -> str:
    """The MAC a router uses on its external network on a node that is not its SNAT host."""
    return derived_mac(EXTERNAL_MAC_PREFIX, router_id, node_id)


# --- what a router's state is built from (read by ``presence``) -----------------------------


@dataclass(frozen=True, slots=True)
class Interface:
    """A router interface: its subnet's row and its port's row."""

    subnet: Row
    port: Row

    @property
    def address(self) -> str:
        """The interface port's address in its subnet ("" if it holds none there)."""
        return next((ip["ip_address"] for ip in self.port["fixed_ips"]
                     if ip["subnet_id"] == self.subnet["id"]), "")


@dataclass(frozen=True, slots=True)
class SnatHost:
    node_id: str
    local_ip: str


@dataclass(frozen=True, slots=True)
class Gateway:
    """A router's external gateway: its port, network and the subnet of its address."""

    port: Row
    network: Row
    subnet: Row | None
    address: str
    enable_snat: bool
    snat: SnatHost | None
    pinned: bool
    """The SNAT host is the gateway port's binding (else chosen among the router's hosts)."""


@dataclass(frozen=True, slots=True)
class RouterIntent:
    """One router as every host sees it (the host-specific parts are chosen when building)."""

    router: Row
    interfaces: list[Interface]
    """Sorted by subnet id."""
    gateway: Gateway | None
    floating_ips: list[Row]
    """Associated floating IPs, sorted by id, each with ``host``: its fixed port's
    ``binding:host_id``."""
    networks: dict[str, Row]
    """The interfaces' networks, by id."""
    network_subnets: dict[str, list[str]]
    """Every subnet id of those networks, by network."""

    @property
    def subnet_ids(self) -> list[str]:
        return [iface.subnet["id"] for iface in self.interfaces]


# --- the state -------------------------------------------------------------------------------


def _with_prefix(address: str, cidr: str) -> str:
    if not address:
        return ""
    return f"{address}/{ipaddress.ip_network(cidr, strict=False).prefixlen}"


def _in_subnet(address: str, cidr: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False


def _rule(destination: str, next_hop: str, kind: router_pb2.DestinationType
          ) -> Config.RoutingRule:
    rule = Config.RoutingRule(operation_type=common_pb2.CREATE, id=f"{destination}-{next_hop}",
                              destination=destination, next_hop_ip=next_hop)
    rule.routing_rule_extra_info.destination_type = kind
    return rule


def default_route(gateway: Gateway | None) -> tuple[int, Config.RoutingRule] | None:
    """(IP version, the INTERNET rule) of a router whose gateway subnet has a gateway IP."""
    if gateway is None or gateway.subnet is None or not gateway.subnet["gateway_ip"]:
        return None
    version = int(gateway.subnet["ip_version"])
    destination = "0.0.0.0/0" if version == 4 else "::/0"
    return version, _rule(destination, gateway.subnet["gateway_ip"], router_pb2.INTERNET)


def routing_table(iface: Interface, routes: Sequence[Mapping[str, Any]],
                  default: tuple[int, Config.RoutingRule] | None) -> Config.SubnetRoutingTable:
    subnet = iface.subnet
    table = Config.SubnetRoutingTable(
        subnet_id=subnet["id"], interface_ip=_with_prefix(iface.address, subnet["cidr"]),
        interface_mac=iface.port["mac_address"], interface_port_id=iface.port["id"])
    for route in routes:
        if _in_subnet(route["nexthop"], subnet["cidr"]):
            table.routing_rules.append(_rule(route["destination"], route["nexthop"],
                                             router_pb2.VPC_GW))
    if default is not None and default[0] == int(subnet["ip_version"]):
        table.routing_rules.append(default[1])
    return table


def transit_subnet(interfaces: Sequence[Interface]) -> str:
    """The first attached IPv4 subnet by id ("" if none)."""
    return next((i.subnet["id"] for i in interfaces if int(i.subnet["ip_version"]) == 4), "")


def external_gateway(router: RouterIntent, gateway: Gateway, node: Mapping[str, Any]
                     ) -> Config.ExternalGateway:
    router_id, network = router.router["id"], gateway.network
    snat = gateway.snat
    is_snat = snat is not None and snat.node_id == node["node_id"]
    subnet = gateway.subnet
    return Config.ExternalGateway(
        network_id=network["id"],
        physical_network=network.get("provider:physical_network") or "",
        network_type=NETWORK_TYPES.get(network["provider:network_type"], common_pb2.VXLAN),
        segmentation_id=vni(network),
        ip_address=_with_prefix(gateway.address, subnet["cidr"]) if subnet else "",
        gateway_ip=(subnet["gateway_ip"] or "") if subnet else "",
        mac_address=gateway.port["mac_address"],
        enable_snat=gateway.enable_snat,
        snat_host_ip=snat.local_ip if snat else "",
        snat_transit_mac=transit_mac(router_id, snat.node_id) if snat else "",
        is_snat_host=is_snat,
        external_mac_address=(gateway.port["mac_address"] if is_snat
                              else external_mac(router_id, node["node_id"])),
        transit_mac=transit_mac(router_id, node["node_id"]),
        transit_subnet_id=transit_subnet(router.interfaces),
    )


def router_state(router: RouterIntent, node: Mapping[str, Any], host_keys: Sequence[str]
                 ) -> router_pb2.RouterState:
    """The router's state on ``node`` (``host_keys``: the binding values naming it)."""
    row = router.router
    config = Config(revision_number=row["revision_number"], id=row["id"],
                    update_type=common_pb2.FULL, host_dvr_mac_address=node["host_dvr_mac"],
                    project_id=row["project_id"])
    default = default_route(router.gateway)
    config.subnet_routing_tables.extend(
        routing_table(iface, row["routes"] or [], default) for iface in router.interfaces)
    if router.gateway is not None:
        config.external_gateway.CopyFrom(external_gateway(router, router.gateway, node))
        keys = set(host_keys)
        for fip in router.floating_ips:
            if fip["host"] in keys:
                config.floating_ips.add(
                    id=fip["id"], floating_ip_address=fip["floating_ip_address"],
                    fixed_ip_address=fip["fixed_ip_address"] or "", port_id=fip["port_id"])
    return router_pb2.RouterState(operation_type=common_pb2.CREATE, configuration=config)


def router_states(routers: Sequence[RouterIntent], node: Mapping[str, Any],
                  host_keys: Sequence[str]) -> dict[str, router_pb2.RouterState]:
    """Every present router's state on ``node``, by router id."""
    return {r.router["id"]: router_state(r, node, host_keys)
            for r in sorted(routers, key=lambda r: str(r.router["id"]))}
