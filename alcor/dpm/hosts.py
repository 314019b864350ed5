"""Per-host goal-state bookkeeping in ``host_states``: generations, acknowledgements and
errors, and the retry policy for hosts that cannot be reached.

A host is *dirty* while ``generation > acked_generation``: a change that may alter its goal
state committed after the last goal state it acknowledged was compiled.

Generations come from one counter shared by all hosts, kept in the reserved row
``EPOCH_ROW`` of ``host_states``.  Every transaction that makes hosts dirty takes the next
value under that row's lock and sets it as the generation of each host it marks, so:

- a host's generation strictly increases (values are sparse, which agents do not mind);
- generations are ordered like the transactions that set them: a goal state compiled from
  a snapshot holding generation ``G`` of a host carries every change whose outbox record was
  claimed with an epoch ``<= G``.  A port claimed at epoch ``E`` is therefore on host ``h``
  once ``h`` acknowledged any generation ``>= E`` (``status.py`` relies on this).

These functions run inside a transaction the caller opens (``Store.read`` / ``write``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from alcor.db.store import Transaction
from alcor.dpm.compiler.delta import compile_delta
from alcor.dpm.compiler.intent import SharedReads
from alcor.dpm.deltas import DeltaRequest

EPOCH_ROW = "*epoch*"
"""``host_states`` row holding the shared generation counter (never a node id)."""

MAX_ERROR_CHARS = 1024



class Compile(Protocol):
    """What compiles one host's goal state (``compiler.compile_host``): ``shared`` holds the
    reads the hosts compiled on one transaction have in common."""

    def __call__(self, txn: Transaction, node: Mapping[str, Any], *,
                 shared: SharedReads | None = None) -> bytes: ...


def next_epoch(txn: Transaction) -> int:
    """Take the next generation value, holding the counter's lock to the end of ``txn``."""
    rows = txn.select("host_states", {"node_id": EPOCH_ROW}, columns=("generation",),
                      for_update=True)
    if rows:
        epoch = int(rows[0]["generation"]) + 1
        txn.update("host_states", {"node_id": EPOCH_ROW},
                   {"generation": epoch, "acked_generation": epoch})
        return epoch
    epoch = max((int(g) for g in txn.scalars("host_states", "generation")), default=0) + 1
    txn.insert("host_states", _new_row(EPOCH_ROW, epoch, acked=epoch))
    return epoch


def _new_row(node_id: str, generation: int, acked: int = 0) -> dict[str, Any]:
    return {"node_id": node_id, "generation": generation, "acked_generation": acked,
            "pushed_at": None, "acked_at": None, "last_error": None}


def mark_dirty(txn: Transaction, node_ids: Iterable[str]) -> int | None:
    """Give every host in ``node_ids`` a new generation (one epoch for all); None if empty."""
    ids = sorted(set(node_ids) - {EPOCH_ROW})
    if not ids:
        return None
    epoch = next_epoch(txn)
    existing = set(txn.scalars("host_states", "node_id", {"node_id": ids}))
    if existing:
        txn.update("host_states", {"node_id": sorted(existing)}, {"generation": epoch})
    txn.insert("host_states", [_new_row(n, epoch) for n in ids if n not in existing])
    return epoch


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A dirty host's goal state, compiled on the snapshot that read its generation."""

    node: dict[str, Any]
    generation: int
    goal_state: bytes
    base: int | None = None
    """The generation a delta goal state applies to (None: the goal state is full)."""


def snapshot(txn: Transaction, node_id: str, compile_host: Compile,
             shared: SharedReads | None = None, delta: DeltaRequest | None = None,
             covers: Callable[[DeltaRequest, int], bool] | None = None) -> Snapshot | None:
    """The goal state to push to a dirty host; None if it is clean or no longer registered.
    A delta if ``delta`` is given, the host acknowledged its base and ``covers`` says the
    request carries every change up to the generation read here (see ``alcor.dpm.deltas``)."""
    states = txn.select("host_states", {"node_id": node_id},
                        columns=("generation", "acked_generation"))
    if not states or states[0]["generation"] <= states[0]["acked_generation"]:
        return None
    nodes = txn.select("nodes", {"node_id": node_id})
    if not nodes:
        return None
    generation = int(states[0]["generation"])
    acked = int(states[0]["acked_generation"])
    if (delta is not None and delta.base == acked and covers is not None
            and covers(delta, generation)):
        return Snapshot(nodes[0], generation,
                        compile_delta(txn, nodes[0], delta.ports, shared=shared), base=acked)
    return Snapshot(nodes[0], generation, compile_host(txn, nodes[0], shared=shared))


def snapshots(txn: Transaction, requests: Mapping[str, DeltaRequest | None],
              compile_host: Compile, ready: Callable[[str, Snapshot | None], None],
              covers: Callable[[DeltaRequest, int], bool] | None = None) -> None:
    """``snapshot`` of several hosts on one transaction, sharing the reads they have in common
    (each network's neighbour candidates, group members); ``ready`` gets each host's as soon
    as it is compiled, so its push need not wait for the others."""
    shared = SharedReads()
    for node_id, delta in requests.items():
        ready(node_id, snapshot(txn, node_id, compile_host, shared, delta, covers))


def record_failure(txn: Transaction, node_id: str, pushed_at: float, error: str) -> None:
    """A push that did not reach the host (or was refused): the host stays dirty."""
    txn.update("host_states", {"node_id": node_id},
               {"pushed_at": pushed_at, "last_error": error[:MAX_ERROR_CHARS]})


def acked_at_least(txn: Transaction, node_id: str, generation: int) -> bool:
    """Whether the host already acknowledged ``generation`` or a newer one (pushed by another
    controller, say): a refusal of ``generation`` as out of order is then no failure."""
    rows = txn.select("host_states", {"node_id": node_id}, columns=("acked_generation",))
    return bool(rows) and int(rows[0]["acked_generation"]) >= generation


def record_ack(
    txn: Transaction, node_id: str, generation: int, pushed_at: float, acked_at: float,
    error: str | None,
) -> None:
    """The host applied ``generation``; ``error`` summarizes resources it failed to program.
    ``acked_generation`` only grows (a late reply to an older push changes nothing)."""
    rows = txn.select("host_states", {"node_id": node_id}, columns=("acked_generation",),
                      for_update=True)
    values: dict[str, Any] = {"pushed_at": pushed_at,
                              "last_error": None if error is None else error[:MAX_ERROR_CHARS]}
    if rows and int(rows[0]["acked_generation"]) < generation:
        values.update(acked_generation=generation, acked_at=acked_at)
    txn.update("host_states", {"node_id": node_id}, values)


@dataclass(frozen=True, slots=True)
class Lagging:
    """Registered hosts that need a push: dirty ones, and clean ones whose last goal state
    had failures (they get a new generation, so the agent retries what failed)."""

    dirty: list[str]
    failed: list[str]


def lagging(txn: Transaction) -> Lagging:
    registered = set(txn.scalars("nodes", "node_id"))
    dirty: list[str] = []
    failed: list[str] = []
    for row in txn.select("host_states", order_by=("node_id",)):
        if row["node_id"] not in registered:
            continue
        if row["generation"] > row["acked_generation"]:
            dirty.append(row["node_id"])
        elif row["last_error"]:
            failed.append(row["node_id"])
    return Lagging(dirty, failed)


def acked_generations(txn: Transaction, node_ids: Iterable[str]) -> dict[str, int]:
    rows = txn.select("host_states", {"node_id": sorted(set(node_ids))},
                      columns=("node_id", "acked_generation"))
    return {r["node_id"]: int(r["acked_generation"]) for r in rows}


def host_states(txn: Transaction, node_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    rows = txn.select("host_states", {"node_id": sorted(set(node_ids))})
    return {r["node_id"]: r for r in rows}


def nodes_at(txn: Transaction, local_ip: str) -> list[str]:
    """The node ids registered with tunnel endpoint ``local_ip``."""
    return sorted(txn.scalars("nodes", "node_id", {"local_ip": local_ip}))


def mark_restarted(txn: Transaction, local_ip: str) -> tuple[list[str], int | None]:
    """An agent at ``local_ip`` restarted with nothing programmed: its nodes get a new
    generation, so their whole goal state is pushed again.  Returns them and the generation."""
    ids = nodes_at(txn, local_ip)
    return ids, mark_dirty(txn, ids)


@dataclass(slots=True)
class Backoff:
    """Exponential retry delays per host: ``initial``, doubling, capped at ``cap``."""

    initial: float
    cap: float
    failures: dict[str, int] = field(default_factory=dict)

    def next_delay(self, node_id: str) -> float:
        n = self.failures.get(node_id, 0) + 1
        self.failures[node_id] = n
        return float(min(self.initial * 2 ** min(n - 1, 62), self.cap))

    def reset(self, node_id: str) -> None:
        self.failures.pop(node_id, None)
