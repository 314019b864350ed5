"""The controller as a running service: its GoalStateProvisioner gRPC server (agents call
``RequestGoalStates``), the runtime that starts and stops that server with the controller, the
standalone ``alcor controller`` process, and the ASGI wrapper that runs the same runtime inside
``alcor server``.

``RequestGoalStates`` answers each request of a HostRequest:

- ``AGENT_RESTARTED`` with ``source_ip``: every node registered with that ``local_ip`` gets a
  new generation and is pushed its whole goal state at once (any backoff is skipped); SUCCESS,
  or FAILURE if no node has that address.
- ``ON_DEMAND``: FAILURE (upstream's NOT_ROUTABLE): goal states are pushed, not pulled.

The other GoalStateProvisioner methods are the agents' to serve; here they are UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from typing import Any

import grpc

from alcor.dpm.controller import Controller
from alcor.rpc._generated import (
    common_pb2,
    goalstateprovisioner_pb2,
    goalstateprovisioner_pb2_grpc,
)

LOG = logging.getLogger(__name__)

HostRequestReply = goalstateprovisioner_pb2.HostRequestReply


class ProvisionerService(goalstateprovisioner_pb2_grpc.GoalStateProvisionerServicer):
    """The controller's side of GoalStateProvisioner."""

    def __init__(self, controller: Controller) -> None:
        self.controller = controller

    async def RequestGoalStates(  # noqa: N802 (the gRPC method's name)
        self, request: goalstateprovisioner_pb2.HostRequest, context: Any
    ) -> goalstateprovisioner_pb2.HostRequestReply:
        started = time.perf_counter()
        reply = HostRequestReply(format_version=1)
        for item in request.state_requests:
            ok = False
            if item.request_type == common_pb2.AGENT_RESTARTED and item.source_ip:
                node_ids = await self.controller.agent_restarted(item.source_ip)
                LOG.info("agent at %s restarted: pushing nodes %s their goal state",
                         item.source_ip, ", ".join(node_ids) or "(none registered)")
                ok = bool(node_ids)
            reply.operation_statuses.add(
                request_id=item.request_id,
                operation_status=common_pb2.SUCCESS if ok else common_pb2.FAILURE)
        reply.total_operation_time = min(int((time.perf_counter() - started) * 1e6), 2**32 - 1)
        return reply


class DataplaneRuntime:
    """A controller and its gRPC server, started and stopped together on one event loop."""

    def __init__(self, controller: Controller, listen: str) -> None:
        self.controller = controller
        self.listen = listen
        self.port: int | None = None
        self._server: Any = None

    async def start(self) -> None:
        server = grpc.aio.server()
        add_servicer: Any = goalstateprovisioner_pb2_grpc.add_GoalStateProvisionerServicer_to_server
        add_servicer(ProvisionerService(self.controller), server)
        port = int(server.add_insecure_port(self.listen))
        if port == 0:
            raise OSError(f"the controller cannot listen on {self.listen}")
        await self.controller.start()
        await server.start()
        self._server, self.port = server, port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(1.0)
            self._server = None
        await self.controller.stop()
        close = getattr(self.controller.pusher, "close", None)
        if close is not None:
            await close()

    @property
    def address(self) -> str:
        host = self.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"


async def run_standalone(runtime: DataplaneRuntime) -> int:
    """``alcor controller``: serve until SIGTERM or SIGINT."""
    await runtime.start()
    print(f"alcor controller consuming the outbox; GoalStateProvisioner (RequestGoalStates) "
          f"on {runtime.address}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runtime.stop()
    return 0


class WithDataplane:
    """ASGI wrapper: the runtime starts with the application's lifespan and stops with it,
    on the server's event loop (so the API and the controller share it)."""

    def __init__(self, app: Any, runtime: DataplaneRuntime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                except Exception as exc:
                    LOG.exception("the data-plane controller did not start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                print(f"data-plane controller running; GoalStateProvisioner "
                      f"(RequestGoalStates) on {self.runtime.address}", flush=True)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
