"""The outbox: a change record appended in the same transaction as the resource change.

The data-plane manager drains it after commit; because the record commits with the change,
no committed change can be missed and no uncommitted one can leak.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alcor.db.store import Transaction
from alcor.timestamps import utcnow

CREATE = "create"
UPDATE = "update"
DELETE = "delete"


def append(
    txn: Transaction,
    resource_type: str,
    row: Mapping[str, Any],
    operation: str,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Record that ``row`` (a stored resource) was created, updated or deleted."""
    txn.insert(
        "outbox",
        {
            "resource_type": resource_type,
            "resource_id": row["id"],
            "operation": operation,
            "revision_number": row.get("revision_number", 0),
            "project_id": row.get("project_id", ""),
            "detail": dict(detail or {}),
            "created_at": utcnow(),
        },
    )


def append_many(
    txn: Transaction, resource_type: str, rows: Sequence[Mapping[str, Any]], operation: str
) -> None:
    now = utcnow()
    txn.insert(
        "outbox",
        [
            {
                "resource_type": resource_type,
                "resource_id": row["id"],
                "operation": operation,
                "revision_number": row.get("revision_number", 0),
                "project_id": row.get("project_id", ""),
                "detail": {},
                "created_at": now,
            }
            for row in rows
        ],
    )

