"""The fast path over real gRPC on loopback: GrpcPusher -> an agent server in this process
(grpc.aio, the recording programmer).  Replies per resource with timings, generations, failure
reasons, unreachable and silent agents, channel reuse, a 10,000-neighbour goal state; and the
recording pusher."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from alcor.agent.programmer import RecordingProgrammer
from alcor.agent.server import AgentServer, Provisioner, serve, start_server
from alcor.agent.state import AgentState
from alcor.dpm.pusher import GrpcPusher, PushResult, RecordingPusher
from alcor.rpc._generated import common_pb2, goalstate_pb2, neighbor_pb2, port_pb2, vpc_pb2
from bench.sim_agents import sim_ip, start_agents

IP = "127.0.0.1"
SUCCESS, FAILURE, OUT_OF_ORDER = common_pb2.SUCCESS, common_pb2.FAILURE, common_pb2.OUT_OF_ORDER


def goal_state(ports: int = 2, neighbours: int = 1, *, revision: int = 1,
               ip: str = IP) -> bytes:
    """A FULL GoalStateV2 for host ``ip``: one VPC, ``ports`` ports, ``neighbours`` neighbours."""
    message = goalstate_pb2.GoalStateV2(format_version=1)
    index = message.host_resources[ip]
    vpc = message.vpc_states["vpc-1"]
    vpc.operation_type = common_pb2.CREATE
    vpc.configuration.CopyFrom(vpc_pb2.VpcConfiguration(
        revision_number=revision, id="vpc-1", update_type=common_pb2.FULL, tunnel_id=1001))
    index.resources.add(type=common_pb2.VPC, id="vpc-1")
    for i in range(ports):
        rid = f"port-{i}"
        state = message.port_states[rid]
        state.operation_type = common_pb2.CREATE
        state.configuration.CopyFrom(port_pb2.PortConfiguration(
            revision_number=revision, id=rid, vpc_id="vpc-1", update_type=common_pb2.FULL,
            mac_address=f"fa:16:3e:00:{i // 256:02x}:{i % 256:02x}"))
        index.resources.add(type=common_pb2.PORT, id=rid)
    for i in range(neighbours):
        rid = f"L2/remote-{i}"
        state = message.neighbor_states[rid]
        state.operation_type = common_pb2.CREATE
        config = state.configuration
        config.CopyFrom(neighbor_pb2.NeighborConfiguration(
            revision_number=revision, id=rid, vpc_id="vpc-1", update_type=common_pb2.FULL,
            mac_address=f"fa:16:3e:01:{i // 256 % 256:02x}:{i % 256:02x}",
            host_ip_address=f"10.0.{i // 256 % 256}.{i % 256}"))
        config.fixed_ips.add(subnet_id="sub-1", ip_address=f"10.1.{i // 256 % 256}.{i % 256}",
                             tunnel_id=1001)
        index.resources.add(type=common_pb2.NEIGHBOR, id=rid)
    return bytes(message.SerializeToString())


def node(server: AgentServer | int, node_id: str = "host-a") -> dict[str, Any]:
    port = server if isinstance(server, int) else server.port
    return {"node_id": node_id, "node_name": node_id, "local_ip": IP, "server_port": port}


def by_id(result: PushResult) -> dict[str, int]:
    return {s.resource_id: s.operation_status for s in result.statuses}


Scenario = Callable[[AgentServer, RecordingProgrammer, GrpcPusher], Awaitable[None]]


def with_agent(scenario: Scenario, *, timeout: float = 30.0) -> None:
    """Run ``scenario`` against a fresh in-process agent and pusher, then stop both."""

    async def main() -> None:
        programmer = RecordingProgrammer()
        server = await start_server(AgentState(programmer, IP))
        pusher = GrpcPusher(timeout=timeout)
        try:
            await scenario(server, programmer, pusher)
        finally:
            await pusher.close()
            await server.stop()

    asyncio.run(main())


def test_a_push_is_answered_per_resource_with_timings() -> None:
    async def scenario(server: AgentServer, programmer: RecordingProgrammer,
                       pusher: GrpcPusher) -> None:
        result = await pusher.push(node(server), 1, goal_state(ports=2, neighbours=2))
        assert result.error is None and result.ok
        assert (result.node_id, result.generation) == ("host-a", 1)
        assert by_id(result) == {rid: SUCCESS for rid in (
            "vpc-1", "port-0", "port-1", "L2/remote-0", "L2/remote-1")}
        kinds = {s.resource_id: s.resource_type for s in result.statuses}
        assert kinds["vpc-1"] == common_pb2.VPC and kinds["L2/remote-0"] == common_pb2.NEIGHBOR
        assert all(0 <= s.dataplane_us <= s.total_us for s in result.statuses)
        assert max(s.total_us for s in result.statuses) > 0
        assert programmer.ids(common_pb2.PORT) == {"port-0", "port-1"}
        assert programmer.config(common_pb2.NEIGHBOR, "L2/remote-1").host_ip_address == "10.0.0.1"
        assert server.provisioner.state.generation == 1

    with_agent(scenario)


def test_an_older_generation_is_refused_out_of_order() -> None:
    async def scenario(server: AgentServer, programmer: RecordingProgrammer,
                       pusher: GrpcPusher) -> None:
        assert (await pusher.push(node(server), 5, goal_state(revision=2))).ok
        older = await pusher.push(node(server), 4, goal_state(ports=3, revision=1))
        assert older.error is None
        assert set(by_id(older).values()) == {OUT_OF_ORDER} and len(older.statuses) == 5
        assert programmer.ids(common_pb2.PORT) == {"port-0", "port-1"}
        assert programmer.config(common_pb2.VPC, "vpc-1").revision_number == 2
        calls = len(programmer.calls)
        same = await pusher.push(node(server), 5, goal_state(revision=2))
        assert same.ok and len(programmer.calls) == calls  # idempotent, nothing re-programmed

    with_agent(scenario)


def test_a_failing_resource_comes_back_as_failure_with_the_agents_reason() -> None:
    async def scenario(server: AgentServer, programmer: RecordingProgrammer,
                       pusher: GrpcPusher) -> None:
        programmer.fail("port-1", "no tap device tapport-1")
        result = await pusher.push(node(server), 1, goal_state())
        assert result.error is None and not result.ok
        failed = [s for s in result.statuses if s.operation_status == FAILURE]
        assert [(s.resource_id, s.error) for s in failed] == [("port-1", "no tap device tapport-1")]
        assert by_id(result)["port-0"] == SUCCESS and by_id(result)["L2/remote-0"] == SUCCESS

    with_agent(scenario)


def test_an_unreachable_agent_is_an_error_quickly() -> None:
    async def main() -> None:
        with socket.socket() as s:  # a port nobody listens on
            s.bind((IP, 0))
            port = s.getsockname()[1]
        pusher = GrpcPusher(timeout=5.0)
        try:
            began = time.monotonic()
            result = await pusher.push(node(port), 3, goal_state())
            elapsed = time.monotonic() - began
        finally:
            await pusher.close()
        assert result.error is not None and "UNAVAILABLE" in result.error
        assert f"{IP}:{port}" in result.error
        assert (result.node_id, result.generation, result.statuses) == ("host-a", 3, [])
        assert elapsed < 2.0

    asyncio.run(main())


def test_a_host_that_never_speaks_grpc_is_an_error_by_the_deadline() -> None:
    async def main() -> None:
        with socket.socket() as silent:  # accepts TCP connections, never speaks HTTP/2
            silent.bind((IP, 0))
            silent.listen(8)
            pusher = GrpcPusher(timeout=0.5)
            try:
                began = time.monotonic()
                result = await pusher.push(node(silent.getsockname()[1]), 1, goal_state())
                elapsed = time.monotonic() - began
            finally:
                await pusher.close()
        assert result.error is not None and result.statuses == []
        assert elapsed < 3.0

    asyncio.run(main())


class Hanging(Provisioner):
    """An agent that takes goal states and never answers."""

    async def push_stream(self, requests: Any, context: Any) -> Any:
        async for _ in requests:
            await asyncio.Event().wait()
        yield b""


def test_an_agent_that_never_answers_is_an_error_at_the_deadline() -> None:
    async def main() -> None:
        server = await serve(Hanging(AgentState(RecordingProgrammer(), IP)))
        pusher = GrpcPusher(timeout=0.5)
        try:
            began = time.monotonic()
            result = await pusher.push(node(server), 1, goal_state())
            elapsed = time.monotonic() - began
        finally:
            await pusher.close()
            await server.stop(0)
        assert result.error is not None and "DEADLINE_EXCEEDED" in result.error
        assert 0.4 < elapsed < 3.0

    asyncio.run(main())


def test_a_goal_state_with_10000_neighbours_goes_through() -> None:
    async def scenario(server: AgentServer, programmer: RecordingProgrammer,
                       pusher: GrpcPusher) -> None:
        payload = goal_state(ports=100, neighbours=10_000)
        assert len(payload) > 1_000_000
        result = await pusher.push(node(server), 1, payload)
        assert result.error is None and result.ok and len(result.statuses) == 10_101
        assert len(programmer.ids(common_pb2.NEIGHBOR)) == 10_000
        again = await pusher.push(node(server), 2, payload)
        assert again.ok and all(s.dataplane_us == 0 for s in again.statuses)

    with_agent(scenario)


class PeerRecorder(Provisioner):
    """An agent that also notes which client connection each push came over."""

    def __init__(self, state: AgentState) -> None:
        super().__init__(state)
        self.peers: list[str] = []

    async def push_stream(self, requests: Any, context: Any) -> Any:
        self.peers.append(context.peer())
        async for reply in super().push_stream(requests, context):
            yield reply


def test_one_channel_per_host_is_kept_and_reused() -> None:
    async def main() -> None:
        recorder = PeerRecorder(AgentState(RecordingProgrammer(), IP))
        server = await serve(recorder)
        pusher = GrpcPusher()
        try:
            for generation in (1, 2, 3):
                assert (await pusher.push(node(server), generation, goal_state())).ok
        finally:
            await pusher.close()
            await server.stop()
        assert len(recorder.peers) == 3 and len(set(recorder.peers)) == 1

    asyncio.run(main())


def test_several_hosts_are_pushed_concurrently() -> None:
    async def main() -> None:
        servers = [await start_server(AgentState(RecordingProgrammer(), IP)) for _ in range(5)]
        pusher = GrpcPusher()
        try:
            results = await asyncio.gather(*(
                pusher.push(node(s, f"host-{i}"), 1, goal_state()) for i, s in enumerate(servers)))
        finally:
            await pusher.close()
            for s in servers:
                await s.stop()
        assert [r.node_id for r in results] == [f"host-{i}" for i in range(5)]
        assert all(r.ok and len(r.statuses) == 4 for r in results)

    asyncio.run(main())


def test_the_recording_pusher_keeps_pushes_and_answers_every_listed_resource() -> None:
    async def main() -> None:
        pusher = RecordingPusher()
        payload = goal_state(ports=1, neighbours=1)
        result = await pusher.push(node(50001), 7, payload)
        assert result.ok and by_id(result) == {"vpc-1": SUCCESS, "port-0": SUCCESS,
                                               "L2/remote-0": SUCCESS}
        pusher.unreachable.add("host-b")
        down = await pusher.push(node(50001, "host-b"), 1, payload)
        assert down.error is not None and down.statuses == []
        last = pusher.last("host-a")
        assert last is not None and (last.generation, last.goal_state) == (7, payload)
        assert [p.node_id for p in pusher.pushes] == ["host-a", "host-b"]

    asyncio.run(main())


def test_simulated_agents_answer_pushes_and_can_be_waited_for() -> None:
    async def main() -> None:
        fleet = await start_agents(20, distinct_ips=True)
        pusher = GrpcPusher(timeout=10.0)
        try:
            assert [a.local_ip for a in fleet.agents[:2]] == [sim_ip(0), sim_ip(1)]
            pushes = [pusher.push(a.node, 1, goal_state(ip=a.local_ip)) for a in fleet.agents]
            waiting = asyncio.create_task(fleet.wait_until(
                lambda: all(a.generation == 1 for a in fleet.agents), timeout=30))
            results = await asyncio.gather(*pushes)
            await waiting
            assert all(r.ok and len(r.statuses) == 4 for r in results)
            assert fleet.totals() == {"agents": 20, "goal_states": 20, "resources": 80,
                                      "programmed": 80}
            agent = fleet.agents[7]
            assert agent.state.realized_ids(common_pb2.PORT) == {"port-0", "port-1"}
            again = await pusher.push(agent.node, 2, goal_state(ports=1, ip=agent.local_ip))
            assert again.ok and agent.state.counter.deleted == 1
        finally:
            await pusher.close()
            await fleet.stop()

    asyncio.run(main())


def test_simulated_agents_in_ack_mode_keep_only_the_generation() -> None:
    async def main() -> None:
        fleet = await start_agents(3, mode="ack")
        pusher = GrpcPusher(timeout=10.0)
        try:
            agent = fleet.agents[0]
            assert (await pusher.push(agent.node, 4, goal_state(neighbours=100))).ok
            older = await pusher.push(agent.node, 3, goal_state())
            assert {s.operation_status for s in older.statuses} == {OUT_OF_ORDER}
            assert agent.generation == 4 and agent.state.counter.applied == 0
            assert agent.state.realized_ids(common_pb2.NEIGHBOR) == set()
        finally:
            await pusher.close()
            await fleet.stop()

    asyncio.run(main())
