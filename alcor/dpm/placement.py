"""Placement: which hosts' goal states a batch of outbox changes may alter.

What a change reaches (``binding:host_id`` names a node by ``node_id`` or ``node_name``):

* a port: its host, before and after (the outbox detail carries both, so a deleted or moved
  port is still placed), and, when one of them is a registered node, every host with a port
  in the port's network (its L2 neighbours gain, change or lose the port's entry; a port on no
  registered node is in nobody's goal state);
* a subnet or a network: every host with a port in the network;
* a security group or one of its rules: every host with a port bound to that group or to a
  group with a rule naming it as remote group;
* a node: the node itself, and every host with a port in a network where the node has ports
  (their neighbour entries carry its address; the detail names it before and after);
* routing (see ``alcor.dpm.compiler.presence``): every host where a router is present, for a
  change of the router (its detail lists the subnets attached before and after), of a
  floating IP on it (and the hosts of the floating IP's port before and after), of one of its
  ports, of a port bound to a registered node with an address in one of its subnets, of a
  subnet or network it is attached to or has its gateway on, and of a node with ports in its
  subnets or pinned as its SNAT host.

Neighbours are placed by network, a superset of the compiler's by-subnet rule: a host that
shares only another subnet of the network gets an unchanged goal state, never a stale one.
So is a router's presence: the hosts with a port in the networks of its subnets, and the
host its gateway port is bound to.
A batch costs a few queries whatever its size (changes of one kind are looked up together);
only registered nodes are returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alcor.db.store import Transaction
from alcor.dpm.compiler.intent import INFRASTRUCTURE_OWNERS, chunks, fetch_in, resolve_hosts

Change = Mapping[str, Any]


@dataclass(slots=True)
class _Reach:
    """What a batch touches, gathered before any query."""

    hosts: set[str] = field(default_factory=set)
    """``binding:host_id`` values of changed ports (their own goal state changes)."""
    port_networks: list[tuple[str, set[str]]] = field(default_factory=list)
    """(network, hosts of the changed port): neighbours count if one of them is registered."""
    networks: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)
    node_names: set[str] = field(default_factory=set)
    bare_ports: set[str] = field(default_factory=set)
    """Port changes recorded without detail: read from the ports table."""
    subnets: set[str] = field(default_factory=set)
    rules: set[str] = field(default_factory=set)
    port_subnets: list[tuple[set[str], set[str]]] = field(default_factory=list)
    """(subnets, hosts of the changed port): the routers of the subnets count if one of the
    hosts is registered."""
    ports: set[str] = field(default_factory=set)
    """Changed ports (a router's own ports place the router)."""
    routers: set[str] = field(default_factory=set)
    router_subnets: set[str] = field(default_factory=set)
    """Subnets routers were attached to, before or after a change."""
    floatingips: set[str] = field(default_factory=set)
    fip_ports: set[str] = field(default_factory=set)
    """Ports a floating IP is or was associated with (their hosts hold it)."""


def _port(reach: _Reach, change: Change) -> None:
    detail = change.get("detail") or {}
    reach.ports.add(change["resource_id"])
    if "network_id" not in detail:
        reach.bare_ports.add(change["resource_id"])
        return
    names = {detail.get("binding:host_id") or "", detail.get("old_host_id") or ""} - {""}
    reach.hosts |= names
    if names:
        reach.port_networks.append((detail["network_id"], names))
        reach.port_subnets.append(({*detail.get("subnet_ids", ()),
                                    *detail.get("old_subnet_ids", ())}, names))


def _router(reach: _Reach, change: Change) -> None:
    detail = change.get("detail") or {}
    if change["resource_type"] == "router":
        reach.routers.add(change["resource_id"])
        reach.router_subnets |= set(detail.get("subnet_ids") or ())
        return
    reach.floatingips.add(change["resource_id"])
    reach.routers |= {detail.get("router_id") or "", detail.get("previous_router_id") or ""} - {""}
    reach.fip_ports |= {detail.get("port_id") or "", detail.get("previous_port_id") or ""} - {""}


def _gather(changes: Iterable[Change]) -> _Reach:
    reach = _Reach()
    for change in changes:
        kind, resource_id = change["resource_type"], change["resource_id"]
        detail = change.get("detail") or {}
        if kind == "port":
            _port(reach, change)
        elif kind == "subnet":
            if detail.get("network_id"):
                reach.networks.add(detail["network_id"])
            else:
                reach.subnets.add(resource_id)
        elif kind == "network":
            reach.networks.add(resource_id)
        elif kind == "security_group":
            reach.groups.add(resource_id)
        elif kind == "security_group_rule":
            if detail.get("security_group_id"):
                reach.groups.add(detail["security_group_id"])
            else:
                reach.rules.add(resource_id)
        elif kind in ("router", "floatingip"):
            _router(reach, change)
        elif kind == "node":
            reach.nodes.add(resource_id)
            reach.node_names |= {resource_id, detail.get("node_name") or "",
                                 detail.get("old_node_name") or ""} - {""}
    return reach


def _select_in(txn: Transaction, table: str, column: str, ids: Iterable[str],
               columns: Sequence[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for part in chunks(sorted(set(ids))):
        rows += txn.select(table, {column: list(part)}, columns=columns)
    return rows


def _complete(txn: Transaction, reach: _Reach) -> None:
    """Fill in what changes without detail imply, from the rows that still exist."""
    for port in _select_in(txn, "ports", "id", reach.bare_ports,
                           ("network_id", "binding:host_id", "fixed_ips")):
        if port["binding:host_id"]:
            reach.hosts.add(port["binding:host_id"])
            reach.port_networks.append((port["network_id"], {port["binding:host_id"]}))
            reach.port_subnets.append(({ip["subnet_id"] for ip in port["fixed_ips"]},
                                       {port["binding:host_id"]}))
    for fip in _select_in(txn, "floatingips", "id", reach.floatingips,
                          ("router_id", "port_id")):
        reach.routers |= {fip["router_id"] or ""} - {""}
        reach.fip_ports |= {fip["port_id"] or ""} - {""}
    reach.networks |= {s["network_id"] for s in _select_in(
        txn, "subnets", "id", reach.subnets, ("network_id",))}
    reach.groups |= {r["security_group_id"] for r in _select_in(
        txn, "security_group_rules", "id", reach.rules, ("security_group_id",))}


def hosts_in_networks(txn: Transaction, network_ids: Iterable[str]) -> set[str]:
    """The ``binding:host_id`` of every bound port in these networks."""
    sql = ("SELECT DISTINCT binding_host_id FROM ports "
           "WHERE network_id IN ({in}) AND binding_host_id <> ''")
    return {row[0] for row in fetch_in(txn, sql, network_ids)}


def hosts_in_groups(txn: Transaction, group_ids: Iterable[str]) -> set[str]:
    """The ``binding:host_id`` of every bound port in these security groups, or in groups
    with a rule naming one of them as remote group."""
    groups = set(group_ids)
    if not groups:
        return set()
    groups |= {r[0] for r in fetch_in(
        txn, "SELECT DISTINCT security_group_id FROM security_group_rules "
        "WHERE remote_group_id IN ({in})", groups)}
    sql = ("SELECT DISTINCT p.binding_host_id FROM ports p "
           "JOIN port_security_groups b ON b.port_id = p.id "
           "WHERE b.security_group_id IN ({in}) AND p.binding_host_id <> ''")
    return {row[0] for row in fetch_in(txn, sql, groups)}


def _node_networks(txn: Transaction, names: Iterable[str]) -> set[str]:
    sql = "SELECT DISTINCT network_id FROM ports WHERE binding_host_id IN ({in})"
    return {row[0] for row in fetch_in(txn, sql, names)}


# --- routing -----------------------------------------------------------------------------------

_ON_SUBNETS = "SELECT DISTINCT router_id FROM router_ports WHERE subnet_id IN ({in})"
_OWNING = "SELECT DISTINCT router_id FROM router_ports WHERE port_id IN ({in})"
_ON_NETWORKS = ("SELECT DISTINCT rp.router_id FROM router_ports rp "
                "JOIN subnets s ON s.id = rp.subnet_id WHERE s.network_id IN ({in})")
_GATEWAY_ON = ("SELECT r.id FROM routers r JOIN ports p ON p.id = r.gw_port_id "
               "WHERE p.network_id IN ({in})")
_PINNED_TO = ("SELECT r.id FROM routers r JOIN ports p ON p.id = r.gw_port_id "
              "WHERE p.binding_host_id IN ({in})")
_NODE_SUBNETS = ("SELECT DISTINCT a.subnet_id FROM ip_allocations a "
                 "JOIN ports p ON p.id = a.port_id WHERE p.binding_host_id IN ({in})")
_ATTACHED = ("SELECT DISTINCT subnet_id FROM router_ports "
             "WHERE router_id IN ({in}) AND subnet_id IS NOT NULL")
_NETWORKS_OF = "SELECT DISTINCT network_id FROM subnets WHERE id IN ({in})"
_GATEWAY_HOSTS = ("SELECT p.binding_host_id FROM routers r JOIN ports p ON p.id = r.gw_port_id "
                  "WHERE r.id IN ({in}) AND p.binding_host_id <> ''")
_BOUND = "SELECT binding_host_id FROM ports WHERE id IN ({in}) AND binding_host_id <> ''"


def _column(txn: Transaction, sql: str, values: Iterable[str]) -> set[str]:
    return {row[0] for row in fetch_in(txn, sql, values)}


def _touched_routers(txn: Transaction, reach: _Reach, registered: set[str],
                     networks: set[str]) -> set[str]:
    """The routers whose presence the batch reaches: changed ones, those of changed ports,
    of the subnets of ports on registered hosts, of changed subnets and networks (``networks``)
    and of changed nodes."""
    subnets = {s for subs, hs in reach.port_subnets if hs & registered for s in subs}
    subnets |= _column(txn, _NODE_SUBNETS, reach.node_names)
    routers = set(reach.routers) | _column(txn, _ON_SUBNETS, subnets)
    routers |= _column(txn, _OWNING, reach.ports)
    routers |= _column(txn, _ON_NETWORKS, networks) | _column(txn, _GATEWAY_ON, networks)
    return routers | _column(txn, _PINNED_TO, reach.node_names)


def routing_hosts(txn: Transaction, reach: _Reach, registered: set[str],
                  networks: set[str]) -> tuple[set[str], set[str]]:
    """(networks, ``binding:host_id`` values) whose hosts the batch's routing reaches."""
    routers = _touched_routers(txn, reach, registered, networks)
    subnets = reach.router_subnets | _column(txn, _ATTACHED, routers)
    names = _column(txn, _GATEWAY_HOSTS, routers) | _column(txn, _BOUND, reach.fip_ports)
    return _column(txn, _NETWORKS_OF, subnets), names


def _registered(txn: Transaction, node_ids: Iterable[str]) -> set[str]:
    return {r[0] for r in fetch_in(txn, "SELECT id FROM nodes WHERE id IN ({in})", node_ids)}


_GATEWAYS = ("SELECT r.id, p.binding_host_id FROM routers r "
             "JOIN ports p ON p.id = r.gw_port_id WHERE r.id IN ({in})")


def _moves_routers(txn: Transaction, reach: _Reach, registered: set[str]) -> bool:
    """Whether the batch's port changes may alter routers' states on hosts other than the
    ports' own: a router's (or any infrastructure) port changed, or a port on a registered
    host in a subnet of a router with a gateway whose SNAT host is chosen among the hosts the
    router is present on (that set may have changed)."""
    if _column(txn, _OWNING, reach.ports):
        return True
    owners = _select_in(txn, "ports", "id", reach.ports, ("device_owner",))
    if any(p["device_owner"] in INFRASTRUCTURE_OWNERS for p in owners):
        return True
    subnets = {s for subs, hs in reach.port_subnets if hs & registered for s in subs}
    gateways = fetch_in(txn, _GATEWAYS, _column(txn, _ON_SUBNETS, subnets))
    pinned = resolve_hosts(txn, {host for _, host in gateways})
    return any(host not in pinned for _, host in gateways)


def port_changes(txn: Transaction, changes: Sequence[Mapping[str, Any]]
                 ) -> tuple[set[str], set[str]] | None:
    """For a batch of port changes only: (the node_ids of the changed ports' own hosts, before
    and after, the changed port ids).  The other hosts the batch reaches see only neighbour
    entries change (see ``alcor.dpm.deltas``).  None if the batch changes anything else, or
    may change routers' states (``_moves_routers``)."""
    if any(change["resource_type"] != "port" for change in changes):
        return None
    reach = _gather(changes)
    _complete(txn, reach)
    named = resolve_hosts(txn, reach.hosts)
    if _moves_routers(txn, reach, set(named)):
        return None
    own = {node_id for node_id, _ in named.values()}
    return own, {str(change["resource_id"]) for change in changes}


def affected_hosts(txn: Transaction, changes: Sequence[Mapping[str, Any]]) -> set[str]:
    """node_ids whose goal state the outbox rows ``changes`` may alter."""
    reach = _gather(changes)
    _complete(txn, reach)
    named = resolve_hosts(txn, reach.hosts)
    routed, pinned = routing_hosts(txn, reach, set(named), reach.networks)
    networks = reach.networks | {net for net, hs in reach.port_networks if hs & named.keys()}
    networks |= _node_networks(txn, reach.node_names) | routed
    others = hosts_in_networks(txn, networks) | hosts_in_groups(txn, reach.groups) | pinned
    named.update(resolve_hosts(txn, others - named.keys()))
    return {node_id for node_id, _ in named.values()} | _registered(txn, reach.nodes)
