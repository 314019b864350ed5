"""What fullstack tests do to a running lab: create networks, security groups, "VMs" (ports
bound to a host whose ``binding:profile`` names a workload namespace), routers and floating
IPs through the Neutron API, and probe connectivity from inside workloads and from the lab's
external namespace (ping, TCP, DHCP, the source address the outside sees).  ``Cloud``
remembers everything it made and removes it in ``cleanup()``, also after a failure.

Waits are bounded and fail with what the server and agents said; no sleeps: ports are
created with ``X-Alcor-Wait`` and asserted ACTIVE, and changes without a wait header (rules,
deletes) are followed by polling for the effect.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from alcor.lab.stack import Stack
from alcor.lab.topology import (
    EXTERNAL_CIDR,
    EXTERNAL_GATEWAY,
    PHYSICAL_NETWORK,
    Lab,
    LabProcess,
    ip,
    run_in,
)

PROJECT = "proj-fs"
WAIT_SECONDS = "30"
SETTLE = 20.0
"""Seconds a change without a wait header (rule, delete) may take to show in the kernel."""
TCP_PORT = 8080

TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(sys.argv[2].encode() + b"\\n"); c.close()
"""

TCP_CLIENT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as c:
        print(c.recv(100).decode().strip())
except OSError as e:
    print("error", e); sys.exit(1)
"""

WHO_AM_I_PORT = 7070
WHO_AM_I = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b"\\n"); c.close()
"""
"""A TCP server answering each client with the source address it saw."""

DHCP_SCRIPT = """#!/bin/sh
# udhcpc event script for tests: record what the server offered; configure nothing.
env > "{out}.$1"
"""


def until(predicate: Callable[[], bool], what: str, timeout: float = SETTLE,
          logs: Callable[[], str] | None = None) -> None:
    """Return once ``predicate()`` holds (checked until ``timeout``); fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"\n{logs()}" if logs is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(0.1)


@dataclass(frozen=True)
class Net:
    id: str
    subnet_id: str
    cidr: str
    gateway: str


@dataclass(frozen=True)
class Vm:
    """A port and the workload namespace it is plugged into."""

    name: str
    port: dict[str, Any]
    netns: str
    host: str

    @property
    def id(self) -> str:
        return str(self.port["id"])

    @property
    def ip(self) -> str:
        return str(self.port["fixed_ips"][0]["ip_address"])

    @property
    def mac(self) -> str:
        return str(self.port["mac_address"])


class Cloud:
    """The API of a lab's server, and the workloads; cleans up what it made."""

    _names = itertools.count(1)

    def __init__(self, lab: Lab, stack: Stack) -> None:
        self.lab = lab
        self.stack = stack
        self.api = httpx.Client(base_url=stack.api_url, headers={"X-Project-Id": PROJECT},
                                timeout=90)
        self.ports: list[str] = []
        self.groups: list[str] = []
        self.networks: list[str] = []
        self.routers: list[str] = []
        self.floating_ips: list[str] = []
        self.workloads: list[str] = []
        self.servers: list[LabProcess] = []

    # the API

    def _created(self, resp: httpx.Response, what: str) -> dict[str, Any]:
        assert resp.status_code == 201, f"creating {what}: {resp.status_code} {resp.text}"
        body: dict[str, Any] = resp.json()
        return dict(next(iter(body.values())))

    def network(self, name: str, cidr: str) -> Net:
        net = self._created(self.api.post("/v2.0/networks", json={"network": {"name": name}}),
                            f"network {name}")
        self.networks.append(net["id"])
        subnet = self._created(self.api.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": cidr, "ip_version": 4, "name": name,
            "dns_nameservers": ["198.51.100.53"]}}), f"subnet {cidr}")
        return Net(net["id"], subnet["id"], cidr, subnet["gateway_ip"])

    def external_network(self, name: str = "public") -> Net:
        """A flat ``router:external`` network on the lab's provider network, its subnet the
        external namespace's (gateway ``EXTERNAL_GATEWAY``), addresses from .100 to .200."""
        net = self._created(self.api.post("/v2.0/networks", json={"network": {
            "name": name, "router:external": True, "provider:network_type": "flat",
            "provider:physical_network": PHYSICAL_NETWORK}}), f"external network {name}")
        self.networks.append(net["id"])
        hosts = list(EXTERNAL_CIDR.hosts())
        subnet = self._created(self.api.post("/v2.0/subnets", json={"subnet": {
            "network_id": net["id"], "cidr": str(EXTERNAL_CIDR), "ip_version": 4,
            "name": name, "gateway_ip": EXTERNAL_GATEWAY, "enable_dhcp": False,
            "allocation_pools": [{"start": str(hosts[99]), "end": str(hosts[199])}]}}),
            f"subnet {EXTERNAL_CIDR}")
        return Net(net["id"], subnet["id"], str(EXTERNAL_CIDR), subnet["gateway_ip"])

    def router(self, name: str, *, external: Net | None = None) -> dict[str, Any]:
        """A router (with its gateway on ``external`` when given)."""
        body: dict[str, Any] = {"name": name}
        if external is not None:
            body["external_gateway_info"] = {"network_id": external.id}
        router = self._created(self.api.post("/v2.0/routers", json={"router": body}),
                               f"router {name}")
        self.routers.append(router["id"])
        return router

    def add_interface(self, router: dict[str, Any], net: Net) -> dict[str, Any]:
        resp = self.api.put(f"/v2.0/routers/{router['id']}/add_router_interface",
                            json={"subnet_id": net.subnet_id})
        assert resp.status_code == 200, f"add_router_interface: {resp.status_code} {resp.text}"
        return dict(resp.json())

    def remove_interface(self, router: dict[str, Any], net: Net) -> None:
        resp = self.api.put(f"/v2.0/routers/{router['id']}/remove_router_interface",
                            json={"subnet_id": net.subnet_id})
        assert resp.status_code == 200, f"remove_router_interface: {resp.status_code} {resp.text}"

    def update_router(self, router: dict[str, Any], **changes: Any) -> dict[str, Any]:
        resp = self.api.put(f"/v2.0/routers/{router['id']}", json={"router": changes})
        assert resp.status_code == 200, f"updating router: {resp.status_code} {resp.text}"
        return dict(resp.json()["router"])

    def floating_ip(self, external: Net, vm: Vm) -> str:
        """A floating IP on ``external`` associated with ``vm``'s port; returns its address."""
        fip = self._created(self.api.post("/v2.0/floatingips", json={"floatingip": {
            "floating_network_id": external.id, "port_id": vm.id}}), f"floating IP for {vm.name}")
        self.floating_ips.append(fip["id"])
        assert fip["fixed_ip_address"] == vm.ip, fip
        return str(fip["floating_ip_address"])

    def disassociate(self, address: str) -> None:
        found = self.api.get("/v2.0/floatingips",
                             params={"floating_ip_address": address}).json()["floatingips"]
        resp = self.api.put(f"/v2.0/floatingips/{found[0]['id']}",
                            json={"floatingip": {"port_id": None}})
        assert resp.status_code == 200, resp.text

    def group(self, name: str) -> str:
        """A new security group: Neutron gives it egress rules and no ingress rule."""
        group = self._created(self.api.post("/v2.0/security-groups", json={
            "security_group": {"name": name}}), f"security group {name}")
        self.groups.append(group["id"])
        return str(group["id"])

    def default_group(self) -> str:
        groups = self.api.get("/v2.0/security-groups", params={"name": "default"}).json()
        return str(groups["security_groups"][0]["id"])

    def rule(self, group: str, protocol: str | None, *, port: int | None = None,
             remote_group: str | None = None, remote_ip_prefix: str | None = None) -> str:
        body: dict[str, Any] = {"security_group_id": group, "direction": "ingress",
                                "ethertype": "IPv4", "protocol": protocol}
        if port is not None:
            body |= {"port_range_min": port, "port_range_max": port}
        if remote_group is not None:
            body["remote_group_id"] = remote_group
        if remote_ip_prefix is not None:
            body["remote_ip_prefix"] = remote_ip_prefix
        rule = self._created(self.api.post("/v2.0/security-group-rules", json={
            "security_group_rule": body}), f"rule {body}")
        return str(rule["id"])

    def vm(self, net: Net, host: str, name: str, *, address: str | None = None,
           groups: list[str] | None = None) -> Vm:
        """A port on ``host`` plugged into a new workload namespace; asserts it goes ACTIVE
        (``X-Alcor-Wait``) and its interface has the port's address."""
        netns = self.lab.add_workload(host, f"{name}{next(self._names)}")
        self.workloads.append(netns)
        body: dict[str, Any] = {
            "network_id": net.id, "name": name, "binding:host_id": host,
            "binding:profile": {"network_ns": netns, "veth_name": "eth0"}}
        if address is not None:
            body["fixed_ips"] = [{"subnet_id": net.subnet_id, "ip_address": address}]
        if groups is not None:
            body["security_groups"] = groups
        resp = self.api.post("/v2.0/ports", headers={"X-Alcor-Wait": WAIT_SECONDS},
                             json={"port": body})
        port = self._created(resp, f"port {name}")
        self.ports.append(port["id"])
        assert port["status"] == "ACTIVE", (
            f"port {name} on {host} is {port['status']}: "
            f"{resp.headers.get('X-Alcor-Provisioning')} {port['binding:vif_details']}\n"
            f"{self.stack.logs()}")
        vm = Vm(name, port, netns, host)
        shown = run_in(netns, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
        assert f" {vm.ip}/" in shown, f"{name}'s eth0 lacks {vm.ip}: {shown!r}"
        return vm

    def update_port(self, vm: Vm, **changes: Any) -> dict[str, Any]:
        resp = self.api.put(f"/v2.0/ports/{vm.id}", headers={"X-Alcor-Wait": WAIT_SECONDS},
                            json={"port": changes})
        assert resp.status_code == 200, resp.text
        port: dict[str, Any] = resp.json()["port"]
        assert port["status"] == "ACTIVE", (port, resp.headers.get("X-Alcor-Provisioning"))
        return port

    def delete_port(self, vm: Vm) -> None:
        resp = self.api.delete(f"/v2.0/ports/{vm.id}")
        assert resp.status_code == 204, resp.text
        self.ports.remove(vm.id)

    def ports_on(self, host: str) -> set[str]:
        ports = self.api.get("/v2.0/ports", params={"binding:host_id": host}).json()["ports"]
        return {str(p["id"]) for p in ports}

    # probes, from inside workloads and from the outside

    def outside_pings(self, address: str, timeout: float = 5.0) -> bool:
        """Whether ``address`` answers a ping from the lab's external namespace."""
        done = run_in(self.lab.external, "ping", "-n", "-q", "-c", "1", "-w",
                      str(int(timeout)), "-W", "1", address, timeout=timeout + 10)
        return done.returncode == 0

    def outside_silent(self, address: str) -> bool:
        done = run_in(self.lab.external, "ping", "-n", "-q", "-c", "3", "-i", "0.3", "-W",
                      "1", address, timeout=20)
        return done.returncode != 0

    def serve_who_am_i(self) -> None:
        """A TCP server in the external namespace telling clients their source address."""
        server = self.lab.spawn(f"who-am-i-{len(self.servers)}", [
            sys.executable, "-c", WHO_AM_I, str(WHO_AM_I_PORT)], netns=self.lab.external)
        self.servers.append(server)
        assert server.wait_for("listening", 20), server.log()

    def tcp_from_outside(self, address: str, port: int = TCP_PORT) -> str | None:
        """What a TCP server at ``address:port`` answers the external namespace."""
        done = run_in(self.lab.external, sys.executable, "-c", TCP_CLIENT, address, str(port),
                      timeout=20)
        return done.stdout.strip() if done.returncode == 0 else None

    def source_seen_outside(self, src: Vm) -> str | None:
        """The source address the external server sees ``src`` connect from (None: no
        connection)."""
        return self.tcp(src, EXTERNAL_GATEWAY, WHO_AM_I_PORT)

    def pings(self, src: Vm, address: str, *, source: str | None = None,
              timeout: float = 5.0) -> bool:
        """Whether ``address`` answers a ping from ``src`` within ``timeout`` seconds."""
        pick = ["-I", source] if source else []
        done = run_in(src.netns, "ping", "-n", "-q", "-c", "1", "-w", str(int(timeout)),
                      "-W", "1", *pick, address, timeout=timeout + 10)
        return done.returncode == 0

    def silent(self, src: Vm, address: str, *, source: str | None = None) -> bool:
        """Whether three pings from ``src`` to ``address`` all go unanswered."""
        pick = ["-I", source] if source else []
        done = run_in(src.netns, "ping", "-n", "-q", "-c", "3", "-i", "0.3", "-W", "1",
                      *pick, address, timeout=20)
        return done.returncode != 0

    def serve_tcp(self, vm: Vm, answer: str, port: int = TCP_PORT) -> None:
        """A TCP server in ``vm`` answering every connection with ``answer``."""
        server = self.lab.spawn(f"tcp-{vm.netns}-{port}", [sys.executable, "-c", TCP_SERVER,
                                                           str(port), answer], netns=vm.netns)
        self.servers.append(server)
        assert server.wait_for("listening", 20), server.log()

    def tcp(self, src: Vm, address: str, port: int = TCP_PORT) -> str | None:
        """What a TCP server at ``address:port`` answers ``src`` (None: no connection)."""
        done = run_in(src.netns, sys.executable, "-c", TCP_CLIENT, address, str(port),
                      timeout=20)
        return done.stdout.strip() if done.returncode == 0 else None

    def dhcp(self, vm: Vm, workdir: Path) -> dict[str, str]:
        """Flush ``vm``'s address and ask DHCP (busybox udhcpc with a script that records
        the offer); returns the variables of the ``bound`` event."""
        out = workdir / f"dhcp-{vm.name}"
        script = workdir / f"udhcpc-{vm.name}.sh"
        script.write_text(DHCP_SCRIPT.format(out=out))
        script.chmod(0o755)
        flushed = run_in(vm.netns, "ip", "addr", "flush", "dev", "eth0")
        assert flushed.returncode == 0, flushed.stderr
        done = run_in(vm.netns, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f",
                      "-t", "5", "-T", "1", "-O", "mtu", "-s", str(script), timeout=40)
        bound = Path(f"{out}.bound")
        assert done.returncode == 0 and bound.exists(), (
            f"udhcpc in {vm.name} got no lease (rc {done.returncode}):\n{done.stdout}\n"
            f"{done.stderr}\n{self.stack.logs()}")
        return dict(line.split("=", 1) for line in bound.read_text().splitlines()
                    if "=" in line)

    def taps(self, host: str) -> set[str]:
        """The ``tap*`` interfaces in ``host``'s netns."""
        listed = json.loads(ip("-j", "link", "show", netns=self.lab.host(host).netns))
        return {str(link["ifname"]) for link in listed if link["ifname"].startswith("tap")}

    def vxlan_macs(self, host: str) -> set[str]:
        """The unicast MACs ``host`` sends into VXLAN tunnels (its static FDB entries)."""
        out = run_in(self.lab.host(host).netns, "bridge", "-j", "fdb", "show").stdout
        return {str(e["mac"]) for e in json.loads(out or "[]")
                if str(e.get("ifname", "")).startswith("alcvx") and e.get("dst")
                and e["mac"] != "00:00:00:00:00:00"}

    # cleanup

    def cleanup(self) -> None:
        """Remove what this cloud made (ports, groups, networks, workloads, servers),
        whatever state a failed test left it in."""
        for server in self.servers:
            server.stop()
        for fip in reversed(self.floating_ips):
            with contextlib.suppress(httpx.HTTPError):
                self.api.delete(f"/v2.0/floatingips/{fip}")
        for router in reversed(self.routers):
            self._remove_router(router)
        for port_id in reversed(self.ports):
            with contextlib.suppress(httpx.HTTPError):
                self.api.delete(f"/v2.0/ports/{port_id}")
        for group in reversed(self.groups):
            with contextlib.suppress(httpx.HTTPError):
                self.api.delete(f"/v2.0/security-groups/{group}")
        for net in reversed(self.networks):
            with contextlib.suppress(httpx.HTTPError):
                self.api.delete(f"/v2.0/networks/{net}")
        for netns in self.workloads:
            self.lab.remove_workload(netns)
        self.api.close()

    def _remove_router(self, router_id: str) -> None:
        """Detach every interface, then delete the router (its gateway port goes with it)."""
        with contextlib.suppress(httpx.HTTPError):
            ports = self.api.get("/v2.0/ports", params={
                "device_id": router_id, "device_owner": "network:router_interface"}).json()
            for port in ports.get("ports", []):
                for fixed in port["fixed_ips"]:
                    self.api.put(f"/v2.0/routers/{router_id}/remove_router_interface",
                                 json={"subnet_id": fixed["subnet_id"]})
            self.api.delete(f"/v2.0/routers/{router_id}")
