"""The churn soak's invariant, checked from outside while the churn runs: the API's port list
against what the simulated agents hold.

Every round (``interval`` seconds apart, start to start) lists every port through the API
(``GET /v2.0/ports`` with ``fields=``), then judges it against the agents.  Only ports whose
listed revision is the one the soak last wrote, with no request for them outstanding
(``Ledger.stable``), are judged; the ports of a host the soak restarted are not until its agent
applied a goal state newer than what it held before.  "Covered" below means: the host's agent
holds a generation at least the fence raised after the change was answered
(``bench/soak_fence.py``), so its goal state must reflect the change.  What counts:

1. ``active_not_held`` (at first sight): a port listed ACTIVE at revision ``r`` whose own
   host's agent does not hold it (``port_states[id]``) at revision ``r``.  Sound: ACTIVE means
   that host acknowledged it, and an agent loses a port only through a later change of it
   (then not stable) or a restart (excluded); the agents are read right after the list
   arrives, without awaiting anything.  The host's generation when the port is first seen
   ACTIVE *and held* is its activation generation ``G``.
2. ``neighbour_missing``: for a port ``p`` listed ACTIVE at ``r`` and held by its own host
   (check 1 passed, ``G`` known), every other registered host ``h`` whose agent holds a port
   ``q`` in ``p``'s subnet -- ``q`` listed ACTIVE on ``h`` and stable at the revision ``h``
   holds -- whose agent generation is ``>= G`` and covers ``p``'s write and its host's
   registration must hold ``L2/<p>`` at revision ``r`` with ``host_ip_address`` = the address
   of ``p``'s host.
3. ``port_stale`` / ``neighbour_stale``: a host with no request in flight that adds or removes
   one of its ports holds a port, or a neighbour entry of a port, that is settled (nothing in
   flight for it) and deleted, bound elsewhere (``port_states``), bound to the host itself
   (``neighbour_states``) or at an older revision than the last written -- covered for that
   write -- or (neighbours) in a subnet where the host has no port any more -- covered for
   the write that took its last port there away.

Checks 2 and 3 count a discrepancy (same host, port and revisions) only once it has been found
in every look at that host for ``persist`` seconds (2 by default); one that cleared sooner is
*transient* (reported, not a violation).  They look at a rotating share of the hosts per round
(all of them every ``SWEEP_ROUNDS`` rounds) so that a round stays short with hundreds of
hosts, and yield to the event loop between hosts (each host is judged atomically).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import httpx
import orjson

from bench.sim_agents import Fleet, SimAgent
from bench.soak_fence import Fences
from bench.soak_ledger import NEIGHBOR, NEIGHBOUR_PREFIX, PORT, Ledger, PortRecord, Revisions

IMMEDIATE = ("active_not_held",)
PERSISTENT = ("neighbour_missing", "neighbour_stale", "port_stale")
CATEGORIES = IMMEDIATE + PERSISTENT
SWEEP_ROUNDS = 3
"""Rounds to look at every host once (checks 2 and 3) when there are many."""
MANY_HOSTS = 60
LIST_PATH = ("/v2.0/ports?fields=id&fields=status&fields=revision_number"
             "&fields=binding:host_id&fields=fixed_ips")
EXAMPLES = 3


@dataclass(frozen=True, slots=True)
class ApiPort:
    id: str
    status: str
    revision: int
    host: str
    subnet: str


@dataclass(slots=True)
class Candidate:
    first_seen: float
    state: object
    """The agent state it was found in (a restart replaces it: the candidate starts over)."""
    generation: int
    example: str
    counted: bool = False


@dataclass
class Findings:
    """Violations by category (key -> example), and persistent candidates not yet counted."""

    violations: dict[str, dict[tuple[object, ...], str]] = field(
        default_factory=lambda: {c: {} for c in CATEGORIES})
    candidates: dict[tuple[object, ...], Candidate] = field(default_factory=dict)
    by_host: dict[str, set[tuple[object, ...]]] = field(default_factory=lambda: defaultdict(set))
    transient: Counter[str] = field(default_factory=Counter)
    rounds: int = 0
    round_seconds: list[float] = field(default_factory=list)

    def total(self) -> int:
        return sum(len(v) for v in self.violations.values())

    def count(self, category: str, key: tuple[object, ...], example: str) -> None:
        self.violations[category].setdefault(key, example)

    def observe(self, host: str, agent: SimAgent, looked: tuple[str, ...],
                found: dict[tuple[object, ...], str], persist: float, now: float) -> None:
        """One look at ``host`` for the categories ``looked``: ``found`` maps each discrepancy
        (key: category first) to its description.  Candidates of those categories not found
        again are transient; the others are kept as they are."""
        gone = {k for k in self.by_host[host] - found.keys() if k[0] in looked}
        for key in gone:
            if not self.candidates.pop(key).counted:
                self.transient[str(key[0])] += 1
        self.by_host[host] = (self.by_host[host] - gone) | found.keys()
        state = agent.state
        for key, example in found.items():
            seen = self.candidates.get(key)
            if seen is None or seen.state is not state:
                self.candidates[key] = Candidate(now, state, state.generation, example)
            elif not seen.counted and now - seen.first_seen >= persist:
                seen.counted = True
                self.count(str(key[0]), key, f"{seen.example} (for {now - seen.first_seen:.1f}"
                           f" s, through generations {seen.generation}..{state.generation})")


class Checker:
    def __init__(self, client: httpx.AsyncClient, fleet: Fleet, ledger: Ledger,
                 revisions: Revisions, fences: Fences, *, interval: float = 1.0,
                 persist: float = 2.0) -> None:
        self.client = client
        self.agents = fleet.by_id()
        self.hosts = sorted(self.agents)
        self.ledger = ledger
        self.fences = fences
        self.revisions = revisions
        self.interval = interval
        self.persist = persist
        self.findings = Findings()
        self._next = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Check rounds until ``stop`` is set (the round under way finishes)."""
        while not stop.is_set():
            began = time.perf_counter()
            await self.round()
            took = time.perf_counter() - began
            self.findings.round_seconds.append(took)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.05, self.interval - took))

    async def round(self) -> None:
        view = await self.list_ports()
        active = self.check_active(view)
        for n, host in enumerate(self._share()):
            self._look_at(host, view, active)
            if n % 8 == 7:
                await asyncio.sleep(0)
        self.findings.rounds += 1

    async def list_ports(self) -> dict[str, ApiPort]:
        response = await self.client.get(LIST_PATH)
        response.raise_for_status()
        view = {}
        for p in orjson.loads(response.content)["ports"]:
            subnet = p["fixed_ips"][0]["subnet_id"] if p["fixed_ips"] else ""
            view[p["id"]] = ApiPort(p["id"], p["status"], p["revision_number"],
                                    p["binding:host_id"], subnet)
        return view

    # --- check 1 ----------------------------------------------------------------------------

    def check_active(self, view: dict[str, ApiPort]) -> dict[str, list[ApiPort]]:
        """Check 1 over every listed port; returns the ports that passed it, by subnet (the
        ones check 2 expects as neighbours)."""
        active: dict[str, list[ApiPort]] = defaultdict(list)
        now = time.perf_counter()
        for port in view.values():
            if port.status != "ACTIVE":
                continue
            record = self.ledger.stable(port.id, port.revision)
            agent = self.agents.get(port.host)
            if record is None or agent is None or self._restarting(agent):
                continue
            held = self.revisions.port(agent.state, port.id)
            if held == port.revision:
                if record.active_generation is None:
                    record.active_generation = agent.state.generation
                active[port.subnet].append(port)
                continue
            self.findings.count("active_not_held", (port.id, port.revision), (
                f"port {port.id} listed ACTIVE at revision {port.revision} on {port.host} "
                f"({_kind(agent)}, generation {agent.state.generation}), which holds it "
                f"{_at(held)}; {now - record.written_at:.2f} s after the write was answered"))
        return active

    # --- checks 2 and 3, one host at a time -------------------------------------------------

    def _share(self) -> list[str]:
        """The hosts this round looks at (checks 2 and 3)."""
        if len(self.hosts) <= MANY_HOSTS:
            return self.hosts
        size = math.ceil(len(self.hosts) / SWEEP_ROUNDS)
        start = self._next
        self._next = (start + size) % len(self.hosts)
        return (self.hosts + self.hosts)[start:start + size]

    def _look_at(self, host: str, view: dict[str, ApiPort],
                 active: dict[str, list[ApiPort]]) -> None:
        agent = self.agents[host]
        if host not in self.ledger.registered or self._restarting(agent):
            return
        found: dict[tuple[object, ...], str] = {}
        self._missing_neighbours(host, agent, view, active, found)
        looked: tuple[str, ...] = ("neighbour_missing",)
        if not self.ledger.host_pending[host]:  # else its own ports are on the move
            self._stale_ports(host, agent, found)
            self._stale_neighbours(host, agent, found)
            looked += ("port_stale", "neighbour_stale")
        self.findings.observe(host, agent, looked, found, self.persist, time.perf_counter())

    def _anchors(self, host: str, agent: SimAgent, view: dict[str, ApiPort]) -> set[str]:
        """Subnets where the host holds a port listed ACTIVE on it and stable at the held
        revision."""
        subnets = set()
        for port_id in agent.state.realized[PORT]:
            listed = view.get(port_id)
            if (listed is None or listed.status != "ACTIVE" or listed.host != host
                    or self.revisions.port(agent.state, port_id) != listed.revision
                    or self.ledger.stable(port_id, listed.revision) is None):
                continue
            subnets.add(listed.subnet)
        return subnets

    def _missing_neighbours(self, host: str, agent: SimAgent, view: dict[str, ApiPort],
                            active: dict[str, list[ApiPort]],
                            found: dict[tuple[object, ...], str]) -> None:
        generation = agent.state.generation
        for subnet in self._anchors(host, agent, view):
            for port in active.get(subnet, ()):
                record = self.ledger.stable(port.id, port.revision)
                if (port.host == host or record is None or record.active_generation is None
                        or generation < record.active_generation):
                    continue
                registered = self.ledger.registered_at.get(port.host)
                if registered is None or not self.fences.covers(
                        generation, max(record.written_at, registered)):
                    continue
                want = (port.revision, self.agents[port.host].local_ip)
                held = self.revisions.neighbour(agent.state, port.id)
                if held != want:
                    found[("neighbour_missing", host, port.id, port.revision, held)] = (
                        f"{host} ({_kind(agent)}, generation {generation}) holds neighbour "
                        f"{port.id} {_neighbour_at(held)}; it is ACTIVE at revision "
                        f"{port.revision} on {port.host} since generation "
                        f"{record.active_generation}, and {host} has an ACTIVE port in its "
                        f"subnet")

    def _stale_ports(self, host: str, agent: SimAgent,
                     found: dict[tuple[object, ...], str]) -> None:
        generation = agent.state.generation
        for port_id in agent.state.realized[PORT]:
            record = self.ledger.settled(port_id)
            held = self.revisions.port(agent.state, port_id)
            if (record is None or held is None
                    or not (record.deleted or record.host != host or held < record.revision)
                    or not self.fences.covers(generation, record.written_at)):
                continue
            found[("port_stale", host, port_id, held)] = (
                f"{host} ({_kind(agent)}, generation {generation}) holds port {port_id} at "
                f"revision {held}; it is {_where(record)}")

    def _stale_neighbours(self, host: str, agent: SimAgent,
                          found: dict[tuple[object, ...], str]) -> None:
        generation = agent.state.generation
        for key, raw in agent.state.realized[NEIGHBOR].items():
            port_id = key.removeprefix(NEIGHBOUR_PREFIX)
            record = self.ledger.settled(port_id)
            if record is None:
                continue
            held, _ = self.revisions.neighbour_of(raw)
            why = self._stale_neighbour(host, record, held)
            if why is not None and self.fences.covers(generation, why[0]):
                found[("neighbour_stale", host, port_id, held)] = (
                    f"{host} ({_kind(agent)}, generation {generation}) holds neighbour "
                    f"{port_id} at revision {held}; it is {_where(record)}{why[1]}")

    def _stale_neighbour(self, host: str, record: PortRecord,
                         held: int) -> tuple[float, str] | None:
        """Why ``host`` should not hold this neighbour entry: (since when, a remark), or None
        if it may."""
        if record.deleted or record.host == host or held < record.revision:
            return record.written_at, ""
        if not self.ledger.member(record.subnet, host):
            left = self.ledger.left_at.get((record.subnet, host), 0.0)
            return max(record.written_at, left), f", and {host} has no port in its subnet"
        return None

    def _restarting(self, agent: SimAgent) -> bool:
        return self.ledger.restarting(agent.node_id, agent.state.generation)


def _kind(agent: SimAgent) -> str:
    return "sweeping" if agent.state.implicit_deletes else "non-sweeping"


def _at(held: int | None) -> str:
    return "not at all" if held is None else f"at revision {held}"


def _neighbour_at(held: tuple[int, str] | None) -> str:
    return "not at all" if held is None else f"at revision {held[0]} via {held[1]}"


def _where(record: PortRecord) -> str:
    if record.deleted:
        return "deleted"
    return f"at revision {record.revision} on {record.host}"
