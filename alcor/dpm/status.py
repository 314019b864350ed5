"""Port status from the agents' acknowledgements, and provisioning latency.

When the controller claims a change of a port bound to a registered node (``plan_claim`` /
``record_claim``) it sets the port DOWN and writes its ``port_provisioning`` row: the port's
revision, ``committed_at`` (when the change was written, from the outbox record), and in
``detail`` the claim's epoch (see ``hosts.py``), the port's own node and a state:

- ``pending``: the port is DOWN until every host that needs this revision -- its own host and
  the hosts of its L2 neighbours, as placement says -- acknowledged a generation ``>= epoch``.
- ``active``: then it is ACTIVE, ``acked_at`` is set and the latency (``acked_at -
  committed_at``) is kept in ``detail["latency_ms"]`` and shown in the port's
  ``binding:vif_details`` as ``alcor_provisioning_ms``.
- ``error``: the port's own host answered FAILURE for it; the port is ERROR and the agent's
  reason is in ``binding:vif_details["alcor_error"]``.  A later SUCCESS from that host (the
  reconciler pushes failed hosts again) makes it ACTIVE.

A host that answered FAILURE for a port or its neighbour entry blocks it (``Tracker.blocked``)
until it answers SUCCESS for it or acknowledges a full goal state that does not fail it: an
acknowledged generation alone does not mean the host holds the port.

An unbound port has no row and stays DOWN (nothing waits for it); nor has a port bound to a
host no node is registered for: it stays DOWN until the node registers, whose outbox record
claims its ports again.

Status is written straight to the ``ports`` row without an outbox record or a revision bump,
so a status change never makes the controller recompile anything.

``Tracker`` is the controller's in-memory index of pending ports by the hosts they wait for,
so an acknowledgement finds the ports it completes without scanning the table; it is rebuilt
from ``port_provisioning`` at start and by the reconciler (``unsettled``).  ``Metrics`` keeps
the commit-to-acknowledgement histogram and the push counters (Prometheus text).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from alcor.db.store import Transaction
from alcor.dpm import hosts
from alcor.dpm.compiler.intent import resolve_hosts
from alcor.dpm.compiler.neighbors import PREFIX as NEIGHBOUR_PREFIX

PENDING = "pending"
ACTIVE = "active"
ERROR = "error"

ERROR_KEY = "alcor_error"
"""``binding:vif_details`` key holding the agent's reason while a port is ERROR."""
LATENCY_KEY = "alcor_provisioning_ms"
"""``binding:vif_details`` key holding the commit-to-acknowledgement time of an ACTIVE port."""
_OWN_KEYS = (ERROR_KEY, LATENCY_KEY)

Placement = Callable[[Transaction, Sequence[Mapping[str, Any]]], set[str]]
Row = dict[str, Any]

_UNCLAIMED = 2**63 - 1
PORT_COLUMNS = ("id", "project_id", "network_id", "revision_number", "binding:host_id",
                "fixed_ips", "security_groups", "status", "binding:vif_details")
_CHUNK = 5000
"""Ids per ``IN (...)`` list (SQLite caps the parameters of one statement)."""


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield list(ids[start:start + _CHUNK])


def _select_in(txn: Transaction, table: str, key: str, ids: Iterable[str],
               columns: Sequence[str] | None = None) -> list[Row]:
    out: list[Row] = []
    for chunk in _chunks(sorted(set(ids))):
        out += txn.select(table, {key: chunk}, columns=columns)
    return out


# --- who needs a port ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Need:
    """What a pending port waits for: each of ``hosts`` acknowledging a generation >= epoch."""

    epoch: int
    hosts: frozenset[str]


@dataclass(frozen=True, slots=True)
class Entry:
    """One pending (or failed) port revision."""

    port_id: str
    revision: int
    node: str
    """The port's own node (whose FAILURE makes it ERROR)."""
    need: Need


def resolve_nodes(txn: Transaction, names: Iterable[str]) -> dict[str, str]:
    """``binding:host_id`` values -> the node_id of the registered node each names (as the
    compiler resolves them); values naming no registered node are absent."""
    return {name: node_id for name, (node_id, _) in resolve_hosts(txn, names).items()}


def port_change(port: Mapping[str, Any], operation: str = "update") -> Row:
    """An outbox-shaped change record for ``port`` (what placement takes)."""
    return {"seq": 0, "resource_type": "port", "resource_id": port["id"],
            "operation": operation, "revision_number": port["revision_number"],
            "project_id": port.get("project_id", ""), "created_at": "",
            "detail": {"network_id": port["network_id"],
                       "binding:host_id": port["binding:host_id"],
                       "subnet_ids": sorted({ip["subnet_id"] for ip in port["fixed_ips"]})}}


def _group_key(port: Mapping[str, Any]) -> tuple[Any, ...]:
    """Ports with equal keys are neighbours of each other and share the other neighbours."""
    return (port["network_id"], tuple(sorted({ip["subnet_id"] for ip in port["fixed_ips"]})),
            tuple(sorted(port["security_groups"])))


def distinct_changes(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """``records`` without repeats: placement reads a port (or subnet) change's detail (its
    network, hosts, subnets), so of alike changes, as a bulk makes, one is placed.  Records
    without a network in their detail are all kept."""
    out: list[Mapping[str, Any]] = []
    seen: set[bytes] = set()
    for record in records:
        detail = record.get("detail") or {}
        if "network_id" not in detail:
            out.append(record)
            continue
        key = orjson.dumps([record["resource_type"], record["operation"],
                            {k: v for k, v in detail.items() if k != "committed_at"}],
                           option=orjson.OPT_SORT_KEYS)
        if key not in seen:
            seen.add(key)
            out.append(record)
    return out


def needed_hosts(
    txn: Transaction, ports: Sequence[Mapping[str, Any]], own: Mapping[str, str],
    placement: Placement, changes: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, frozenset[str]]:
    """port_id -> the hosts that must acknowledge it: its own node plus what placement says
    the port's change affects.  Placement is asked once per group of alike ports (same
    network, subnets and security groups), whose members then all wait for the group's
    hosts (a port moved off a host makes the others wait for that host too).  ``own`` maps
    port ids to their nodes (ports without one are skipped); ``changes`` gives the real
    outbox records of a port, else a synthetic update record stands for it."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for port in ports:
        if port["id"] in own:
            groups.setdefault(_group_key(port), []).append(port)
    out: dict[str, frozenset[str]] = {}
    for members in groups.values():
        records = distinct_changes(
            [c for p in members for c in ((changes or {}).get(p["id"]) or [port_change(p)])])
        need = frozenset(placement(txn, records) | {own[p["id"]] for p in members})
        for port in members:
            out[port["id"]] = need
    return out


# --- claiming changes ---------------------------------------------------------------------


@dataclass(slots=True)
class ClaimPlan:
    """Ports a batch of changes touches, read before the claim's epoch is taken."""

    ports: dict[str, Row] = field(default_factory=dict)
    own: dict[str, str] = field(default_factory=dict)
    needs: dict[str, frozenset[str]] = field(default_factory=dict)
    committed_at: dict[str, float] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    """Ports deleted (or changed, then deleted before the claim)."""

    @property
    def hosts(self) -> set[str]:
        return {h for need in set(self.needs.values()) for h in need}


def _committed_at(change: Mapping[str, Any], default: float) -> float:
    value = (change.get("detail") or {}).get("committed_at")
    return float(value) if isinstance(value, (int, float)) else default


def _node_ports(txn: Transaction, changes: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Ports bound to a registered, renamed or deregistered node (by its old or new name)."""
    names: set[str] = set()
    for change in changes:
        detail = change.get("detail") or {}
        names.add(str(change["resource_id"]))
        names.update(str(detail[k]) for k in ("node_name", "old_node_name") if detail.get(k))
    return _select_in(txn, "ports", "binding:host_id", names, PORT_COLUMNS)


def plan_claim(
    txn: Transaction, changes: Sequence[Mapping[str, Any]], placement: Placement, now: float
) -> ClaimPlan:
    """Read the ports ``changes`` touch (port records, and the ports of changed nodes), their
    own nodes and the hosts each must be acknowledged by."""
    plan = ClaimPlan()
    port_changes: dict[str, list[Mapping[str, Any]]] = {}
    for change in changes:
        if change["resource_type"] != "port":
            continue
        pid = str(change["resource_id"])
        if change["operation"] == "delete":
            plan.gone.add(pid)
            port_changes.pop(pid, None)
            continue
        plan.gone.discard(pid)
        port_changes.setdefault(pid, []).append(change)
        at = _committed_at(change, now)
        plan.committed_at[pid] = min(at, plan.committed_at.get(pid, at))
    rows = _select_in(txn, "ports", "id", port_changes, PORT_COLUMNS)
    rows += _node_ports(txn, [c for c in changes if c["resource_type"] == "node"])
    plan.ports = {r["id"]: r for r in rows}
    plan.gone |= set(port_changes) - plan.ports.keys()
    for pid in plan.ports:
        plan.committed_at.setdefault(pid, now)
    nodes = resolve_nodes(txn, (r["binding:host_id"] for r in rows))
    plan.own = {pid: nodes[r["binding:host_id"]] for pid, r in plan.ports.items()
                if r["binding:host_id"] in nodes}
    plan.needs = needed_hosts(txn, rows, plan.own, placement, port_changes)
    return plan


def _without_own_keys(details: Mapping[str, Any]) -> Row:
    return {k: v for k, v in details.items() if k not in _OWN_KEYS}


def record_claim(
    txn: Transaction, plan: ClaimPlan, epoch: int
) -> tuple[list[Entry], list[tuple[str, int]]]:
    """Write the claimed ports' provisioning rows and set them DOWN; returns the entries to
    track and the (id, revision) settled at once (unbound ports).  Only ports bound to a
    registered node get a row: an unbound port is settled as it is, and a port bound to an
    unknown host is claimed again (with the node's record) when its node registers."""
    ids = sorted(plan.ports)
    for chunk in _chunks(ids):
        txn.delete("port_provisioning", {"port_id": chunk})
    entries: list[Entry] = []
    settled: list[tuple[str, int]] = []
    records: list[Row] = []
    for pid in ids:
        port = plan.ports[pid]
        node = plan.own.get(pid)
        if not port["binding:host_id"]:
            settled.append((pid, port["revision_number"]))
        elif node is not None:
            records.append({"port_id": pid, "revision_number": port["revision_number"],
                            "committed_at": plan.committed_at[pid], "acked_at": None,
                            "detail": {"epoch": epoch, "node": node, "state": PENDING}})
            entries.append(Entry(pid, port["revision_number"], node,
                                 Need(epoch, plan.needs[pid])))
        details = port["binding:vif_details"] or {}
        if port["status"] != "DOWN" or any(k in details for k in _OWN_KEYS):
            txn.update("ports", {"id": pid, "revision_number": port["revision_number"]},
                       {"status": "DOWN", "binding:vif_details": _without_own_keys(details)})
    txn.insert("port_provisioning", records)
    return entries, settled


# --- replies ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortOutcomes:
    """What a host said of the ports of one push -- its own ports and its neighbour
    entries -- by port id."""

    full: bool
    """A full goal state: nothing failed before and absent here is still failed there."""
    failed: frozenset[str] = frozenset()
    held: frozenset[str] = frozenset()
    """Ports it programmed (or deleted) successfully."""

    @classmethod
    def of(cls, full: bool, outcomes: Iterable[tuple[str, bool]]) -> PortOutcomes:
        """From (port id or ``L2/<port_id>``, failed) pairs."""
        failed: set[str] = set()
        held: set[str] = set()
        for key, bad in outcomes:
            port_id = key[len(NEIGHBOUR_PREFIX):] if key.startswith(NEIGHBOUR_PREFIX) else key
            (failed if bad else held).add(port_id)
        return cls(full, frozenset(failed), frozenset(held - failed))


@dataclass(frozen=True, slots=True)
class Reply:
    """A host's answer to one push, as the controller records it."""

    node_id: str
    generation: int
    pushed_at: float
    acked_at: float
    summary: str | None
    """``last_error``: what failed, or None."""
    failures: Mapping[str, str]
    """Ports the host failed to program -> the agent's reason."""
    ports: PortOutcomes = PortOutcomes(full=False)
    """Ports (own, or neighbour entries) the host failed or programmed."""


@dataclass(frozen=True, slots=True)
class Failed:
    port_id: str
    revision: int
    node_id: str
    generation: int
    epoch: int = 0
    """The epoch its provisioning record was claimed at (what an ACTIVE record must match)."""


@dataclass(slots=True)
class ReplyOutcome:
    active: list[tuple[Entry, float]] = field(default_factory=list)
    """The entries that became ACTIVE, with their latency in seconds."""
    failed: list[Failed] = field(default_factory=list)
    """Ports set ERROR."""


def record_replies(
    txn: Transaction, replies: Sequence[Reply], completed: Sequence[Entry], now: float
) -> ReplyOutcome:
    """Record hosts' replies: each acknowledgement, ERROR for a host's own ports it failed to
    program, and ACTIVE for the ports ``completed`` (every host they need has acknowledged
    them; the caller's ``Tracker`` says which)."""
    outcome = ReplyOutcome()
    for reply in replies:
        hosts.record_ack(txn, reply.node_id, reply.generation, reply.pushed_at,
                         reply.acked_at, reply.summary)
        if reply.failures:
            _record_failures(txn, reply, outcome)
    if completed:
        _record_active(txn, completed, now, outcome)
    return outcome


def _record_failures(txn: Transaction, reply: Reply, outcome: ReplyOutcome) -> None:
    """ERROR for the failed ports the replying host owns, when the generation it answered
    carried their current revision (claimed at an epoch <= that generation); a failure of
    an older revision is left to the push of the newer one."""
    node_id, failures = reply.node_id, reply.failures
    ports = _select_in(txn, "ports", "id", failures,
                       ("id", "revision_number", "binding:host_id", "binding:vif_details"))
    provisioning = {r["port_id"]: r for r in _select_in(txn, "port_provisioning", "port_id",
                                                        failures)}
    for port in ports:
        record = provisioning.get(port["id"])
        if (record is None or record["detail"].get("node") != node_id
                or record["revision_number"] != port["revision_number"]
                or int(record["detail"].get("epoch", 0)) > reply.generation):
            continue  # not its own host, or not the revision that generation carried
        reason = failures[port["id"]] or "the host agent failed to program the port"
        details = {**_without_own_keys(port["binding:vif_details"] or {}), ERROR_KEY: reason}
        txn.update("ports", {"id": port["id"], "revision_number": port["revision_number"]},
                   {"status": "ERROR", "binding:vif_details": details})
        txn.update("port_provisioning", {"port_id": port["id"]},
                   {"acked_at": None,
                    "detail": {**record["detail"], "state": ERROR, "error": reason}})
        outcome.failed.append(Failed(port["id"], port["revision_number"], node_id,
                                     reply.generation, int(record["detail"].get("epoch", 0))))


def _record_active(
    txn: Transaction, completed: Sequence[Entry], acked_at: float, outcome: ReplyOutcome
) -> None:
    """Set ``completed`` ports ACTIVE (skipping those deleted or changed again since, whose
    newer claim tracks them); alike rows are updated together, so a bulk costs a few
    statements."""
    ids = [e.port_id for e in completed]
    ports = {p["id"]: p for p in _select_in(txn, "ports", "id", ids,
                                             ("id", "revision_number", "binding:vif_details"))}
    provisioning = {r["port_id"]: r for r in _select_in(txn, "port_provisioning", "port_id", ids)}
    port_values: dict[bytes, list[str]] = defaultdict(list)
    record_values: dict[bytes, list[str]] = defaultdict(list)
    for entry in completed:
        port = ports.get(entry.port_id)
        record = provisioning.get(entry.port_id)
        if (port is None or record is None or port["revision_number"] != entry.revision
                or record["revision_number"] != entry.revision
                or record["detail"].get("epoch") != entry.need.epoch):
            continue
        latency = max(0.0, acked_at - float(record["committed_at"]))
        latency_ms = round(latency * 1000.0, 3)
        details = {**_without_own_keys(port["binding:vif_details"] or {}),
                   LATENCY_KEY: latency_ms}
        port_values[orjson.dumps([entry.revision, details])].append(entry.port_id)
        detail = {k: v for k, v in record["detail"].items() if k != "error"}
        record_values[orjson.dumps({**detail, "state": ACTIVE, "latency_ms": latency_ms})
                      ].append(entry.port_id)
        outcome.active.append((entry, latency))
    for key, members in port_values.items():
        revision, details = orjson.loads(key)
        for chunk in _chunks(members):
            txn.update("ports", {"id": chunk, "revision_number": revision},
                       {"status": "ACTIVE", "binding:vif_details": details})
    for key, members in record_values.items():
        for chunk in _chunks(members):
            txn.update("port_provisioning", {"port_id": chunk},
                       {"acked_at": acked_at, "detail": orjson.loads(key)})


# --- the in-memory index ------------------------------------------------------------------


class Tracker:
    """Pending ports grouped by what they wait for, indexed by host.

    Pure bookkeeping: ``completions`` says what an acknowledgement would settle without
    changing anything; ``apply_reply`` records it once the reply's transaction committed.
    Acknowledgements other controllers record are not seen here; the reconciler's
    ``recheck`` settles what they completed.
    """

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.failed: set[str] = set()
        """Tracked ports whose own host reported FAILURE (ERROR until it reports SUCCESS)."""
        self.groups: dict[Need, set[str]] = {}
        self.by_host: dict[str, set[Need]] = {}
        self.acked: dict[str, int] = {}
        self.blocked: dict[str, set[str]] = {}
        """Port -> hosts that failed to program it (its own host) or its neighbour entry, and
        have not programmed it since: the port is not ACTIVE while any has not, though they
        acknowledged its generation."""

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, entries: Iterable[Entry], failed: Iterable[str] = ()) -> None:
        for entry in entries:
            self.discard([entry.port_id])
            self.entries[entry.port_id] = entry
            members = self.groups.setdefault(entry.need, set())
            if not members:
                for host in entry.need.hosts:
                    self.by_host.setdefault(host, set()).add(entry.need)
            members.add(entry.port_id)
        self.failed.update(p for p in failed if p in self.entries)

    def discard(self, port_ids: Iterable[str]) -> None:
        for pid in port_ids:
            entry = self.entries.pop(pid, None)
            self.failed.discard(pid)
            self.blocked.pop(pid, None)
            if entry is None:
                continue
            members = self.groups.get(entry.need)
            if members is None:
                continue
            members.discard(pid)
            if not members:
                del self.groups[entry.need]
                for host in entry.need.hosts:
                    needs = self.by_host.get(host)
                    if needs is not None:
                        needs.discard(entry.need)
                        if not needs:
                            del self.by_host[host]

    def drop_hosts(self, gone: Collection[str]) -> None:
        """Hosts deregistered: nothing waits for them any more."""
        for need in {n for host in gone for n in self.by_host.get(host, ())}:
            members = [self.entries[p] for p in self.groups.get(need, ())]
            failed = [e.port_id for e in members if e.port_id in self.failed]
            smaller = Need(need.epoch, need.hosts - frozenset(gone))
            self.add([Entry(e.port_id, e.revision, e.node, smaller) for e in members],
                     failed=failed)

    def blocked_on(self, node_id: str) -> bool:
        """Whether ``node_id`` blocks some port (its replies' successes then matter)."""
        return any(node_id in hosts for hosts in self.blocked.values())

    def note_ports(self, node_id: str, reply: PortOutcomes) -> None:
        """What ``node_id`` said of ports: a failure blocks the port; a success, or a full
        goal state not failing it, unblocks it."""
        for port_id in list(self.blocked):
            hosts = self.blocked[port_id]
            if node_id in hosts and (reply.full or port_id in reply.held):
                hosts.discard(node_id)
                if not hosts:
                    del self.blocked[port_id]
        for port_id in reply.failed:
            self.blocked.setdefault(port_id, set()).add(node_id)

    def note_acked(self, acked: Mapping[str, int]) -> None:
        for host, generation in acked.items():
            if generation > self.acked.get(host, 0):
                self.acked[host] = generation

    def own_failures(self, node_id: str, failures: Mapping[str, str]) -> dict[str, str]:
        """The failures a node reports for tracked ports it does not own are not theirs."""
        return {pid: r for pid, r in failures.items()
                if pid not in self.entries or self.entries[pid].node == node_id}

    def completions(self, node_ids: Iterable[str], failed: Collection[str]) -> list[Entry]:
        """The tracked ports whose need includes one of ``node_ids`` and is now met (every
        host has acknowledged ``>= epoch``; call ``note_acked`` first), except ``failed``."""
        needs = {need for node_id in set(node_ids) for need in self.by_host.get(node_id, ())}
        out: list[Entry] = []
        for need in needs:
            if all(self.acked.get(h, 0) >= need.epoch for h in need.hosts):
                out += [self.entries[p] for p in self.groups[need]
                        if p not in failed and p not in self.blocked]
        return out

    def owned(self, node_id: str, port_ids: Iterable[str]) -> set[str]:
        """Those of ``port_ids`` tracked with ``node_id`` as their own host."""
        return {p for p in port_ids if p in self.entries and self.entries[p].node == node_id}

    def apply(self, outcome: ReplyOutcome, recovered: Iterable[str]) -> None:
        """Record a committed ``record_replies``; ``recovered`` are failed ports their own
        host has now reported SUCCESS for."""
        self.failed.difference_update(recovered)
        self.settle(outcome)
        for failed in outcome.failed:
            entry = self.entries.get(failed.port_id)
            if entry is not None and entry.revision == failed.revision:
                self.failed.add(failed.port_id)
            elif entry is None:
                # An ACTIVE port its host failed to re-program: SUCCESS from it restores it.
                # Its record keeps the epoch it was claimed at: ACTIVE is written against it.
                need = Need(failed.epoch, frozenset({failed.node_id}))
                self.add([Entry(failed.port_id, failed.revision, failed.node_id, need)],
                         failed=[failed.port_id])

    def settle(self, outcome: ReplyOutcome) -> None:
        """Forget the entries that became ACTIVE (unless a newer claim replaced them)."""
        self.discard([e.port_id for e, _ in outcome.active
                      if self.entries.get(e.port_id) == e])

    def satisfied(self) -> list[Entry]:
        """Tracked ports whose every host acknowledged (as far as ``acked`` knows)."""
        return [self.entries[p] for need, members in self.groups.items()
                if all(self.acked.get(h, 0) >= need.epoch for h in need.hosts)
                for p in members if p not in self.failed and p not in self.blocked]


def unsettled(txn: Transaction, tracked: Iterable[str], placement: Placement
              ) -> tuple[list[Entry], list[str]]:
    """Pending and failed ports the tracker does not hold (after a restart, or claimed by
    another controller), with what they wait for now; and which of them failed."""
    known = set(tracked)
    records = {r["port_id"]: r for r in txn.select("port_provisioning", {"acked_at": None})
               if r["port_id"] not in known
               and r["detail"].get("state") in (PENDING, ERROR)}
    if not records:
        return [], []
    ports = [p for p in _select_in(txn, "ports", "id", records, PORT_COLUMNS)
             if p["revision_number"] == records[p["id"]]["revision_number"]]
    nodes = resolve_nodes(txn, (p["binding:host_id"] for p in ports))
    own = {p["id"]: nodes[p["binding:host_id"]] for p in ports if p["binding:host_id"] in nodes}
    needs = needed_hosts(txn, ports, own, placement)
    entries = [Entry(p["id"], p["revision_number"], own[p["id"]],
                     Need(int(records[p["id"]]["detail"].get("epoch", 0)), needs[p["id"]]))
               for p in ports if p["id"] in own]
    failed = [e.port_id for e in entries if records[e.port_id]["detail"].get("state") == ERROR]
    return entries, failed


def complete(txn: Transaction, entries: Sequence[Entry], now: float) -> ReplyOutcome:
    """Mark ports ACTIVE whose every host acknowledged (per the database); used by the
    reconciler for acknowledgements another controller recorded."""
    acked = hosts.acked_generations(txn, {h for e in entries for h in e.need.hosts})
    done = [e for e in entries if all(acked.get(h, 0) >= e.need.epoch for h in e.need.hosts)]
    outcome = ReplyOutcome()
    if done:
        _record_active(txn, done, now, outcome)
    return outcome


# --- what a waiting request sees ----------------------------------------------------------


def settled(txn: Transaction, ports: Mapping[str, int]) -> set[str]:
    """Which of ``ports`` (id -> revision written) are settled: acknowledged, failed,
    unbound, superseded by a settled newer revision, or deleted."""
    out: set[str] = set()
    recorded: set[str] = set()
    for record in _select_in(txn, "port_provisioning", "port_id", ports,
                             ("port_id", "revision_number", "acked_at", "detail")):
        recorded.add(record["port_id"])
        if record["revision_number"] < ports[record["port_id"]]:
            continue
        if record["acked_at"] is not None or record["detail"].get("state") == ERROR:
            out.add(record["port_id"])
    unrecorded = set(ports) - recorded
    if unrecorded:  # deleted (its record went with it), unbound, or not claimed yet
        present = _select_in(txn, "ports", "id", unrecorded,
                             ("id", "revision_number", "binding:host_id"))
        out |= unrecorded - {r["id"] for r in present}
        out |= {r["id"] for r in present
                if not r["binding:host_id"] and r["revision_number"] >= ports[r["id"]]}
    return out


def outcome(txn: Transaction, ports: Mapping[str, int], placement: Placement) -> Row:
    """The ports' status and binding details now, and each host they need: ``ACKED`` (it
    acknowledged a generation carrying them), ``FAILED`` (its last push or programming
    failed, also after acknowledging that generation while a port needing it is not ACTIVE;
    ``error`` says why) or ``PENDING``."""
    rows = _select_in(txn, "ports", "id", ports, PORT_COLUMNS)
    records = {r["port_id"]: r for r in _select_in(txn, "port_provisioning", "port_id", ports)}
    nodes = resolve_nodes(txn, (p["binding:host_id"] for p in rows))
    own = {p["id"]: nodes[p["binding:host_id"]] for p in rows if p["binding:host_id"] in nodes}
    needs = needed_hosts(txn, rows, own, placement)
    statuses = {p["id"]: p["status"] for p in rows}
    epochs: dict[frozenset[str], int] = {}
    for pid, need in needs.items():
        record = records.get(pid)
        # not claimed yet: no generation carries it
        epoch = int(record["detail"].get("epoch", 0)) if record else _UNCLAIMED
        epochs[need] = max(epochs.get(need, 0), epoch)
    required: dict[str, int] = {}
    for need, epoch in epochs.items():
        for host in need:
            required[host] = max(required.get(host, 0), epoch)
    waiting = {host for pid, need in needs.items() for host in need
               if pid in statuses and statuses[pid] != "ACTIVE"}
    states = hosts.host_states(txn, required)
    host_view: dict[str, Row] = {}
    for host, epoch in sorted(required.items()):
        state = states.get(host)
        if (state is not None and int(state["acked_generation"]) >= epoch
                and state["last_error"] and host in waiting):
            # It answered the generation but failed something a waiting port needs there.
            host_view[host] = {"state": "FAILED", "error": state["last_error"]}
        elif state is not None and int(state["acked_generation"]) >= epoch:
            host_view[host] = {"state": "ACKED"}
        elif state is not None and state["last_error"]:
            host_view[host] = {"state": "FAILED", "error": state["last_error"]}
        else:
            host_view[host] = {"state": "PENDING"}
    return {
        "ports": {p["id"]: {"status": p["status"],
                            "binding:vif_details": p["binding:vif_details"]} for p in rows},
        "hosts": host_view,
    }


# --- metrics ------------------------------------------------------------------------------
