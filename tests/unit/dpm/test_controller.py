"""The controller loop on a real SQLite store with the real compiler and placement, pushing to
a RecordingPusher: which hosts get which goal states, generations, coalescing, port status from
acknowledgements and failures, backoff for unreachable hosts, restart requests, a controller
that dies between claiming and pushing, and waiting for ports."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import grpc
import pytest

from alcor.agent.server import request_full_state, restart_request
from alcor.api.app import Services
from alcor.api.attributes import apply_create
from alcor.api.definitions import network as network_def
from alcor.api.definitions import port as port_def
from alcor.api.definitions import subnet as subnet_def
from alcor.config import DpmSettings
from alcor.context import RequestContext
from alcor.db.store import Store
from alcor.dpm import hosts, status
from alcor.dpm.compiler import compile_host
from alcor.dpm.controller import Controller
from alcor.dpm.placement import affected_hosts
from alcor.dpm.pusher import PushResult, RecordingPusher, ResourceStatus
from alcor.dpm.server import DataplaneRuntime
from alcor.dpm.waiting import Poller
from alcor.rpc._generated import common_pb2, goalstate_pb2, goalstateprovisioner_pb2_grpc
from alcor.services.nodes import NodeService

Row = dict[str, Any]


NODES = {"host-a": "10.0.0.1", "host-b": "10.0.0.2", "host-c": "10.0.0.3"}
FAST = DpmSettings(backoff_initial=0.001, backoff_max=0.004, poll_interval=0.01,
                   reconcile_interval=3600.0)


def run(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(main(), 60))


class Fleet:
    """The test's world: a network with one subnet, three registered nodes, the services."""

    def __init__(self, store: Store, services: Services, ctx: RequestContext) -> None:
        self.store = store
        self.services = services
        self.ctx = ctx
        nodes = [{"node_id": n, "node_name": n, "local_ip": ip, "mac_address": "aa:bb:cc:00:00:0"
                  + ip[-1], "veth": "eth0", "server_port": 50001,
                  "host_dvr_mac": "fe:16:11:00:00:0" + ip[-1]} for n, ip in NODES.items()]
        store.write(NodeService(store).create_txn, nodes)
        net = self._create("networks", network_def.RESOURCE, {"name": "net"})
        self.network_id = net["id"]
        self.subnet = self._create("subnets", subnet_def.RESOURCE, {
            "network_id": net["id"], "cidr": "192.168.1.0/24", "ip_version": 4})

    def _create(self, collection: str, resource: Any, body: Row) -> Row:
        item = apply_create(resource, body, self.ctx.project_id)
        service = self.services.by_collection[collection]
        return service.create(self.ctx, service.prepare_create(self.ctx, [item]))[0]

    def port(self, host: str = "", **attrs: Any) -> Row:
        return self._create("ports", port_def.RESOURCE, {
            "network_id": self.network_id, "binding:host_id": host, **attrs})

    def update_port(self, port_id: str, **changes: Any) -> Row:
        return self.services.by_collection["ports"].update(self.ctx, port_id, changes)

    def delete_port(self, port_id: str) -> None:
        self.services.by_collection["ports"].delete(self.ctx, port_id)

    def stored(self, port_id: str) -> Row:
        return self.services.by_collection["ports"].get(self.ctx, port_id)

    def host_state(self, node_id: str) -> Row:
        return self.store.read(lambda txn: hosts.host_states(txn, [node_id])[node_id])

    def outbox_rows(self) -> int:
        return self.store.read(lambda txn: txn.count("outbox"))


@pytest.fixture
def fleet(store: Store, services: Services, ctx: RequestContext) -> Fleet:
    return Fleet(store, services, ctx)


def controller(store: Store, pusher: Any, settings: DpmSettings = FAST) -> Controller:
    return Controller(store, settings, pusher, compile_host=compile_host,
                      placement=affected_hosts)


def goal(pusher: RecordingPusher, node_id: str) -> goalstate_pb2.GoalStateV2:
    """What the node holds: its last full goal state with the deltas since folded in."""
    held = pusher.holds(node_id)
    assert held is not None, f"nothing pushed to {node_id}"
    return held


def held(pusher: RecordingPusher, node_id: str) -> tuple[set[str], set[str]]:
    """The port ids and neighbour ids of the last goal state pushed to a node."""
    state = goal(pusher, node_id)
    return set(state.port_states), set(state.neighbor_states)


def pushes_to(pusher: RecordingPusher, node_id: str) -> int:
    return sum(1 for p in pusher.pushes if p.node_id == node_id)


class CountingPusher(RecordingPusher):
    """A RecordingPusher that signals once ``target`` pushes reached one node."""

    def __init__(self, node_id: str, target: int) -> None:
        super().__init__()
        self.node_id = node_id
        self.target = target
        self.reached = asyncio.Event()

    async def push(self, node: Mapping[str, Any], generation: int, goal_state: bytes,
                   base: int | None = None) -> PushResult:
        result = await super().push(node, generation, goal_state, base)
        if pushes_to(self, self.node_id) >= self.target:
            self.reached.set()
        return result


class FailingPusher(RecordingPusher):
    """Answers FAILURE (with a reason) for the resources in ``failing``, as an agent whose
    data plane refused them would."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: dict[str, str] = {}

    async def push(self, node: Mapping[str, Any], generation: int, goal_state: bytes,
                   base: int | None = None) -> PushResult:
        result = await super().push(node, generation, goal_state, base)
        statuses = [
            ResourceStatus(s.resource_id, s.resource_type, common_pb2.FAILURE, 0, 0,
                           self.failing[s.resource_id]) if s.resource_id in self.failing else s
            for s in result.statuses
        ]
        return PushResult(result.node_id, result.generation, statuses, result.error)


# --- pushes and generations ---------------------------------------------------------------


def test_ports_reach_their_host_and_their_neighbours_hosts_only(fleet: Fleet) -> None:
    a = fleet.port("host-a")
    b = fleet.port("host-b")
    unbound = fleet.port()
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        await c.stop()

    run(main)
    assert held(pusher, "host-a") == ({a["id"]}, {f"L2/{b['id']}"})
    assert held(pusher, "host-b") == ({b["id"]}, {f"L2/{a['id']}"})
    assert all(unbound["id"] not in p.goal_state.decode("latin-1") for p in pusher.pushes)
    if pusher.last("host-c") is not None:
        assert held(pusher, "host-c") == (set(), set())
    assert fleet.stored(a["id"])["status"] == "ACTIVE"
    assert fleet.stored(b["id"])["status"] == "ACTIVE"
    assert fleet.stored(unbound["id"])["status"] == "DOWN"
    assert fleet.outbox_rows() == 0
    state = fleet.host_state("host-a")
    assert state["acked_generation"] == state["generation"] >= 1
    assert state["last_error"] is None


def test_every_change_gives_the_hosts_a_higher_generation(fleet: Fleet) -> None:
    port = fleet.port("host-a")
    neighbour = fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        first = fleet.host_state("host-a")["acked_generation"]
        fleet.update_port(port["id"], name="renamed")
        await c.quiesce()
        second = fleet.host_state("host-a")["acked_generation"]
        assert second > first
        assert goal(pusher, "host-a").port_states[port["id"]].configuration.name == "renamed"
        # the neighbour's host got the new revision too (the name is not in a neighbour entry,
        # but its generation moved, so the port's status waits for it)
        assert fleet.host_state("host-b")["acked_generation"] == second
        await c.stop()

    run(main)
    generations = [p.generation for p in pusher.pushes if p.node_id == "host-a"]
    assert generations == sorted(set(generations))
    assert fleet.stored(port["id"])["status"] == "ACTIVE"
    assert fleet.stored(neighbour["id"])["status"] == "ACTIVE"


def test_many_changes_to_one_host_cost_one_compile_and_one_push(fleet: Fleet) -> None:
    ports = [fleet.port("host-a", name=f"p{i}") for i in range(30)]
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        await c.stop()

    run(main)
    assert pushes_to(pusher, "host-a") == 1
    assert held(pusher, "host-a")[0] == {p["id"] for p in ports}
    assert {fleet.stored(p["id"])["status"] for p in ports} == {"ACTIVE"}


def test_deleted_port_leaves_its_host_and_its_neighbours(fleet: Fleet) -> None:
    a = fleet.port("host-a")
    b = fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        fleet.delete_port(a["id"])
        await c.quiesce()
        await c.stop()

    run(main)
    assert held(pusher, "host-a") == (set(), set())
    assert held(pusher, "host-b") == ({b["id"]}, set())


def test_status_writes_make_no_outbox_records_and_no_pushes(fleet: Fleet) -> None:
    fleet.port("host-a")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        count = len(pusher.pushes)
        assert fleet.outbox_rows() == 0
        assert await c.drain_outbox() == 0
        await c.reconcile()
        await c.quiesce()
        assert len(pusher.pushes) == count
        await c.stop()

    run(main)


# --- status ---------------------------------------------------------------------------------


def test_active_port_shows_its_provisioning_latency(fleet: Fleet) -> None:
    port = fleet.port("host-a")
    pusher = RecordingPusher()
    metrics: list[str] = []

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        metrics.append(c.metrics_text())
        await c.stop()

    run(main)
    stored = fleet.stored(port["id"])
    assert stored["status"] == "ACTIVE"
    latency = stored["binding:vif_details"][status.LATENCY_KEY]
    assert latency >= 0
    assert stored["binding:vif_details"]["port_filter"] is True
    record = fleet.store.read(lambda txn: txn.select("port_provisioning",
                                                     {"port_id": port["id"]})[0])
    assert record["acked_at"] >= record["committed_at"]
    assert record["detail"]["latency_ms"] == latency
    assert 'alcor_port_provisioning_seconds_count 1' in metrics[0]
    assert 'alcor_goal_state_pushes_total ' in metrics[0]


def test_unreachable_host_is_retried_with_backoff_and_the_port_stays_down(fleet: Fleet) -> None:
    port = fleet.port("host-b")
    fleet.port("host-a")
    pusher = CountingPusher("host-b", target=4)
    pusher.unreachable.add("host-b")

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.start()
        await asyncio.wait_for(pusher.reached.wait(), 30)
        assert c.backoff.failures["host-b"] >= 3
        assert fleet.stored(port["id"])["status"] == "DOWN"
        state = fleet.host_state("host-b")
        assert state["generation"] > state["acked_generation"]
        assert "unreachable" in state["last_error"]
        assert fleet.host_state("host-a")["last_error"] is None
        pusher.unreachable.clear()
        c.kick("host-b", now=True)
        await c.quiesce()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        assert fleet.host_state("host-b")["last_error"] is None
        assert "host-b" not in c.backoff.failures
        await c.stop()

    run(main)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = hosts.Backoff(0.5, 4.0)
    assert [backoff.next_delay("h") for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.next_delay("other") == 0.5
    backoff.reset("h")
    assert backoff.next_delay("h") == 0.5


def test_failure_on_its_own_host_makes_a_port_error_with_the_reason(fleet: Fleet) -> None:
    port = fleet.port("host-a")
    fleet.port("host-b")
    pusher = FailingPusher()
    pusher.failing[port["id"]] = "veth creation failed: no such device"

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        stored = fleet.stored(port["id"])
        assert stored["status"] == "ERROR"
        assert stored["binding:vif_details"][status.ERROR_KEY] == (
            "veth creation failed: no such device")
        assert "veth creation failed" in fleet.host_state("host-a")["last_error"]
        # the reconciler pushes the failed host again; once it programs the port: ACTIVE
        pusher.failing.clear()
        await c.reconcile()
        await c.quiesce()
        stored = fleet.stored(port["id"])
        assert stored["status"] == "ACTIVE"
        assert status.ERROR_KEY not in stored["binding:vif_details"]
        await c.stop()

    run(main)


def test_a_new_revision_is_down_until_acknowledged(fleet: Fleet) -> None:
    port = fleet.port("host-a")
    pusher = RecordingPusher()
    pusher.unreachable.add("host-a")

    async def main() -> None:
        c = controller(fleet.store, RecordingPusher())
        await c.quiesce()
        await c.stop()
        assert fleet.stored(port["id"])["status"] == "ACTIVE"
        fleet.update_port(port["id"], name="again")
        c = controller(fleet.store, pusher)
        await c.drain_outbox()
        assert fleet.stored(port["id"])["status"] == "DOWN"
        assert status.LATENCY_KEY not in fleet.stored(port["id"])["binding:vif_details"]
        await c.stop()

    run(main)


def test_unbound_and_unknown_host_ports_stay_down(fleet: Fleet) -> None:
    unbound = fleet.port()
    stray = fleet.port("host-nowhere")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        outcome = await c.wait({unbound["id"]: unbound["revision_number"]}, 5)
        assert outcome["complete"] is True
        assert outcome["ports"][unbound["id"]]["status"] == "DOWN"
        await c.stop()

    run(main)
    assert fleet.stored(unbound["id"])["status"] == "DOWN"
    assert fleet.stored(stray["id"])["status"] == "DOWN"


# --- restarts -------------------------------------------------------------------------------


def test_agent_restart_request_pushes_the_whole_goal_state_again(fleet: Fleet) -> None:
    a = fleet.port("host-a")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        before = fleet.host_state("host-a")["acked_generation"]
        assert await c.agent_restarted(NODES["host-a"]) == ["host-a"]
        await c.quiesce()
        assert fleet.host_state("host-a")["acked_generation"] > before
        assert await c.agent_restarted("10.9.9.9") == []
        await c.stop()

    run(main)
    assert pushes_to(pusher, "host-a") == 2
    assert held(pusher, "host-a")[0] == {a["id"]}


def test_changes_claimed_by_a_controller_that_died_are_pushed_after_restart(
        fleet: Fleet) -> None:
    a = fleet.port("host-a")
    b = fleet.port("host-b")
    lost = RecordingPusher()
    pusher = RecordingPusher()

    async def main() -> None:
        dying = controller(fleet.store, lost)
        assert await dying.drain_outbox() > 0  # claimed: the outbox is empty now ...
        await dying.stop()  # ... and it dies before pushing anything
        assert lost.pushes == [] and fleet.outbox_rows() == 0
        assert fleet.stored(a["id"])["status"] == "DOWN"
        c = controller(fleet.store, pusher)
        await c.start()
        await c.quiesce()
        await c.stop()

    run(main)
    assert held(pusher, "host-a") == ({a["id"]}, {f"L2/{b['id']}"})
    assert fleet.stored(a["id"])["status"] == "ACTIVE"
    assert fleet.stored(b["id"])["status"] == "ACTIVE"


# --- waiting --------------------------------------------------------------------------------


def test_wait_returns_once_the_hosts_acknowledged(fleet: Fleet) -> None:
    a = fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.start()
        outcome = await c.wait({a["id"]: a["revision_number"]}, 30)
        await c.stop()
        assert outcome["complete"] is True
        assert outcome["ports"][a["id"]]["status"] == "ACTIVE"
        assert outcome["hosts"] == {"host-a": {"state": "ACKED"}, "host-b": {"state": "ACKED"}}

    run(main)


def test_wait_without_a_controller_times_out_with_hosts_pending(fleet: Fleet) -> None:
    a = fleet.port("host-a")

    async def main() -> None:
        poller = Poller(fleet.store, FAST, placement=affected_hosts)
        outcome = await poller.wait({a["id"]: a["revision_number"]}, 0.05)
        assert outcome["complete"] is False
        assert outcome["ports"][a["id"]]["status"] == "DOWN"

    run(main)


def test_a_record_placement_cannot_place_makes_every_host_resync(fleet: Fleet) -> None:
    a = fleet.port("host-a")
    b = fleet.port("host-b")
    pusher = RecordingPusher()

    def placement(txn: Any, changes: Any) -> set[str]:
        if any(c["resource_id"] == b["id"] for c in changes):
            raise ValueError("unplaceable")
        return affected_hosts(txn, changes)

    async def main() -> None:
        c = Controller(fleet.store, FAST, pusher, compile_host=compile_host,
                       placement=placement)
        await c.quiesce()
        await c.stop()

    run(main)
    assert fleet.outbox_rows() == 0
    assert held(pusher, "host-a") == ({a["id"]}, {f"L2/{b['id']}"})
    assert held(pusher, "host-b") == ({b["id"]}, {f"L2/{a['id']}"})
    assert fleet.stored(a["id"])["status"] == "ACTIVE"


def test_a_port_bound_before_its_node_registers_goes_active_once_it_does(
        fleet: Fleet) -> None:
    early = fleet.port("host-late")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        assert fleet.stored(early["id"])["status"] == "DOWN"
        assert pusher.last("host-late") is None
        fleet.store.write(NodeService(fleet.store).create_txn, [{
            "node_id": "host-late", "node_name": "host-late", "local_ip": "10.0.0.9",
            "mac_address": "aa:bb:cc:00:00:09", "veth": "eth0", "server_port": 50001,
            "host_dvr_mac": "fe:16:11:00:00:09"}])
        await c.quiesce()
        await c.stop()

    run(main)
    assert held(pusher, "host-late")[0] == {early["id"]}
    assert fleet.stored(early["id"])["status"] == "ACTIVE"


def test_request_goal_states_over_grpc_marks_the_agents_host_dirty(fleet: Fleet) -> None:
    fleet.port("host-a")
    pusher = RecordingPusher()

    async def main() -> None:
        runtime = DataplaneRuntime(controller(fleet.store, pusher), "127.0.0.1:0")
        await runtime.start()
        try:
            await runtime.controller.quiesce()
            before = pushes_to(pusher, "host-a")
            reply = await request_full_state(runtime.address, NODES["host-a"])
            assert [s.operation_status for s in reply.operation_statuses] == [
                common_pb2.SUCCESS]
            await runtime.controller.quiesce()
            assert pushes_to(pusher, "host-a") == before + 1
            unknown = await request_full_state(runtime.address, "10.9.9.9")
            assert [s.operation_status for s in unknown.operation_statuses] == [
                common_pb2.FAILURE]
            request = restart_request(NODES["host-b"])
            request.state_requests[0].request_type = common_pb2.ON_DEMAND
            async with grpc.aio.insecure_channel(runtime.address) as channel:
                stub = goalstateprovisioner_pb2_grpc.GoalStateProvisionerStub(channel)
                on_demand = await stub.RequestGoalStates(request)
            assert [s.operation_status for s in on_demand.operation_statuses] == [
                common_pb2.FAILURE]
        finally:
            await runtime.stop()

    run(main)


def test_ports_stop_waiting_for_a_host_that_is_deregistered(fleet: Fleet) -> None:
    a = fleet.port("host-a")
    b = fleet.port("host-b")
    pusher = RecordingPusher()
    pusher.unreachable.add("host-b")

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        assert fleet.stored(a["id"])["status"] == "DOWN"  # host-b never acknowledged it
        fleet.store.write(NodeService(fleet.store).delete_txn, "host-b")
        await c.quiesce()
        await c.stop()

    run(main)
    assert fleet.stored(a["id"])["status"] == "ACTIVE"
    assert fleet.stored(b["id"])["status"] == "DOWN"
    assert held(pusher, "host-a") == ({a["id"]}, set())


# --- deltas ----------------------------------------------------------------------------------


def full_compile(fleet: Fleet, node_id: str) -> goalstate_pb2.GoalStateV2:
    node = fleet.store.read(lambda txn: txn.select("nodes", {"node_id": node_id})[0])
    return goalstate_pb2.GoalStateV2.FromString(fleet.store.read(compile_host, node))


def test_neighbour_changes_reach_other_hosts_as_deltas_that_match_a_full_compile(
        fleet: Fleet) -> None:
    a = fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        assert all(p.base is None for p in pusher.pushes)  # first pushes are full
        mark = len(pusher.pushes)
        added = fleet.port("host-a")
        await c.quiesce()
        pushes = {p.node_id: p for p in pusher.pushes[mark:]}
        assert pushes["host-a"].base is None  # its own port changed: full
        delta = pushes["host-b"]
        assert delta.base is not None
        message = goalstate_pb2.GoalStateV2.FromString(delta.goal_state)
        assert set(message.neighbor_states) == {f"L2/{added['id']}"}
        assert not message.port_states and not message.vpc_states
        assert fleet.stored(added["id"])["status"] == "ACTIVE"
        mark = len(pusher.pushes)
        fleet.delete_port(a["id"])
        await c.quiesce()
        delta = next(p for p in pusher.pushes[mark:] if p.node_id == "host-b")
        message = goalstate_pb2.GoalStateV2.FromString(delta.goal_state)
        assert delta.base is not None
        assert message.neighbor_states[f"L2/{a['id']}"].operation_type == common_pb2.DELETE
        assert c.metrics.deltas >= 2
        await c.stop()

    run(main)
    for node_id in ("host-a", "host-b"):
        assert set(goal(pusher, node_id).neighbor_states) == set(
            full_compile(fleet, node_id).neighbor_states)
        assert goal(pusher, node_id).neighbor_states == full_compile(
            fleet, node_id).neighbor_states


def test_a_refused_delta_is_followed_by_the_full_goal_state(fleet: Fleet) -> None:
    fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        pusher.held.pop("host-b")  # as if its agent restarted without telling anyone
        mark = len(pusher.pushes)
        added = fleet.port("host-a")
        await c.quiesce()
        to_b = [p for p in pusher.pushes[mark:] if p.node_id == "host-b"]
        assert [p.base is not None for p in to_b] == [True, False]
        assert c.metrics.deltas_refused == 1
        assert f"L2/{added['id']}" in goal(pusher, "host-b").neighbor_states
        assert fleet.stored(added["id"])["status"] == "ACTIVE"
        await c.stop()

    run(main)


def test_a_change_another_controller_placed_forces_a_full_goal_state(fleet: Fleet) -> None:
    fleet.port("host-a")
    fleet.port("host-b")
    pusher = RecordingPusher()

    async def main() -> None:
        c = controller(fleet.store, pusher)
        await c.quiesce()
        # Another controller hands out a generation this one never saw.
        fleet.store.write(hosts.mark_dirty, ["host-b"])
        mark = len(pusher.pushes)
        fleet.port("host-a")
        await c.quiesce()
        to_b = [p for p in pusher.pushes[mark:] if p.node_id == "host-b"]
        assert to_b and all(p.base is None for p in to_b)
        await c.stop()

    run(main)
