"""The reconciler: what a periodic pass (and a controller's start) finds lagging.

A pass reads, in one snapshot (``survey``):

- hosts whose generation is ahead of their acknowledged one (a push failed, was lost with a
  killed controller, or another controller's push is still under way): pushed again;
- hosts that acknowledged with failures (``last_error`` set): given a new generation
  (``retry_failed``), so the agent retries what it could not program;
- ports pending or failed that the controller's tracker does not hold (after a restart, or
  claimed by another controller), the acknowledgements other controllers recorded for the
  hosts the tracked ports wait for, and which of those hosts are still registered: so those
  ports settle too.

Nothing here is rolled back: a lagging host is retried until it answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alcor.db.store import Transaction
from alcor.dpm import hosts, status


@dataclass(slots=True)
class Survey:
    dirty: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    entries: list[status.Entry] = field(default_factory=list)
    failed_ports: list[str] = field(default_factory=list)
    acked: dict[str, int] = field(default_factory=dict)
    registered: set[str] = field(default_factory=set)
    erring: set[str] = field(default_factory=set)
    """Hosts whose last reply reported failures (``last_error``): which ports they failed
    only a reply to this controller tells, so their recorded acknowledgements wait for one."""


def survey(
    txn: Transaction, tracked: Iterable[str], watched_hosts: Iterable[str],
    placement: status.Placement,
) -> Survey:
    """One reconciler pass's reading; ``tracked`` are the port ids the tracker holds and
    ``watched_hosts`` the hosts they wait for."""
    lag = hosts.lagging(txn)
    entries, failed_ports = status.unsettled(txn, tracked, placement)
    watched = set(watched_hosts) | {h for e in entries for h in e.need.hosts}
    erring = {r["node_id"] for r in txn.select("host_states", columns=("node_id", "last_error"))
              if r["last_error"]}
    return Survey(lag.dirty, lag.failed, entries, failed_ports,
                  hosts.acked_generations(txn, watched) if watched else {},
                  set(txn.scalars("nodes", "node_id")), erring)


def retry_failed(txn: Transaction, node_ids: Iterable[str]) -> tuple[list[str], int | None]:
    """Give hosts that failed to program something a new generation; returns them and the
    generation (a full goal state: the agent retries what failed only in one)."""
    ids = sorted(set(node_ids))
    return ids, hosts.mark_dirty(txn, ids)
