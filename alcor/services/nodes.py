"""Hosts: upstream Alcor's node registry (NodeInfo) -- register one or many, show, list by
field, update and deregister the nodes whose agents the data-plane manager programs.

A port names its host in ``binding:host_id`` by ``node_name`` (as upstream does) or by
``node_id``.  So that a name always means one node, ids and names are each unique and no
node's id may equal another node's name (a node's own id and name may be equal).  The database
enforces the first two; the third is checked here, so two registrations racing with crossed
names could both pass, and a name then resolves to the node whose ``node_id`` it is.

Deleting a node that ports are bound to is allowed.  The ports keep their binding, exactly as
ports bound before their host registered; they are set DOWN, no goal state holds them any
more (their host is unknown and no neighbour entry points at an unknown host), and they come
back when a node with that id or name registers again.  Refusing instead would leave an
operator unable to deregister a dead host without editing tenants' ports.

Every change appends an outbox record (resource_type ``node``, revision 0: nodes have no
revisions) whose detail carries the node's name and address, and on update the previous ones,
so placement finds the ports it hosts even after the node is gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alcor import errors
from alcor.db.store import Store, Transaction
from alcor.dpm import outbox
from alcor.timestamps import utcnow

Row = dict[str, Any]

NODE_TYPE = "node"
TABLE = "nodes"
FIELDS = ("node_id", "node_name", "local_ip", "mac_address", "veth", "server_port",
          "host_dvr_mac")
"""What a node is, as upstream's NodeInfo names it (and the API shows)."""


def view(row: Mapping[str, Any]) -> Row:
    """A node as clients see it."""
    return {name: row[name] for name in FIELDS}


def _record(txn: Transaction, row: Mapping[str, Any], operation: str,
            old: Mapping[str, Any] | None = None) -> None:
    detail: Row = {"node_name": row["node_name"], "local_ip": row["local_ip"]}
    if old is not None:
        detail["old_node_name"] = old["node_name"]
        detail["old_local_ip"] = old["local_ip"]
    outbox.append(txn, NODE_TYPE, {"id": row["node_id"], "revision_number": 0}, operation,
                  detail=detail)


def _claimed(items: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, str]]:
    """Each id and name the request claims -> (item index, field); refuses a value two
    items claim (one item may use the same value as its id and its name)."""
    claims: dict[str, tuple[int, str]] = {}
    for index, item in enumerate(items):
        for field in ("node_id", "node_name"):
            value = item[field]
            owner = claims.get(value)
            if owner is not None and owner[0] != index:
                raise errors.NodeAlreadyExists(field=field, value=value)
            claims.setdefault(value, (index, field))
    return claims


def _check_free(txn: Transaction, claims: Mapping[str, tuple[int, str]],
                exclude: str | None = None) -> None:
    """No stored node (other than ``exclude``) has one of the claimed values as id or name."""
    values = sorted(claims)
    taken = [
        row for column in ("node_id", "node_name")
        for row in txn.select(TABLE, {column: values}, columns=("node_id", "node_name"))
        if row["node_id"] != exclude
    ]
    for row in taken:
        for value in (row["node_id"], row["node_name"]):
            if value in claims:
                raise errors.NodeAlreadyExists(field=claims[value][1], value=value)


class NodeService:
    """Use cases of the host registry; each ``*_txn`` runs inside one transaction."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def create_txn(self, txn: Transaction, items: list[Row]) -> list[Row]:
        """Register every node or none (a bulk is atomic)."""
        claims = _claimed(items)
        _check_free(txn, claims)
        now = utcnow()
        rows = [{**view(item), "created_at": now, "updated_at": now} for item in items]
        txn.insert(TABLE, rows)
        for row in rows:
            _record(txn, row, outbox.CREATE)
        return [view(row) for row in rows]

    def get_txn(self, txn: Transaction, node_id: str) -> Row:
        return view(self._find(txn, node_id))

    def list_txn(self, txn: Transaction, filters: Mapping[str, Iterable[Any]]) -> list[Row]:
        where = {name: list(values) for name, values in filters.items()}
        return [view(row) for row in txn.select(TABLE, where, order_by=("node_id",))]

    def update_txn(self, txn: Transaction, node_id: str, changes: Row) -> Row:
        row = self._find(txn, node_id)
        values = {k: v for k, v in changes.items() if k in FIELDS and k != "node_id"}
        if values.get("node_name", row["node_name"]) != row["node_name"]:
            claims = _claimed([{"node_id": node_id, "node_name": values["node_name"]}])
            _check_free(txn, claims, exclude=node_id)
        values["updated_at"] = utcnow()
        txn.update(TABLE, {"node_id": node_id}, values)
        new = {**row, **values}
        _record(txn, new, outbox.UPDATE, old=row)
        return view(new)

    def delete_txn(self, txn: Transaction, node_id: str) -> None:
        row = self._find(txn, node_id)
        txn.delete(TABLE, {"node_id": node_id})
        txn.update("ports", {"binding:host_id": sorted({node_id, row["node_name"]})},
                   {"status": "DOWN"})
        _record(txn, row, outbox.DELETE)

    @staticmethod
    def _find(txn: Transaction, node_id: str) -> Row:
        found = txn.select(TABLE, {"node_id": node_id})
        if not found:
            raise errors.NodeNotFound(node_id=node_id)
        return found[0]
