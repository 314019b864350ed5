"""Network IP availability (Neutron's ``network-ip-availability`` extension, admin-only):
per network and per subnet, how many addresses the allocation pools hold (``total_ips``) and
how many are allocated (``used_ips``).

A subnet's total is the size of its allocation pools, or of its whole CIDR when it has none
(Neutron's rule); IPv6 totals are exact integers of any size.  Used addresses are the rows of
``ip_allocations``, whatever their port.  Networks come in id order, each with its subnets in
creation order.  Non-admins see nothing: an empty list, and ``NetworkNotFound`` for one
network.
"""

from __future__ import annotations

import builtins
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alcor import errors
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction

Row = dict[str, Any]

CHUNK = 1000
"""Most subnet ids counted in one statement (databases cap bound parameters)."""


@dataclass(frozen=True, slots=True)
class AvailabilityQuery:
    """Filters of a list request; a list means any of its values."""

    network_ids: list[str] = field(default_factory=list)
    network_names: list[str] = field(default_factory=list)
    project_ids: list[str] = field(default_factory=list)
    ip_version: int | None = None
    """Only subnets of this version, and only networks that have one."""


def pool_total(subnet: Mapping[str, Any]) -> int:
    """Addresses the subnet's allocation pools hold; its whole CIDR when it has none."""
    pools = subnet["allocation_pools"]
    if not pools:
        return int(ipaddress.ip_network(subnet["cidr"], strict=False).num_addresses)
    return sum(int(ipaddress.ip_address(p["end"])) - int(ipaddress.ip_address(p["start"])) + 1
               for p in pools)


def used_counts(txn: Transaction, subnet_ids: Sequence[str]) -> dict[str, int]:
    """Allocated addresses per subnet (subnets without any are left out)."""
    mark = "?" if txn.dialect == "sqlite" else "%s"
    counts: dict[str, int] = {}
    cursor: Any = txn.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for start in range(0, len(subnet_ids), CHUNK):
            part = list(subnet_ids[start:start + CHUNK])
            cursor.execute(
                'SELECT "subnet_id", COUNT(*) FROM "ip_allocations" WHERE "subnet_id" IN '
                f'({", ".join([mark] * len(part))}) GROUP BY "subnet_id"', part)
            counts.update({sid: int(n) for sid, n in cursor.fetchall()})
    finally:
        cursor.close()
    return counts


def _subnet_entry(subnet: Row, used: int) -> Row:
    return {"subnet_id": subnet["id"], "subnet_name": subnet["name"], "cidr": subnet["cidr"],
            "ip_version": subnet["ip_version"], "total_ips": pool_total(subnet),
            "used_ips": used}


def _network_entry(network: Row, subnets: list[Row]) -> Row:
    return {"network_id": network["id"], "network_name": network["name"],
            "project_id": network["project_id"], "tenant_id": network["project_id"],
            "subnet_ip_availability": subnets,
            "total_ips": sum(s["total_ips"] for s in subnets),
            "used_ips": sum(s["used_ips"] for s in subnets)}


class IpAvailabilityService:
    """Reads only; each public method is one snapshot of the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def list(self, ctx: RequestContext, query: AvailabilityQuery) -> builtins.list[Row]:
        if not ctx.is_admin:
            return []
        return self.store.read(self._list_txn, query)

    def get(self, ctx: RequestContext, network_id: str) -> Row:
        found = self.list(ctx, AvailabilityQuery(network_ids=[network_id]))
        if not found:
            raise errors.NetworkNotFound(net_id=network_id)
        return found[0]

    def _list_txn(self, txn: Transaction, query: AvailabilityQuery) -> builtins.list[Row]:
        where: dict[str, Any] = {}
        if query.network_ids:
            where["id"] = query.network_ids
        if query.network_names:
            where["name"] = query.network_names
        if query.project_ids:
            where["project_id"] = query.project_ids
        networks = txn.select("networks", where, columns=("id", "name", "project_id"),
                              order_by=("id",))
        if not networks:
            return []
        subnets = self._subnets(txn, [n["id"] for n in networks] if where else None,
                                query.ip_version)
        used = used_counts(txn, [s["id"] for s in subnets])
        by_network: dict[str, builtins.list[Row]] = {n["id"]: [] for n in networks}
        for subnet in subnets:
            entry = _subnet_entry(subnet, used.get(subnet["id"], 0))
            by_network[subnet["network_id"]].append(entry)
        return [_network_entry(n, by_network[n["id"]]) for n in networks
                if by_network[n["id"]] or query.ip_version is None]

    @staticmethod
    def _subnets(txn: Transaction, network_ids: builtins.list[str] | None,
                 ip_version: int | None) -> builtins.list[Row]:
        """Subnets of these networks (of every network for None), in creation order."""
        where: dict[str, Any] = {} if ip_version is None else {"ip_version": ip_version}
        columns = ("id", "name", "network_id", "cidr", "ip_version", "allocation_pools",
                   "created_at")
        if network_ids is None:
            rows = txn.select("subnets", where, columns=columns)
        else:
            rows = []
            for start in range(0, len(network_ids), CHUNK):
                part = network_ids[start:start + CHUNK]
                rows += txn.select("subnets", {**where, "network_id": part}, columns=columns)
        return sorted(rows, key=lambda r: (r["created_at"], r["id"]))
