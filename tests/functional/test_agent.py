"""Real ``alcor agent`` processes over gRPC on loopback: goal states pushed with GrpcPusher
are applied and answered, older generations refused, a restarted agent starts empty, v1 pushes
take the same path, the agent refuses to serve RequestGoalStates; and on start an agent
registers its node with a real ``alcor server`` and asks the controller (a stand-in serving
RequestGoalStates) for its full goal state, retrying until the controller is up."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from alcor.agent.programmer import RecordingProgrammer
from alcor.agent.server import Provisioner, request_full_state, serve
from alcor.agent.state import AgentState
from alcor.dpm.pusher import GrpcPusher, PushResult
from alcor.rpc import metadata
from alcor.rpc._generated import common_pb2, goalstate_pb2, goalstateprovisioner_pb2, port_pb2
from bench.sim_agents import start_agents
from tests.functional.server import AlcorServer, alcor_executable, free_port

IP = "127.0.0.1"
WAIT = 30.0


class AgentProcess:
    """One ``alcor agent`` subprocess listening on a free loopback port; its output (stdout
    and stderr) is collected line by line so a test can wait for what it says."""

    def __init__(self, node_id: str, *extra: str) -> None:
        self.node_id = node_id
        self.args = [alcor_executable(), "agent", "--listen", f"{IP}:0", "--node-id", node_id,
                     "--local-ip", IP, "--dataplane", "recording", *extra]
        self.lines: list[str] = []
        self.port = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()
        self._ended = False

    async def __aenter__(self) -> AgentProcess:
        self._proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        self._reader = asyncio.create_task(self._read())
        ready = await self.expect("serving GoalStateProvisioner on ")
        self.port = int(ready.rsplit(":", 1)[1])
        return self

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        async for raw in self._proc.stdout:
            async with self._changed:
                self.lines.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()
        async with self._changed:
            self._ended = True
            self._changed.notify_all()

    async def expect(self, text: str) -> str:
        """The first output line containing ``text`` (waits for it; fails if the agent exits
        or stays silent for WAIT seconds)."""

        def found() -> bool:
            return self._ended or any(text in line for line in self.lines)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(found), WAIT)
        match = next((line for line in self.lines if text in line), None)
        assert match is not None, f"agent exited without saying {text!r}:\n" + "\n".join(
            self.lines)
        return match

    @property
    def node(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "local_ip": IP, "server_port": self.port}

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._proc is not None
        if self._proc.returncode is None:
            self._proc.terminate()
        self.returncode = await asyncio.wait_for(self._proc.wait(), WAIT)
        if self._reader is not None:
            await self._reader


def goal_state(*port_ids: str, revision: int = 1) -> bytes:
    message = goalstate_pb2.GoalStateV2(format_version=1)
    for rid in port_ids:
        state = message.port_states[rid]
        state.operation_type = common_pb2.CREATE
        state.configuration.CopyFrom(port_pb2.PortConfiguration(
            revision_number=revision, id=rid, update_type=common_pb2.FULL,
            mac_address="fa:16:3e:00:00:01"))
        message.host_resources[IP].resources.add(type=common_pb2.PORT, id=rid)
    return bytes(message.SerializeToString())


def statuses(result: PushResult) -> dict[str, int]:
    assert result.error is None, result.error
    return {s.resource_id: s.operation_status for s in result.statuses}


def test_an_agent_process_applies_pushes_and_refuses_an_older_generation() -> None:
    async def main() -> None:
        pusher = GrpcPusher(timeout=10.0)
        try:
            async with AgentProcess("host-a") as agent:
                first = await pusher.push(agent.node, 2, goal_state("p1", "p2"))
                assert statuses(first) == {"p1": common_pb2.SUCCESS, "p2": common_pb2.SUCCESS}
                assert all(s.total_us >= s.dataplane_us for s in first.statuses)
                older = await pusher.push(agent.node, 1, goal_state("p3"))
                assert statuses(older) == {"p3": common_pb2.OUT_OF_ORDER}
                shrink = await pusher.push(agent.node, 3, goal_state("p2"))
                assert statuses(shrink) == {"p1": common_pb2.SUCCESS, "p2": common_pb2.SUCCESS}
                ops = await _operations(agent, 3, goal_state("p2"))
                assert ops == {"p2": common_pb2.INFO}  # same generation again: nothing to do
        finally:
            await pusher.close()
        assert agent.returncode == 0

    asyncio.run(main())


async def _operations(agent: AgentProcess, generation: int, payload: bytes) -> dict[str, int]:
    """Push over a raw stub to see each status's operation_type (what the agent did)."""
    async with grpc.aio.insecure_channel(f"{IP}:{agent.port}") as channel:
        call = channel.stream_stream(
            "/alcor.schema.GoalStateProvisioner/PushGoalStatesStream",
            request_serializer=None,
            response_deserializer=goalstateprovisioner_pb2.GoalStateOperationReply.FromString)
        replies = [r async for r in call(iter((payload,)),
                                         metadata=((metadata.GENERATION, str(generation)),))]
    return {s.resource_id: s.operation_type for r in replies for s in r.operation_statuses}


def test_a_restarted_agent_starts_empty() -> None:
    async def main() -> None:
        async with AgentProcess("host-a") as agent:
            assert await _operations(agent, 9, goal_state("p1")) == {"p1": common_pb2.CREATE}
            assert await _operations(agent, 9, goal_state("p1")) == {"p1": common_pb2.INFO}
        async with AgentProcess("host-a") as restarted:
            # a new process holds nothing and has applied no generation: even generation 1 is
            # accepted, and p1 is created again
            assert await _operations(restarted, 1, goal_state("p1")) == {"p1": common_pb2.CREATE}

    asyncio.run(main())


def test_v1_pushes_take_the_same_path_and_restart_requests_are_not_served() -> None:
    async def main() -> None:
        async with AgentProcess("host-a") as agent:
            message = goalstate_pb2.GoalState(format_version=1)
            message.port_states.add(operation_type=common_pb2.CREATE, configuration=port_pb2.
                                    PortConfiguration(revision_number=1, id="p1"))
            async with grpc.aio.insecure_channel(f"{IP}:{agent.port}") as channel:
                push = channel.unary_unary(
                    "/alcor.schema.GoalStateProvisioner/PushNetworkResourceStates",
                    request_serializer=goalstate_pb2.GoalState.SerializeToString,
                    response_deserializer=(
                        goalstateprovisioner_pb2.GoalStateOperationReply.FromString))
                reply = await push(message, metadata=((metadata.GENERATION, "4"),))
            assert [(s.resource_id, s.operation_type, s.operation_status)
                    for s in reply.operation_statuses] == [
                ("p1", common_pb2.CREATE, common_pb2.SUCCESS)]
            assert await _operations(agent, 4, goal_state("p1")) == {"p1": common_pb2.UPDATE}
            answer = await request_full_state(f"{IP}:{agent.port}", IP)
            assert [s.operation_status for s in answer.operation_statuses] == [
                common_pb2.INVALID_ARG]

    asyncio.run(main())


class ControllerStandIn(Provisioner):
    """Serves RequestGoalStates as a controller would (records it, answers SUCCESS)."""

    def __init__(self) -> None:
        super().__init__(AgentState(RecordingProgrammer()), offload=False)
        self.requests: list[goalstateprovisioner_pb2.HostRequest] = []

    async def request_goal_states(self, raw: bytes, context: Any) -> bytes:
        request = goalstateprovisioner_pb2.HostRequest.FromString(raw)
        self.requests.append(request)
        reply = goalstateprovisioner_pb2.HostRequestReply(format_version=1)
        for item in request.state_requests:
            reply.operation_statuses.add(request_id=item.request_id,
                                         operation_status=common_pb2.SUCCESS)
        return bytes(reply.SerializeToString())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=WAIT) as response:
        return json.loads(response.read())


def test_an_agent_registers_its_node_and_asks_the_controller_for_its_state(
    tmp_path: Path,
) -> None:
    controller_port = free_port()

    async def main(api: str) -> None:
        args = ("--node-name", "compute-a", "--api-url", api,
                "--controller", f"{IP}:{controller_port}")
        async with AgentProcess("host-a", *args) as agent:
            await agent.expect(f"node host-a created at {api}")
            node = _get(f"{api}/nodes/host-a")["host_info"]
            assert node == {"node_id": "host-a", "node_name": "compute-a", "local_ip": IP,
                            "server_port": agent.port, "mac_address": "02:00:00:00:00:01",
                            "veth": "eth0", "host_dvr_mac": "fe:16:11:00:00:01"}
            await agent.expect(f"controller {IP}:{controller_port} not answering")
            controller = ControllerStandIn()
            server = await serve(controller, f"{IP}:{controller_port}")
            try:
                await agent.expect("answered the restart request: SUCCESS")
            finally:
                await server.stop(0)
            [request] = controller.requests
            [ask] = request.state_requests
            assert (ask.request_type, ask.source_ip) == (common_pb2.AGENT_RESTARTED, IP)
            assert ask.request_id
        async with AgentProcess("host-a", "--node-name", "compute-a", "--api-url", api) as again:
            await again.expect(f"node host-a updated at {api}")
            assert _get(f"{api}/nodes/host-a")["host_info"]["server_port"] == again.port

    with AlcorServer(f"sqlite:///{tmp_path}/alcor.db") as api_server:
        asyncio.run(main(api_server.base_url))


def test_simulated_agents_register_their_nodes(tmp_path: Path) -> None:
    async def main(api: str) -> None:
        fleet = await start_agents(20, api_url=api, prefix="simtest", first_index=100)
        try:
            nodes = _get(f"{api}/nodes")["host_infos"]
        finally:
            await fleet.stop()
        assert sorted(n["node_id"] for n in nodes) == [f"simtest-{i:04d}" for i in range(100, 120)]
        assert {n["server_port"] for n in nodes} == {a.port for a in fleet.agents}
        assert {n["local_ip"] for n in nodes} == {IP}

    with AlcorServer(f"sqlite:///{tmp_path}/alcor.db") as api_server:
        asyncio.run(main(api_server.base_url))
