"""W2: 10,000 ports created in bulk across 100 simulated agents, timed until every agent
acknowledged (shared/reference/performance.md; the issue's target: < 5 s).

Runs a real ``alcor server`` (API and controller in one process, SQLite, pinned to core 0) and
100 simulated gRPC agents (``bench/sim_agents.py``, ack mode, in this process, pinned to core
1), registered through the nodes API.  One request creates the 10,000 ports (spread evenly over
the 100 hosts, one network) with ``X-Alcor-Wait``, so the server answers once every port is
ACTIVE, i.e. once every host acknowledged the goal state carrying it.  Printed: the time to
that answer, the time the last agent applied its goal state, the server's per-port latency
(commit to last acknowledgement, from ``/metrics``), each next to the target.

Usage: ``python -m bench.w2_fanout [--ports 10000] [--agents 100] [--mode ack|state]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.server import ALCOR, free_port, pin, start_alcor, stop
from bench.sim_agents import Fleet, start_agents

TARGET_S = 5.0
WAIT_S = 120


class Server:
    """``alcor server`` with its controller, on a fresh SQLite file."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.grpc = f"127.0.0.1:{free_port()}"
        self.base = f"http://127.0.0.1:{self.port}"
        # W2_SERVER_CMD replaces the ``alcor`` command (e.g. a profiling wrapper);
        # W2_SERVER_LOG keeps the server's log.
        command = os.environ.get("W2_SERVER_CMD", str(ALCOR)).split()
        self.log = open(os.environ.get("W2_SERVER_LOG", os.devnull), "w")  # noqa: SIM115
        self.proc = start_alcor(
            ["server", "--port", str(self.port), "--db-url", f"sqlite:///{workdir}/alcor.db",
             "--grpc-listen", self.grpc, "--log-level", "warning"],
            self.base, command=command, stderr=self.log)

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[Any, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
        with urllib.request.urlopen(req, timeout=WAIT_S + 60) as resp:
            raw = resp.read()
            return (json.loads(raw) if raw else None), resp.headers

    def metrics(self) -> dict[str, float]:
        with urllib.request.urlopen(self.base + "/metrics", timeout=30) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def quantile(metrics: dict[str, float], q: float) -> float:
    """The histogram bucket bound under which a fraction ``q`` of the port latencies fall."""
    name = "alcor_port_provisioning_seconds"
    total = metrics.get(f"{name}_count", 0.0)
    buckets = sorted((float(k.split('"')[1]), v) for k, v in metrics.items()
                     if k.startswith(f"{name}_bucket") and "+Inf" not in k)
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("inf")


async def run(args: argparse.Namespace, server: Server) -> int:
    fleet: Fleet = await start_agents(args.agents, api_url=server.base, mode=args.mode,
                                      prefix="w2")
    try:
        net, _ = await asyncio.to_thread(server.call, "POST", "/v2.0/networks",
                                         {"network": {"name": "w2"}})
        net_id = net["network"]["id"]
        await asyncio.to_thread(server.call, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net_id, "cidr": "10.64.0.0/16", "ip_version": 4}})
        # every agent has acknowledged its (empty) goal state before the clock starts
        await fleet.wait_until(lambda: all(a.state.applied_at for a in fleet.agents), 60)
        before = {a.node_id: len(a.state.applied_at) for a in fleet.agents}
        ports = [{"network_id": net_id, "device_owner": "compute:nova",
                  "binding:host_id": fleet.agents[i % len(fleet.agents)].node_id}
                 for i in range(args.ports)]
        start = time.perf_counter()
        body, headers = await asyncio.to_thread(
            server.call, "POST", "/v2.0/ports", {"ports": ports},
            {"X-Alcor-Wait": str(WAIT_S)})
        answered = time.perf_counter() - start
        outcome = json.loads(headers.get("X-Alcor-Provisioning", "{}"))
        statuses = {p["status"] for p in body["ports"]}
        applied = [a.state.applied_at[-1][1] for a in fleet.agents
                   if len(a.state.applied_at) > before[a.node_id]]
        last_ack = max(applied) - start if applied else float("inf")
        metrics = await asyncio.to_thread(server.metrics)
    finally:
        await fleet.stop()
    ok = outcome.get("complete") is True and statuses == {"ACTIVE"} and \
        len(applied) == len(fleet.agents)
    print(f"W2: {args.ports} ports in one bulk request over {args.agents} agents ({args.mode})")
    print(f"  every agent acknowledged after {last_ack:6.2f} s   (target < {TARGET_S:.0f} s)  "
          f"{'PASS' if ok and last_ack < TARGET_S else 'FAIL'}")
    print(f"  API answered, all ports ACTIVE  {answered:6.2f} s   (X-Alcor-Wait; statuses "
          f"{sorted(statuses)}, complete={outcome.get('complete')})")
    print(f"  ports/s to the last ack        {args.ports / last_ack:8.0f}     "
          f"(pass bar >= 1,000/s)")
    print(f"  per-port commit->ack  p50 <= {quantile(metrics, 0.5):.3g} s  "
          f"p99 <= {quantile(metrics, 0.99):.3g} s   (histogram bucket bounds)")
    print(f"  pushes {metrics.get('alcor_goal_state_pushes_total', 0):.0f}, push failures "
          f"{metrics.get('alcor_goal_state_push_failures_total', 0):.0f}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ports", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--mode", choices=("ack", "state"), default="ack",
                        help="ack: agents only acknowledge; state: they keep and diff state")
    args = parser.parse_args(argv)
    if pin(1):
        os.sched_setaffinity(0, {1})
    with tempfile.TemporaryDirectory(prefix="alcor-w2-") as tmp:
        server = Server(Path(tmp))
        try:
            return asyncio.run(run(args, server))
        finally:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
