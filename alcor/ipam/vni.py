"""VNI allocation for tenant networks, race-free through the networks table's unique
(network_type, segmentation_id) constraint: pick a free candidate, insert, retry on a lost race.

Where a tenant network's VNI comes from (``tenant_vni``): the project's own network segment
ranges of that type, else the shared ranges, else the configured default range less the
ranges other projects own.  Each tier is tried only when the one before has no free VNI; the
ranges a VNI is taken from are locked (``FOR UPDATE`` on PostgreSQL) so that a concurrent
shrink or delete of the range waits and then sees the network.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Sequence
from typing import Any

from alcor import errors
from alcor.db.store import Transaction

SMALL_RANGE = 4096
"""Ranges up to this size are searched exhaustively; larger ones by random probes first."""
PROBES = 8
_RANDOM = random.SystemRandom()

Interval = tuple[int, int]
"""An inclusive [low, high] run of segmentation ids."""

RANGES = "network_segment_ranges"


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering exactly the same ids (empty ones dropped)."""
    out: list[Interval] = []
    for low, high in sorted(i for i in intervals if i[0] <= i[1]):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def subtract(interval: Interval, holes: Iterable[Interval]) -> list[Interval]:
    """``interval`` less every id of ``holes``."""
    low, high = interval
    out: list[Interval] = []
    for h_low, h_high in merge(holes):
        if h_high < low or h_low > high:
            continue
        if h_low > low:
            out.append((low, h_low - 1))
        low = max(low, h_high + 1)
    if low <= high:
        out.append((low, high))
    return out


def used_in(txn: Transaction, network_type: str, low: int, high: int) -> dict[int, str]:
    """Segmentation ids in [low, high] that networks of ``network_type`` hold -> their project
    (one range scan of the unique constraint's index)."""
    mark = "?" if txn.dialect == "sqlite" else "%s"
    sql = ('SELECT "segmentation_id", "project_id" FROM "networks" WHERE "network_type" = '
           f'{mark} AND "segmentation_id" >= {mark} AND "segmentation_id" <= {mark}')
    cursor: Any = txn.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, (network_type, low, high))
        return {int(vni): project for vni, project in cursor.fetchall()}
    finally:
        cursor.close()


def _nth(intervals: Sequence[Interval], index: int) -> int:
    """The ``index``-th id of the union of disjoint intervals."""
    for low, high in intervals:
        size = high - low + 1
        if index < size:
            return low + index
        index -= size
    raise IndexError(index)


def _nth_free(low: int, high: int, used: Sequence[int], index: int) -> int:
    """The ``index``-th id of [low, high] not in ``used`` (sorted, all within the range)."""
    previous = low - 1
    for taken in [*used, high + 1]:
        gap = taken - previous - 1
        if index < gap:
            return previous + 1 + index
        index -= gap
        previous = taken
    raise IndexError(index)


def _probe(txn: Transaction, intervals: Sequence[Interval], size: int,
           network_type: str) -> int | None:
    candidates = sorted({_nth(intervals, _RANDOM.randrange(size)) for _ in range(PROBES)})
    taken = set(txn.scalars("networks", "provider:segmentation_id", {
        "provider:network_type": network_type, "provider:segmentation_id": candidates}))
    free = [c for c in candidates if c not in taken]
    return free[secrets.randbelow(len(free))] if free else None


def pick_vni(txn: Transaction, intervals: Iterable[Interval], network_type: str) -> int | None:
    """A free id of ``network_type`` in the union of ``intervals``, chosen at random (so
    concurrent creators rarely collide), or None when every id there is taken."""
    runs = merge(intervals)
    size = sum(high - low + 1 for low, high in runs)
    if size <= 0:
        return None
    if size > SMALL_RANGE and (vni := _probe(txn, runs, size, network_type)) is not None:
        return vni
    used = [sorted(used_in(txn, network_type, low, high)) for low, high in runs]
    free = [high - low + 1 - len(u) for (low, high), u in zip(runs, used, strict=True)]
    if sum(free) <= 0:
        return None
    index = secrets.randbelow(sum(free))
    for (low, high), taken, count in zip(runs, used, free, strict=True):
        if index < count:
            return _nth_free(low, high, taken, index)
        index -= count
    raise AssertionError("unreachable")


def allocate_vni(txn: Transaction, low: int, high: int, network_type: str = "vxlan") -> int:
    """A VNI in [low, high] that no network of ``network_type`` holds.

    Raises:
        NoNetworkAvailable: every VNI of the range is taken.
    """
    vni = pick_vni(txn, [(low, high)], network_type)
    if vni is None:
        raise errors.NoNetworkAvailable()
    return vni


def _locked(txn: Transaction, ranges: list[dict[str, Any]]) -> list[Interval]:
    """The ranges' current bounds, their rows locked until the transaction ends (a range
    deleted meanwhile is gone)."""
    if not ranges:
        return []
    rows = txn.select(RANGES, {"id": sorted(r["id"] for r in ranges)},
                      columns=("minimum", "maximum"), for_update=True)
    return [(r["minimum"], r["maximum"]) for r in rows]


def tenant_vni(txn: Transaction, project_id: str, network_type: str, default: Interval) -> int:
    """A free VNI for a tenant network of ``project_id``: from its own ranges, else the
    shared ones, else the default range less other projects' ranges.

    Raises:
        NoNetworkAvailable: no tier has a free VNI.
    """
    ranges = txn.select(RANGES, {"network_type": network_type, "default": False},
                        columns=("id", "project_id", "shared", "minimum", "maximum"))
    own = [r for r in ranges if not r["shared"] and r["project_id"] == project_id]
    shared = [r for r in ranges if r["shared"]]
    others = [(r["minimum"], r["maximum"]) for r in ranges
              if not r["shared"] and r["project_id"] != project_id]
    for tier in (own, shared):
        if tier and (vni := pick_vni(txn, _locked(txn, tier), network_type)) is not None:
            return vni
    vni = pick_vni(txn, subtract(default, others), network_type)
    if vni is None:
        raise errors.NoNetworkAvailable()
    return vni


def vni_in_use(txn: Transaction, vni: int, network_type: str = "vxlan") -> bool:
    return txn.exists(
        "networks", {"provider:network_type": network_type, "provider:segmentation_id": vni}
    )
