"""Convergence under churn, model-based: random interleavings of port creates (single and
bulk), renames, moves and deletes, security-group membership and remote-group rules, router
interfaces added and removed, late node registrations, agent restarts, unreachable hosts,
lost replies, slow agents, data planes failing ports and neighbour entries, and controller
restarts, driven
through the real controller (SQLite, the real compiler, placement, deltas and status
tracking) with in-process agents that apply every goal state exactly as Alcor's agent does
(``AgentState``); some of them never sweep, as upstream's agent (they delete only what a goal
state names with DELETE).

After every step, from the outside (the database and what each agent realized):

* an ACTIVE port's own host holds the port at its current revision;
* every other host that has used one of the port's subnets (a workload port with an address
  in it) since before that revision was written, and was registered since then too, holds the
  port's neighbour entry at that revision.

(Hosts whose agent restarted and has not applied a goal state in full since are skipped: a
real agent reads its data plane back, this model's loses it.)  Once quiet (every host reachable, the
outbox empty, every host acknowledged its generation): every port bound to a registered node
is ACTIVE, and every host holds exactly its full compile, sweeping or not (after a controller
restart a non-sweeping host may also keep what was deleted before it: the controller's record
of what hosts hold is memory only).

``ALCOR_MODEL_EXAMPLES`` (default 25) and ``ALCOR_MODEL_STEPS`` (default 30) size the run;
``make model`` runs it long.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from alcor import errors
from alcor.agent.state import AgentState, desired_from_v2
from alcor.api.attributes import apply_create
from alcor.api.definitions import network as network_def
from alcor.api.definitions import port as port_def
from alcor.api.definitions import router as router_def
from alcor.api.definitions import security_group as group_def
from alcor.api.definitions import security_group_rule as rule_def
from alcor.api.definitions import subnet as subnet_def
from alcor.cli.wiring import build_services, open_store
from alcor.config import DpmSettings, load
from alcor.context import RequestContext
from alcor.dpm.compiler import compile_host
from alcor.dpm.controller import Controller
from alcor.dpm.placement import affected_hosts
from alcor.dpm.pusher import PushResult, ResourceStatus
from alcor.rpc._generated import common_pb2, goalstate_pb2, neighbor_pb2, port_pb2
from alcor.services.nodes import NodeService

Row = dict[str, Any]

EXAMPLES = int(os.environ.get("ALCOR_MODEL_EXAMPLES", "25"))
STEPS = int(os.environ.get("ALCOR_MODEL_STEPS", "30"))
HOSTS = ("h0", "h1", "h2", "h3", "h4")
FIRST = ("h0", "h1", "h2")
"""Registered from the start; the others register late (or never)."""
NON_SWEEPING = {"h1", "h3"}
SETTINGS = DpmSettings(backoff_initial=0.001, backoff_max=0.01, poll_interval=0.01,
                       reconcile_interval=0.1, push_deadline=5.0)
QUIET_TIMEOUT = 15.0


def address(node_id: str) -> str:
    return f"10.9.0.{HOSTS.index(node_id) + 1}"


def node_row(node_id: str) -> Row:
    n = HOSTS.index(node_id) + 1
    return {"node_id": node_id, "node_name": node_id, "local_ip": address(node_id),
            "mac_address": f"aa:bb:cc:00:00:{n:02x}", "veth": "eth0", "server_port": 50001,
            "host_dvr_mac": f"fe:16:11:00:00:{n:02x}"}


class Quiet:
    """A data plane that programs nothing (the model checks AgentState's realized view), or
    fails every port and neighbour entry while ``failing()`` says so."""

    def __init__(self, failing: Callable[[], bool]) -> None:
        self.failing = failing

    def apply(self, kind: int, resource_id: str, config: Any, previous: Any) -> None:
        if self.failing() and kind in (common_pb2.PORT, common_pb2.NEIGHBOR):
            raise OSError("injected: the data plane refused it")

    def delete(self, kind: int, resource_id: str, previous: Any) -> None:
        return None


class Agents:
    """The hosts' agents behind the controller's pusher seam, with faults to inject."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.states: dict[str, AgentState] = {}
        self.unreachable: set[str] = set()
        self.lose_replies: set[str] = set()
        """Hosts that apply what they get but whose answer never arrives."""
        self.slow: set[str] = set()
        self.failing: set[str] = set()
        """Hosts whose data plane fails every port and neighbour entry."""
        self.restarted: set[str] = set()
        """Restarted agents that have applied nothing since."""
        self.log: dict[str, list[tuple[int, int | None, str, dict[str, int]]]] = {}
        """node -> (generation, base, outcome, {resource id: operation}) per push, for
        failure messages."""

    def start(self, node_id: str) -> None:
        self.states[node_id] = AgentState(Quiet(lambda: node_id in self.failing),
                                          address(node_id),
                                          implicit_deletes=node_id not in NON_SWEEPING)

    async def push(self, node: Mapping[str, Any], generation: int, goal_state: bytes,
                   base: int | None = None) -> PushResult:
        node_id = str(node["node_id"])
        if node_id in self.slow:
            await asyncio.sleep(self.rng.choice((0.0, 0.001, 0.005, 0.02)))
        if node_id in self.unreachable or node_id not in self.states:
            return PushResult(node_id, generation, [], f"{node_id}: UNAVAILABLE")
        state = self.states[node_id]
        message = goalstate_pb2.GoalStateV2.FromString(goal_state)
        report = state.apply_v2(message, generation, base=base)
        refused = any(o.status == common_pb2.OUT_OF_ORDER for o in report.outcomes)
        self.log.setdefault(node_id, []).append((
            generation, base, "refused" if refused else "applied",
            {key: st.operation_type for name in ("port_states", "neighbor_states")
             for key, st in getattr(message, name).items()}))
        if (report.generation is not None and state.generation == generation
                and not report.failures()):
            self.restarted.discard(node_id)
        if node_id in self.lose_replies:
            return PushResult(node_id, generation, [], "deadline exceeded")
        statuses = [ResourceStatus(o.resource_id, o.kind, o.status, 0, 0, o.error)
                    for o in report.outcomes]
        return PushResult(node_id, generation, statuses, None)

    def history(self, node_id: str, key: str) -> list[tuple[int, int | None, str, int | None]]:
        """(generation, base, outcome, operation on ``key`` or None) of each push."""
        return [(g, b, outcome, ops.get(key)) for g, b, outcome, ops in self.log.get(node_id, [])]

    def revision(self, node_id: str, kind: int, resource_id: str) -> int | None:
        held = self.states[node_id].realized[kind].get(resource_id)
        if held is None:
            return None
        parser = port_pb2.PortConfiguration if kind == common_pb2.PORT else None
        if parser is not None:
            return int(parser.FromString(held).revision_number)
        return int(neighbor_pb2.NeighborConfiguration.FromString(held).revision_number)


class Convergence(RuleBasedStateMachine):
    """The world, the controller and the agents; rules are the operations."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="alcor-model-")
        cfg = load({}, db__url=f"sqlite:///{self.dir}/alcor.db")
        self.store = open_store(cfg)
        self.services = build_services(cfg, self.store)
        self.ctx = RequestContext.admin("proj-a")
        self.loop = asyncio.new_event_loop()
        self.agents = Agents(random.Random(0))
        self.registered: dict[str, int] = {}
        """node -> the step it registered at."""
        self.step = 0
        self.trace: list[str] = []
        """The steps so far, for failure messages (a nondeterministic run may not replay)."""
        self._current = "world"
        self.written: dict[tuple[str, int], int] = {}
        """(port, revision) -> the step that wrote it."""
        self.using: dict[tuple[str, str], int] = {}
        """(host, subnet) -> the step since which the host has used the subnet."""
        self.controller = self._new_controller()
        self.controller_restarted = False
        """A controller restart loses what it knew hosts hold: non-sweeping agents may then
        keep what was deleted before it (docs/architecture.md, departures)."""

    def _new_controller(self) -> Controller:
        return Controller(self.store, SETTINGS, self.agents, compile_host=compile_host,
                          placement=affected_hosts)

    # --- the world -----------------------------------------------------------------------

    def _create(self, collection: str, resource: Any, bodies: list[Row]) -> list[Row]:
        items = [apply_create(resource, body, self.ctx.project_id) for body in bodies]
        service = self.services.by_collection[collection]
        rows: list[Row] = service.create(self.ctx, service.prepare_create(self.ctx, items))
        return rows

    @initialize(seed=st.integers(0, 2**16))
    def world(self, seed: int) -> None:
        self.agents.rng.seed(seed)
        self.store.write(NodeService(self.store).create_txn, [node_row(n) for n in FIRST])
        for node_id in FIRST:
            self.registered[node_id] = 0
            self.agents.start(node_id)
        one = self._create("networks", network_def.RESOURCE, [{"name": "one"}])[0]
        two = self._create("networks", network_def.RESOURCE, [{"name": "two"}])[0]
        self.subnets = [
            self._create("subnets", subnet_def.RESOURCE, [{
                "network_id": net["id"], "cidr": cidr, "ip_version": 4}])[0]
            for net, cidr in ((one, "10.1.0.0/24"), (two, "10.2.0.0/24"),
                              (two, "10.3.0.0/24"))]
        self.router = self._create("routers", router_def.RESOURCE, [{"name": "r"}])[0]
        self.groups = [self._create("security-groups", group_def.RESOURCE,
                                    [{"name": name}])[0] for name in ("web", "db")]
        self.loop.run_until_complete(self.controller.start())
        self._observe()

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self._settle_and_check())
        finally:
            self.loop.run_until_complete(self.controller.stop())
            self.loop.close()
            self.store.dispose()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _ports(self) -> list[Row]:
        return self.store.read(lambda txn: txn.select(
            "ports", columns=("id", "revision_number", "status", "binding:host_id",
                              "fixed_ips", "device_owner")))

    def _observe(self) -> None:
        """After a step: remember which hosts use which subnets since when."""
        self.step += 1
        self.trace.append(f"{self.step}: {self._current}")
        now: set[tuple[str, str]] = set()
        for port in self._ports():
            self.written.setdefault((port["id"], port["revision_number"]), self.step)
            host = port["binding:host_id"]
            if host:
                now |= {(host, ip["subnet_id"]) for ip in port["fixed_ips"]}
        self.using = {key: self.using.get(key, self.step) for key in now}

    def _run(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))

    # --- operations ----------------------------------------------------------------------

    def _body(self, host: str, subnet: int) -> Row:
        chosen = self.subnets[subnet]
        return {"network_id": chosen["network_id"], "binding:host_id": host,
                "fixed_ips": [{"subnet_id": chosen["id"]}]}

    @rule(host=st.sampled_from([*HOSTS, ""]), subnet=st.integers(0, 2),
          wait=st.sampled_from((0.0, 0.002, 0.02)))
    def create_port(self, host: str, subnet: int, wait: float) -> None:
        self._current = "create_port" + repr(dict(list(locals().items())[1:]))
        made = self._create("ports", port_def.RESOURCE, [self._body(host, subnet)])
        self._current += f" port {made[0]['id']}"
        self.controller.changed()
        self._observe()
        self._run(wait)

    @rule(hosts=st.lists(st.sampled_from(HOSTS), min_size=2, max_size=5),
          subnet=st.integers(0, 2), wait=st.sampled_from((0.0, 0.002, 0.02)))
    def bulk_create(self, hosts: list[str], subnet: int, wait: float) -> None:
        self._current = "bulk_create" + repr(dict(list(locals().items())[1:]))
        made = self._create("ports", port_def.RESOURCE, [self._body(h, subnet) for h in hosts])
        self._current += f" ports {[p['id'] for p in made]}"
        self.controller.changed()
        self._observe()
        self._run(wait)

    def _pick(self, index: int) -> Row | None:
        ports = sorted((p for p in self._ports() if not p["device_owner"]),
                       key=lambda p: p["id"])
        return ports[index % len(ports)] if ports else None

    @rule(index=st.integers(0, 100), wait=st.sampled_from((0.0, 0.002, 0.02)))
    def delete_port(self, index: int, wait: float) -> None:
        self._current = "delete_port" + repr(dict(list(locals().items())[1:]))
        port = self._pick(index)
        if port is not None:
            self._current += f" port {port['id']}"
            self.services.by_collection["ports"].delete(self.ctx, port["id"])
            self.controller.changed()
        self._observe()
        self._run(wait)

    @rule(index=st.integers(0, 100), host=st.sampled_from([*HOSTS, ""]),
          wait=st.sampled_from((0.0, 0.002, 0.02)))
    def move_port(self, index: int, host: str, wait: float) -> None:
        self._current = "move_port" + repr(dict(list(locals().items())[1:]))
        port = self._pick(index)
        if port is not None:
            self._current += f" port {port['id']}"
            self.services.by_collection["ports"].update(self.ctx, port["id"],
                                                        {"binding:host_id": host})
            self.controller.changed()
        self._observe()
        self._run(wait)

    @rule(index=st.integers(0, 100), name=st.sampled_from(("a", "b", "c")))
    def rename_port(self, index: int, name: str) -> None:
        self._current = "rename_port" + repr(dict(list(locals().items())[1:]))
        port = self._pick(index)
        if port is not None:
            self.services.by_collection["ports"].update(self.ctx, port["id"], {"name": name})
            self.controller.changed()
        self._observe()

    @rule(subnet=st.integers(0, 2), attach=st.booleans(),
          wait=st.sampled_from((0.0, 0.002, 0.02)))
    def router_interface(self, subnet: int, attach: bool, wait: float) -> None:
        self._current = "router_interface" + repr(dict(list(locals().items())[1:]))
        routers = self.services.by_collection["routers"]
        action = routers.add_interface if attach else routers.remove_interface  # type: ignore[attr-defined]
        try:
            action(self.ctx, self.router["id"], None, self.subnets[subnet]["id"])
            self.controller.changed()
        except errors.AlcorError:
            self._current += " refused"  # attached already, or not attached
        self._observe()
        self._run(wait)

    @rule(index=st.integers(0, 100), group=st.integers(0, 1))
    def join_group(self, index: int, group: int) -> None:
        self._current = "join_group" + repr(dict(list(locals().items())[1:]))
        port = self._pick(index)
        if port is not None:
            self._current += f" port {port['id']}"
            self.services.by_collection["ports"].update(
                self.ctx, port["id"], {"security_groups": [self.groups[group]["id"]]})
            self.controller.changed()
        self._observe()

    @rule(group=st.integers(0, 1), remote=st.integers(0, 1), port=st.integers(1, 65535))
    def add_rule(self, group: int, remote: int, port: int) -> None:
        self._current = "add_rule" + repr(dict(list(locals().items())[1:]))
        try:
            self._create("security-group-rules", rule_def.RESOURCE, [{
                "security_group_id": self.groups[group]["id"], "direction": "ingress",
                "ethertype": "IPv4", "protocol": "tcp", "port_range_min": port,
                "port_range_max": port, "remote_group_id": self.groups[remote]["id"]}])
            self.controller.changed()
        except errors.Conflict:
            self._current += " exists"
        self._observe()

    @rule(node_id=st.sampled_from(HOSTS[len(FIRST):]))
    def register(self, node_id: str) -> None:
        self._current = "register" + repr(dict(list(locals().items())[1:]))
        if node_id not in self.registered:
            self.agents.start(node_id)
            self.store.write(NodeService(self.store).create_txn, [node_row(node_id)])
            self.registered[node_id] = self.step + 1
            self.controller.changed()
        self._observe()

    @rule(node_id=st.sampled_from(HOSTS))
    def restart_agent(self, node_id: str) -> None:
        self._current = "restart_agent" + repr(dict(list(locals().items())[1:]))
        if node_id in self.registered:
            self.agents.start(node_id)
            self.agents.restarted.add(node_id)
            self.loop.run_until_complete(self.controller.agent_restarted(address(node_id)))
        self._observe()

    @rule()
    def restart_controller(self) -> None:
        self._current = "restart_controller"
        self.loop.run_until_complete(self.controller.stop())
        self.controller = self._new_controller()
        self.controller_restarted = True
        self.loop.run_until_complete(self.controller.start())
        self._observe()

    @rule(node_id=st.sampled_from(HOSTS),
          fault=st.sampled_from(("unreachable", "lose", "slow", "fail")), on=st.booleans())
    def fault(self, node_id: str, fault: str, on: bool) -> None:
        self._current = "fault" + repr(dict(list(locals().items())[1:]))
        target = {"unreachable": self.agents.unreachable, "lose": self.agents.lose_replies,
                  "slow": self.agents.slow, "fail": self.agents.failing}[fault]
        (target.add if on else target.discard)(node_id)
        self._observe()

    @rule(seconds=st.sampled_from((0.0, 0.001, 0.01, 0.05)))
    def advance(self, seconds: float) -> None:
        self._current = "advance" + repr(dict(list(locals().items())[1:]))
        self._run(seconds)
        self._observe()

    # --- what must hold ------------------------------------------------------------------

    def _fresh(self, node_id: str) -> bool:
        """Whether the host's agent restarted and has applied nothing since."""
        return node_id in self.agents.restarted

    @invariant()
    def active_ports_are_held(self) -> None:
        if not self.subnets_ready():
            return
        for port in self._ports():
            if port["status"] != "ACTIVE":
                continue
            own, revision = port["binding:host_id"], port["revision_number"]
            written = self.written.get((port["id"], revision), self.step)
            assert own in self.registered, f"{port['id']} ACTIVE on unregistered {own}"
            if not self._fresh(own):
                held = self.agents.revision(own, common_pb2.PORT, port["id"])
                assert held == revision, (
                    f"port {port['id']} ACTIVE at revision {revision}, its host {own} holds "
                    f"{held}; pushes to {own}: {self.agents.history(own, port['id'])}; "
                    f"steps: {self.trace}")
            subnets = {ip["subnet_id"] for ip in port["fixed_ips"]}
            for (host, subnet), since in self.using.items():
                if (host == own or subnet not in subnets or since >= written
                        or self.registered.get(host, written) >= written or self._fresh(host)):
                    continue
                key = f"L2/{port['id']}"
                held = self.agents.revision(host, common_pb2.NEIGHBOR, key)
                assert held == revision, (
                    f"port {port['id']} ACTIVE at revision {revision}, neighbour host {host} "
                    f"holds {held}; pushes to {host}: {self.agents.history(host, key)}; "
                    f"steps: {self.trace}")

    def subnets_ready(self) -> bool:
        return hasattr(self, "subnets")

    async def _settle_and_check(self) -> None:
        if not self.subnets_ready():
            return
        self.agents.unreachable.clear()
        self.agents.lose_replies.clear()
        self.agents.slow.clear()
        self.agents.failing.clear()
        for node_id in self.registered:
            self.controller.kick(node_id, now=True)
        deadline = self.loop.time() + QUIET_TIMEOUT
        while not await self._quiet():
            assert self.loop.time() < deadline, (
                f"the controller did not converge: {self._lag()}; steps: {self.trace}")
            await asyncio.sleep(0.02)
        for node_id in self.registered:
            self._check_exact(node_id)
        for port in self._ports():
            if port["binding:host_id"] in self.registered:
                assert port["status"] == "ACTIVE", f"{port['id']} still {port['status']}"

    def _lag(self) -> str:
        states = self.store.read(lambda txn: txn.select("host_states"))
        ports = self.store.read(lambda txn: txn.select("ports", columns=(
            "id", "binding:host_id", "status", "revision_number")))
        hosts = [(s["node_id"], s["generation"], s["acked_generation"], s["last_error"])
                 for s in states]
        shown = [(p["id"][:8], p["binding:host_id"], p["status"]) for p in ports]
        tracker = self.controller.tracker
        stuck = {p["id"][:8]: (tracker.entries.get(p["id"]), p["id"] in tracker.failed,
                               tracker.blocked.get(p["id"]),
                               self.agents.history(p["binding:host_id"], p["id"])
                               if p["binding:host_id"] in self.agents.states else None)
                 for p in ports if p["status"] != "ACTIVE" and p["binding:host_id"]
                 in self.registered}
        return f"hosts {hosts}, ports {shown}, stuck {stuck}"

    async def _quiet(self) -> bool:
        await self.controller.quiesce()
        states = self.store.read(lambda txn: txn.select("host_states"))
        lagging = [s["node_id"] for s in states if s["node_id"] in self.registered
                   and s["generation"] > s["acked_generation"]]
        for node_id in lagging:
            self.controller.kick(node_id, now=True)
        pending = self.store.read(lambda txn: txn.select("ports", columns=(
            "binding:host_id", "status")))
        return not lagging and all(p["status"] == "ACTIVE" for p in pending
                                   if p["binding:host_id"] in self.registered)

    def _check_exact(self, node_id: str) -> None:
        node = self.store.read(lambda txn: txn.select("nodes", {"node_id": node_id})[0])
        goal = goalstate_pb2.GoalStateV2.FromString(self.store.read(compile_host, node))
        want: dict[int, dict[str, bytes]] = {}
        for item in desired_from_v2(goal, address(node_id)):
            assert item.config is not None
            want.setdefault(item.kind, {})[item.resource_id] = item.config.SerializeToString()
        have = {kind: dict(held) for kind, held in self.agents.states[node_id].realized.items()
                if held}
        if self.controller_restarted and node_id in NON_SWEEPING:  # a superset is allowed
            have = {kind: {rid: raw for rid, raw in held.items() if rid in want.get(kind, {})}
                    for kind, held in have.items()}
            have = {kind: held for kind, held in have.items() if held}
        assert have == want, (
            f"{node_id} holds {({k: sorted(v) for k, v in have.items()})}, its full compile "
            f"is {({k: sorted(v) for k, v in want.items()})}")


Convergence.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    # Threads and timers make a run unrepeatable: no shrinking (the failure message carries
    # the steps taken instead).
    phases=(Phase.explicit, Phase.reuse, Phase.generate), report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestConvergence = Convergence.TestCase
