"""The outbox: a change record appended in the same transaction as the resource change.

The data-plane manager drains it after commit; because the record commits with the change,
no committed change can be missed and no uncommitted one can leak.  Every detail carries
``committed_at`` (epoch seconds when the change was written, just before its commit): where a
port's provisioning latency starts.
"""

from __future__ import annotations

import time
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
            "detail": {**(detail or {}), "committed_at": time.time()},
            "created_at": utcnow(),
        },
    )


def append_many(
    txn: Transaction,
    resource_type: str,
    rows: Sequence[Mapping[str, Any]],
    operation: str,
    details: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Record many changes at once; ``details[i]``, if given, is row i's detail."""
    now = utcnow()
    at = time.time()
    extra = details if details is not None else [{}] * len(rows)
    txn.insert(
        "outbox",
        [
            {
                "resource_type": resource_type,
                "resource_id": row["id"],
                "operation": operation,
                "revision_number": row.get("revision_number", 0),
                "project_id": row.get("project_id", ""),
                "detail": {**detail, "committed_at": at},
                "created_at": now,
            }
            for row, detail in zip(rows, extra, strict=True)
        ],
    )

