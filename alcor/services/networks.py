"""Networks (VPCs): their provider segment on create (a VNI from the project's segment
ranges, ``alcor.services.segments``), subnets as a derived attribute, and deletion that takes
subnets and DHCP ports along but refuses while other ports remain."""

from __future__ import annotations

from typing import Any, ClassVar

from alcor import errors
from alcor.config import IpamSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.query import Sharing
from alcor.services.ports import delete_network_ports
from alcor.services.resource import ResourceService, Row, stamp_new
from alcor.services.segments import (
    PROVIDER,
    TUNNEL_TYPES,
    checked_segment,
    insert_network_segments,
    segmentless,
)
from alcor.services.subnets import delete_network_subnets

AUTO_DELETE_OWNERS = ("network:dhcp",)
"""Ports that go with their network instead of keeping it in use."""


class NetworkService(ResourceService):
    table: ClassVar[str] = "networks"
    resource_type: ClassVar[str] = "network"
    not_found = errors.NetworkNotFound
    not_found_key = "net_id"
    sharing = Sharing(columns=("shared", "router:external"))

    def __init__(self, store: Store, ipam: IpamSettings) -> None:
        super().__init__(store)
        self.ipam = ipam

    def visible(self, ctx: RequestContext, row: Any) -> bool:
        return ctx.is_admin or row["project_id"] == ctx.project_id or row["shared"] or bool(
            row["router:external"]
        )

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        segment = checked_segment(
            txn, self.ipam, item["project_id"], item.get("provider:network_type") or "vxlan",
            item.get("provider:physical_network"), item.get("provider:segmentation_id"))
        mtu = item.get("mtu")
        if mtu is None:
            mtu = self.ipam.network_mtu if segment.network_type in TUNNEL_TYPES else 1500
        row = stamp_new(item)
        row.update({"status": "ACTIVE", "mtu": mtu, **segment.provider()})
        txn.insert(self.table, row)
        insert_network_segments(txn, [row])
        return row

    def decorate(self, txn: Transaction, rows: list[Row]) -> list[Row]:
        if not rows:
            return rows
        by_net: dict[str, list[str]] = {r["id"]: [] for r in rows}
        for sub in txn.select("subnets", {"network_id": list(by_net)},
                              columns=("id", "network_id"), order_by=("created_at", "id")):
            by_net[sub["network_id"]].append(sub["id"])
        for r in rows:
            r["subnets"] = by_net[r["id"]]
        bare = {r["id"]: r for r in rows if r["provider:segmentation_id"] is None}
        for network_id in segmentless(txn, list(bare)):
            bare[network_id].update(dict.fromkeys(PROVIDER))
        return rows

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        """A network with router gateways on it stays external (ExternalNetworkInUse)."""
        if (row["router:external"] and changes.get("router:external") is False
                and txn.exists("ports", {"network_id": row["id"],
                                         "device_owner": "network:router_gateway"})):
            raise errors.ExternalNetworkInUse(net_id=row["id"])
        return changes

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        owners = set(txn.scalars("ports", "device_owner", {"network_id": row["id"]}))
        if owners - set(AUTO_DELETE_OWNERS):
            raise errors.NetworkInUse(net_id=row["id"])
        delete_network_ports(txn, row["id"])
        delete_network_subnets(txn, row["id"])
