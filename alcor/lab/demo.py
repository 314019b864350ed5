"""``alcor demo`` (``sudo make demo``): a newcomer's tour, as root, on this one machine.

It builds two simulated hosts (network namespaces ``alcor-demo-<hex>-*``), starts ``alcor
server`` and an ``alcor agent`` on each host, creates a network, a subnet and two "VMs" (ports
bound to the hosts, each plugged into a workload namespace) through the Neutron API, shows the
ports ACTIVE and a ping from one VM to the other across the VXLAN overlay, explaining each
step; then removes everything it made, also on Ctrl-C or failure.  Exit status 0 when the
ping worked.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
import urllib.request
from collections.abc import Callable
from types import FrameType
from typing import Any

from alcor.lab.stack import Stack
from alcor.lab.topology import Lab, LabError, run_in, sweep

PREFIX = "alcor-demo-"
HOSTS = ("host-1", "host-2")
CIDR = "10.0.0.0/24"
WAIT_SECONDS = 30
PING_COUNT = 3
PING_WORKED = "The ping worked"

Say = Callable[[str], None]


def say(text: str) -> None:
    print(text, flush=True)


class Api:
    """A tiny Neutron API client on the standard library (the demo needs no extra package)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def call(self, method: str, path: str, body: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"Content-Type": "application/json", **(headers or {})})
        with urllib.request.urlopen(request, timeout=WAIT_SECONDS + 30) as response:
            raw = response.read()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return (json.loads(raw) if raw else {}), headers


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(out: Say = say) -> int:
    """Run the demo; returns the exit status."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    left = sweep(PREFIX)
    if left:
        out(f"(removed what an earlier demo left behind: {', '.join(left)})")
    lab = Lab(PREFIX, HOSTS, hex_digits=4)
    try:
        return tour(lab, out)
    except KeyboardInterrupt:
        out("\nInterrupted.")
        return 130
    except (LabError, OSError) as exc:
        out(f"\nThe demo failed: {exc}")
        return 1
    finally:
        out("\n== Cleaning up ==\nStopping the agents and the server, deleting every "
            f"namespace named {lab.id}-* and the management link {lab.id} ...")
        lab.destroy()
        out("Done: nothing of the demo is left on this machine.")
        signal.signal(signal.SIGTERM, previous)


def tour(lab: Lab, out: Say) -> int:
    step(out, 1, "Two simulated hosts", """
        Each host is a network namespace with its own "physical" address on an underlay
        switch (a bridge in one more namespace).  A management link gives this machine an
        address on that underlay, so the server here and the agents there reach each other.""")
    lab.create()
    for host in lab.hosts.values():
        out(f"  {host.name}: namespace {host.netns}, underlay address {host.address}")
    out(f"  this machine: {lab.mgmt_ip} (interface {lab.mgmt_link})")

    step(out, 2, "The control plane", """
        `alcor server` serves the Neutron API and runs the data-plane controller, which
        compiles every change into goal states and pushes them to the hosts' agents.""")
    stack = Stack(lab)
    stack.start_server()
    out(f"  alcor server: API {stack.api_url}, controller gRPC {stack.controller}")

    step(out, 3, "One agent per host", """
        `alcor agent` runs inside each host's namespace, registers the host through the API
        and asks the controller for its goal state.  It programs the host's Linux kernel:
        a bridge and a VXLAN device per network, the VMs' interfaces, nftables security
        groups and a DHCP responder.""")
    for name, host in lab.hosts.items():
        stack.start_agent(name)
        out(f"  agent on {name} ready: nsenter --net=/run/netns/{host.netns} alcor agent "
            f"--node-id {name} --local-ip {host.address} ...")

    api = Api(stack.api_url)
    step(out, 4, "A network and a subnet, through the Neutron API", """
        The same calls `openstack network create` and `openstack subnet create` make.""")
    net, _ = api.call("POST", "/v2.0/networks", {"network": {"name": "demo-net"}})
    network = net["network"]
    out(f"  POST /v2.0/networks -> network {network['id']} (VXLAN VNI "
        f"{network.get('provider:segmentation_id', '?')})")
    sub, _ = api.call("POST", "/v2.0/subnets", {"subnet": {
        "network_id": network["id"], "cidr": CIDR, "ip_version": 4, "name": "demo-subnet"}})
    out(f"  POST /v2.0/subnets  -> subnet {CIDR}, gateway {sub['subnet']['gateway_ip']}")

    step(out, 5, "Two VMs, one on each host", f"""
        A VM here is a network namespace.  Its port is bound to a host
        (binding:host_id) and names the namespace in binding:profile; the host's agent
        creates the VM's eth0 there with the port's MAC and address.  `X-Alcor-Wait:
        {WAIT_SECONDS}` holds the answer until the hosts have programmed the port.""")
    vms = [vm(api, lab, network["id"], host, f"vm{n}", out)
           for n, host in enumerate(HOSTS, start=1)]

    step(out, 6, "A ping from vm1 to vm2", """
        vm1's packets leave its eth0, cross host-1's bridge, are encapsulated in VXLAN
        to host-2's underlay address, and reach vm2: no flooding, the agents programmed
        where every MAC and address lives.""")
    return ping(vms[0], vms[1], out)


def step(out: Say, number: int, title: str, text: str) -> None:
    out(f"\n== Step {number}: {title} ==")
    out(textwrap.indent(textwrap.dedent(text).strip(), "  "))


def vm(api: Api, lab: Lab, network_id: str, host: str, name: str, out: Say) -> dict[str, Any]:
    netns = lab.add_workload(host, name)
    body = {"port": {"network_id": network_id, "name": name, "binding:host_id": host,
                     "binding:profile": {"network_ns": netns, "veth_name": "eth0"}}}
    created, headers = api.call("POST", "/v2.0/ports", body,
                                {"X-Alcor-Wait": str(WAIT_SECONDS)})
    port = created["port"]
    address = port["fixed_ips"][0]["ip_address"]
    took = port["binding:vif_details"].get("alcor_provisioning_ms")
    out(f"  {name}: port {port['id']} on {host}, {address} {port['mac_address']}, "
        f"status {port['status']}" + (f" (programmed in {took} ms)" if took is not None else ""))
    if port["status"] != "ACTIVE":
        raise LabError(f"port {name} is {port['status']}: {headers.get('x-alcor-provisioning')}")
    shown = run_in(netns, "ip", "-br", "addr", "show", "dev", "eth0").stdout.strip()
    out(f"    inside {netns}: {shown}")
    return {"name": name, "netns": netns, "ip": address}


def ping(src: dict[str, Any], dst: dict[str, Any], out: Say) -> int:
    out(f"  $ ip netns exec {src['netns']} ping -c {PING_COUNT} {dst['ip']}")
    done = run_in(src["netns"], "ping", "-n", "-c", str(PING_COUNT), "-W", "2", dst["ip"])
    out(textwrap.indent((done.stdout + done.stderr).strip(), "    "))
    if done.returncode == 0:
        out(f"\n{PING_WORKED}: {src['name']} reached {dst['name']} across the overlay.")
        return 0
    out(f"\nThe ping failed: {src['name']} did not reach {dst['name']}.")
    return 1


if __name__ == "__main__":
    sys.exit(main())
