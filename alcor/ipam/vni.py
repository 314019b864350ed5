"""VXLAN VNI allocation for tenant networks, race-free through the networks table's unique
(network_type, segmentation_id) constraint: pick a free candidate, insert, retry on a lost race."""

from __future__ import annotations

import random
import secrets

from alcor import errors
from alcor.db.store import Transaction

SMALL_RANGE = 4096
"""Ranges up to this size are searched exhaustively; larger ones by random probes first."""
PROBES = 8
_RANDOM = random.SystemRandom()


def allocate_vni(txn: Transaction, low: int, high: int, network_type: str = "vxlan") -> int:
    """A VNI in [low, high] that no network of ``network_type`` holds.

    Raises:
        NoNetworkAvailable: every VNI of the range is taken.
    """
    size = high - low + 1
    where = {"provider:network_type": network_type}
    if size > SMALL_RANGE:
        candidates = sorted({low + _RANDOM.randrange(size) for _ in range(PROBES)})
        taken = set(txn.scalars("networks", "provider:segmentation_id",
                                {**where, "provider:segmentation_id": candidates}))
        free = [c for c in candidates if c not in taken]
        if free:
            return free[secrets.randbelow(len(free))]
    used = {
        v for v in txn.scalars("networks", "provider:segmentation_id", where)
        if v is not None and low <= v <= high
    }
    if size <= 0 or len(used) >= size:
        raise errors.NoNetworkAvailable()
    start = secrets.randbelow(size)
    for offset in range(size):
        vni = low + (start + offset) % size
        if vni not in used:
            return vni
    raise errors.NoNetworkAvailable()


def vni_in_use(txn: Transaction, vni: int, network_type: str = "vxlan") -> bool:
    return txn.exists(
        "networks", {"provider:network_type": network_type, "provider:segmentation_id": vni}
    )
