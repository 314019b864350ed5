"""The ``alcor agent`` process: serve GoalStateProvisioner, then register the node with the
nodes API and ask the controller for the full goal state (each retried with backoff until it
succeeds), until SIGTERM or SIGINT.

The data plane (``--dataplane``) is ``linux`` by default: ``LinuxProgrammer`` programs the
network namespace the agent runs in (bridges, VXLAN, workload interfaces, router namespaces);
``recording`` keeps what it is told in memory only (tests, the simulator).  Provider networks
reach the host through ``--physical-network NAME=IFACE`` (repeatable): routers' external legs
plug into a bridge the agent keeps on IFACE for the networks whose
``provider:physical_network`` is NAME.  The agent's state starts empty after
a restart; the first full goal state rebuilds it and the Linux programmer then sweeps what
the kernel holds from before and nobody asks for.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from alcor.agent.programmer import Programmer, RecordingProgrammer
from alcor.agent.registration import (
    HostInfo,
    RegistrationFailed,
    default_dvr_mac,
    default_mac,
    register,
)
from alcor.agent.server import AgentServer, request_full_state, start_server
from alcor.agent.state import AgentState, Desired, Report
from alcor.config import AuthSettings
from alcor.identity import IdentityUnavailable, KeystoneClient
from alcor.rpc._generated import common_pb2

log = logging.getLogger(__name__)

FIRST_RETRY = 0.2
MAX_RETRY = 10.0


@dataclass(frozen=True)
class AgentOptions:
    listen: str
    node_id: str
    node_name: str
    local_ip: str
    mac_address: str | None = None
    veth: str = "eth0"
    host_dvr_mac: str | None = None
    api_url: str | None = None
    controller: str | None = None
    state_file: str | None = None
    dataplane: str = "linux"
    physical_networks: tuple[str, ...] = ()
    """``NAME=IFACE`` mappings of provider networks (``--physical-network``)."""
    auth: AuthSettings | None = None
    """With strategy ``keystone``: the user (an admin) whose token registers the node."""

    def host_info(self, server_port: int) -> HostInfo:
        return HostInfo(
            node_id=self.node_id, node_name=self.node_name, local_ip=self.local_ip,
            mac_address=self.mac_address or default_mac(self.local_ip), veth=self.veth,
            server_port=server_port,
            host_dvr_mac=self.host_dvr_mac or default_dvr_mac(self.local_ip),
        )


DATAPLANES = ("linux", "recording")


def build_programmer(options: AgentOptions) -> Programmer:
    """The programmer ``options.dataplane`` names."""
    if options.dataplane == "recording":
        return RecordingProgrammer()
    if options.dataplane != "linux":
        raise ValueError(f"unknown data plane {options.dataplane!r} (one of {DATAPLANES})")
    from alcor.agent.linux.dhcp_responder import DhcpResponder
    from alcor.agent.linux.firewall import Firewall
    from alcor.agent.linux.programmer import LinuxProgrammer
    from alcor.agent.linux.provider import parse_mappings

    mappings = parse_mappings(options.physical_networks)
    dhcp = DhcpResponder()
    dhcp.start()
    return LinuxProgrammer(options.local_ip, firewall=Firewall(), dhcp=dhcp,
                           physical_networks=mappings)


async def run(options: AgentOptions, programmer: Programmer | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; returns the exit status."""
    programmer = programmer or build_programmer(options)
    state = (StateFileAgentState(programmer, options.local_ip, Path(options.state_file))
             if options.state_file else AgentState(programmer, options.local_ip))
    server = await start_server(state, options.listen)
    host = options.listen.rsplit(":", 1)[0]
    print(f"alcor agent {options.node_id} serving GoalStateProvisioner on {host}:{server.port}",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    startup = asyncio.create_task(announce(options, server))
    await stop.wait()
    startup.cancel()
    await server.stop(grace=2.0)
    close = getattr(programmer, "close", None)
    if close is not None:
        close()
    return 0


class StateFileAgentState(AgentState):
    """An AgentState that writes what it holds to a JSON file after each goal state (for
    tests and operators: ``alcor agent --state-file``), replacing the file atomically::

        {"generation": 7, "realized": {"PORT": ["p1"], "NEIGHBOR": ["L2/p2"], ...},
         "failures": {"p3": "reason"}}
    """

    def __init__(self, programmer: Programmer, local_ip: str, path: Path) -> None:
        super().__init__(programmer, local_ip)
        self.path = path
        self.write()

    def apply(self, desired: list[Desired], generation: int | None,
              started: float | None = None, base: int | None = None) -> Report:
        report = super().apply(desired, generation, started, base)
        self.write()
        return report

    def write(self) -> None:
        body = {
            "generation": self.generation,
            "realized": {common_pb2.ResourceType.Name(kind): sorted(held)
                         for kind, held in self.realized.items()},
            "failures": {rid: reason for (_, rid), reason in self.failures.items()},
        }
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(body, sort_keys=True))
        os.replace(partial, self.path)


async def announce(options: AgentOptions, server: AgentServer) -> None:
    """Register the node (if an API is given), then ask for the full goal state (if a
    controller is given)."""
    host = options.host_info(server.port)
    tokens = KeystoneClient(options.auth) if (
        options.auth is not None and options.auth.strategy == "keystone") else None
    try:
        if options.api_url and not await register_until_done(options.api_url, host, tokens):
            return
    finally:
        if tokens is not None:
            tokens.close()
    if options.controller:
        reply = await request_full_state(options.controller, options.local_ip,
                                         first_delay=FIRST_RETRY, max_delay=MAX_RETRY)
        statuses = [common_pb2.OperationStatus.Name(s.operation_status)
                    for s in reply.operation_statuses]
        print(f"controller {options.controller} answered the restart request: "
              f"{', '.join(statuses) or 'no status'}", flush=True)


async def register_until_done(api_url: str, host: HostInfo,
                              tokens: KeystoneClient | None = None) -> bool:
    """Register with backoff while the API or the identity service is unreachable or failing
    (5xx); False if the API refuses the node (4xx other than 409, which means it exists and is
    updated instead).  ``tokens``: where the X-Auth-Token comes from (APIs behind Keystone)."""
    delay = FIRST_RETRY
    while True:
        try:
            token = await asyncio.to_thread(tokens.service_token) if tokens else None
            outcome = await asyncio.to_thread(
                functools.partial(register, api_url, host, token=token))
        except RegistrationFailed as exc:
            if exc.permanent:
                log.error("node %s not registered: %s", host.node_id, exc)
                return False
            log.warning("registering node %s: %s; again in %.1fs", host.node_id, exc, delay)
        except IdentityUnavailable as exc:
            log.warning("no token to register node %s: %s; again in %.1fs", host.node_id, exc,
                        delay)
        except OSError as exc:
            log.info("nodes API %s unreachable (%s); again in %.1fs", api_url, exc, delay)
        else:
            print(f"node {host.node_id} {outcome} at {api_url}", flush=True)
            return True
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY)
