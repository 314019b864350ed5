"""The stored intent one host's goal state is compiled from, read in one transaction.

A host holds the workload ports bound to it (``binding:host_id`` is its ``node_id`` or its
``node_name``), their networks, the subnets of their fixed IPs, their security groups with
every rule, and its neighbours: every workload port bound to another registered node that has
a fixed IP in one of those subnets.  Then ``alcor.dpm.compiler.presence`` adds the routers
present on the host, their subnets and networks, and the neighbours they bring.  Neighbours
are read as bare references (port id, revision, ``binding:host_id``) so that a warm compile
never loads or decodes their rows; ``neighbour_rows`` loads the ones whose entries must be
serialized.

Infrastructure ports (router interfaces and gateways, floating IP and DHCP ports;
``INFRASTRUCTURE_OWNERS``) are no workload: never a host's port nor anyone's neighbour, even
bound (a router's gateway port names its SNAT host that way).

Reads that the store's statement helpers cannot express (DISTINCT, NOT IN, a cast) are plain
SQL run on the transaction's connection with the dialect's placeholders; nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from alcor.db.store import Transaction
from alcor.ipam.addresses import ROUTER_PORT_OWNERS

if TYPE_CHECKING:
    from alcor.dpm.compiler.routers import RouterIntent

Row = dict[str, Any]

CHUNK = 1000
"""Most values bound in one IN list (SQLite and PostgreSQL cap bound parameters)."""

INFRASTRUCTURE_OWNERS = frozenset({*ROUTER_PORT_OWNERS, "network:floatingip", "network:dhcp"})
"""``device_owner`` values of ports that are no workload (see the module docstring)."""
WORKLOAD = "device_owner NOT IN ({})".format(
    ", ".join(f"'{owner}'" for owner in sorted(INFRASTRUCTURE_OWNERS)))
"""SQL condition: a ``ports`` row (unaliased) is a workload port."""


def is_workload(port: Mapping[str, Any]) -> bool:
    return port["device_owner"] not in INFRASTRUCTURE_OWNERS


class HostAddress(NamedTuple):
    """Where a node's ports are reached: its tunnel endpoint and its MAC."""

    ip: str
    mac: str


NeighbourRef = tuple[str, int, str]
"""A neighbour port as a warm compile needs it, enough to find its cached entry: (port id,
revision_number, binding:host_id), the row as the driver returns it (a compile reads
thousands; making new objects for them would cost more than reading them)."""


@dataclass(frozen=True, slots=True)
class HostIntent:
    node: Mapping[str, Any]
    ports: list[Row]
    """Ports bound to the node, by id."""
    networks: dict[str, Row]
    """The ports' networks, by id."""
    subnets: dict[str, Row]
    """The subnets of the ports' fixed IPs, by id."""
    groups: dict[str, Row]
    """The ports' security groups, by id."""
    rules: dict[str, list[Row]]
    """Each of those groups' rules, by rule id."""
    neighbours: list[NeighbourRef]
    """Other registered nodes' ports in the host's subnets, by port id, and (once routers are
    added) in the present routers' subnets on the networks of the host's ports: the
    neighbours whose fixed IPs are sent as L2."""
    hosts: dict[str, HostAddress]
    """The neighbours' ``binding:host_id`` values -> their nodes' addresses."""
    routed: list[NeighbourRef] = field(default_factory=list)
    """Other registered nodes' ports in the present routers' subnets on other networks, by
    port id: the neighbours sent as L3 (disjoint from ``neighbours``)."""
    routers: list[RouterIntent] = field(default_factory=list)
    """The routers present on the host, by id."""

    @property
    def address(self) -> HostAddress:
        return HostAddress(self.node["local_ip"], self.node["mac_address"])


# --- plain SQL ---------------------------------------------------------------------------


def marks(txn: Transaction, count: int) -> str:
    """``count`` placeholders, comma-separated, in the dialect's style."""
    return ", ".join(["?" if txn.dialect == "sqlite" else "%s"] * count)


def fetch(txn: Transaction, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Rows of a read as the driver's tuples (``sql`` uses the dialect's placeholders), on a
    cursor of the transaction's own connection."""
    cursor = txn.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, tuple(params))
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    return rows


def chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def fetch_in(txn: Transaction, template: str, values: Iterable[Any]) -> list[tuple[Any, ...]]:
    """Run ``template``, whose ``{in}`` is an IN list, over ``values`` in chunks."""
    out: list[tuple[Any, ...]] = []
    for part in chunks(sorted(set(values))):
        out += fetch(txn, template.format(**{"in": marks(txn, len(part))}), part)
    return out


def json_value(value: Any) -> Any:
    """A JSON column as read by plain SQL: text on SQLite, already decoded on PostgreSQL."""
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


# --- hosts -------------------------------------------------------------------------------


def host_keys(node: Mapping[str, Any]) -> list[str]:
    """The values of ``binding:host_id`` that name this node."""
    return sorted({node["node_id"], node["node_name"]})


def resolve_hosts(txn: Transaction, names: Iterable[str]) -> dict[str, tuple[str, HostAddress]]:
    """``binding:host_id`` values -> (node_id, address) of the registered node each names:
    the node with that id, else the node with that name; unknown names are left out."""
    wanted = sorted(set(names) - {""})
    by_id: dict[str, tuple[str, HostAddress]] = {}
    by_name: dict[str, tuple[str, HostAddress]] = {}
    template = ("SELECT id, name, local_ip, mac_address FROM nodes "  # node_id, node_name
                "WHERE id IN ({in}) OR name IN ({in})")
    for part in chunks(wanted):
        sql = template.format(**{"in": marks(txn, len(part))})
        for node_id, name, ip, mac in fetch(txn, sql, [*part, *part]):
            found = (node_id, HostAddress(ip, mac))
            by_id[node_id] = found
            by_name[name] = found
    return {n: by_id.get(n) or by_name[n] for n in wanted if n in by_id or n in by_name}


# --- the host's own resources --------------------------------------------------------------


def _subnet_ids(ports: Iterable[Mapping[str, Any]]) -> set[str]:
    return {ip["subnet_id"] for port in ports for ip in port["fixed_ips"]}


def _group_rules(txn: Transaction, group_ids: list[str]) -> dict[str, list[Row]]:
    rules: dict[str, list[Row]] = {g: [] for g in group_ids}
    for rule in txn.select("security_group_rules", {"security_group_id": group_ids},
                           order_by=("id",)):
        rules[rule["security_group_id"]].append(rule)
    return rules


def load(txn: Transaction, node: Mapping[str, Any], shared: SharedReads | None = None
         ) -> HostIntent:
    """Everything the host holds, with its neighbours as references (``shared`` lets the
    hosts compiled on one ``txn`` read each network's neighbours once), routers included."""
    from alcor.dpm.compiler import presence  # presence builds on this module

    return presence.extend(txn, load_switched(txn, node, shared), shared or SharedReads())


def load_switched(txn: Transaction, node: Mapping[str, Any], shared: SharedReads | None = None
                  ) -> HostIntent:
    """``load`` without routers: the host's ports and what they share a subnet with."""
    ports = [p for p in txn.select("ports", {"binding:host_id": host_keys(node)},
                                   order_by=("id",)) if is_workload(p)]
    net_ids = sorted({p["network_id"] for p in ports})
    networks = {n["id"]: n for n in txn.select("networks", {"id": net_ids})}
    all_subnets = txn.select("subnets", {"network_id": net_ids}, order_by=("id",))
    used = _subnet_ids(ports)
    subnets = {s["id"]: s for s in all_subnets if s["id"] in used}
    group_ids = sorted({g for p in ports for g in p["security_groups"]})
    groups = {g["id"]: g for g in txn.select("security_groups", {"id": group_ids})}
    neighbours, hosts = neighbour_refs(txn, node, all_subnets, set(subnets), shared)
    return HostIntent(
        node=node, ports=ports, networks=networks, subnets=subnets, groups=groups,
        rules=_group_rules(txn, sorted(groups)), neighbours=neighbours, hosts=hosts,
    )


# --- neighbours ------------------------------------------------------------------------------


def covered_networks(all_subnets: Iterable[Mapping[str, Any]], used: set[str]
                     ) -> tuple[list[str], list[str]]:
    """Networks whose every subnet the host uses (all their addressed ports are neighbour
    candidates) and networks it uses only some subnets of (membership needs fixed_ips)."""
    by_net: dict[str, set[str]] = {}
    for subnet in all_subnets:
        by_net.setdefault(subnet["network_id"], set()).add(subnet["id"])
    whole = sorted(n for n, ids in by_net.items() if ids <= used)
    part = sorted(n for n, ids in by_net.items() if ids & used and not ids <= used)
    return whole, part


_WHOLE = ("SELECT id, revision_number, binding_host_id FROM ports "
          "WHERE network_id IN ({nets}) AND binding_host_id NOT IN ({mine}) "
          "AND binding_host_id <> '' AND CAST(fixed_ips AS TEXT) <> '[]' AND " + WORKLOAD)
_PART = ("SELECT id, revision_number, binding_host_id, fixed_ips FROM ports "
         "WHERE network_id IN ({nets}) AND binding_host_id NOT IN ({mine}) "
         "AND binding_host_id <> '' AND " + WORKLOAD)


_NETWORK = ("SELECT id, revision_number, binding_host_id FROM ports WHERE network_id = {mark} "
            "AND binding_host_id <> '' AND CAST(fixed_ips AS TEXT) <> '[]' AND " + WORKLOAD)


_PORT_ROWS = ("SELECT id, revision_number, binding_host_id, network_id, fixed_ips, "
              "device_owner FROM ports WHERE id IN ({in})")
_SUBNET_COUNT = "SELECT COUNT(*) FROM subnets WHERE network_id = {mark}"
_USING = ("SELECT DISTINCT binding_host_id FROM ports WHERE network_id = {mark} "
          "AND binding_host_id <> '' AND CAST(fixed_ips AS TEXT) <> '[]' AND " + WORKLOAD)


class SharedReads:
    """What the compiles of several hosts on one transaction can share: each network's bound,
    addressed ports, by id, and the nodes host names resolve to.  Valid for that one
    transaction only (it is that transaction's view of the tables)."""

    def __init__(self) -> None:
        self._network_ports: dict[str, list[NeighbourRef]] = {}
        self._hosts: dict[str, tuple[str, HostAddress] | None] = {}
        self._ports: dict[str, Row] = {}
        self._using: dict[str, set[str] | None] = {}
        self._networks: dict[str, Row] = {}
        self.routers: dict[str, RouterIntent | None] = {}
        """Routers by id as ``presence`` read them (None: no such router)."""
        self._any_routers: bool | None = None
        self.attached: dict[str, bool] = {}
        """Subnet id -> whether a router has an interface on it (``presence``)."""

    def network_ports(self, txn: Transaction, network_id: str) -> list[NeighbourRef]:
        found = self._network_ports.get(network_id)
        if found is None:
            found = fetch(txn, _NETWORK.format(mark=marks(txn, 1)), [network_id])
            found.sort(key=itemgetter(0))
            self._network_ports[network_id] = found
        return found

    def port_rows(self, txn: Transaction, port_ids: Iterable[str]) -> dict[str, Row]:
        """Ports by id (those that exist) with id, revision_number, binding_host_id,
        network_id, fixed_ips and device_owner: what a delta decides neighbourhood from."""
        unknown = sorted(set(port_ids) - self._ports.keys())
        for port_id, revision, host, network_id, fixed, owner in fetch_in(txn, _PORT_ROWS,
                                                                          unknown):
            self._ports[port_id] = {"id": port_id, "revision_number": revision,
                                    "binding_host_id": host, "network_id": network_id,
                                    "fixed_ips": json_value(fixed), "device_owner": owner}
        return {p: self._ports[p] for p in port_ids if p in self._ports}

    def hosts_using(self, txn: Transaction, network_id: str) -> set[str] | None:
        """The ``binding:host_id`` of every addressed port of a network with one subnet (they
        are the hosts using that subnet); None for a network with several subnets."""
        if network_id not in self._using:
            subnets = fetch(txn, _SUBNET_COUNT.format(mark=marks(txn, 1)), [network_id])
            self._using[network_id] = (
                {row[0] for row in fetch(txn, _USING.format(mark=marks(txn, 1)), [network_id])}
                if subnets[0][0] == 1 else None)
        return self._using[network_id]

    def any_routers(self, txn: Transaction) -> bool:
        """Whether any router exists (if not, no host needs to look for one)."""
        if self._any_routers is None:
            self._any_routers = bool(fetch(txn, "SELECT id FROM routers LIMIT 1", []))
        return self._any_routers

    def networks(self, txn: Transaction, network_ids: Iterable[str]) -> dict[str, Row]:
        unknown = sorted(set(network_ids) - self._networks.keys())
        if unknown:
            self._networks.update({n["id"]: n for n in txn.select("networks", {"id": unknown})})
        return {n: self._networks[n] for n in network_ids if n in self._networks}

    def resolve(self, txn: Transaction, names: set[str]) -> dict[str, tuple[str, HostAddress]]:
        unknown = names - self._hosts.keys()
        if unknown:
            resolved = resolve_hosts(txn, unknown)
            self._hosts.update({name: resolved.get(name) for name in unknown})
        return {name: found for name in names if (found := self._hosts[name]) is not None}


def candidates(txn: Transaction, mine: list[str], whole: list[str], part: list[str],
                used: set[str], shared: SharedReads | None) -> list[NeighbourRef]:
    """(port id, revision, binding:host_id) of other hosts' ports in the host's subnets."""
    found: list[NeighbourRef] = []
    if whole and shared is not None:
        others = set(mine)
        for network_id in whole:
            found += [r for r in shared.network_ports(txn, network_id) if r[2] not in others]
    elif whole:
        sql = _WHOLE.format(nets=marks(txn, len(whole)), mine=marks(txn, len(mine)))
        found += fetch(txn, sql, [*whole, *mine])
    if part:
        sql = _PART.format(nets=marks(txn, len(part)), mine=marks(txn, len(mine)))
        for port_id, revision, host, fixed in fetch(txn, sql, [*part, *mine]):
            if any(ip["subnet_id"] in used for ip in json_value(fixed)):
                found.append((port_id, revision, host))
    return found


def neighbour_refs(txn: Transaction, node: Mapping[str, Any],
                   all_subnets: Iterable[Mapping[str, Any]], used: set[str],
                   shared: SharedReads | None = None
                   ) -> tuple[list[NeighbourRef], dict[str, HostAddress]]:
    """Every port bound to another registered node with a fixed IP in ``used``, by id, and
    the addresses of the nodes they name."""
    mine = host_keys(node)
    whole, part = covered_networks(all_subnets, used)
    found = candidates(txn, mine, whole, part, used, shared)
    named = {ref[2] for ref in found}
    resolved = (shared.resolve(txn, named) if shared is not None
                else resolve_hosts(txn, named))
    hosts = {name: address for name, (node_id, address) in resolved.items()
             if node_id != node["node_id"]}
    refs = found if len(hosts) == len(named) else [ref for ref in found if ref[2] in hosts]
    refs.sort(key=itemgetter(0))
    return refs, hosts


_NEIGHBOUR_ROWS = ("SELECT id, name, network_id, mac_address, revision_number, fixed_ips, "
                   "allowed_address_pairs FROM ports WHERE {column} IN ({{in}})")
BY_NETWORK = 500
"""From this many rows on, reading the networks' ports in index order beats looking each up."""


def neighbour_rows(txn: Transaction, port_ids: Sequence[str], network_ids: Iterable[str]
                   ) -> dict[str, Row]:
    """The rows of the neighbour ports (in these networks) whose entries must be serialized."""
    if len(port_ids) < BY_NETWORK:
        found = fetch_in(txn, _NEIGHBOUR_ROWS.format(column="id"), port_ids)
    else:
        wanted = set(port_ids)
        found = [row for row in fetch_in(txn, _NEIGHBOUR_ROWS.format(column="network_id"),
                                         network_ids) if row[0] in wanted]
    groups: dict[str, list[str]] = {row[0]: [] for row in found}
    for port_id, group_id in fetch_in(txn, _GROUPS, groups):
        groups[port_id].append(group_id)
    return {
        row[0]: {"id": row[0], "name": row[1], "network_id": row[2], "mac_address": row[3],
                 "revision_number": row[4], "fixed_ips": json_value(row[5]),
                 "allowed_address_pairs": json_value(row[6]),
                 "security_groups": sorted(groups[row[0]])}
        for row in found
    }


_GROUPS = "SELECT port_id, security_group_id FROM port_security_groups WHERE port_id IN ({in})"
