"""Networks (VPCs): VNI allocation on create, subnets as a derived attribute, and deletion
that takes subnets and DHCP ports along but refuses while other ports remain."""

from __future__ import annotations

from typing import Any, ClassVar

from alcor import errors
from alcor.config import IpamSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.ipam.vni import allocate_vni, vni_in_use
from alcor.services.ports import delete_network_ports
from alcor.services.resource import ResourceService, Row, stamp_new
from alcor.services.subnets import delete_network_subnets

AUTO_DELETE_OWNERS = ("network:dhcp",)
"""Ports that go with their network instead of keeping it in use."""

TUNNEL_TYPES = ("vxlan", "geneve")


class NetworkService(ResourceService):
    table: ClassVar[str] = "networks"
    resource_type: ClassVar[str] = "network"
    not_found = errors.NetworkNotFound
    not_found_key = "net_id"

    def __init__(self, store: Store, ipam: IpamSettings) -> None:
        super().__init__(store)
        self.ipam = ipam

    def visible(self, ctx: RequestContext, row: Any) -> bool:
        return ctx.is_admin or row["project_id"] == ctx.project_id or row["shared"] or bool(
            row["router:external"]
        )

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        net_type = item.get("provider:network_type") or "vxlan"
        seg_id = item.get("provider:segmentation_id")
        if net_type in TUNNEL_TYPES:
            if item.get("provider:physical_network"):
                raise errors.InvalidInput(
                    error_message=f"provider:physical_network specified for {net_type} network"
                )
            if seg_id is None:
                seg_id = allocate_vni(txn, self.ipam.vni_min, self.ipam.vni_max, net_type)
            elif vni_in_use(txn, seg_id, net_type):
                raise errors.TunnelIdInUse(tunnel_id=seg_id)
        elif net_type == "vlan":
            if seg_id is None or not 1 <= seg_id <= 4094:
                raise errors.InvalidInput(
                    error_message="segmentation_id must be a VLAN tag between 1 and 4094"
                )
        elif seg_id is not None:
            raise errors.InvalidInput(
                error_message=f"segmentation_id specified for {net_type} network"
            )
        mtu = item.get("mtu")
        if mtu is None:
            mtu = self.ipam.network_mtu if net_type in TUNNEL_TYPES else 1500
        row = stamp_new(item)
        row.update({
            "status": "ACTIVE",
            "mtu": mtu,
            "provider:network_type": net_type,
            "provider:segmentation_id": seg_id,
            "provider:physical_network": item.get("provider:physical_network"),
        })
        txn.insert(self.table, row)
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
        return rows

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        return changes

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        owners = set(txn.scalars("ports", "device_owner", {"network_id": row["id"]}))
        if owners - set(AUTO_DELETE_OWNERS):
            raise errors.NetworkInUse(net_id=row["id"])
        delete_network_ports(txn, row["id"])
        delete_network_subnets(txn, row["id"])
