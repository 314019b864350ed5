"""Ports: MAC and fixed IP allocation, security group binding, updates and deletion."""

from __future__ import annotations

from typing import ClassVar

from alcor import errors
from alcor.db.store import Transaction
from alcor.services.resource import ResourceService


class PortService(ResourceService):
    table: ClassVar[str] = "ports"
    resource_type: ClassVar[str] = "port"
    not_found = errors.PortNotFound
    not_found_key = "port_id"


def delete_network_ports(txn: Transaction, network_id: str) -> None:
    """Delete the auto-deletable ports of a network that is being deleted."""
    for row in txn.select("ports", {"network_id": network_id}):
        txn.delete("tags", {"resource_id": row["id"]})
        txn.delete("ports", {"id": row["id"]})
