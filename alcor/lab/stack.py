"""Alcor running on a lab: ``alcor server`` (API and controller gRPC, SQLite in the lab's state
directory) in the root netns on the management address, and one ``alcor agent`` per host
inside the host's netns (and the root mount namespace, see topology), serving on the host's
underlay address, registering itself through the API and asking the controller for its goal
state, with the lab's provider network mapped (``--physical-network public=ex0``).  The
agents write what they hold to a state file (``--state-file``), which tests compare with the
goal state.
"""

from __future__ import annotations

import json
import signal
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alcor.lab.topology import (
    HOST_PROVIDER_LINK,
    PHYSICAL_NETWORK,
    Host,
    Lab,
    LabError,
    LabProcess,
    python_command,
)

AGENT_PORT = 50001
START_TIMEOUT = 60.0
SERVER_READY = "Uvicorn running on"
AGENT_READY = "answered the restart request"


def free_port(address: str) -> int:
    """A TCP port free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class Stack:
    """A server and one agent per lab host; ``start()`` returns once every agent got its
    state, ``close()`` stops them (the lab's ``destroy`` does too)."""

    def __init__(self, lab: Lab, *, dataplane: str = "linux",
                 env: Mapping[str, str] | None = None) -> None:
        self.lab = lab
        self.dataplane = dataplane
        self.env = {"ALCOR_DPM__BACKOFF_INITIAL": "0.1", "ALCOR_DPM__BACKOFF_MAX": "1",
                    "ALCOR_DPM__RECONCILE_INTERVAL": "1", **(env or {})}
        self.api_port = free_port(lab.mgmt_ip)
        self.grpc_port = free_port(lab.mgmt_ip)
        self.server: LabProcess | None = None
        self.agents: dict[str, LabProcess] = {}

    @property
    def api_url(self) -> str:
        return f"http://{self.lab.mgmt_ip}:{self.api_port}"

    @property
    def controller(self) -> str:
        return f"{self.lab.mgmt_ip}:{self.grpc_port}"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.lab.state_dir / 'alcor.db'}"

    def start(self) -> Stack:
        self.start_server()
        for name in self.lab.hosts:
            self.start_agent(name)
        return self

    def start_server(self) -> LabProcess:
        """``alcor server`` on the management address; returns once it serves HTTP."""
        server = self.lab.spawn("server", python_command(
            "server", "--host", self.lab.mgmt_ip, "--port", str(self.api_port),
            "--db-url", self.db_url, "--grpc-listen", self.controller), env=self.env)
        self.server = server
        if not server.wait_for(SERVER_READY, START_TIMEOUT):
            raise LabError(f"alcor server did not start:\n{server.log()}")
        return server

    def start_agent(self, name: str) -> LabProcess:
        """``alcor agent`` in host ``name``'s netns; returns once the controller answered its
        request for the full goal state (so it holds everything it should)."""
        host = self.lab.host(name)
        agent = self.lab.spawn(f"agent-{name}", self.agent_command(host), netns=host.netns,
                               own_mounts=False)
        self.agents[name] = agent
        if not agent.wait_for(AGENT_READY, START_TIMEOUT):
            raise LabError(f"alcor agent on {name} did not get its state:\n{agent.log()}")
        return agent

    def agent_command(self, host: Host) -> list[str]:
        return python_command(
            "agent", "--listen", f"{host.address}:{AGENT_PORT}", "--node-id", host.name,
            "--node-name", host.name, "--local-ip", host.address, "--api-url", self.api_url,
            "--controller", self.controller, "--state-file", str(self.state_file(host.name)),
            "--dataplane", self.dataplane,
            "--physical-network", f"{PHYSICAL_NETWORK}={HOST_PROVIDER_LINK}")

    def stop_agent(self, name: str, sig: int = signal.SIGTERM) -> None:
        agent = self.agents.get(name)
        if agent is not None:
            agent.stop(sig)

    def state_file(self, name: str) -> Path:
        return self.lab.state_dir / f"agent-{name}.json"

    def held(self, name: str) -> dict[str, set[str]]:
        """What agent ``name`` says it holds, by resource kind (``{}`` before it wrote)."""
        path = self.state_file(name)
        if not path.exists():
            return {}
        body: dict[str, Any] = json.loads(path.read_text())
        return {kind: set(ids) for kind, ids in body["realized"].items()}

    def failures(self, name: str) -> dict[str, str]:
        path = self.state_file(name)
        return dict(json.loads(path.read_text())["failures"]) if path.exists() else {}

    def logs(self) -> str:
        """The tail of every process's output (for failure messages)."""
        parts = []
        for name, process in [("server", self.server), *self.agents.items()]:
            if process is not None:
                parts.append(f"--- {name} ---\n{process.log(40)}")
        return "\n".join(parts)

    def close(self) -> None:
        for agent in self.agents.values():
            agent.stop()
        if self.server is not None:
            self.server.stop()
