"""The agent's gRPC edge: the GoalStateProvisioner service it serves, and the one call it makes
to the controller (RequestGoalStates after a start).  The only agent module importing grpc.

Served (service ``alcor.schema.GoalStateProvisioner``, raw bytes in and out so parsing is timed
as part of the message):

- ``PushGoalStatesStream``: one GoalStateOperationReply per GoalStateV2 received.  The call's
  ``alcor-generation`` metadata orders the goal states (with ``alcor-base-generation`` too,
  the goal state is a delta from that generation); without it a goal state is "newer than
  anything" (an upstream controller) and applied by its operation types.  Reasons for failed
  resources go back in the ``alcor-errors-bin`` trailer.
- ``PushNetworkResourceStates``: a v1 GoalState, through the same apply path.
- ``RequestGoalStates``: agents do not serve it; every request is answered INVALID_ARG.

Goal states are applied one at a time (a lock), in a worker thread by default so a slow data
plane does not stall the gRPC loop; the simulator applies inline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from alcor.agent.state import AgentState, Report
from alcor.rpc import metadata
from alcor.rpc._generated import common_pb2, goalstate_pb2, goalstateprovisioner_pb2

log = logging.getLogger(__name__)

SERVICE = "alcor.schema.GoalStateProvisioner"
REQUEST_METHOD = f"/{SERVICE}/RequestGoalStates"
MAX_MESSAGE_BYTES = 512 * 1024 * 1024
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
)

CLIENT_OPTIONS: tuple[tuple[str, int], ...] = (
    # Reconnect to a controller that comes up within 2 s, not gRPC's default up-to-120 s.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)

Reply = goalstateprovisioner_pb2.GoalStateOperationReply
G = TypeVar("G", goalstate_pb2.GoalStateV2, goalstate_pb2.GoalState)


def encode_reply(report: Report) -> bytes:
    """A serialized GoalStateOperationReply with one status per outcome."""
    reply = Reply(format_version=1, message_total_operation_time=report.total_us)
    add = reply.operation_statuses.add
    for o in report.outcomes:
        add(resource_id=o.resource_id, resource_type=o.kind, operation_type=o.operation,
            operation_status=o.status, dataplane_programming_time=o.dataplane_us,
            state_elapse_time=o.elapsed_us)
    return bytes(reply.SerializeToString())


def encode_errors(errors: dict[str, str]) -> bytes:
    """The ``alcor-errors-bin`` trailer: the first few reasons, each shortened."""
    kept = dict(list(errors.items())[: metadata.MAX_ERRORS])
    return json.dumps({k: v[: metadata.MAX_ERROR_CHARS] for k, v in kept.items()}).encode()


class Provisioner:
    """GoalStateProvisioner for one agent's state."""

    def __init__(self, state: AgentState, *, offload: bool = True) -> None:
        self.state = state
        self.offload = offload
        self.received = 0
        """Goal states received (applied or refused)."""
        self._lock = asyncio.Lock()

    async def push_stream(
        self, requests: AsyncIterator[bytes], context: Any
    ) -> AsyncIterator[bytes]:
        generation = await _generation(context)
        base = await _generation(context, metadata.BASE_GENERATION)
        errors: dict[str, str] = {}
        async for raw in requests:
            started = time.perf_counter()
            goal: goalstate_pb2.GoalStateV2 = await _parse(goalstate_pb2.GoalStateV2, raw, context)
            report = await self._apply(self.state.apply_v2, goal, generation, started, base)
            errors.update(report.failures())
            yield encode_reply(report)
        if errors:
            context.set_trailing_metadata(((metadata.ERRORS, encode_errors(errors)),))

    async def push_v1(self, raw: bytes, context: Any) -> bytes:
        started = time.perf_counter()
        generation = await _generation(context)
        base = await _generation(context, metadata.BASE_GENERATION)
        goal: goalstate_pb2.GoalState = await _parse(goalstate_pb2.GoalState, raw, context)
        report = await self._apply(self.state.apply_v1, goal, generation, started, base)
        failed = report.failures()
        if failed:
            context.set_trailing_metadata(((metadata.ERRORS, encode_errors(failed)),))
        return encode_reply(report)

    async def request_goal_states(self, raw: bytes, context: Any) -> bytes:
        request: goalstateprovisioner_pb2.HostRequest = await _parse(
            goalstateprovisioner_pb2.HostRequest, raw, context)
        reply = goalstateprovisioner_pb2.HostRequestReply(format_version=1)
        for item in request.state_requests:
            reply.operation_statuses.add(request_id=item.request_id,
                                         operation_status=common_pb2.INVALID_ARG)
        return bytes(reply.SerializeToString())

    async def _apply(
        self, apply: Callable[[G, int | None, float, int | None], Report], goal: G,
        generation: int | None, started: float, base: int | None = None,
    ) -> Report:
        async with self._lock:
            self.received += 1
            if self.offload:
                report = await asyncio.to_thread(apply, goal, generation, started, base)
            else:
                report = apply(goal, generation, started, base)
        failed = report.failures()
        if failed:
            log.warning("goal state generation %s: %s; e.g. %s: %s", generation,
                        report.summary(), *next(iter(failed.items())))
        elif log.isEnabledFor(logging.INFO):
            log.info("goal state generation %s: %s", generation, report.summary())
        return report

    def handler(self) -> Any:
        """The generic RPC handler serving this provisioner (bytes in, bytes out)."""
        return grpc.method_handlers_generic_handler(SERVICE, {
            "PushGoalStatesStream": grpc.stream_stream_rpc_method_handler(self.push_stream),
            "PushNetworkResourceStates": grpc.unary_unary_rpc_method_handler(self.push_v1),
            "RequestGoalStates": grpc.unary_unary_rpc_method_handler(self.request_goal_states),
        })


async def _generation(context: Any, name: str = metadata.GENERATION) -> int | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            try:
                return int(value)
            except ValueError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"{name} is not an integer: {value!r}")
    return None


async def _parse(message_type: Any, raw: bytes, context: Any) -> Any:
    """``message_type.FromString(raw)``, or the call aborted with INVALID_ARGUMENT."""
    try:
        return message_type.FromString(raw)
    except Exception as exc:  # protobuf's DecodeError (its module has no type stubs here)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"not a {message_type.__name__}: {exc}")
        raise  # abort raises; this line is for the type checker


@dataclass
class AgentServer:
    """A running agent gRPC server."""

    server: Any
    port: int
    provisioner: Provisioner

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)


async def start_server(
    state: AgentState, listen: str = "127.0.0.1:0", *, offload: bool = True
) -> AgentServer:
    """Serve GoalStateProvisioner for ``state`` on ``listen`` (host:port; port 0 picks one)."""
    return await serve(Provisioner(state, offload=offload), listen)


async def serve(provisioner: Provisioner, listen: str = "127.0.0.1:0") -> AgentServer:
    """Serve ``provisioner`` (or a subclass answering differently) on ``listen``."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((provisioner.handler(),))
    port = int(server.add_insecure_port(listen))
    if port == 0:
        raise OSError(f"cannot listen on {listen}")
    await server.start()
    return AgentServer(server, port, provisioner)


def restart_request(local_ip: str) -> goalstateprovisioner_pb2.HostRequest:
    """The HostRequest an agent sends after a start: its whole goal state, please."""
    request = goalstateprovisioner_pb2.HostRequest(format_version=1)
    request.state_requests.add(request_type=common_pb2.AGENT_RESTARTED,
                               request_id=str(uuid.uuid4()), source_ip=local_ip)
    return request


async def request_full_state(
    controller: str, local_ip: str, *, first_delay: float = 0.2, max_delay: float = 10.0,
    attempt_timeout: float = 10.0,
) -> goalstateprovisioner_pb2.HostRequestReply:
    """Ask the controller at ``controller`` (host:port) for this host's full goal state, with
    request_type AGENT_RESTARTED, retrying with exponential backoff until it answers."""
    request = restart_request(local_ip).SerializeToString()
    delay = first_delay
    async with grpc.aio.insecure_channel(controller, options=CLIENT_OPTIONS) as channel:
        call = channel.unary_unary(
            REQUEST_METHOD, request_serializer=None,
            response_deserializer=goalstateprovisioner_pb2.HostRequestReply.FromString,
        )
        while True:
            try:
                reply: goalstateprovisioner_pb2.HostRequestReply = await call(
                    request, timeout=attempt_timeout)
                return reply
            except grpc.aio.AioRpcError as exc:
                log.info("controller %s not answering (%s); asking again in %.1fs",
                         controller, exc.code(), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
