"""Distributed routing on the real kernel: three simulated hosts (namespaces on an underlay,
see netns_hosts) with a provider switch and an "external" namespace on it, one
LinuxProgrammer per host fed VPC / SUBNET / PORT / NEIGHBOR / ROUTER configurations built
with the protobuf classes, as the compiler would send them.

Network "a" (10.1.0.0/24, VNI 301) and network "b" (10.2.0.0/24, VNI 302), router R with an
interface on each (10.1.0.1, 10.2.0.1) and a gateway on the flat provider network "public"
(203.0.113.0/24, gateway 203.0.113.1 in the external namespace; router address
203.0.113.5, SNAT host h2).  Workloads: a1 (h1, 10.1.0.11, floating IP 203.0.113.10), a3
(h1, 10.1.0.13, no floating IP), b2 (h2, 10.2.0.12), c2 (h2, 10.2.0.13, an appliance owning
172.16.5.1).  h3 has no port on either network: it gets nothing.

Proves: pings across subnets and hosts through the distributed router (both ways); no route
without the interface (also after it is removed); extra routes obeyed; a host without the
provider network's mapping still routes east-west and reports the way out failed; the floating
IP answers from outside and is the source outbound, until it is disassociated, and is
announced when it moves to another host; a port without one reaches out through the SNAT host
with the router's address; with the nftables firewall on, routed traffic passes the router
legs and security groups still filter the workloads; re-applying (also after a restart)
changes nothing; a deleted router leaves nothing; the restart sweep removes this host's stale
router only.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from alcor.agent.linux.firewall import Firewall
from alcor.agent.linux.namespaces import netns_names
from alcor.agent.linux.programmer import LinuxProgrammer
from alcor.agent.linux.provider import ProviderError
from alcor.agent.programmer import Configuration
from alcor.agent.state import AgentState, Desired
from alcor.rpc._generated import (
    common_pb2,
    neighbor_pb2,
    port_pb2,
    router_pb2,
    securitygroup_pb2,
)
from tests.linux.netns_hosts import (
    PHYSICAL_NETWORK,
    PROVIDER_IFACE,
    Hosts,
    hosts,
    ip,
    isolated,
    neighbor,
    pings,
    port,
    run_in,
    subnet,
    vpc,
)

pytestmark = pytest.mark.timeout(180)

H1_IP, H2_IP, H3_IP = "192.0.2.1", "192.0.2.2", "192.0.2.3"
VNI_A, VNI_B = 301, 302
ROUTER = "7a7a7a7a-0000-4000-8000-00000000r001"
IFACE_A = "1f1f1f1f-aaaa-4000-8000-0000000000a1"
IFACE_B = "1f1f1f1f-bbbb-4000-8000-0000000000b1"
GW_MAC_A, GW_MAC_B = "fa:16:3e:aa:00:01", "fa:16:3e:bb:00:01"
ROUTER_GW_PORT_MAC = "fa:16:3e:00:00:05"
EXTERNAL_MACS = {H1_IP: "fe:16:13:00:00:01", H2_IP: "fe:16:13:00:00:02"}
TRANSIT_MACS = {H1_IP: "fe:16:12:00:00:01", H2_IP: "fe:16:12:00:00:02"}
ROUTER_IP, EXTERNAL_GW, FLOATING_IP = "203.0.113.5", "203.0.113.1", "203.0.113.10"
SNAT_HOST = H2_IP

WHO_AM_I = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7070)); s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(peer[0].encode() + b"\\n"); c.close()
"""
"""A TCP server telling each client the source address it saw."""

ASK = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], 7070), timeout=3) as c:
        print(c.recv(100).decode().strip())
except OSError as e:
    print("error", e); sys.exit(1)
"""


@dataclass
class Cloud:
    topology: Hosts
    outside: str
    programmers: dict[str, LinuxProgrammer] = field(default_factory=dict)
    goal: dict[str, list[tuple[int, str, Configuration]]] = field(default_factory=dict)
    ports: dict[str, port_pb2.PortConfiguration] = field(default_factory=dict)
    servers: list[subprocess.Popen[str]] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"{self.topology.prefix}{name}"

    def host(self, address: str) -> str:
        return next(h for h, a in self.topology.host_ips.items() if a == address)

    def programmer(self, address: str, firewall: bool = False) -> LinuxProgrammer:
        host = self.host(address)
        old = self.programmers.get(host)
        if old is not None:
            old.close()
        made = LinuxProgrammer(address, netns=host, firewall=Firewall(host) if firewall else None,
                               physical_networks={PHYSICAL_NETWORK: PROVIDER_IFACE})
        self.programmers[host] = made
        return made

    def give(self, address: str, kind: int, config: Configuration) -> None:
        host = self.host(address)
        self.programmers[host].apply(kind, config.id, config, None)
        self.goal.setdefault(host, []).append((kind, config.id, config))

    def update(self, address: str, kind: int, config: Configuration) -> None:
        host = self.host(address)
        self.programmers[host].apply(kind, config.id, config, config)
        self.goal[host] = [(k, rid, config if (k, rid) == (kind, config.id) else c)
                           for k, rid, c in self.goal[host]]

    def router_netns(self, address: str) -> str:
        return self.programmers[self.host(address)].routers.netns_name(ROUTER)

    def who_am_i(self, src: str, address: str) -> str | None:
        """The source address the external server saw ``src`` connect from."""
        done = run_in(self.ns(src), sys.executable, "-c", ASK, address)
        return done.stdout.strip() if done.returncode == 0 else None


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with hosts("h1", "h2", "h3") as topology:
        made = Cloud(topology, topology.add_provider(f"{EXTERNAL_GW}/24"))
        try:
            yield made
        finally:
            for server in made.servers:
                server.kill()
                server.wait()
            for programmer in made.programmers.values():
                programmer.close()


def router(address: str, *, with_b: bool = True, routes: tuple[tuple[str, str], ...] = (),
           gateway: bool = True, floating: bool = True,
           floating_to: tuple[str, str] = (H1_IP, "10.1.0.11")
           ) -> router_pb2.RouterConfiguration:
    """R as host ``address`` gets it (the compiler's shape, see docs routing design);
    ``floating_to``: the host and fixed address of the floating IP's port."""
    config = router_pb2.RouterConfiguration(id=ROUTER, revision_number=1, project_id="p")
    tables = [("sub-a", "10.1.0.1/24", GW_MAC_A, IFACE_A)]
    if with_b:
        tables.append(("sub-b", "10.2.0.1/24", GW_MAC_B, IFACE_B))
    for subnet_id, interface_ip, mac, port_id in tables:
        table = config.subnet_routing_tables.add(
            subnet_id=subnet_id, interface_ip=interface_ip, interface_mac=mac,
            interface_port_id=port_id)
        for destination, nexthop in routes:
            if nexthop.startswith(interface_ip.rsplit(".", 1)[0] + "."):
                rule = table.routing_rules.add(id=f"{destination}-{nexthop}",
                                               destination=destination, next_hop_ip=nexthop)
                rule.routing_rule_extra_info.destination_type = router_pb2.VPC_GW
        if gateway:
            rule = table.routing_rules.add(id=f"0.0.0.0/0-{EXTERNAL_GW}",
                                           destination="0.0.0.0/0", next_hop_ip=EXTERNAL_GW)
            rule.routing_rule_extra_info.destination_type = router_pb2.INTERNET
    if gateway:
        snat_host = address == SNAT_HOST
        gw = config.external_gateway
        gw.network_id = "net-ext"
        gw.physical_network = PHYSICAL_NETWORK
        gw.ip_address = f"{ROUTER_IP}/24"
        gw.gateway_ip = EXTERNAL_GW
        gw.mac_address = ROUTER_GW_PORT_MAC
        gw.enable_snat = True
        gw.snat_host_ip = SNAT_HOST
        gw.is_snat_host = snat_host
        gw.external_mac_address = ROUTER_GW_PORT_MAC if snat_host else EXTERNAL_MACS[address]
        gw.transit_mac = TRANSIT_MACS[address]
        gw.snat_transit_mac = TRANSIT_MACS[SNAT_HOST]
        gw.transit_subnet_id = "sub-a"
        if floating and address == floating_to[0]:
            config.floating_ips.add(id="fip-1", floating_ip_address=FLOATING_IP,
                                    fixed_ip_address=floating_to[1], port_id="p")
    return config


OPEN, CLOSED = "sg-open", "sg-closed"
"""Security groups: OPEN admits ICMP and TCP from anywhere, CLOSED admits nothing; both let
everything out."""


def groups() -> list[securitygroup_pb2.SecurityGroupConfiguration]:
    made = []
    for group_id in (OPEN, CLOSED):
        group = securitygroup_pb2.SecurityGroupConfiguration(id=group_id, revision_number=1)
        group.security_group_rules.add(id=f"{group_id}-out", security_group_id=group_id,
                                       direction=securitygroup_pb2.SecurityGroupConfiguration.EGRESS,
                                       any_protocol=True)
        if group_id == OPEN:
            for protocol in (common_pb2.ICMP, common_pb2.TCP):
                group.security_group_rules.add(
                    id=f"{group_id}-in-{protocol}", security_group_id=group_id,
                    direction=securitygroup_pb2.SecurityGroupConfiguration.INGRESS,
                    protocol=protocol, remote_ip_prefix="0.0.0.0/0")
        made.append(group)
    return made


def build(cloud: Cloud, *, firewall: bool = False, **router_options: object) -> None:
    """Both networks on h1 and h2 (h3 has nothing routed), their ports, the other host's
    ports as L3 neighbours, and the router.  With ``firewall``: b2 is in CLOSED, every other
    port in OPEN."""
    for address in (H1_IP, H2_IP, H3_IP):
        cloud.programmer(address, firewall)
    specs = {"a1": ("net-a", "sub-a", "10.1.0.11", "02:00:00:01:00:11", H1_IP),
             "a3": ("net-a", "sub-a", "10.1.0.13", "02:00:00:01:00:13", H1_IP),
             "b2": ("net-b", "sub-b", "10.2.0.12", "02:00:00:02:00:12", H2_IP),
             "c2": ("net-b", "sub-b", "10.2.0.13", "02:00:00:02:00:13", H2_IP)}
    for name, (net, sub, address, mac, host_ip) in specs.items():
        workload = cloud.topology.add_netns(name)
        cloud.ports[name] = port(f"{name}-port", net, sub, address, mac, host_ip, workload)
        if firewall:
            cloud.ports[name].security_group_ids.add(id=CLOSED if name == "b2" else OPEN)
    vnis = {"net-a": VNI_A, "net-b": VNI_B}
    for address in (H1_IP, H2_IP):
        for network, vni in vnis.items():
            cloud.give(address, common_pb2.VPC, vpc(network, vni, mtu=1450))
            cidr = "10.1.0.0/24" if network == "net-a" else "10.2.0.0/24"
            cloud.give(address, common_pb2.SUBNET, subnet(
                f"sub-{network[4:]}", network, vni, cidr, cidr.replace("0/24", "1")))
        for group in groups() if firewall else ():
            cloud.give(address, common_pb2.SECURITYGROUP, group)
        for config in cloud.ports.values():
            if config.host_info.ip_address == address:
                cloud.give(address, common_pb2.PORT, config)
        for config in cloud.ports.values():
            if config.host_info.ip_address != address:
                kind = neighbor_pb2.L3 if _network_here(cloud, address, config) else \
                    neighbor_pb2.L2
                cloud.give(address, common_pb2.NEIGHBOR,
                           neighbor(config, vnis[config.vpc_id], kind))
        cloud.give(address, common_pb2.ROUTER, router(address, **router_options))  # type: ignore[arg-type]
        cloud.programmers[cloud.host(address)].flush()
    # the appliance c2 routes 172.16.5.0/24: it owns 172.16.5.1
    ip("-n", cloud.ns("c2"), "addr", "add", "172.16.5.1/32", "dev", "lo")


def _network_here(cloud: Cloud, address: str, config: port_pb2.PortConfiguration) -> bool:
    """Whether ``address`` has a local port on ``config``'s network (else it is L3)."""
    return not any(p.vpc_id == config.vpc_id and p.host_info.ip_address == address
                   for p in cloud.ports.values())


def serve_outside(cloud: Cloud) -> None:
    server = subprocess.Popen(["ip", "netns", "exec", cloud.outside, sys.executable, "-c",
                               WHO_AM_I], stdout=subprocess.PIPE, text=True)
    cloud.servers.append(server)
    assert server.stdout is not None and server.stdout.readline().strip() == "listening"


def dumps(cloud: Cloud) -> dict[str, str]:
    """Every host's and router namespace's kernel state (what a re-apply must not change)."""
    switches = {cloud.topology.underlay, cloud.outside}  # learning bridges, not programmed
    found = {ns: cloud.topology.dump(ns) for ns in cloud.topology.made if ns not in switches}
    for ns in cloud.topology.router_namespaces():
        found[ns] = cloud.topology.dump(ns) + ip("-n", ns, "rule", "show") + run_in(
            ns, "nft", "list", "ruleset").stdout
    return {ns: LEARNED.sub("", dump) for ns, dump in found.items()}


LEARNED = re.compile(r"^\S+ dev \S+ (vlan \d+ )?master \S+ *\n", re.MULTILINE)
"""An FDB entry a bridge learned (what traffic, not the agent, puts there)."""


def test_routes_across_subnets_and_hosts_through_the_distributed_router(cloud: Cloud) -> None:
    build(cloud)
    assert pings(cloud.ns("a1"), "10.2.0.12", wait=3)  # h1 -> h2, routed on h1
    assert pings(cloud.ns("b2"), "10.1.0.11", wait=3)  # h2 -> h1, routed on h2
    assert pings(cloud.ns("a3"), "10.2.0.13", wait=3)
    assert pings(cloud.ns("a1"), "10.1.0.1")  # the gateway answers on the sender's host
    for address in (H1_IP, H2_IP):  # the same anycast interface on both hosts
        shown = ip("-n", cloud.router_netns(address), "addr", "show", "dev", "qr-1f1f1f1f-bb")
        assert "10.2.0.1/24" in shown and GW_MAC_B in shown
    neighbours = ip("-n", cloud.router_netns(H1_IP), "neigh", "show", "nud", "permanent")
    assert "10.2.0.12 dev qr-1f1f1f1f-bb lladdr 02:00:00:02:00:12" in neighbours
    assert cloud.programmers[cloud.host(H3_IP)].routers.held() == set()  # nothing routed


def test_no_route_without_the_interface(cloud: Cloud) -> None:
    build(cloud, with_b=False, gateway=False)
    assert isolated(cloud.ns("a1"), "10.2.0.12")
    assert pings(cloud.ns("a1"), "10.1.0.1")


def test_removing_an_interface_cuts_the_route_and_its_leg(cloud: Cloud) -> None:
    build(cloud, gateway=False)
    assert pings(cloud.ns("a1"), "10.2.0.12", wait=3)
    for address in (H1_IP, H2_IP):
        cloud.update(address, common_pb2.ROUTER, router(address, with_b=False, gateway=False))
    assert isolated(cloud.ns("a1"), "10.2.0.12")
    assert "qr-1f1f1f1f-bb" not in ip("-n", cloud.router_netns(H1_IP), "link", "show")
    assert "alqr1f1f1f1f-bb" not in ip("-n", cloud.host(H1_IP), "link", "show")


def test_extra_routes_are_obeyed(cloud: Cloud) -> None:
    build(cloud, gateway=False)
    assert isolated(cloud.ns("a1"), "172.16.5.1")
    for address in (H1_IP, H2_IP):
        cloud.update(address, common_pb2.ROUTER, router(
            address, gateway=False, routes=(("172.16.5.0/24", "10.2.0.13"),)))
    assert "172.16.5.0/24 via 10.2.0.13" in ip("-n", cloud.router_netns(H1_IP), "route")
    assert pings(cloud.ns("a1"), "172.16.5.1", wait=3)  # answered by the appliance c2


def test_an_unmapped_physical_network_fails_the_way_out_only(cloud: Cloud) -> None:
    build(cloud, gateway=False)
    h1 = cloud.host(H1_IP)
    unmapped = LinuxProgrammer(H1_IP, netns=h1)  # restarted without --physical-network
    try:
        for kind, resource_id, config in cloud.goal[h1]:
            if kind != common_pb2.ROUTER:
                unmapped.apply(kind, resource_id, config, None)
        with pytest.raises(ProviderError, match="'public' is not mapped on this host"):
            unmapped.apply(common_pb2.ROUTER, ROUTER, router(H1_IP), None)
    finally:
        unmapped.close()
    assert pings(cloud.ns("a1"), "10.2.0.12", wait=3)  # east-west still routed
    assert "qg-" not in ip("-n", cloud.router_netns(H1_IP), "link", "show")


def test_a_floating_ip_answers_from_outside_and_is_the_source_outbound(cloud: Cloud) -> None:
    build(cloud)
    serve_outside(cloud)
    assert pings(cloud.outside, FLOATING_IP, wait=3)
    assert cloud.who_am_i("a1", EXTERNAL_GW) == FLOATING_IP
    assert isolated(cloud.outside, "10.1.0.11")  # the fixed address is not reachable
    cloud.update(H1_IP, common_pb2.ROUTER, router(H1_IP, floating=False))  # disassociated
    assert isolated(cloud.outside, FLOATING_IP)
    assert cloud.who_am_i("a1", EXTERNAL_GW) == ROUTER_IP  # now through the SNAT host
    rules = ip("-n", cloud.router_netns(H1_IP), "rule", "show")
    assert "10.1.0.11" not in rules and "suppress_prefixlength" not in rules
    assert ip("-n", cloud.router_netns(H1_IP), "route", "show", "table", "100") == ""


def test_a_floating_ip_moved_to_another_host_is_announced(cloud: Cloud) -> None:
    build(cloud)
    assert pings(cloud.outside, FLOATING_IP, wait=3)
    assert EXTERNAL_MACS[H1_IP] in ip("-n", cloud.outside, "neigh", "show", FLOATING_IP)
    for address in (H1_IP, H2_IP):  # re-associated with b2, on h2
        cloud.update(address, common_pb2.ROUTER, router(address, floating_to=(H2_IP, "10.2.0.12")))
    deadline = time.monotonic() + 5
    while ROUTER_GW_PORT_MAC not in ip("-n", cloud.outside, "neigh", "show", FLOATING_IP):
        assert time.monotonic() < deadline, "the outside did not learn the new host's MAC"
        time.sleep(0.05)
    assert pings(cloud.outside, FLOATING_IP)


def test_a_port_without_floating_ip_reaches_out_through_the_snat_host(cloud: Cloud) -> None:
    build(cloud)
    serve_outside(cloud)
    assert cloud.who_am_i("a3", EXTERNAL_GW) == ROUTER_IP  # h1 -> transit -> h2 -> out
    assert cloud.who_am_i("b2", EXTERNAL_GW) == ROUTER_IP  # on the SNAT host itself
    fdb = subprocess.run(["bridge", "-n", cloud.host(H1_IP), "fdb", "show", "dev",
                          f"alcvx{VNI_A}"], capture_output=True, text=True, check=True).stdout
    assert f"{TRANSIT_MACS[SNAT_HOST]} dst {SNAT_HOST}" in fdb


def test_the_firewall_lets_routed_traffic_through_and_still_filters_workloads(
        cloud: Cloud) -> None:
    build(cloud, firewall=True)
    serve_outside(cloud)
    assert pings(cloud.ns("a1"), "10.2.0.13", wait=3)  # OPEN to OPEN across the router
    assert pings(cloud.ns("c2"), "10.1.0.11", wait=3)
    assert isolated(cloud.ns("a1"), "10.2.0.12")  # b2 is CLOSED
    assert pings(cloud.ns("b2"), "10.1.0.11", wait=3)  # b2 may go out; its replies come in
    assert pings(cloud.outside, FLOATING_IP, wait=3)
    assert cloud.who_am_i("a1", EXTERNAL_GW) == FLOATING_IP
    assert cloud.who_am_i("a3", EXTERNAL_GW) == ROUTER_IP
    assert cloud.who_am_i("b2", EXTERNAL_GW) == ROUTER_IP
    spoofer = cloud.ns("a3")  # a forged source is still dropped on its way to the router
    ip("-n", spoofer, "addr", "add", "10.1.0.99/24", "dev", "eth0")
    assert run_in(spoofer, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-I", "10.1.0.99",
                  "10.2.0.13").returncode != 0


def test_re_applying_changes_nothing_also_after_a_restart(cloud: Cloud) -> None:
    build(cloud)
    assert pings(cloud.ns("a1"), "10.2.0.12", wait=3)
    before = dumps(cloud)
    for host, goal in cloud.goal.items():
        for kind, resource_id, config in goal:
            cloud.programmers[host].apply(kind, resource_id, config, config)
    assert dumps(cloud) == before
    for host, goal in cloud.goal.items():
        restarted = cloud.programmer(cloud.topology.host_ips[host])
        for kind, resource_id, config in goal:
            restarted.apply(kind, resource_id, config, None)
        restarted.sweep()
    assert dumps(cloud) == before
    assert pings(cloud.ns("a1"), "10.2.0.12", wait=3)


def test_a_deleted_router_leaves_nothing(cloud: Cloud) -> None:
    build(cloud)
    h1 = cloud.host(H1_IP)
    programmer = cloud.programmers[h1]
    gone = router(H1_IP)
    programmer.delete(common_pb2.ROUTER, ROUTER, gone)
    assert cloud.router_netns(H1_IP) not in netns_names()
    links = ip("-n", h1, "link", "show")
    assert "alqr" not in links and "alqt" not in links and "alqg" not in links
    fdb = subprocess.run(["bridge", "-n", h1, "fdb", "show"], capture_output=True, text=True,
                         check=True).stdout
    assert TRANSIT_MACS[SNAT_HOST] not in fdb
    assert isolated(cloud.ns("a1"), "10.2.0.12")
    assert cloud.router_netns(H2_IP) in netns_names()  # the other host's is not touched


def test_the_restart_sweep_removes_this_hosts_stale_router_only(cloud: Cloud) -> None:
    build(cloud)
    h1 = cloud.host(H1_IP)
    keep = [(kind, rid, config) for kind, rid, config in cloud.goal[h1]
            if kind != common_pb2.ROUTER]
    state = AgentState(cloud.programmer(H1_IP), H1_IP)  # restarted; the router is gone
    report = state.apply([Desired(kind, rid, common_pb2.CREATE, config)
                          for kind, rid, config in keep], generation=1)
    assert report.failures() == {} and state.swept
    assert cloud.router_netns(H1_IP) not in netns_names()
    assert "alqr" not in ip("-n", h1, "link", "show")
    assert cloud.router_netns(H2_IP) in netns_names()
    assert pings(cloud.ns("b2"), "10.2.0.13")  # h2's router and L2 untouched
