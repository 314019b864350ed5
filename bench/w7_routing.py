"""W7: routing on the real data plane (root): router interface add -> routed reachability,
floating IP associate -> reachable from outside.

On a lab (``alcor.lab``: two simulated hosts as network namespaces, the provider switch and
the ``<id>-external`` namespace holding 203.0.113.1/24, ``alcor server`` on SQLite, one
``alcor agent`` per host with the Linux data plane and ``--physical-network public=ex0``),
builds through the Neutron API two networks, 10.1.0.0/24 with workload 1 on host-1 and
10.2.0.0/24 with workload 2 on host-2, and a router with network 1's interface attached.
Then, ``--runs`` times each (after one warm-up run, dropped):

1. ``PUT /v2.0/routers/{id}/add_router_interface {"subnet_id": <subnet 2>}``, timed from its
   answer to the first echo reply workload 1 gets from workload 2's address; then
   ``remove_router_interface``, and the next run starts only once a full second of probes
   went unanswered (the route is gone again).
2. With the router's gateway on a flat ``router:external`` network (the lab's provider
   switch, 203.0.113.0/24) and network 2 attached too: ``PUT /v2.0/floatingips/{id}
   {"port_id": <workload 2's port>}``, timed from its answer to the first echo reply the
   external namespace gets from the floating IP; then ``{"port_id": null}``, and again a
   silent second before the next run.

The probe is one ``ping -D -i 0.01`` per phase running for the whole phase (every 10 ms,
wall-clock timestamps on each reply), so a figure's resolution is 10 ms, not the 200+ ms of
polling with single pings.  Per run, the agents' "goal state generation N: ... in <us> us"
lines (timestamped to the millisecond) of the applies that began between the request and
the first reply give, as W6 does:

- control-plane share: from the answer until the agent that finished last began applying
  (outbox, compile, push), clamped at 0 when it began before the answer arrived;
- data-plane share: the longest of those applies (agents apply in parallel);
- reply - end of last apply: negative when the path worked before the agents finished
  their whole goal states (the part the path needs came early), positive for what
  the packet itself waited for (ARP, the probe's 10 ms interval).

"remove -> cut" is from the detach (disassociate) answer to the last reply after it (0:
cut before the answer arrived).

A re-added interface is a new port: a new MAC at the same gateway address.  The agent
announces a ``qr-`` leg's addresses by gratuitous ARP when it plugs it (as Neutron's l3 agent
does), so workloads holding the old gateway MAC, or still waiting for an answer because
their ARP request went out before their own host's leg existed, learn the new one at once;
before it did, the second run timed out and 1 s ARP retries made the tail.  The workloads'
neighbour entries are kept between runs (``--flush-arp`` drops them once the route is gone,
so each run starts like a fresh workload).

Target (Alcor's own for this project, the bar W3 (a) sets for a neighbour reaching every
host): p99 < 1 s for each of the two, answer to first reply.

    sudo .venv/bin/python -m bench.w7_routing [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import Any

from alcor.lab.stack import Stack
from alcor.lab.topology import (
    EXTERNAL_CIDR,
    EXTERNAL_GATEWAY,
    PHYSICAL_NETWORK,
    Lab,
    LabProcess,
    run_in,
    sweep,
)
from bench.w6_dataplane import percentile

PREFIX = "alw7-"
HOSTS = ("host-1", "host-2")
WARMUP = 1
WAIT = "30"
PROBE_INTERVAL = "0.01"
QUIET = 1.0
"""Seconds without a reply that count as "no longer reachable"."""
DEADLINE = 30.0
"""Seconds a change may take to show (or to go) before the run is declared failed."""
REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from ")
APPLIED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) .*goal state generation "
                     r"\S+: .* in (\d+) us")
TARGET_MS = 1000.0
"""p99 of each change, answer to first reply."""
SLOW_MS = 500.0
"""Runs this slow or slower are counted (a lost ARP request costs a 1 s retry)."""
SHARES = ("  control-plane share", "  data-plane share", "  reply - end of last apply")


class Interrupted(Exception):
    """SIGTERM: unwind like Ctrl-C so the lab is torn down."""


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None,
         headers: dict[str, str] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(request, timeout=120) as response:
        raw = response.read()
    return dict(json.loads(raw)) if raw else {}


def replies(pinger: LabProcess, since: int = 0) -> list[float]:
    """The wall-clock times of the echo replies ``pinger`` printed from line ``since`` on."""
    return [float(m.group(1)) for line in pinger.output[since:] if (m := REPLY.match(line))]


def applies(agent: LabProcess, since: int) -> list[tuple[float, float]]:
    """(logged at, apply seconds) of the goal states ``agent`` applied from line ``since``."""
    found = []
    for line in agent.output[since:]:
        m = APPLIED.match(line)
        if m:
            logged = time.mktime(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
            found.append((logged + int(m.group(2)) / 1000, int(m.group(3)) / 1e6))
    return found


class Routed:
    """The lab, its stack and what the benchmark built through the API."""

    def __init__(self, lab: Lab, stack: Stack) -> None:
        self.lab = lab
        self.stack = stack
        self.api = stack.api_url
        self.nets: list[dict[str, str]] = []
        self.ports: list[dict[str, Any]] = []
        self.router_id = ""
        self.flush_arp = False

    def network(self, name: str, cidr: str) -> dict[str, str]:
        net = call(self.api, "POST", "/v2.0/networks", {"network": {"name": name}})["network"]
        subnet = call(self.api, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "cidr": cidr, "ip_version": 4}})["subnet"]
        made = {"id": net["id"], "subnet_id": subnet["id"], "gateway": subnet["gateway_ip"]}
        self.nets.append(made)
        return made

    def workload(self, net: dict[str, str], host: str, name: str,
                 groups: list[str] | None = None) -> dict[str, Any]:
        netns = self.lab.add_workload(host, name)
        body: dict[str, Any] = {"network_id": net["id"], "binding:host_id": host,
                                "binding:profile": {"network_ns": netns, "veth_name": "eth0"}}
        if groups is not None:
            body["security_groups"] = groups
        port: dict[str, Any] = call(self.api, "POST", "/v2.0/ports", {"port": body},
                                    {"X-Alcor-Wait": WAIT})["port"]
        if port["status"] != "ACTIVE":
            raise RuntimeError(f"port {name} is {port['status']}:\n{self.stack.logs()}")
        port["netns"] = netns
        self.ports.append(port)
        return port

    def open_group(self) -> str:
        """A group letting ICMP in from anywhere (the outside pings the floating IP)."""
        group = call(self.api, "POST", "/v2.0/security-groups", {"security_group": {
            "name": "from-anywhere"}})["security_group"]
        call(self.api, "POST", "/v2.0/security-group-rules", {"security_group_rule": {
            "security_group_id": group["id"], "direction": "ingress", "ethertype": "IPv4",
            "protocol": "icmp", "remote_ip_prefix": "0.0.0.0/0"}})
        return str(group["id"])

    def default_group(self) -> str:
        groups = call(self.api, "GET", "/v2.0/security-groups?name=default")["security_groups"]
        return str(groups[0]["id"])

    def external_network(self) -> dict[str, str]:
        net = call(self.api, "POST", "/v2.0/networks", {"network": {
            "name": "public", "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": PHYSICAL_NETWORK}})["network"]
        hosts = list(EXTERNAL_CIDR.hosts())
        subnet = call(self.api, "POST", "/v2.0/subnets", {"subnet": {
            "network_id": net["id"], "cidr": str(EXTERNAL_CIDR), "ip_version": 4,
            "gateway_ip": EXTERNAL_GATEWAY, "enable_dhcp": False,
            "allocation_pools": [{"start": str(hosts[99]), "end": str(hosts[199])}]}})["subnet"]
        return {"id": net["id"], "subnet_id": subnet["id"]}

    def interface(self, action: str, net: dict[str, str]) -> None:
        call(self.api, "PUT", f"/v2.0/routers/{self.router_id}/{action}_router_interface",
             {"subnet_id": net["subnet_id"]})

    def forget_gateway(self, port: dict[str, Any]) -> None:
        """Drop the workload's ARP entries (``--flush-arp``)."""
        if self.flush_arp:
            run_in(port["netns"], "ip", "neigh", "flush", "dev", "eth0")

    def pinger(self, name: str, netns: str, address: str) -> LabProcess:
        """A ping every 10 ms from ``netns`` to ``address`` for the rest of the lab's life."""
        return self.lab.spawn(name, ["ping", "-n", "-D", "-i", PROBE_INTERVAL, address],
                              netns=netns)


def until(predicate: Callable[[], bool], what: str, stack: Stack) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {DEADLINE:.0f} s waiting for {what}\n"
                               f"{stack.logs()}")
        time.sleep(0.01)


def first_reply(pinger: LabProcess, since: int, what: str, stack: Stack) -> float:
    """The time of the first reply ``pinger`` printed from line ``since`` on (waits for it)."""
    if not pinger.wait_for(" bytes from ", DEADLINE, since):
        raise RuntimeError(f"timed out after {DEADLINE:.0f} s waiting for {what}\n"
                           f"{stack.logs()}")
    return replies(pinger, since)[0]


def last_reply_before_quiet(pinger: LabProcess, since: int, started: float, what: str,
                            stack: Stack) -> float:
    """Wait until QUIET seconds pass without a reply (from line ``since``, time ``started``
    on); returns the time of the last reply (``started`` if none came)."""
    last, cursor = started, since
    deadline = time.monotonic() + DEADLINE
    while True:
        lines = pinger.output[cursor:]
        cursor += len(lines)
        last = max([last, *(float(m.group(1)) for line in lines if (m := REPLY.match(line)))])
        if time.time() - last >= QUIET:
            return last
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: still answered {DEADLINE:.0f} s on\n{stack.logs()}")
        time.sleep(0.05)


def measure(routed: Routed, pinger: LabProcess, change: Callable[[], object],
            undo: Callable[[], object], what: str,
            reset: Callable[[], object] = lambda: None) -> dict[str, float]:
    """One run from silence, in ms: ``change`` until the first reply ("change") and its
    shares, then ``undo`` until QUIET seconds of silence, and when the last reply came after
    it ("undo"); then ``reset``."""
    agents = list(routed.stack.agents.values())
    marks = [len(agent.output) for agent in agents]
    mark = len(pinger.output)
    sent = time.time()
    change()
    answered = time.time()
    reply = first_reply(pinger, mark, f"{what}: the first reply", routed.stack)
    cut_mark = len(pinger.output)
    undo()
    undone = time.time()
    cut = last_reply_before_quiet(pinger, cut_mark, undone, f"{what}: undone", routed.stack)
    reset()
    # The applies that began before the reply (logged long before the silence ended).
    done = [(end, seconds) for agent, m in zip(agents, marks, strict=True)
            for end, seconds in applies(agent, m) if sent - 0.001 <= end - seconds <= reply]
    sample = {"change": max(reply - answered, 0.0) * 1000, "undo": max(cut - undone, 0.0) * 1000}
    if done:
        last_end = max(logged for logged, _ in done)
        longest = max(seconds for _, seconds in done)
        sample |= {SHARES[0]: max(last_end - longest - answered, 0.0) * 1000,
                   SHARES[1]: longest * 1000, SHARES[2]: (reply - last_end) * 1000}
    return sample


def route_phase(routed: Routed, runs: int) -> list[dict[str, float]]:
    """Phase 1: add and remove network 2's interface, pinging workload 2 from workload 1."""
    net2 = routed.nets[1]
    source, target = routed.ports
    pinger = routed.pinger("ping-route", source["netns"],
                           target["fixed_ips"][0]["ip_address"])
    last_reply_before_quiet(pinger, 0, time.time(), "routed without the interface",
                            routed.stack)
    samples = [measure(routed, pinger, lambda: routed.interface("add", net2),
                       lambda: routed.interface("remove", net2), f"interface run {n}",
                       lambda: routed.forget_gateway(target))
               for n in range(WARMUP + runs)]
    pinger.stop(signal.SIGINT)
    return samples[WARMUP:]


def fip_phase(routed: Routed, runs: int) -> list[dict[str, float]]:
    """Phase 2: associate and disassociate a floating IP with workload 2's port, pinging it
    from the external namespace."""
    external = routed.external_network()
    call(routed.api, "PUT", f"/v2.0/routers/{routed.router_id}", {"router": {
        "external_gateway_info": {"network_id": external["id"]}}})
    routed.interface("add", routed.nets[1])
    routed.forget_gateway(routed.ports[1])
    fip = call(routed.api, "POST", "/v2.0/floatingips", {"floatingip": {
        "floating_network_id": external["id"]}})["floatingip"]
    path = f"/v2.0/floatingips/{fip['id']}"
    port_id = routed.ports[1]["id"]
    pinger = routed.pinger("ping-fip", routed.lab.external, fip["floating_ip_address"])
    last_reply_before_quiet(pinger, 0, time.time(), "the unassociated floating IP answering",
                            routed.stack)
    samples = [measure(routed, pinger,
                       lambda: call(routed.api, "PUT", path, {"floatingip": {"port_id": port_id}}),
                       lambda: call(routed.api, "PUT", path, {"floatingip": {"port_id": None}}),
                       f"floating IP run {n}")
               for n in range(WARMUP + runs)]
    pinger.stop(signal.SIGINT)
    return samples[WARMUP:]


def build(routed: Routed) -> None:
    """Two networks, a workload on each (host-1, host-2), a router on network 1."""
    net1 = routed.network("w7-1", "10.1.0.0/24")
    net2 = routed.network("w7-2", "10.2.0.0/24")
    routed.workload(net1, "host-1", "w1")
    routed.workload(net2, "host-2", "w2", groups=[routed.default_group(), routed.open_group()])
    router = call(routed.api, "POST", "/v2.0/routers", {"router": {"name": "w7"}})["router"]
    routed.router_id = router["id"]
    routed.interface("add", net1)
    until(lambda: run_in(routed.ports[0]["netns"], "ping", "-n", "-q", "-c", "1", "-W", "1",
                         net1["gateway"]).returncode == 0, "workload 1's gateway", routed.stack)


def report(samples: list[dict[str, float]], change: str, undo: str) -> None:
    """The figures of one phase: ``change`` (with the target) and its shares, then ``undo``
    (a share is missing from a run whose agents logged no apply before the reply)."""
    labels = {"change": change, **{share: share for share in SHARES}, "undo": undo}
    for key, label in labels.items():
        values = [s[key] for s in samples if key in s]
        if not values:
            continue
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        target = (f"p99 < {TARGET_MS:.0f} ({'ok' if p99 < TARGET_MS else 'MISSED'})"
                  if key == "change" else "-")
        print(f"{label:<34}{p50:>9.1f}{p99:>9.1f}{statistics.fmean(values):>9.1f}"
              f"{len(values):>5}   {target}")
        if key == "change":
            slow = sum(value >= SLOW_MS for value in values)
            print(f"  runs of {SLOW_MS:.0f} ms or more: {slow} of {len(values)}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--flush-arp", action="store_true",
                        help="drop workload 2's ARP entries between runs (a fresh workload "
                        "each run)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    sweep(PREFIX)
    lab = Lab(PREFIX, HOSTS)
    try:
        lab.create()
        stack = Stack(lab).start()
        routed = Routed(lab, stack)
        routed.flush_arp = args.flush_arp
        build(routed)
        began = time.perf_counter()
        routes = route_phase(routed, args.runs)
        fips = fip_phase(routed, args.runs)
        wall = time.perf_counter() - began
        print(f"W7: {args.runs} runs of each change on {len(HOSTS)} hosts (real programming, "
              f"{WARMUP} warm-up run dropped each, probes every {PROBE_INTERVAL} s) "
              f"in {wall:.1f} s")
        print(f"{'figure':<34}{'p50 ms':>9}{'p99 ms':>9}{'mean':>9}{'n':>5}   target")
        report(routes, "add interface -> routed", "remove interface -> cut")
        report(fips, "associate floating IP -> reachable", "disassociate -> cut")
    finally:
        lab.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
