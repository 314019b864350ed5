"""The churn soak's load: a steady mix of port writes through the Neutron API, node
registrations and agent restarts, recorded in the ledger and timed by the lag meter.

The topology (``build_topology``): three networks, four IPv4 subnets (the third network has
two), each host a tenant of two random subnets.  Writes go at ``rate`` requests per second
(at most ``MAX_OUTSTANDING`` at once), the kind drawn by how full the port budget is:

- single creates (``binding:host_id`` = a random tenant host of the subnet; one in twenty
  goes to a host that is not registered yet, while there are some);
- bulk creates of 3-20 ports, and bursts of 3-6 concurrent single creates;
- deletes and moves (``PUT binding:host_id`` to another tenant host of the port's subnet) of
  random ports with no request outstanding.

Below 40 % of ``max_ports`` creates dominate, above 95 % deletes do; in between the mix is
steady.  The late hosts register in three batches (at 15, 35 and 55 % of the churn), and
every ``restart_every`` seconds (jittered) one registered agent restarts (drops its state and
asks the controller for its whole goal state).  Every request is bounded (client timeout)
and goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.sim_agents import Fleet, register
from bench.soak_lag import Condition, LagMeter
from bench.soak_ledger import NEIGHBOR, PORT, Ledger, PortRecord

MAX_OUTSTANDING = 16
UNREGISTERED_SHARE = 0.05
LATE_BATCHES = (0.15, 0.35, 0.55)
SUBNETS_PER_HOST = 2
ERROR_EXAMPLES = 3
NETWORKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("soak-a", ("10.100.0.0/20",)),
    ("soak-b", ("10.101.0.0/20",)),
    ("soak-c", ("10.102.0.0/21", "10.102.8.0/21")),
)
MIXES: tuple[tuple[float, dict[str, int]], ...] = (
    (0.40, {"create": 35, "bulk": 20, "burst": 20, "move": 15, "delete": 10}),
    (0.95, {"create": 20, "bulk": 4, "burst": 6, "move": 30, "delete": 40}),
    (float("inf"), {"create": 5, "move": 30, "delete": 65}),
)
"""(fill below which it applies, weights by kind of write)."""


@dataclass
class Topology:
    network_of: dict[str, str]
    """subnet -> its network"""
    hosts_by_subnet: dict[str, list[str]]
    subnets_by_host: dict[str, list[str]]


async def build_topology(client: httpx.AsyncClient, hosts: list[str],
                         rng: random.Random) -> Topology:
    network_of: dict[str, str] = {}
    for name, cidrs in NETWORKS:
        net = await _call(client, "POST", "/v2.0/networks", {"network": {"name": name}})
        for cidr in cidrs:
            sub = await _call(client, "POST", "/v2.0/subnets", {"subnet": {
                "network_id": net["network"]["id"], "cidr": cidr, "ip_version": 4}})
            network_of[sub["subnet"]["id"]] = net["network"]["id"]
    subnets = list(network_of)
    by_host = {h: rng.sample(subnets, SUBNETS_PER_HOST) for h in hosts}
    by_subnet = {s: [h for h in hosts if s in by_host[h]] for s in subnets}
    return Topology(network_of, by_subnet, by_host)


async def _call(client: httpx.AsyncClient, method: str, path: str, body: Any = None) -> Any:
    response = await client.request(method, path, json=body)
    response.raise_for_status()
    return response.json() if response.content else None


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    ports_written: int = 0
    restarts: int = 0
    registered_late: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_examples: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Seconds from sending each request to its answer, by kind."""

    def error(self, what: str, detail: str) -> None:
        self.errors[what] += 1
        if len(self.error_examples) < ERROR_EXAMPLES:
            self.error_examples.append(f"{what}: {detail[:300]}")


class Driver:
    def __init__(self, client: httpx.AsyncClient, fleet: Fleet, ledger: Ledger, lag: LagMeter,
                 topology: Topology, rng: random.Random, *, api_url: str, controller: str,
                 max_ports: int, rate: float, restart_every: float,
                 late: list[str]) -> None:
        self.client = client
        self.fleet = fleet
        self.agents = fleet.by_id()
        self.ledger = ledger
        self.lag = lag
        self.topology = topology
        self.rng = rng
        self.api_url = api_url
        self.controller = controller
        self.max_ports = max_ports
        self.rate = rate
        self.restart_every = restart_every
        self.late = list(late)
        self.tally = Tally()
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_OUTSTANDING)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self, duration: float) -> None:
        """Write for ``duration`` seconds, then wait for what is outstanding."""
        began = time.perf_counter()
        batches = _split(self.late, len(LATE_BATCHES))
        due = [began + f * duration for f in LATE_BATCHES]
        next_restart = began + self._jitter(self.restart_every)
        next_write = began
        while (now := time.perf_counter()) < began + duration:
            if due and now >= due[0]:
                due.pop(0)
                self._spawn(self.register_late(batches.pop(0)))
            if now >= next_restart:
                next_restart = now + self._jitter(self.restart_every)
                self._spawn(self.restart())
            await self._slots.acquire()
            work, requests = self._next_write()
            self._spawn(work, slot=True)
            # paced on a schedule (requests/s), so a busy event loop does not lower the rate;
            # more than a second behind, the schedule starts over instead of catching up
            next_write += requests / self.rate
            now = time.perf_counter()
            if next_write < now - 1.0:
                next_write = now
            await asyncio.sleep(max(0.0, next_write - now))
        for batch in batches:  # churn shorter than the schedule: register the rest now
            self._spawn(self.register_late(batch))
        await self.drain()

    async def drain(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def _spawn(self, work: Coroutine[Any, Any, None], *, slot: bool = False) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if slot:
                self._slots.release()
        task.add_done_callback(done)

    def _jitter(self, seconds: float) -> float:
        return seconds * self.rng.uniform(0.5, 1.5)

    def _next_write(self) -> tuple[Coroutine[Any, Any, None], int]:
        """The next write (or burst of writes) and how many requests it makes."""
        kind = self._pick()
        if kind == "create":
            return self.create([self._placement()]), 1
        if kind == "bulk":
            room = self.max_ports - self.ledger.live - self.ledger.creating
            size = min(self.rng.randint(3, 20), max(room, 1))
            return self.create([self._placement() for _ in range(size)]), 1
        if kind == "burst":
            size = self.rng.randint(3, 6)
            return self._burst([[self._placement()] for _ in range(size)]), size
        return (self.move() if kind == "move" else self.delete()), 1

    async def _burst(self, placements: list[list[tuple[str, str]]]) -> None:
        await asyncio.gather(*(self.create(p) for p in placements))

    def _pick(self) -> str:
        fill = (self.ledger.live + self.ledger.creating) / self.max_ports
        weights = next(w for bound, w in MIXES if fill < bound)
        if not len(self.ledger.idle):
            weights = {k: v for k, v in weights.items() if k not in ("move", "delete")}
        kinds = list(weights)
        return self.rng.choices(kinds, [weights[k] for k in kinds])[0]

    def _placement(self) -> tuple[str, str]:
        """(host, subnet) of a new port: mostly a registered host, sometimes a late one."""
        pending = [h for h in self.late if h not in self.ledger.registered]
        if pending and self.rng.random() < UNREGISTERED_SHARE:
            host = self.rng.choice(pending)
        else:
            host = self.rng.choice(sorted(self.ledger.registered))
        return host, self.rng.choice(self.topology.subnets_by_host[host])

    # --- writes -----------------------------------------------------------------------------

    async def create(self, placements: list[tuple[str, str]]) -> None:
        hosts = [h for h, _ in placements]
        items = [{"network_id": self.topology.network_of[s], "device_owner": "compute:nova",
                  "binding:host_id": h, "fixed_ips": [{"subnet_id": s}]} for h, s in placements]
        body: dict[str, Any] = {"ports": items} if len(items) > 1 else {"port": items[0]}
        self.ledger.begin_create(hosts)
        what = "bulk" if len(items) > 1 else "create"
        answered = await self._send(what, "POST", "/v2.0/ports", body)
        ports = None if answered is None else answered.get("ports") or [answered["port"]]
        now = time.perf_counter()
        for record in self.ledger.end_create(hosts, ports, now):
            self._time_create(record, now)
        if ports is not None:
            self.tally.ports_written += len(ports)

    async def move(self) -> None:
        record = self._idle_port()
        if record is None:
            return
        choices = [h for h in self.topology.hosts_by_subnet[record.subnet] if h != record.host]
        if not choices:
            return
        old, new = record.host, self.rng.choice(choices)
        self.lag.supersede(record.id)
        self.ledger.begin_change(record, (old, new))
        answered = await self._send("move", "PUT", f"/v2.0/ports/{record.id}",
                                    {"port": {"binding:host_id": new}})
        now = time.perf_counter()
        self.ledger.end_move(record, (old, new), None if answered is None else answered["port"],
                             now)
        if answered is None:
            return
        self.tally.ports_written += 1
        self._left(old, record.subnet)
        waiting = {}
        if new in self.ledger.registered:
            waiting[new] = Condition(PORT, record.id, record.revision)
            if old in self.ledger.registered:
                waiting[old] = Condition(PORT, record.id, None)
            self.lag.start("move", record.id, now, waiting)

    async def delete(self) -> None:
        record = self._idle_port()
        if record is None:
            return
        host = record.host
        self.lag.supersede(record.id)
        self.ledger.begin_change(record, (host,))
        ok = await self._send("delete", "DELETE", f"/v2.0/ports/{record.id}") is not None
        now = time.perf_counter()
        self.ledger.end_delete(record, (host,), ok, now)
        if not ok:
            return
        self.tally.ports_written += 1
        self._left(host, record.subnet)
        if host in self.ledger.registered:
            self.lag.start("delete", record.id, now, {host: Condition(PORT, record.id, None)})

    async def register_late(self, hosts: list[str]) -> None:
        if not hosts:
            return
        agents = [self.agents[h] for h in hosts]
        await register(Fleet(agents, self.fleet.changed), self.api_url)
        self.ledger.register(hosts, time.perf_counter())
        self.tally.registered_late += len(hosts)

    async def restart(self) -> None:
        candidates = sorted(h for h in self.ledger.registered if h not in self.ledger.restarts)
        if not candidates:
            return
        agent = self.agents[self.rng.choice(candidates)]
        self.ledger.restarts[agent.node_id] = agent.state.generation
        self.tally.restarts += 1
        await agent.restart(self.controller)

    # --- helpers ----------------------------------------------------------------------------

    async def _send(self, what: str, method: str, path: str,
                    body: Any = None) -> dict[str, Any] | None:
        """The answer's JSON ({} for a 204), or None after counting the failure."""
        self.tally.requests[what] += 1
        sent = time.perf_counter()
        try:
            response = await self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            self.tally.error(what, f"{type(exc).__name__}: {exc}")
            return None
        self.tally.latencies[what].append(time.perf_counter() - sent)
        if response.status_code >= 300:
            self.tally.error(what, f"{response.status_code} {response.text}")
            return None
        return response.json() if response.content else {}

    def _idle_port(self) -> PortRecord | None:
        port_id = self.ledger.idle.choice(self.rng)
        return None if port_id is None else self.ledger.ports[port_id]

    def _time_create(self, record: PortRecord, now: float) -> None:
        if record.host not in self.ledger.registered:
            return
        waiting = {record.host: Condition(PORT, record.id, record.revision)}
        for host in self.ledger.hosts_in(record.subnet):
            if host != record.host and host in self.ledger.registered:
                waiting[host] = Condition(NEIGHBOR, record.id, record.revision, record.subnet)
        self.lag.start("create", record.id, now, waiting)

    def _left(self, host: str, subnet: str) -> None:
        if not self.ledger.member(subnet, host):
            self.lag.left_subnet(host, subnet)


def _split(items: list[str], parts: int) -> list[list[str]]:
    return [items[k::parts] for k in range(parts)]
