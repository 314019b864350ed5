"""Many lightweight fake agents in one process, to measure the controller fanning out to
100-1,000 hosts (W2, W3 in shared/reference/performance.md).

Each simulated agent is a real GoalStateProvisioner: its own grpc.aio server on its own
loopback port (127.0.0.1:<port>, or its own 127.x.y.z address with ``distinct_ips``), the
agent's real apply path (generation rules, plan, per-resource replies), applied inline on the
one event loop.  Two modes:

- ``state`` (default): the agent's AgentState with a programmer that only counts calls, so
  plans, deletes and idempotence are real and the realized state can be inspected;
- ``ack``: keeps nothing but the generation and answers SUCCESS for every resource it is sent
  (for fan-outs whose realized state would not fit in one process's memory).

In ``state`` mode an agent can be non-sweeping (``start_agents(non_sweeping=...)``): its
AgentState has ``implicit_deletes=False``, so a full goal state deletes only what it names with
DELETE, as upstream's C++ agent does.  ``SimAgent.restart`` drops an agent's state and asks the
controller for its whole goal state again, as a restarted agent does.

Agents register themselves with the nodes API (``POST /nodes/bulk``) when given ``api_url``.

From a benchmark::

    fleet = await start_agents(100, api_url="http://127.0.0.1:9696")
    ...  # drive the API
    await fleet.wait_until(lambda: all(a.generation >= 1 for a in fleet.agents), timeout=30)
    await fleet.stop()

As a script (its own process, so the controller's CPU is measured apart)::

    python -m bench.sim_agents --count 1000 --api-url http://127.0.0.1:9696 [--processes 4]

prints one line per second while goal states arrive, and totals on SIGINT/SIGTERM.
``SimProcesses`` does the same from a benchmark: agents spread over child processes, for
fan-outs whose agents would need more than one core (a 10,000-neighbour goal state costs a
simulated agent ~60 ms to apply and answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from alcor.agent.programmer import Configuration
from alcor.agent.registration import HostInfo, default_dvr_mac, default_mac, register_many
from alcor.agent.server import AgentServer, request_full_state, start_server
from alcor.agent.state import OUT_OF_ORDER, SUCCESS, AgentState, Desired, Outcome, Report

REGISTER_CHUNK = 500


class CountingProgrammer:
    """A data plane that only counts what it is asked to do."""

    def __init__(self) -> None:
        self.applied = 0
        self.deleted = 0

    def apply(self, kind: int, resource_id: str, config: Configuration,
              previous: Configuration | None) -> None:
        self.applied += 1

    def delete(self, kind: int, resource_id: str, previous: Configuration) -> None:
        self.deleted += 1


class SimState(AgentState):
    """The agent's state, noting when each goal state was applied and waking the fleet."""

    def __init__(self, programmer: CountingProgrammer, local_ip: str,
                 changed: asyncio.Event, *, implicit_deletes: bool = True) -> None:
        super().__init__(programmer, local_ip, implicit_deletes=implicit_deletes)
        self.counter = programmer
        self.changed = changed
        self.received = 0
        self.resources = 0
        self.applied_at: list[tuple[int | None, float]] = []
        """(generation, perf_counter) of every goal state applied (refusals excluded)."""

    def apply(self, desired: list[Desired], generation: int | None,
              started: float | None = None, base: int | None = None) -> Report:
        report = self._apply(desired, generation, started, base)
        self.received += 1
        self.resources += len(report.outcomes)
        if not report.outcomes or report.outcomes[0].status != OUT_OF_ORDER:
            self.applied_at.append((generation, time.perf_counter()))
        self.changed.set()
        return report

    def _apply(self, desired: list[Desired], generation: int | None,
               started: float | None, base: int | None) -> Report:
        return super().apply(desired, generation, started, base)


class AckOnlyState(SimState):
    """Keeps only the generation; every resource of a goal state not older is SUCCESS."""

    def _apply(self, desired: list[Desired], generation: int | None,
               started: float | None, base: int | None) -> Report:
        t0 = time.perf_counter() if started is None else started
        status = SUCCESS
        if generation is not None:
            refused = generation < self.generation or (base is not None
                                                       and base != self.generation)
            status = OUT_OF_ORDER if refused else SUCCESS
            if not refused:
                self.generation = generation
        elapsed = int((time.perf_counter() - t0) * 1_000_000)
        outcomes = [Outcome(d.kind, d.resource_id, d.operation, status, None, 0, elapsed)
                    for d in desired]
        return Report(generation, outcomes, elapsed, 0)


@dataclass
class SimAgent:
    node_id: str
    local_ip: str
    server: AgentServer
    state: SimState

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def generation(self) -> int:
        return self.state.generation

    @property
    def node(self) -> dict[str, object]:
        """The node as the nodes API stores it (what a pusher is given)."""
        return self.host_info().body()

    def host_info(self) -> HostInfo:
        return HostInfo(node_id=self.node_id, node_name=self.node_id, local_ip=self.local_ip,
                        mac_address=default_mac(self.local_ip), veth="eth0",
                        server_port=self.port, host_dvr_mac=default_dvr_mac(self.local_ip))

    async def restart(self, controller: str) -> None:
        """Drop everything held (a fresh state of the same kind and sweeping mode, as after a
        process restart) and ask ``controller`` (host:port) for the whole goal state again;
        returns once the controller answered the request (the goal state comes as a push).
        Only the agents' own 127.x addresses (``distinct_ips``) make it one host's restart:
        the controller re-pushes every node registered at the address."""
        old = self.state
        fresh = type(old)(CountingProgrammer(), self.local_ip, old.changed,
                          implicit_deletes=old.implicit_deletes)
        self.state = fresh
        self.server.provisioner.state = fresh
        await request_full_state(controller, self.local_ip)


@dataclass
class Fleet:
    agents: list[SimAgent]
    changed: asyncio.Event
    mode: str = "state"
    started_at: float = field(default_factory=time.perf_counter)

    def by_id(self) -> dict[str, SimAgent]:
        return {a.node_id: a for a in self.agents}

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> None:
        """Return once ``predicate()`` holds, re-checked after every goal state any agent
        applies; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def totals(self) -> dict[str, int]:
        states = [a.state for a in self.agents]
        return {
            "agents": len(states),
            "goal_states": sum(s.received for s in states),
            "resources": sum(s.resources for s in states),
            "programmed": sum(s.counter.applied + s.counter.deleted for s in states),
        }

    async def request_full_states(self, controller: str) -> None:
        """Every agent asks ``controller`` for its full goal state (as after a restart)."""
        await asyncio.gather(*(request_full_state(controller, a.local_ip) for a in self.agents))

    async def stop(self) -> None:
        await asyncio.gather(*(a.server.stop(None) for a in self.agents))


def sim_ip(index: int) -> str:
    """A distinct loopback address per agent: 127.1.0.1, 127.1.0.2, ... (Linux answers all
    of 127/8 locally)."""
    return f"127.1.{index // 250}.{index % 250 + 1}"


async def start_agents(
    count: int, *, api_url: str | None = None, prefix: str = "sim", mode: str = "state",
    distinct_ips: bool = False, controller: str | None = None, first_index: int = 0,
    non_sweeping: Container[int] = frozenset(),
) -> Fleet:
    """Start ``count`` agents named ``<prefix>-<index>`` (index from ``first_index``, four
    digits); register them with ``api_url`` and have them ask ``controller`` for their full
    goal state when given.  Agents whose index is in ``non_sweeping`` keep whatever a full
    goal state leaves out (``implicit_deletes=False``; state mode only)."""
    if mode not in ("state", "ack"):
        raise ValueError(f"mode must be 'state' or 'ack', not {mode!r}")
    if non_sweeping and mode != "state":
        raise ValueError("non-sweeping agents need state mode")
    changed = asyncio.Event()
    state_class = SimState if mode == "state" else AckOnlyState
    fleet = Fleet([], changed, mode)
    try:
        for i in range(first_index, first_index + count):
            ip = sim_ip(i) if distinct_ips else "127.0.0.1"
            state = state_class(CountingProgrammer(), ip, changed,
                                implicit_deletes=i not in non_sweeping)
            server = await start_server(state, f"{ip}:0", offload=False)
            fleet.agents.append(SimAgent(f"{prefix}-{i:04d}", ip, server, state))
        if api_url:
            await register(fleet, api_url)
        if controller:
            await fleet.request_full_states(controller)
    except BaseException:
        await fleet.stop()  # no server outlives its event loop
        raise
    return fleet


async def register(fleet: Fleet, api_url: str, *, attempts: int = 8) -> None:
    """Register every agent's node, ``REGISTER_CHUNK`` per request; an unreachable API is
    retried with backoff (``attempts`` times), a refusal raises."""
    hosts = [a.host_info() for a in fleet.agents]
    for start in range(0, len(hosts), REGISTER_CHUNK):
        chunk = hosts[start:start + REGISTER_CHUNK]
        for attempt in range(attempts):
            try:
                await asyncio.to_thread(register_many, api_url, chunk)
                break
            except OSError:
                if attempt == attempts - 1:
                    raise
                await asyncio.sleep(0.1 * 2 ** attempt)


class SimProcesses:
    """``count`` simulated agents spread over ``processes`` child processes (this module run
    as a script), when one core cannot play every agent::

        with SimProcesses(1000, 4, api_url=api) as sims:
            ...  # sims.nodes: the registered nodes
        sims.totals  # summed over the children once they stopped
    """

    def __init__(self, count: int, processes: int, *, api_url: str | None = None,
                 mode: str = "state", prefix: str = "sim", distinct_ips: bool = False,
                 workdir: Path | None = None) -> None:
        self.shares = [count // processes + (1 if k < count % processes else 0)
                       for k in range(processes)]
        self.options = {"api_url": api_url, "mode": mode, "prefix": prefix,
                        "distinct_ips": distinct_ips}
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="alcor-sim-"))
        self.procs: list[subprocess.Popen[str]] = []
        self.nodes: list[dict[str, object]] = []
        self.totals: dict[str, int] = {}

    def _args(self, k: int, first: int) -> list[str]:
        args = [sys.executable, "-m", "bench.sim_agents", "--quiet", "--count",
                str(self.shares[k]), "--first-index", str(first), "--prefix",
                str(self.options["prefix"]), "--mode", str(self.options["mode"]),
                "--nodes-json", str(self.workdir / f"nodes-{k}.json")]
        if self.options["api_url"]:
            args += ["--api-url", str(self.options["api_url"])]
        if self.options["distinct_ips"]:
            args.append("--distinct-ips")
        return args

    def __enter__(self) -> SimProcesses:
        root = Path(__file__).resolve().parent.parent
        first = 0
        for k in range(len(self.shares)):
            self.procs.append(subprocess.Popen(
                self._args(k, first), stdout=subprocess.PIPE, text=True, cwd=root,
                start_new_session=True))
            first += self.shares[k]
        for k, proc in enumerate(self.procs):
            assert proc.stdout is not None
            if "serving on ports" not in proc.stdout.readline():
                self.__exit__(None, None, None)
                raise RuntimeError(f"simulator process {k} did not start")
            nodes = json.loads((self.workdir / f"nodes-{k}.json").read_text())
            self.nodes += nodes["host_infos"]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        totals: dict[str, int] = {}
        for proc in self.procs:
            out, _ = proc.communicate(timeout=60)
            for line in out.splitlines():
                if line.startswith("totals: "):
                    for key, value in json.loads(line[len("totals: "):]).items():
                        totals[key] = totals.get(key, 0) + int(value)
        self.totals = totals


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sim_agents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--processes", type=int, default=1,
                        help="spread the agents over this many processes")
    parser.add_argument("--api-url", help="register the agents with this nodes API")
    parser.add_argument("--controller", help="controller gRPC host:port to ask for state")
    parser.add_argument("--prefix", default="sim")
    parser.add_argument("--first-index", type=int, default=0)
    parser.add_argument("--mode", choices=("state", "ack"), default="state")
    parser.add_argument("--distinct-ips", action="store_true",
                        help="give each agent its own 127.1.x.y address")
    parser.add_argument("--nodes-json", type=Path,
                        help='write {"host_infos": [...]} of the agents to this file')
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    fleet = await start_agents(args.count, api_url=args.api_url, prefix=args.prefix,
                               mode=args.mode, distinct_ips=args.distinct_ips,
                               first_index=args.first_index)
    ports = [a.port for a in fleet.agents]
    if args.nodes_json:
        args.nodes_json.write_text(json.dumps({"host_infos": [a.node for a in fleet.agents]}))
    print(f"{len(ports)} simulated agents ({args.mode}) serving on ports "
          f"{min(ports)}-{max(ports)} after {time.perf_counter() - began:.2f}s"
          + (f", registered at {args.api_url}" if args.api_url else ""), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if args.controller:
        await fleet.request_full_states(args.controller)
    reporter = None if args.quiet else asyncio.create_task(_report(fleet))
    await stop.wait()
    if reporter is not None:
        reporter.cancel()
    await fleet.stop()
    print(f"totals: {json.dumps(fleet.totals())}", flush=True)
    return 0


async def _report(fleet: Fleet) -> None:
    """One line per second while goal states arrive."""
    last = fleet.totals()
    while True:
        await asyncio.sleep(1.0)
        now = fleet.totals()
        if now != last:
            print(json.dumps(now), flush=True)
            last = now


def _run_processes(args: argparse.Namespace) -> int:
    with SimProcesses(args.count, args.processes, api_url=args.api_url, mode=args.mode,
                      prefix=args.prefix, distinct_ips=args.distinct_ips) as sims:
        if args.nodes_json:
            args.nodes_json.write_text(json.dumps({"host_infos": sims.nodes}))
        print(f"{len(sims.nodes)} simulated agents ({args.mode}) serving in "
              f"{args.processes} processes", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    print(f"totals: {json.dumps(sims.totals)}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.processes > 1:
        return _run_processes(args)
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
