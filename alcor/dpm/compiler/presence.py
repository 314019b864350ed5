"""Routers present on a host, read from the store: what ``routers`` builds their states from,
and the subnets, networks and neighbours they add to the host's intent.

A router is present on a host when it has an interface (a ``router_ports`` row with a
subnet) on a subnet one of the host's workload ports has a fixed IP in, or when its gateway
port is bound to the host (its pinned SNAT host).  For each present router the host also
holds:

* the subnet and network (VPC) states of every subnet the router is attached to, so it knows
  each routed subnet's CIDR, VNI and MTU even without a port there;
* its neighbours there: every workload port bound to another registered node with a fixed IP
  in one of those subnets.  One on a network the host has a port on is an L2 neighbour, as
  the ports of the host's own subnets are; one on another network is L3 (``routed``): the
  host has it only because of the router.  A port is one neighbour either way.

A router's rows are the same for every host; ``SharedReads.routers`` keeps them for the hosts
compiled on one transaction.  The SNAT host of a router with a gateway is read here too: the
gateway port's binding when it names a registered node, else the registered node with the
smallest name among those with a workload port in the router's subnets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from alcor.db.store import Transaction
from alcor.dpm.compiler.intent import (
    WORKLOAD,
    HostAddress,
    HostIntent,
    NeighbourRef,
    SharedReads,
    candidates,
    chunks,
    covered_networks,
    fetch_in,
    host_keys,
    resolve_hosts,
)
from alcor.dpm.compiler.routers import Gateway, Interface, RouterIntent, SnatHost

Row = dict[str, Any]

_ON_SUBNETS = "SELECT DISTINCT router_id FROM router_ports WHERE subnet_id IN ({in})"
_PINNED_ON = ("SELECT r.id FROM routers r JOIN ports p ON p.id = r.gw_port_id "
              "WHERE p.binding_host_id IN ({in})")
_HOSTS_ON = ("SELECT DISTINCT p.binding_host_id FROM ip_allocations a "
             "JOIN ports p ON p.id = a.port_id WHERE a.subnet_id IN ({in}) "
             "AND p.binding_host_id <> '' AND p." + WORKLOAD)


def select_in(txn: Transaction, table: str, column: str, values: Iterable[Any],
              columns: Sequence[str] | None = None) -> list[Row]:
    """``txn.select`` of the rows whose ``column`` is one of ``values``, in chunks."""
    rows: list[Row] = []
    for part in chunks(sorted(set(values))):
        rows += txn.select(table, {column: list(part)}, columns=columns)
    return rows


# --- which routers ---------------------------------------------------------------------------


def present_routers(txn: Transaction, keys: Sequence[str], used_subnets: Iterable[str]
                    ) -> list[str]:
    """Ids of the routers present on the host named by ``keys`` whose workload ports use
    ``used_subnets``."""
    found = {row[0] for row in fetch_in(txn, _ON_SUBNETS, used_subnets)}
    found |= {row[0] for row in fetch_in(txn, _PINNED_ON, keys)}
    return sorted(found)


_ATTACHED = "SELECT DISTINCT subnet_id FROM router_ports WHERE subnet_id IN ({in})"


def attached(txn: Transaction, subnet_ids: Iterable[str], shared: SharedReads) -> bool:
    """Whether some router has an interface on one of ``subnet_ids`` (remembered in
    ``shared``)."""
    wanted = set(subnet_ids)
    unknown = wanted - shared.attached.keys()
    if unknown:
        found = {row[0] for row in fetch_in(txn, _ATTACHED, unknown)}
        shared.attached.update({s: s in found for s in unknown})
    return any(shared.attached[s] for s in wanted)


def router_intents(txn: Transaction, router_ids: Sequence[str], shared: SharedReads
                   ) -> list[RouterIntent]:
    """The routers (those that exist), by id, read once per ``shared``."""
    unknown = [r for r in router_ids if r not in shared.routers]
    if unknown:
        read = read_routers(txn, unknown)
        shared.routers.update({r: read.get(r) for r in unknown})
    return [found for r in sorted(router_ids) if (found := shared.routers[r]) is not None]


# --- reading routers -------------------------------------------------------------------------


def _address(port: Mapping[str, Any]) -> tuple[str, str] | None:
    """(subnet id, address) of a gateway port: its first IPv4 fixed IP, else its first."""
    fixed = port["fixed_ips"]
    chosen = next((ip for ip in fixed if ":" not in ip["ip_address"]), None) or next(
        iter(fixed), None)
    return None if chosen is None else (chosen["subnet_id"], chosen["ip_address"])


def snat_host(txn: Transaction, binding: str, subnet_ids: Sequence[str]
              ) -> tuple[SnatHost | None, bool]:
    """The SNAT host of a router and whether the gateway port's ``binding`` pinned it."""
    pinned = resolve_hosts(txn, [binding]) if binding else {}
    if binding in pinned:
        node_id, address = pinned[binding]
        return SnatHost(node_id, address.ip), True
    names = {row[0] for row in fetch_in(txn, _HOSTS_ON, subnet_ids)}
    node_ids = {node_id for node_id, _ in resolve_hosts(txn, names).values()}
    nodes = select_in(txn, "nodes", "node_id", node_ids,
                      ("node_id", "node_name", "local_ip"))
    if not nodes:
        return None, False
    first = min(nodes, key=itemgetter("node_name"))
    return SnatHost(first["node_id"], first["local_ip"]), False


def _gateway(txn: Transaction, router: Row, ports: Mapping[str, Row],
             subnets: Mapping[str, Row], networks: Mapping[str, Row],
             interfaces: Sequence[Interface]) -> Gateway | None:
    port = ports.get(router["gw_port_id"] or "")
    if port is None or port["network_id"] not in networks:
        return None
    chosen = _address(port)
    subnet_id, address = chosen if chosen is not None else ("", "")
    snat, pinned = snat_host(txn, port["binding:host_id"],
                             [iface.subnet["id"] for iface in interfaces])
    info = router["external_gateway_info"] or {}
    return Gateway(port=port, network=networks[port["network_id"]],
                   subnet=subnets.get(subnet_id), address=address,
                   enable_snat=bool(info.get("enable_snat", True)), snat=snat, pinned=pinned)


def _floating_ips(txn: Transaction, router_ids: Sequence[str]) -> dict[str, list[Row]]:
    """Each router's associated floating IPs, by id, with their fixed port's binding."""
    fips = [f for f in select_in(txn, "floatingips", "router_id", router_ids) if f["port_id"]]
    bound = {p["id"]: p["binding:host_id"] for p in select_in(
        txn, "ports", "id", [f["port_id"] for f in fips], ("id", "binding:host_id"))}
    out: dict[str, list[Row]] = {r: [] for r in router_ids}
    for fip in sorted(fips, key=itemgetter("id")):
        if fip["port_id"] in bound:
            out[fip["router_id"]].append({**fip, "host": bound[fip["port_id"]]})
    return out


def read_routers(txn: Transaction, router_ids: Sequence[str]) -> dict[str, RouterIntent]:
    """The routers (those that exist) with their interfaces, gateway and floating IPs."""
    routers = {r["id"]: r for r in select_in(txn, "routers", "id", router_ids)}
    links = [link for link in select_in(txn, "router_ports", "router_id", routers)
             if link["subnet_id"]]
    gateways = {r["gw_port_id"] for r in routers.values() if r["gw_port_id"]}
    ports = {p["id"]: p for p in select_in(
        txn, "ports", "id", {link["port_id"] for link in links} | gateways)}
    gateway_subnets = {ip["subnet_id"] for g in gateways if g in ports
                       for ip in ports[g]["fixed_ips"]}
    subnets = {s["id"]: s for s in select_in(
        txn, "subnets", "id", {link["subnet_id"] for link in links} | gateway_subnets)}
    networks = {n["id"]: n for n in select_in(
        txn, "networks", "id", {s["network_id"] for s in subnets.values()}
        | {ports[g]["network_id"] for g in gateways if g in ports})}
    attached_networks = {subnets[link["subnet_id"]]["network_id"] for link in links
                         if link["subnet_id"] in subnets}
    by_network: dict[str, list[str]] = {}
    for sub in select_in(txn, "subnets", "network_id", attached_networks,
                         ("id", "network_id")):
        by_network.setdefault(sub["network_id"], []).append(sub["id"])
    floating = _floating_ips(txn, sorted(routers))
    out: dict[str, RouterIntent] = {}
    for router_id, router in routers.items():
        interfaces = sorted(
            (Interface(subnets[link["subnet_id"]], ports[link["port_id"]]) for link in links
             if link["router_id"] == router_id and link["subnet_id"] in subnets
             and link["port_id"] in ports), key=lambda i: str(i.subnet["id"]))
        nets = {i.subnet["network_id"] for i in interfaces}
        out[router_id] = RouterIntent(
            router=router, interfaces=interfaces,
            gateway=_gateway(txn, router, ports, subnets, networks, interfaces),
            floating_ips=floating[router_id],
            networks={n: networks[n] for n in sorted(nets) if n in networks},
            network_subnets={n: sorted(by_network.get(n, [])) for n in sorted(nets)})
    return out


# --- the host's intent, extended ---------------------------------------------------------------


def _refs(txn: Transaction, keys: list[str], routers: Sequence[RouterIntent],
          wanted: set[str], shared: SharedReads) -> list[NeighbourRef]:
    """(port id, revision, binding) of other hosts' workload ports in ``wanted`` subnets."""
    if not wanted:
        return []
    every = {(s, net) for r in routers for net, ids in r.network_subnets.items() for s in ids}
    whole, part = covered_networks(({"id": s, "network_id": n} for s, n in sorted(every)),
                                   wanted)
    return candidates(txn, keys, whole, part, wanted, shared)


def _hosts(txn: Transaction, node: Mapping[str, Any], known: Mapping[str, HostAddress],
           refs: Iterable[NeighbourRef], shared: SharedReads) -> dict[str, HostAddress]:
    """``known`` and the addresses of the other registered nodes ``refs`` name."""
    names = {ref[2] for ref in refs} - known.keys()
    resolved = shared.resolve(txn, names)
    return {**known, **{name: address for name, (node_id, address) in resolved.items()
                        if node_id != node["node_id"]}}


def extend(txn: Transaction, intent: HostIntent, shared: SharedReads) -> HostIntent:
    """``intent`` with the routers present on its host, their subnets and networks, and the
    neighbours they add (see the module docstring)."""
    if not shared.any_routers(txn):
        return intent
    keys = host_keys(intent.node)
    routers = router_intents(txn, present_routers(txn, keys, sorted(intent.subnets)), shared)
    if not routers:
        return intent
    subnets = dict(intent.subnets)
    networks = dict(intent.networks)
    for router in routers:
        subnets.update({i.subnet["id"]: i.subnet for i in router.interfaces})
        networks.update(router.networks)
    attached = {i.subnet["id"]: i.subnet["network_id"] for r in routers for i in r.interfaces}
    switched = {s for s, net in attached.items() if net in intent.networks} - intent.subnets.keys()
    routed = {s for s, net in attached.items() if net not in intent.networks}
    extra = _refs(txn, keys, routers, switched, shared)
    l3 = _refs(txn, keys, routers, routed, shared)
    hosts = _hosts(txn, intent.node, intent.hosts, [*extra, *l3], shared)
    neighbours = {ref[0]: ref for ref in [*intent.neighbours, *extra] if ref[2] in hosts}
    return dataclasses.replace(
        intent, subnets=subnets, networks=networks,
        neighbours=sorted(neighbours.values(), key=itemgetter(0)),
        routed=sorted((ref for ref in l3 if ref[2] in hosts), key=itemgetter(0)),
        hosts=hosts, routers=routers)
