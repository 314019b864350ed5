"""Segments (Neutron's ``segment`` extension, admin-only) and the provider segment every
network is made with.

An Alcor network has at most one segment: the data plane carries a network on exactly one
VXLAN VNI (or VLAN tag), so a second segment (routed or multi-segment provider networks) would
have no meaning and is refused.  The segment row mirrors the network's ``provider:*``
attributes: creating a network creates its segment, deleting the segment of a network without
ports leaves the network without one (its ``provider:*`` attributes read null, its ports, if
any are added, reach nobody) until a new segment is created for it, which re-programs the
network's hosts.  Segment attributes other than name and description never change.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from typing import Any, ClassVar

from alcor import errors
from alcor.config import IpamSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.ipam.vni import tenant_vni, vni_in_use
from alcor.query import ListQuery, Page
from alcor.services.resource import ResourceService, Row, new_id, stamp_new
from alcor.timestamps import utcnow

TUNNEL_TYPES = ("vxlan", "geneve")
"""Network types whose segmentation id is a VNI handed out by ``alcor.ipam.vni``."""
VLAN_TAGS = (1, 4094)
PROVIDER = ("provider:network_type", "provider:physical_network", "provider:segmentation_id")


@dataclass(frozen=True, slots=True)
class Segment:
    """A checked provider segment: what a network's ``provider:*`` attributes hold."""

    network_type: str
    physical_network: str | None
    segmentation_id: int | None

    def provider(self) -> Row:
        return dict(zip(PROVIDER, (self.network_type, self.physical_network,
                                   self.segmentation_id), strict=True))


def checked_segment(
    txn: Transaction, ipam: IpamSettings, project_id: str, network_type: str,
    physical_network: str | None, segmentation_id: int | None,
) -> Segment:
    """Validate a segment for a network of ``project_id``; a tunnel segment without a
    segmentation id gets a free VNI from the project's ranges (``tenant_vni``).

    Raises:
        InvalidInput: the attributes do not fit the type.
        TunnelIdInUse: the requested VNI is taken.
        NoNetworkAvailable: no VNI is free.
    """
    if network_type in TUNNEL_TYPES:
        if physical_network:
            raise errors.InvalidInput(
                error_message=f"provider:physical_network specified for {network_type} network")
        if segmentation_id is None:
            segmentation_id = tenant_vni(txn, project_id, network_type,
                                         (ipam.vni_min, ipam.vni_max))
        elif vni_in_use(txn, segmentation_id, network_type):
            raise errors.TunnelIdInUse(tunnel_id=segmentation_id)
    elif network_type == "vlan":
        if segmentation_id is None or not VLAN_TAGS[0] <= segmentation_id <= VLAN_TAGS[1]:
            raise errors.InvalidInput(
                error_message="segmentation_id must be a VLAN tag between 1 and 4094")
    elif segmentation_id is not None:
        raise errors.InvalidInput(
            error_message=f"segmentation_id specified for {network_type} network")
    return Segment(network_type, physical_network or None, segmentation_id)


def insert_network_segments(txn: Transaction, networks: list[Row]) -> None:
    """Store the provider segment of each network just inserted."""
    txn.insert("segments", [{
        "id": new_id(),
        "project_id": network["project_id"],
        "network_id": network["id"],
        "name": None,
        "description": None,
        "network_type": network["provider:network_type"],
        "physical_network": network["provider:physical_network"],
        "segmentation_id": network["provider:segmentation_id"],
        "revision_number": 0,
        "created_at": network["created_at"],
        "updated_at": network["created_at"],
    } for network in networks])


def segmentless(txn: Transaction, network_ids: list[str]) -> set[str]:
    """Those of ``network_ids`` that have no segment."""
    if not network_ids:
        return set()
    return set(network_ids) - set(txn.scalars("segments", "network_id",
                                              {"network_id": network_ids}))


def require_admin(ctx: RequestContext, action: str) -> None:
    """Neutron's default policy: ``action`` is ``rule:admin_only``."""
    if not ctx.is_admin:
        raise errors.PolicyNotAuthorized(action=f"rule:{action}")


class SegmentService(ResourceService):
    table: ClassVar[str] = "segments"
    resource_type: ClassVar[str] = "segment"
    not_found = errors.SegmentNotFound
    not_found_key = "segment_id"

    def __init__(self, store: Store, ipam: IpamSettings) -> None:
        super().__init__(store)
        self.ipam = ipam

    def visible(self, ctx: RequestContext, row: Any) -> bool:
        return ctx.is_admin

    def list(self, ctx: RequestContext, query: ListQuery) -> Page:
        if not ctx.is_admin:
            return Page(items=[])
        return super().list(ctx, query)

    def create_txn(
        self, txn: Transaction, ctx: RequestContext, items: builtins.list[Row]
    ) -> builtins.list[Row]:
        require_admin(ctx, "create_segment")
        return super().create_txn(txn, ctx, items)

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        network = txn.get("networks", item["network_id"])
        if network is None:
            raise errors.NetworkNotFound(net_id=item["network_id"])
        existing = txn.scalars(self.table, "id", {"network_id": network["id"]})
        if existing:
            raise errors.InvalidInput(error_message=(
                f"network {network['id']} already has segment {existing[0]}: an Alcor network "
                "has one segment (multi-segment networks have no data-plane meaning here)"))
        segment = checked_segment(
            txn, self.ipam, network["project_id"], item["network_type"],
            item.get("physical_network"), item.get("segmentation_id"))
        row = stamp_new({
            "project_id": network["project_id"], "network_id": network["id"],
            "name": item.get("name"), "description": item.get("description"),
            "network_type": segment.network_type,
            "physical_network": segment.physical_network,
            "segmentation_id": segment.segmentation_id,
        })
        del row["tags"]
        txn.insert(self.table, row)
        _retarget(txn, network, segment.provider())
        return row

    def update_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, changes: Row,
        expected_revision: int | None,
    ) -> Row:
        require_admin(ctx, "update_segment")
        return super().update_txn(txn, ctx, id_, changes, expected_revision)

    def delete_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, expected_revision: int | None
    ) -> None:
        require_admin(ctx, "delete_segment")
        super().delete_txn(txn, ctx, id_, expected_revision)

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        ports = txn.count("ports", {"network_id": row["network_id"]})
        if ports:
            raise errors.SegmentInUse(segment_id=row["id"],
                                      reason=f"The segment is still bound with {ports} port(s)")
        subnets = txn.scalars("subnets", "id", {"segment_id": row["id"]})
        if subnets:
            raise errors.SegmentInUse(
                segment_id=row["id"],
                reason=f"The segment is still associated with subnet(s) {', '.join(subnets)}")
        network = txn.get("networks", row["network_id"])
        if network is not None:
            _retarget(txn, network, {"provider:physical_network": None,
                                     "provider:segmentation_id": None})


def _retarget(txn: Transaction, network: Row, provider: Row) -> None:
    """Give a network new ``provider:*`` values: a new revision, and an outbox record so that
    its hosts are programmed with the new segment."""
    values = {**provider, "revision_number": network["revision_number"] + 1,
              "updated_at": utcnow()}
    txn.update("networks", {"id": network["id"]}, values)
    outbox.append(txn, "network", {**network, **values}, outbox.UPDATE)
