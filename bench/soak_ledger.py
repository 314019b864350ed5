"""The churn soak's ledger: what it wrote through the API and what is still in flight.

Every port the soak created is a ``PortRecord``: its subnet, the host and revision the last
answered request gave it, how many requests for it are outstanding, and whether it is deleted
or *uncertain* (a request for it failed, so what the server holds is unknown and the port is
never judged again).  Per host the ledger counts the requests in flight that add or remove one
of its ports, and per subnet how many live ports each host has there (its membership, which
decides its neighbours).  ``stable(port, revision)``: the API's revision is the one the soak
last wrote and nothing for the port is in flight -- the only ports the checks judge.

Also here: ``IdPool`` (uniform random choice among idle ports) and the agents' realized
revisions (``held_revision``, ``held_neighbour``) parsed once per distinct configuration.
Everything runs on the soak's one event loop; nothing is locked.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from alcor.agent.programmer import PARSERS
from alcor.agent.state import AgentState
from alcor.rpc._generated import common_pb2, neighbor_pb2

PORT = common_pb2.PORT
NEIGHBOR = common_pb2.NEIGHBOR
NEIGHBOUR_PREFIX = "L2/"
"""Neighbour states are keyed ``L2/<port id>`` (``alcor.dpm.compiler.neighbors``)."""


@dataclass(slots=True)
class PortRecord:
    id: str
    subnet: str
    host: str
    revision: int
    written_at: float
    """perf_counter when the request that produced ``revision`` was answered."""
    pending: int = 0
    deleted: bool = False
    uncertain: bool = False
    active_generation: int | None = None
    """Its own host's agent generation when the checker first saw it ACTIVE (and held) at
    ``revision``; reset by every write."""


class IdPool:
    """A set with O(1) add, remove and uniform random choice."""

    def __init__(self) -> None:
        self._items: list[str] = []
        self._index: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def add(self, item: str) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: str) -> None:
        at = self._index.pop(item, None)
        if at is None:
            return
        last = self._items.pop()
        if at < len(self._items):
            self._items[at] = last
            self._index[last] = at

    def choice(self, rng: random.Random) -> str | None:
        return rng.choice(self._items) if self._items else None


@dataclass
class Ledger:
    ports: dict[str, PortRecord] = field(default_factory=dict)
    idle: IdPool = field(default_factory=IdPool)
    """Live, certain ports with no request outstanding: what deletes and moves pick from."""
    live: int = 0
    creating: int = 0
    """Ports asked for by create requests not answered yet (they count against the bound)."""
    host_pending: Counter[str] = field(default_factory=Counter)
    members: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    """subnet -> host -> live ports of the host there."""
    registered: set[str] = field(default_factory=set)
    registered_at: dict[str, float] = field(default_factory=dict)
    """host -> perf_counter when its registration was answered."""
    left_at: dict[tuple[str, str], float] = field(default_factory=dict)
    """(subnet, host) -> when a write answered left the host without a port there."""
    restarts: dict[str, int] = field(default_factory=dict)
    """host -> its agent's generation when the soak restarted it (until it passes it)."""

    # --- writes -----------------------------------------------------------------------------

    def begin_create(self, hosts: list[str]) -> None:
        self.creating += len(hosts)
        self.host_pending.update(hosts)

    def end_create(self, hosts: list[str], answered: list[dict[str, object]] | None,
                   now: float) -> list[PortRecord]:
        """The create answered (``answered``: the ports it returned) or failed (None)."""
        self.creating -= len(hosts)
        self.host_pending.subtract(hosts)
        records = []
        for port in answered or ():
            fixed = port["fixed_ips"]
            assert isinstance(fixed, list)
            record = PortRecord(str(port["id"]), str(fixed[0]["subnet_id"]),
                                str(port["binding:host_id"]), _int(port["revision_number"]), now)
            self.ports[record.id] = record
            self.members[record.subnet][record.host] += 1
            self.idle.add(record.id)
            self.live += 1
            records.append(record)
        return records

    def begin_change(self, record: PortRecord, hosts: tuple[str, ...]) -> None:
        """A move (old and new host) or delete (its host) of ``record`` is sent."""
        record.pending += 1
        self.idle.discard(record.id)
        self.host_pending.update(hosts)

    def end_move(self, record: PortRecord, hosts: tuple[str, ...],
                 answered: dict[str, object] | None, now: float) -> None:
        """The move answered (``answered``: the port it returned) or failed (None);
        ``hosts``: what ``begin_change`` was given."""
        self.host_pending.subtract(hosts)
        record.pending -= 1
        if answered is None:
            record.uncertain = True
            return
        self._leave(record.subnet, record.host, now)
        record.host = str(answered["binding:host_id"])
        self.members[record.subnet][record.host] += 1
        self._written(record, _int(answered["revision_number"]), now)

    def end_delete(self, record: PortRecord, hosts: tuple[str, ...], ok: bool,
                   now: float) -> None:
        self.host_pending.subtract(hosts)
        record.pending -= 1
        if not ok:
            record.uncertain = True
            return
        record.deleted = True
        record.written_at = now
        record.active_generation = None
        self._leave(record.subnet, record.host, now)
        self.live -= 1

    def _leave(self, subnet: str, host: str, now: float) -> None:
        self.members[subnet][host] -= 1
        if not self.members[subnet][host]:
            self.left_at[(subnet, host)] = now

    def register(self, hosts: list[str], now: float) -> None:
        self.registered.update(hosts)
        self.registered_at.update(dict.fromkeys(hosts, now))

    def _written(self, record: PortRecord, revision: int, now: float) -> None:
        record.revision = revision
        record.written_at = now
        record.active_generation = None
        if record.pending == 0 and not record.uncertain:
            self.idle.add(record.id)

    # --- reads ------------------------------------------------------------------------------

    def stable(self, port_id: str, revision: int) -> PortRecord | None:
        """The port's record if the API's ``revision`` is the one last written and no request
        for it is outstanding (None: unknown, in flight, uncertain, deleted or another
        revision)."""
        record = self.ports.get(port_id)
        if (record is None or record.pending or record.uncertain or record.deleted
                or record.revision != revision):
            return None
        return record

    def settled(self, port_id: str) -> PortRecord | None:
        """The port's record if nothing for it is in flight and its state is certain (live or
        deleted); None otherwise."""
        record = self.ports.get(port_id)
        if record is None or record.pending or record.uncertain:
            return None
        return record

    def restarting(self, host: str, generation: int) -> bool:
        """Whether the host's agent (now at ``generation``) was restarted and has not yet
        applied a goal state newer than what it held before (its full one after the restart,
        which carries a new generation)."""
        floor = self.restarts.get(host)
        if floor is None:
            return False
        if generation > floor:
            del self.restarts[host]
            return False
        return True

    def member(self, subnet: str, host: str) -> bool:
        return self.members[subnet][host] > 0

    def hosts_in(self, subnet: str) -> list[str]:
        return [h for h, n in self.members[subnet].items() if n > 0]


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


class Revisions:
    """Realized configurations' revision (and a neighbour's host address), parsed once per
    distinct serialized configuration and shared across hosts."""

    LIMIT = 400_000

    def __init__(self) -> None:
        self._ports: dict[bytes, int] = {}
        self._neighbours: dict[bytes, tuple[int, str]] = {}

    def port(self, state: AgentState, port_id: str) -> int | None:
        """The revision ``state`` holds port ``port_id`` at (None: not held)."""
        raw = state.realized[PORT].get(port_id)
        if raw is None:
            return None
        revision = self._ports.get(raw)
        if revision is None:
            if len(self._ports) > self.LIMIT:
                self._ports.clear()
            revision = self._ports[raw] = PARSERS[PORT](raw).revision_number
        return revision

    def neighbour(self, state: AgentState, port_id: str) -> tuple[int, str] | None:
        """(revision, host_ip_address) of the neighbour entry ``state`` holds for the port."""
        raw = state.realized[NEIGHBOR].get(NEIGHBOUR_PREFIX + port_id)
        return None if raw is None else self.neighbour_of(raw)

    def neighbour_of(self, raw: bytes) -> tuple[int, str]:
        held = self._neighbours.get(raw)
        if held is None:
            if len(self._neighbours) > self.LIMIT:
                self._neighbours.clear()
            config = neighbor_pb2.NeighborConfiguration.FromString(raw)
            held = self._neighbours[raw] = (config.revision_number, config.host_ip_address)
        return held
