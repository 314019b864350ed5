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
  (their neighbour entries carry its address; the detail names it before and after).

Neighbours are placed by network, a superset of the compiler's by-subnet rule: a host that
shares only another subnet of the network gets an unchanged goal state, never a stale one.
A batch costs a few queries whatever its size (changes of one kind are looked up together);
only registered nodes are returned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alcor.db.store import Transaction
from alcor.dpm.compiler.intent import chunks, fetch_in, resolve_hosts

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


def _port(reach: _Reach, change: Change) -> None:
    detail = change.get("detail") or {}
    if "network_id" not in detail:
        reach.bare_ports.add(change["resource_id"])
        return
    names = {detail.get("binding:host_id") or "", detail.get("old_host_id") or ""} - {""}
    reach.hosts |= names
    if names:
        reach.port_networks.append((detail["network_id"], names))


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
                           ("network_id", "binding:host_id")):
        if port["binding:host_id"]:
            reach.hosts.add(port["binding:host_id"])
            reach.port_networks.append((port["network_id"], {port["binding:host_id"]}))
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


def _registered(txn: Transaction, node_ids: Iterable[str]) -> set[str]:
    return {r[0] for r in fetch_in(txn, "SELECT id FROM nodes WHERE id IN ({in})", node_ids)}


def port_changes(txn: Transaction, changes: Sequence[Mapping[str, Any]]
                 ) -> tuple[set[str], set[str]] | None:
    """For a batch of port changes only: (the node_ids of the changed ports' own hosts, before
    and after, the changed port ids).  The other hosts the batch reaches see only neighbour
    entries change (see ``alcor.dpm.deltas``).  None if the batch changes anything else."""
    if any(change["resource_type"] != "port" for change in changes):
        return None
    reach = _gather(changes)
    _complete(txn, reach)
    own = {node_id for node_id, _ in resolve_hosts(txn, reach.hosts).values()}
    return own, {str(change["resource_id"]) for change in changes}


def affected_hosts(txn: Transaction, changes: Sequence[Mapping[str, Any]]) -> set[str]:
    """node_ids whose goal state the outbox rows ``changes`` may alter."""
    reach = _gather(changes)
    _complete(txn, reach)
    named = resolve_hosts(txn, reach.hosts)
    networks = reach.networks | {net for net, hs in reach.port_networks if hs & named.keys()}
    networks |= _node_networks(txn, reach.node_names)
    others = hosts_in_networks(txn, networks) | hosts_in_groups(txn, reach.groups)
    named.update(resolve_hosts(txn, others - named.keys()))
    return {node_id for node_id, _ in named.values()} | _registered(txn, reach.nodes)
