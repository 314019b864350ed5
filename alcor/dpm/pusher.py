"""Pushing a host's goal state to its agent, and the per-resource outcome the agent reports.

``GrpcPusher`` is the fast path: ``GoalStateProvisioner.PushGoalStatesStream`` to the node's
``local_ip:server_port`` on one grpc.aio channel per host, kept open and reused.  The goal state
goes out as the serialized GoalStateV2 the compiler produced (no re-encoding), with the host's
generation as ``alcor-generation`` metadata (and, for a delta, the generation it applies to as
``alcor-base-generation``).  Whatever goes wrong on the way (refused
connection, deadline, a broken reply) comes back as ``PushResult.error``; ``push`` never
raises.  A GrpcPusher belongs to one event loop.

``RecordingPusher`` keeps what it was given and folds it into what each node holds as an
agent that never sweeps would (upstream's: every state of a FULL goal state or a delta is
applied by its operation, DELETE removing it, and nothing else is touched; a delta whose base
the node does not hold is refused), and answers SUCCESS for every listed resource (controller
tests, simulations without agents).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from alcor.dpm.holdings import STATE_FIELDS
from alcor.rpc import metadata
from alcor.rpc._generated import common_pb2, goalstate_pb2, goalstateprovisioner_pb2

PUSH_METHOD = "/alcor.schema.GoalStateProvisioner/PushGoalStatesStream"
DEFAULT_SERVER_PORT = 50001
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""Largest goal state or reply either side accepts (a 100,000-neighbour goal state is ~30 MB)."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_metadata_size", 64 * 1024),
    # A restarted agent is reachable again within 2 s, not after gRPC's default backoff
    # (up to 120 s during which every push fails fast with UNAVAILABLE).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

Reply = goalstateprovisioner_pb2.GoalStateOperationReply

STATE_MAPS = tuple(STATE_FIELDS.values())
"""GoalStateV2's state maps (what a recorded node holds)."""


@dataclass(frozen=True)
class ResourceStatus:
    resource_id: str
    resource_type: int
    operation_status: int
    dataplane_us: int
    total_us: int
    error: str | None = None
    """The agent's reason for a FAILURE, when it sent one (alcor agents do)."""


@dataclass(frozen=True)
class PushResult:
    node_id: str
    generation: int
    statuses: list[ResourceStatus]
    error: str | None
    """Set when the goal state did not reach the agent or no reply came back (then
    ``statuses`` is empty); per-resource failures are in ``statuses``."""

    @property
    def ok(self) -> bool:
        """Delivered, and every resource SUCCESS."""
        return self.error is None and all(
            s.operation_status == common_pb2.SUCCESS for s in self.statuses
        )


class GoalStatePusher(Protocol):
    async def push(
        self, node: Mapping[str, Any], generation: int, goal_state: bytes,
        base: int | None = None,
    ) -> PushResult:
        """Send one goal state; ``base``: it is a delta from that generation."""


def statuses_from_reply(reply: Reply, errors: Mapping[str, str]) -> list[ResourceStatus]:
    """One ResourceStatus per GoalStateOperationStatus, with the agent's reasons attached."""
    return [
        ResourceStatus(
            s.resource_id, s.resource_type, s.operation_status,
            s.dataplane_programming_time, s.state_elapse_time, errors.get(s.resource_id),
        )
        for s in reply.operation_statuses
    ]


def errors_from_trailers(trailers: Any) -> dict[str, str]:
    """The ``alcor-errors-bin`` trailer as {resource_id: reason} (empty if absent or bad)."""
    for key, value in trailers or ():
        if key != metadata.ERRORS:
            continue
        try:
            decoded = json.loads(value)
        except ValueError:
            return {}
        if isinstance(decoded, dict):
            return {str(k): str(v) for k, v in decoded.items()}
    return {}


def target(node: Mapping[str, Any]) -> str:
    """host:port of a node's agent."""
    host = str(node["local_ip"])
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{int(node.get('server_port') or DEFAULT_SERVER_PORT)}"


class GrpcPusher:
    """PushGoalStatesStream over one cached channel per host; ``timeout`` bounds each push."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._channels: dict[str, tuple[str, Any, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def push(self, node: Mapping[str, Any], generation: int, goal_state: bytes,
                   base: int | None = None) -> PushResult:
        node_id = str(node["node_id"])
        address = target(node)
        sent = [(metadata.GENERATION, str(generation))]
        if base is not None:
            sent.append((metadata.BASE_GENERATION, str(base)))
        try:
            stub = await self._stub(node_id, address)
            call = stub(
                iter((goal_state,)),
                metadata=tuple(sent),
                timeout=self.timeout,
            )
            replies: list[Reply] = [reply async for reply in call]
            errors = errors_from_trailers(await call.trailing_metadata())
        except grpc.aio.AioRpcError as exc:
            return PushResult(node_id, generation, [], f"{address}: {_describe(exc)}")
        except Exception as exc:  # any other failure on the way is the push's error too
            return PushResult(node_id, generation, [], f"{address}: {type(exc).__name__}: {exc}")
        if not replies:
            return PushResult(node_id, generation, [], f"{address}: the agent sent no reply")
        statuses = [s for reply in replies for s in statuses_from_reply(reply, errors)]
        return PushResult(node_id, generation, statuses, None)

    async def _stub(self, node_id: str, address: str) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # channels cannot outlive the loop they were made on
            self._channels = {}
            self._loop = loop
        cached = self._channels.get(node_id)
        if cached is not None and cached[0] == address:
            return cached[2]
        if cached is not None:  # the node moved: its old channel goes
            await cached[1].close()
        channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
        stub = channel.stream_stream(
            PUSH_METHOD, request_serializer=None, response_deserializer=Reply.FromString
        )
        self._channels[node_id] = (address, channel, stub)
        return stub

    async def forget(self, node_id: str) -> None:
        """Close the channel to a node (deleted from the registry)."""
        cached = self._channels.pop(node_id, None)
        if cached is not None:
            await cached[1].close()

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(c[1].close() for c in channels.values()))


def _describe(exc: Any) -> str:
    code = exc.code()
    return f"{getattr(code, 'name', code)}: {exc.details()}"


@dataclass(frozen=True)
class RecordedPush:
    node_id: str
    generation: int
    goal_state: bytes
    base: int | None = None


class RecordingPusher:
    """Records every push and answers SUCCESS for every resource listed in host_resources
    (the node's entry if the message has one, else every entry); a node in ``unreachable``
    gets a transport error instead."""

    def __init__(self) -> None:
        self.pushes: list[RecordedPush] = []
        self.unreachable: set[str] = set()
        self.held: dict[str, tuple[int, goalstate_pb2.GoalStateV2]] = {}
        """node_id -> (generation, the goal state it holds: full ones with deltas folded in)."""

    async def push(self, node: Mapping[str, Any], generation: int, goal_state: bytes,
                   base: int | None = None) -> PushResult:
        node_id = str(node["node_id"])
        self.pushes.append(RecordedPush(node_id, generation, goal_state, base))
        if node_id in self.unreachable:
            return PushResult(node_id, generation, [], f"{node_id}: UNAVAILABLE: unreachable")
        goal = goalstate_pb2.GoalStateV2.FromString(goal_state)
        local_ip = str(node.get("local_ip", ""))
        indexes = ([goal.host_resources[local_ip]] if local_ip in goal.host_resources
                   else list(goal.host_resources.values()))
        outcome = self._hold(node_id, generation, goal, base)
        statuses = [ResourceStatus(ref.id, ref.type, outcome, 0, 0)
                    for index in indexes for ref in index.resources]
        return PushResult(node_id, generation, statuses, None)

    def _hold(self, node_id: str, generation: int, goal: goalstate_pb2.GoalStateV2,
              base: int | None) -> int:
        held = self.held.get(node_id)
        if base is None:
            state = goalstate_pb2.GoalStateV2() if held is None else held[1]
            state.format_version = goal.format_version
        elif held is None or held[0] != base:
            return common_pb2.OUT_OF_ORDER
        else:
            state = held[1]
        for name in STATE_MAPS:
            target = getattr(state, name)
            for key, entry in getattr(goal, name).items():
                if entry.operation_type == common_pb2.DELETE:
                    if key in target:
                        del target[key]
                else:
                    target[key].CopyFrom(entry)
        self.held[node_id] = (generation, state)
        return common_pb2.SUCCESS

    def holds(self, node_id: str) -> goalstate_pb2.GoalStateV2 | None:
        """What a node holds now (its last full goal state with later deltas applied)."""
        held = self.held.get(node_id)
        return None if held is None else held[1]

    def last(self, node_id: str) -> RecordedPush | None:
        """The latest push to a node."""
        return next((p for p in reversed(self.pushes) if p.node_id == node_id), None)
