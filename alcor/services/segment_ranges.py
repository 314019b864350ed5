"""Network segment ranges (Neutron's ``network-segment-range`` extension, admin-only): the
VNIs tenant networks are given, per project or shared (``alcor.ipam.vni.tenant_vni``).

Only tunnel types allocate segmentation ids in Alcor (a VLAN network names its tag), so
ranges exist for ``vxlan`` and ``geneve``.  The configured default range (``IpamSettings``
``vni_min``..``vni_max``) shows as one read-only ``default`` range per tunnel type, a row kept
in step with the configuration whenever this service is used.  ``used`` maps each VNI of the
range held by a network to the network's project; ``available`` lists the free VNIs in
ascending order, at most ``AVAILABLE_SHOWN`` of them (the lowest) for a range with more free.
A range cannot be deleted, nor shrunk past a VNI in use, while networks hold VNIs inside it.
"""

from __future__ import annotations

import builtins
import uuid
from typing import Any, ClassVar

from alcor import errors
from alcor.config import IpamSettings
from alcor.context import RequestContext
from alcor.db.store import Store, Transaction
from alcor.ipam.vni import used_in
from alcor.query import ListQuery, Page
from alcor.services.resource import ResourceService, Row, stamp_new
from alcor.services.segments import TUNNEL_TYPES, require_admin
from alcor.timestamps import utcnow

MAX_VNI = 2**24 - 1
"""Largest VXLAN and Geneve VNI (24 bits)."""
AVAILABLE_SHOWN = 1024
"""Most free VNIs a range lists in ``available``."""
_DEFAULT_IDS = uuid.UUID("0b1c5c8e-5d2a-4c8e-9a57-6e5f2b7c1d30")
"""Namespace of the default ranges' ids (one fixed id per network type)."""


def default_range_id(network_type: str) -> str:
    return str(uuid.uuid5(_DEFAULT_IDS, network_type))


def _free(low: int, high: int, used: set[int], limit: int) -> list[int]:
    """The lowest ``limit`` ids of [low, high] not in ``used``."""
    out: list[int] = []
    vni = low
    while vni <= high and len(out) < limit:
        if vni not in used:
            out.append(vni)
        vni += 1
    return out


def _recorded(row: Row) -> Row:
    return {**row, "project_id": row["project_id"] or ""}


def check_bounds(network_type: str, minimum: int, maximum: int) -> None:
    """Neutron's tunnel range check: both ends valid VNIs, the end not before the start.

    Raises:
        NetworkTunnelRangeError: either end is not a VNI, or maximum < minimum.
    """
    text = f"{minimum}:{maximum}"
    for vni in (minimum, maximum):
        if not 1 <= vni <= MAX_VNI:
            raise errors.NetworkTunnelRangeError(
                tunnel_range=text, error=f"{vni} is not a valid {network_type} identifier")
    if maximum < minimum:
        raise errors.NetworkTunnelRangeError(
            tunnel_range=text, error="End of tunnel range is less than start of tunnel range")


class NetworkSegmentRangeService(ResourceService):
    table: ClassVar[str] = "network_segment_ranges"
    resource_type: ClassVar[str] = "network_segment_range"
    not_found = errors.NetworkSegmentRangeNotFound
    not_found_key = "range_id"

    def __init__(self, store: Store, ipam: IpamSettings) -> None:
        super().__init__(store)
        self.ipam = ipam

    # --- the default ranges ------------------------------------------------------------------

    def _defaults(self) -> dict[str, tuple[int, int]]:
        return {default_range_id(t): (self.ipam.vni_min, self.ipam.vni_max)
                for t in TUNNEL_TYPES}

    def _defaults_current(self, txn: Transaction) -> bool:
        rows = txn.select(self.table, {"default": True},
                          columns=("id", "minimum", "maximum"))
        return {r["id"]: (r["minimum"], r["maximum"]) for r in rows} == self._defaults()

    def sync_defaults(self, txn: Transaction) -> None:
        """Make the default ranges' rows match the configuration."""
        if self._defaults_current(txn):
            return
        wanted = self._defaults()
        txn.delete(self.table, {"default": True, "id": [
            i for i in txn.scalars(self.table, "id", {"default": True}) if i not in wanted]})
        for network_type in TUNNEL_TYPES:
            range_id = default_range_id(network_type)
            low, high = wanted[range_id]
            row = txn.get(self.table, range_id)
            if row is None:
                txn.insert(self.table, stamp_new({
                    "id": range_id, "project_id": None, "name": "", "description": "",
                    "default": True, "shared": True, "network_type": network_type,
                    "physical_network": None, "minimum": low, "maximum": high}))
            elif (row["minimum"], row["maximum"]) != (low, high):
                txn.update(self.table, {"id": range_id}, {
                    "minimum": low, "maximum": high,
                    "revision_number": row["revision_number"] + 1, "updated_at": utcnow()})

    def _synced(self) -> None:
        if not self.store.read(self._defaults_current):
            self.store.write(self.sync_defaults)

    # --- reads ---------------------------------------------------------------------------

    def visible(self, ctx: RequestContext, row: Any) -> bool:
        return ctx.is_admin

    def list(self, ctx: RequestContext, query: ListQuery) -> Page:
        if not ctx.is_admin:
            return Page(items=[])
        self._synced()
        return super().list(ctx, query)

    def get(self, ctx: RequestContext, id_: str) -> Row:
        if ctx.is_admin:
            self._synced()
        return super().get(ctx, id_)

    def decorate(self, txn: Transaction, rows: builtins.list[Row]) -> builtins.list[Row]:
        for row in rows:
            used = used_in(txn, row["network_type"], row["minimum"], row["maximum"])
            row["used"] = {str(vni): project for vni, project in sorted(used.items())}
            row["available"] = _free(row["minimum"], row["maximum"], set(used),
                                     AVAILABLE_SHOWN)
        return rows

    # --- writes --------------------------------------------------------------------------

    # A shared range belongs to no project; its outbox records name the empty project.

    def after_create(
        self, txn: Transaction, ctx: RequestContext, rows: builtins.list[Row]
    ) -> None:
        super().after_create(txn, ctx, [_recorded(r) for r in rows])

    def save(self, txn: Transaction, row: Row, values: Row) -> Row:
        return {**super().save(txn, _recorded(row), values), "project_id": row["project_id"]}

    def remove(self, txn: Transaction, row: Row) -> None:
        super().remove(txn, _recorded(row))

    def _check_overlap(self, txn: Transaction, network_type: str, minimum: int, maximum: int,
                       range_id: str | None = None) -> None:
        """Refuse bounds that overlap another range of the type.  Range writes of one type
        take turns on its default range's row (PostgreSQL), so two overlapping ranges
        written at once cannot both pass."""
        txn.select(self.table, {"id": default_range_id(network_type)}, columns=("id",),
                   for_update=True)
        ranges = txn.select(self.table, {"network_type": network_type, "default": False},
                            columns=("id", "minimum", "maximum"), order_by=("id",))
        overlaps = [r["id"] for r in ranges if r["id"] != range_id
                    and minimum <= r["maximum"] and maximum >= r["minimum"]]
        if overlaps:
            raise errors.NetworkSegmentRangeOverlaps(range_id=", ".join(overlaps))

    def create_txn(
        self, txn: Transaction, ctx: RequestContext, items: builtins.list[Row]
    ) -> builtins.list[Row]:
        require_admin(ctx, "create_network_segment_range")
        self.sync_defaults(txn)
        return super().create_txn(txn, ctx, items)

    def create_one(self, txn: Transaction, ctx: RequestContext, item: Row) -> Row:
        network_type = item["network_type"]
        if network_type not in TUNNEL_TYPES:
            raise errors.NetworkSegmentRangeNetTypeNotSupported(type=network_type)
        check_bounds(network_type, item["minimum"], item["maximum"])
        self._check_overlap(txn, network_type, item["minimum"], item["maximum"])
        row = stamp_new({
            **item, "default": False, "physical_network": None,
            "project_id": None if item["shared"] else item["project_id"],
        })
        txn.insert(self.table, row)
        return row

    def _locked(self, txn: Transaction, id_: str) -> None:
        """Lock the range's row (PostgreSQL) before it is checked against the networks, so
        that a network taking a VNI from it either commits first or sees the change."""
        self.sync_defaults(txn)
        txn.select(self.table, {"id": id_}, columns=("id",), for_update=True)

    def update_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, changes: Row,
        expected_revision: int | None,
    ) -> Row:
        require_admin(ctx, "update_network_segment_range")
        self._locked(txn, id_)
        return super().update_txn(txn, ctx, id_, changes, expected_revision)

    def before_update(self, txn: Transaction, ctx: RequestContext, row: Row, changes: Row) -> Row:
        if row["default"]:
            raise errors.NetworkSegmentRangeDefaultReadOnly(range_id=row["id"])
        minimum: int = changes["minimum"] if "minimum" in changes else row["minimum"]
        maximum: int = changes["maximum"] if "maximum" in changes else row["maximum"]
        used = used_in(txn, row["network_type"], row["minimum"], row["maximum"])
        if used and (minimum > min(used) or maximum < max(used)):
            raise errors.NetworkSegmentRangeReferencedByProject(range_id=row["id"])
        check_bounds(row["network_type"], minimum, maximum)
        self._check_overlap(txn, row["network_type"], minimum, maximum, row["id"])
        return changes

    def delete_txn(
        self, txn: Transaction, ctx: RequestContext, id_: str, expected_revision: int | None
    ) -> None:
        require_admin(ctx, "delete_network_segment_range")
        self._locked(txn, id_)
        super().delete_txn(txn, ctx, id_, expected_revision)

    def before_delete(self, txn: Transaction, ctx: RequestContext, row: Row) -> None:
        if row["default"]:
            raise errors.NetworkSegmentRangeDefaultReadOnly(range_id=row["id"])
        if used_in(txn, row["network_type"], row["minimum"], row["maximum"]):
            raise errors.NetworkSegmentRangeReferencedByProject(range_id=row["id"])
