"""Simulated hosts for the overlay tests, as root, in network namespaces the test makes with
the prefix "alt-ov-<random>" (the root netns is never touched): an underlay "switch" netns
holding bridge ``br-ul`` and per host a netns whose ``ul0`` (192.0.2.<n>/24) is a veth to that
bridge.  Workloads are namespaces of their own.  ``add_provider`` adds a provider "switch"
(bridge ``br-ex`` in the underlay netns, a second interface ``ex0`` on every host) and an
"external" netns on it standing for the outside world.  ``hosts()`` removes every namespace
it made, and the router namespaces agents made for its hosts (``alcr-<host tag>-*``), also
when the test fails; the kernel frees their interfaces asynchronously, so names are unique
per test (the prefix)."""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

from pyroute2 import netns

from alcor.agent.linux.namespaces import netns_names, remove_netns
from alcor.agent.linux.router import host_tag, router_netns
from alcor.rpc._generated import neighbor_pb2, port_pb2, subnet_pb2, vpc_pb2

PREFIX = "alt-ov-"
PROVIDER_IFACE = "ex0"
PHYSICAL_NETWORK = "public"


def ip(*args: str) -> str:
    """Run ``ip`` (tests only) and return its output; raise with its stderr on failure."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def run_in(ns: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *command], capture_output=True, text=True)


def pings(ns: str, address: str, *, wait: float = 1.0) -> bool:
    """Whether ``address`` answers a ping from ``ns`` (``wait``: seconds to keep trying)."""
    deadline = max(1, int(wait))
    return run_in(ns, "ping", "-c", "1", "-w", str(deadline), "-W", "1", address).returncode == 0


def isolated(ns: str, address: str) -> bool:
    """Whether two pings from ``ns`` to ``address`` both go unanswered."""
    return run_in(ns, "ping", "-c", "2", "-i", "0.2", "-W", "1", address).returncode != 0


@dataclass
class Hosts:
    prefix: str
    underlay: str
    host_ips: dict[str, str] = field(default_factory=dict)
    made: list[str] = field(default_factory=list)

    def add_netns(self, suffix: str) -> str:
        name = f"{self.prefix}{suffix}"
        ip("netns", "add", name)
        self.made.append(name)
        # IPv4 only: IPv6 link-local addresses and their routes settle asynchronously, which
        # would make before/after dumps differ without anyone changing anything
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-qw",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1"], check=True)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def add_host(self, suffix: str, address: str) -> str:
        name = self.add_netns(suffix)
        peer = f"ul-{suffix}"
        ip("-n", self.underlay, "link", "add", peer, "type", "veth", "peer", "name", "ul0",
           "netns", name)
        ip("-n", self.underlay, "link", "set", peer, "master", "br-ul", "up")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "ul0")
        ip("-n", name, "link", "set", "ul0", "up")
        self.host_ips[name] = address
        return name

    def add_provider(self, external: str = "203.0.113.1/24") -> str:
        """A provider switch every host has ``ex0`` on, and the external netns on it holding
        ``external``; returns the external netns."""
        ip("-n", self.underlay, "link", "add", "br-ex", "type", "bridge")
        ip("-n", self.underlay, "link", "set", "br-ex", "up")
        for host in self.host_ips:
            peer = f"ex-{host[len(self.prefix):]}"
            ip("-n", self.underlay, "link", "add", peer, "type", "veth", "peer", "name",
               PROVIDER_IFACE, "netns", host)
            ip("-n", self.underlay, "link", "set", peer, "master", "br-ex", "up")
            ip("-n", host, "link", "set", PROVIDER_IFACE, "up")
        outside = self.add_netns("ext")
        ip("-n", self.underlay, "link", "add", "ex-ext", "type", "veth", "peer", "name",
           "eth0", "netns", outside)
        ip("-n", self.underlay, "link", "set", "ex-ext", "master", "br-ex", "up")
        ip("-n", outside, "addr", "add", external, "dev", "eth0")
        ip("-n", outside, "link", "set", "eth0", "up")
        return outside

    def router_namespaces(self) -> list[str]:
        """The router namespaces agents made for these hosts."""
        prefixes = tuple(router_netns(host_tag(h), "") for h in self.host_ips)
        return [name for name in netns_names() if name.startswith(prefixes)]

    def dump(self, ns: str) -> str:
        """What a re-apply must not change: links (details), addresses, routes, FDB, neighbours."""
        parts = [ip("-d", "-n", ns, "link", "show"), ip("-n", ns, "addr", "show"),
                 ip("-n", ns, "route", "show", "table", "all"),
                 ip("-n", ns, "-6", "route", "show", "table", "all"),
                 ip("-n", ns, "neigh", "show", "nud", "permanent")]
        fdb = subprocess.run(["bridge", "-n", ns, "fdb", "show"], capture_output=True,
                             text=True, check=True).stdout
        return _without_carrier("\n".join([*parts, fdb]))


def _without_carrier(dump: str) -> str:
    """A dump without what the kernel changes by itself as carriers settle (operational
    state, carrier flags, bridge timers, IPv6 address flags while duplicate detection runs)."""
    dump = re.sub(r"NO-CARRIER,|,LOWER_UP|,M-DOWN| state \S+| tentative| dadfailed", "", dump)
    return re.sub(r"(valid_lft|preferred_lft|\w+_timer) +\S+", "", dump)


@contextlib.contextmanager
def hosts(*names: str) -> Iterator[Hosts]:
    """An underlay and one host netns per name (underlay IPs 192.0.2.1, .2, ...)."""
    prefix = f"{PREFIX}{secrets.token_hex(3)}-"
    topology = Hosts(prefix=prefix, underlay=f"{prefix}ul")
    try:
        topology.add_netns("ul")
        ip("-n", topology.underlay, "link", "add", "br-ul", "type", "bridge")
        ip("-n", topology.underlay, "link", "set", "br-ul", "up")
        for n, name in enumerate(names, start=1):
            topology.add_host(name, f"192.0.2.{n}")
        yield topology
    finally:
        with contextlib.suppress(Exception):
            for name in topology.router_namespaces():
                remove_netns(name)
        for name in reversed(topology.made):
            with contextlib.suppress(Exception):
                netns.remove(name)


# --- configurations, built with the protobuf classes ------------------------------------------


def vpc(vpc_id: str, vni: int, mtu: int = 0) -> vpc_pb2.VpcConfiguration:
    return vpc_pb2.VpcConfiguration(id=vpc_id, revision_number=1, tunnel_id=vni, mtu=mtu)


def subnet(subnet_id: str, vpc_id: str, vni: int, cidr: str,
           gateway: str | None = None) -> subnet_pb2.SubnetConfiguration:
    config = subnet_pb2.SubnetConfiguration(
        id=subnet_id, revision_number=1, vpc_id=vpc_id, cidr=cidr, tunnel_id=vni,
        dhcp_enable=True)
    if gateway:
        config.gateway.ip_address = gateway
        config.gateway.mac_address = "fe:16:3f:00:00:01"
    return config


def port(port_id: str, vpc_id: str, subnet_id: str, address: str, mac: str, host_ip: str,
         network_ns: str = "") -> port_pb2.PortConfiguration:
    config = port_pb2.PortConfiguration(
        id=port_id, revision_number=1, vpc_id=vpc_id, mac_address=mac, admin_state_up=True,
        network_ns=network_ns, veth_name="eth0" if network_ns else "")
    config.host_info.ip_address = host_ip
    config.fixed_ips.add(subnet_id=subnet_id, ip_address=address)
    return config


def neighbor(of: port_pb2.PortConfiguration, vni: int,
             kind: int = neighbor_pb2.L2) -> neighbor_pb2.NeighborConfiguration:
    """``of`` as another host sees it (``kind`` L3: only because of a router)."""
    config = neighbor_pb2.NeighborConfiguration(
        id=f"L2/{of.id}", revision_number=1, vpc_id=of.vpc_id, mac_address=of.mac_address,
        host_ip_address=of.host_info.ip_address)
    for fixed in of.fixed_ips:
        config.fixed_ips.add(subnet_id=fixed.subnet_id, ip_address=fixed.ip_address,
                             tunnel_id=vni, neighbor_type=kind)
    return config
