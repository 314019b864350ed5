"""W6: port create -> ACTIVE with real programming (root).

On a lab (``alcor.lab``: three simulated hosts as network namespaces, ``alcor server`` on
SQLite, one ``alcor agent`` per host with the Linux data plane), after a few warm-up ports,
creates ``--ports`` ports (200) one at a time, each bound to the next host round-robin and
plugged into its own workload namespace, with ``X-Alcor-Wait``, and reports p50/p99 of:

- create -> ACTIVE: the client's round trip of the create that waited (what a user sees);
- commit -> last ack: the port's ``binding:vif_details["alcor_provisioning_ms"]``;
- data-plane share: per port, the longest agent apply among the goal states that create
  caused (agents apply in parallel), from the agents' "goal state generation N: ... in
  <us> us" lines;
- control-plane share: commit -> last ack minus the data-plane share.

Each figure is printed next to its target (issue 4: create -> ACTIVE p50 < 50 ms, p99 <
200 ms; performance.md W6: control-plane share p50 < 50 ms, p99 < 300 ms idle).

    sudo .venv/bin/python -m bench.w6_dataplane [--ports 200] [--hosts 3]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
import urllib.request
from typing import Any

from alcor.lab.stack import Stack
from alcor.lab.topology import Lab, LabProcess, sweep

PREFIX = "alw6-"
WARMUP = 5
WAIT = "30"
APPLIED = re.compile(r"goal state generation \d+: .* in (\d+) us")
TARGETS = {
    "create -> ACTIVE (client)": (50.0, 200.0),
    "commit -> last ack": (None, None),
    "data-plane share": (None, None),
    "control-plane share": (50.0, 300.0),
}


def call(base: str, method: str, path: str, body: dict[str, Any],
         headers: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}


def applies(agent: LabProcess, since: int) -> list[int]:
    """The apply times (us) agent logged from line ``since`` on."""
    return [int(m.group(1)) for line in agent.output[since:] if (m := APPLIED.search(line))]


def create_one(stack: Stack, lab: Lab, net_id: str, host: str, n: int) -> dict[str, float]:
    netns = lab.add_workload(host, f"p{n}")
    marks = {name: len(agent.output) for name, agent in stack.agents.items()}
    started = time.perf_counter()
    body, headers = call(stack.api_url, "POST", "/v2.0/ports", {"port": {
        "network_id": net_id, "binding:host_id": host,
        "binding:profile": {"network_ns": netns, "veth_name": "eth0"}}}, {"X-Alcor-Wait": WAIT})
    elapsed_ms = (time.perf_counter() - started) * 1000
    port = body["port"]
    if port["status"] != "ACTIVE":
        raise RuntimeError(f"port {n} is {port['status']}: {headers.get('x-alcor-provisioning')}")
    acked = json.loads(headers["x-alcor-provisioning"])["hosts"]
    # The acknowledgements came before the answer; their log lines are at most in a pipe.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and not all(
            applies(stack.agents[h], marks[h]) for h in acked):
        time.sleep(0.001)
    dataplane_ms = max((max(applies(stack.agents[h], marks[h]), default=0) for h in acked),
                       default=0) / 1000
    provisioning = float(port["binding:vif_details"]["alcor_provisioning_ms"])
    return {"create -> ACTIVE (client)": elapsed_ms, "commit -> last ack": provisioning,
            "data-plane share": dataplane_ms,
            "control-plane share": max(provisioning - dataplane_ms, 0.0)}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def report(samples: list[dict[str, float]]) -> None:
    print(f"{'figure':<28}{'p50 ms':>9}{'p99 ms':>9}{'mean':>9}   target")
    for figure, (p50_target, p99_target) in TARGETS.items():
        values = [s[figure] for s in samples]
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        target = ("-" if p50_target is None else
                  f"p50 < {p50_target:.0f} ({'ok' if p50 < p50_target else 'MISSED'}), "
                  f"p99 < {p99_target:.0f} ({'ok' if p99 < (p99_target or 0) else 'MISSED'})")
        print(f"{figure:<28}{p50:>9.1f}{p99:>9.1f}{statistics.fmean(values):>9.1f}   {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=3)
    args = parser.parse_args(argv)
    sweep(PREFIX)
    hosts = [f"host-{n}" for n in range(1, args.hosts + 1)]
    with Lab(PREFIX, hosts) as lab:
        stack = Stack(lab).start()
        net, _ = call(stack.api_url, "POST", "/v2.0/networks", {"network": {"name": "w6"}})
        net_id = net["network"]["id"]
        call(stack.api_url, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net_id, "cidr": "10.96.0.0/16", "ip_version": 4}})
        for n in range(WARMUP):
            create_one(stack, lab, net_id, hosts[n % len(hosts)], n)
        began = time.perf_counter()
        samples = [create_one(stack, lab, net_id, hosts[n % len(hosts)], WARMUP + n)
                   for n in range(args.ports)]
        wall = time.perf_counter() - began
        print(f"W6: {args.ports} ports created one at a time on {len(hosts)} hosts (real "
              f"programming, {WARMUP} warm-up ports dropped) in {wall:.1f} s")
        report(samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
