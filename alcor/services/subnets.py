"""Subnets: CIDR, gateway and pool validation, overlap checks, and deletion rules."""

from __future__ import annotations

from typing import ClassVar

from alcor import errors
from alcor.db.store import Transaction
from alcor.services.resource import ResourceService


class SubnetService(ResourceService):
    table: ClassVar[str] = "subnets"
    resource_type: ClassVar[str] = "subnet"
    not_found = errors.SubnetNotFound
    not_found_key = "subnet_id"


def delete_network_subnets(txn: Transaction, network_id: str) -> None:
    """Delete every subnet of a network that is being deleted (its ports are gone already)."""
    for row in txn.select("subnets", {"network_id": network_id}):
        txn.delete("tags", {"resource_id": row["id"]})
        txn.delete("subnets", {"id": row["id"]})
