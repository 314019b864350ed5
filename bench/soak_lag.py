"""Convergence lag of the churn soak's writes: from the API's answer until the agents hold it.

- a create: its own host holds the port at the answered revision, and every other registered
  host that had a live port in the same subnet when it was answered holds the port's
  neighbour entry (``L2/<id>``) at that revision (a host that loses its last port there first
  is no longer waited for);
- a move: the new host holds the port at the new revision and the old host no longer does;
- a delete: its host no longer holds the port.

Writes whose own host is not registered yet are not timed.  A later write of the same port
supersedes the measurement (not counted); one not converged within ``timeout`` seconds counts
as timed out (with an example).  Agents are looked at after the goal states they apply (the
fleet's ``changed`` event, batched every few milliseconds); the time taken is that of the
last goal state the host applied (``SimState.applied_at``, which this module trims to its
last entry so a long soak does not keep every one).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.sim_agents import Fleet, SimAgent
from bench.soak_ledger import NEIGHBOR, PORT, Revisions

BATCH_S = 0.005
"""How long the meter lets goal states accumulate before it looks at the agents."""


@dataclass(frozen=True, slots=True)
class Condition:
    """What one host must hold: ``kind`` (PORT or NEIGHBOR) of the port at ``revision``, or
    not at all (``revision`` None); ``subnet``: for a neighbour, the subnet whose membership
    makes the host wait for it."""

    kind: int
    port_id: str
    revision: int | None
    subnet: str | None = None


@dataclass(eq=False, slots=True)
class Tracker:
    what: str
    """create, move or delete"""
    port_id: str
    answered_at: float
    waiting: dict[str, Condition]
    """host -> what it must hold still"""
    last: float = 0.0
    """When the latest host got there."""


@dataclass
class Lags:
    """The figures: lags in seconds per kind of write, and what was not measured."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    superseded: int = 0
    timed_out: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def all(self) -> list[float]:
        return [s for values in self.seconds.values() for s in values]


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class LagMeter:
    def __init__(self, fleet: Fleet, revisions: Revisions, timeout: float) -> None:
        self.fleet = fleet
        self.agents = fleet.by_id()
        self.revisions = revisions
        self.timeout = timeout
        self.lags = Lags()
        self.by_host: dict[str, set[Tracker]] = defaultdict(set)
        self.by_port: dict[str, Tracker] = {}
        self._seen: dict[str, tuple[int, int]] = {}
        """host -> (id of its state, goal states received) when last looked at."""
        self._expired_at = 0.0

    # --- what the driver tells it ---------------------------------------------------------

    def start(self, what: str, port_id: str, answered_at: float,
              waiting: dict[str, Condition]) -> None:
        self.supersede(port_id)
        tracker = Tracker(what, port_id, answered_at, dict(waiting), answered_at)
        self.by_port[port_id] = tracker
        for host in list(tracker.waiting):
            self.by_host[host].add(tracker)
            self._evaluate(tracker, host, self._applied_at(self.agents[host]))

    def supersede(self, port_id: str) -> None:
        tracker = self.by_port.pop(port_id, None)
        if tracker is not None:
            self._drop(tracker)
            self.lags.superseded += 1

    def left_subnet(self, host: str, subnet: str) -> None:
        """``host`` has no port in ``subnet`` any more: it no longer waits for neighbours
        there."""
        for tracker in list(self.by_host.get(host, ())):
            condition = tracker.waiting.get(host)
            if condition is not None and condition.subnet == subnet:
                self._satisfied(tracker, host, tracker.last)

    # --- watching the agents ---------------------------------------------------------------

    async def run(self) -> None:
        """Look at the agents after goal states are applied, until cancelled."""
        changed = self.fleet.changed
        while True:
            await changed.wait()
            await asyncio.sleep(BATCH_S)
            changed.clear()
            self.poll()

    def poll(self) -> None:
        for host, agent in self.agents.items():
            mark = (id(agent.state), agent.state.received)
            if self._seen.get(host) == mark:
                continue
            self._seen[host] = mark
            at = self._applied_at(agent)
            for tracker in list(self.by_host.get(host, ())):
                self._evaluate(tracker, host, at)
        now = time.perf_counter()
        if now - self._expired_at > 1.0:
            self._expired_at = now
            self._expire(now)

    def pending(self) -> int:
        return len(self.by_port)

    def finish(self) -> None:
        """Whatever has not converged by now timed out."""
        self._expire(float("inf"))

    # --- inside ----------------------------------------------------------------------------

    @staticmethod
    def _applied_at(agent: SimAgent) -> float:
        applied = agent.state.applied_at
        if not applied:
            return time.perf_counter()
        del applied[:-1]
        return applied[-1][1]

    def _evaluate(self, tracker: Tracker, host: str, at: float) -> None:
        condition = tracker.waiting.get(host)
        if condition is not None and self._holds(self.agents[host], condition):
            self._satisfied(tracker, host, max(at, tracker.answered_at))

    def _holds(self, agent: SimAgent, condition: Condition) -> bool:
        if condition.kind == PORT:
            held = self.revisions.port(agent.state, condition.port_id)
        else:
            entry = self.revisions.neighbour(agent.state, condition.port_id)
            held = None if entry is None else entry[0]
        return held is None if condition.revision is None else held == condition.revision

    def _satisfied(self, tracker: Tracker, host: str, at: float) -> None:
        del tracker.waiting[host]
        self.by_host[host].discard(tracker)
        tracker.last = max(tracker.last, at)
        if not tracker.waiting:
            self.by_port.pop(tracker.port_id, None)
            self.lags.seconds[tracker.what].append(tracker.last - tracker.answered_at)

    def _drop(self, tracker: Tracker) -> None:
        for host in tracker.waiting:
            self.by_host[host].discard(tracker)
        tracker.waiting.clear()

    def _expire(self, now: float) -> None:
        late = [t for t in self.by_port.values() if now - t.answered_at > self.timeout]
        for tracker in late:
            self.by_port.pop(tracker.port_id, None)
            self.lags.timed_out[tracker.what] += 1
            if len(self.lags.examples) < 3:
                self.lags.examples.append(_describe(tracker))
            self._drop(tracker)


def _describe(tracker: Tracker) -> str:
    hosts = sorted(tracker.waiting)
    return (f"{tracker.what} of port {tracker.port_id}: still waiting for "
            f"{len(hosts)} host(s) after {time.perf_counter() - tracker.answered_at:.0f} s, "
            f"e.g. {_wanted(hosts[:2], tracker.waiting)}")


def _wanted(hosts: Iterable[str], waiting: dict[str, Condition]) -> str:
    parts = []
    for host in hosts:
        c = waiting[host]
        kind = "port" if c.kind == PORT else "neighbour" if c.kind == NEIGHBOR else str(c.kind)
        state = "absent" if c.revision is None else f"at revision {c.revision}"
        parts.append(f"{host} to hold the {kind} {state}")
    return "; ".join(parts)
