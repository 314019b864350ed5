"""LinuxProgrammer end to end on the real kernel: two simulated hosts (namespaces on an
underlay, see netns_hosts), one programmer per host fed VPC / SUBNET / PORT / NEIGHBOR
configurations built with the protobuf classes, workloads pinging each other across hosts.

Proves: connectivity within a VNI across hosts; two VNIs with overlapping addresses are
isolated; a deleted neighbour cuts its port off; re-applying (also by a restarted programmer)
changes nothing in the kernel; the sweep after the first full goal state (through AgentState)
removes stale owned devices and entries but not a foreign device; a Nova-style tap is
attached when it appears; DHCP leases reach the DHCP collaborator with the subnet's facts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from alcor.agent.linux.lease import Lease
from alcor.agent.linux.programmer import LinuxProgrammer, UnknownResource
from alcor.agent.programmer import Configuration
from alcor.agent.state import AgentState, Desired
from alcor.rpc._generated import common_pb2, dhcp_pb2, port_pb2
from tests.linux.netns_hosts import (
    Hosts,
    hosts,
    ip,
    isolated,
    neighbor,
    pings,
    port,
    subnet,
    vpc,
)

pytestmark = pytest.mark.timeout(120)

H1_IP, H2_IP = "192.0.2.1", "192.0.2.2"
RED, BLUE = 100, 200  # two networks whose subnets overlap


@dataclass
class RecordingDhcp:
    """The DHCP collaborator as a test sees it: what it was asked to serve."""

    served: dict[str, Lease] = field(default_factory=dict)

    def serve(self, interface: str, lease: Lease) -> None:
        self.served[interface] = lease

    def forget(self, interface: str) -> None:
        self.served.pop(interface, None)


@dataclass
class Cloud:
    """Two hosts, their programmers, and the goal state each was given."""

    topology: Hosts
    h1: str
    h2: str
    programmers: dict[str, LinuxProgrammer] = field(default_factory=dict)
    goal: dict[str, list[tuple[int, str, Configuration]]] = field(default_factory=dict)

    def workload(self, name: str) -> str:
        return self.topology.add_netns(name)

    def programmer(self, host: str, **kwargs: object) -> LinuxProgrammer:
        made = LinuxProgrammer(self.topology.host_ips[host], netns=host, **kwargs)  # type: ignore[arg-type]
        old = self.programmers.get(host)
        if old is not None:
            old.close()
        self.programmers[host] = made
        return made

    def give(self, host: str, kind: int, config: Configuration) -> None:
        """Apply one configuration on ``host`` and remember it as part of its goal state."""
        self.programmers[host].apply(kind, config.id, config, None)
        self.goal.setdefault(host, []).append((kind, config.id, config))


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    with hosts("h1", "h2") as topology:
        made = Cloud(topology, f"{topology.prefix}h1", f"{topology.prefix}h2")
        try:
            yield made
        finally:
            for programmer in made.programmers.values():
                programmer.close()


def build(cloud: Cloud, dhcp: RecordingDhcp | None = None) -> dict[str, port_pb2.PortConfiguration]:
    """RED: red1 (h1, 10.0.0.11) and red2 (h2, 10.0.0.12); BLUE: blue1 (h1, 10.0.0.11, the
    same address) and blue3 (h2, 10.0.0.13).  Every host gets its VPCs, subnets, its own ports
    and the other host's ports as neighbours."""
    for host in (cloud.h1, cloud.h2):
        cloud.programmer(host, dhcp=dhcp)
    workloads = {name: cloud.workload(name) for name in ("red1", "red2", "blue1", "blue3")}
    ports = {
        "red1": port("11111111-aaaa-4000-8000-000000000001", "net-red", "sub-red", "10.0.0.11",
                     "02:00:00:00:01:11", H1_IP, workloads["red1"]),
        "red2": port("22222222-aaaa-4000-8000-000000000002", "net-red", "sub-red", "10.0.0.12",
                     "02:00:00:00:01:12", H2_IP, workloads["red2"]),
        "blue1": port("33333333-bbbb-4000-8000-000000000001", "net-blue", "sub-blue",
                      "10.0.0.11", "02:00:00:00:02:11", H1_IP, workloads["blue1"]),
        "blue3": port("44444444-bbbb-4000-8000-000000000003", "net-blue", "sub-blue",
                      "10.0.0.13", "02:00:00:00:02:13", H2_IP, workloads["blue3"]),
    }
    vnis = {"net-red": RED, "net-blue": BLUE}
    for host in (cloud.h1, cloud.h2):
        for network, vni in vnis.items():
            cloud.give(host, common_pb2.VPC, vpc(network, vni, mtu=1450))
            cloud.give(host, common_pb2.SUBNET,
                       subnet(f"sub-{network[4:]}", network, vni, "10.0.0.0/24", "10.0.0.1"))
        here = cloud.topology.host_ips[host]
        for config in ports.values():
            if config.host_info.ip_address == here:
                cloud.give(host, common_pb2.PORT, config)
        for config in ports.values():
            cloud.give(host, common_pb2.NEIGHBOR, neighbor(config, vnis[config.vpc_id]))
    return ports


def test_workloads_of_one_network_reach_each_other_across_hosts_and_only_them(
        cloud: Cloud) -> None:
    build(cloud)
    red1, red2, blue1, blue3 = (f"{cloud.topology.prefix}{n}"
                                for n in ("red1", "red2", "blue1", "blue3"))
    assert pings(red1, "10.0.0.12", wait=3)
    assert pings(red2, "10.0.0.11", wait=3)  # answered by red1, not blue1 (same address)
    assert pings(blue3, "10.0.0.11", wait=3)
    assert pings(blue1, "10.0.0.13", wait=3)
    assert isolated(red1, "10.0.0.13")  # blue3's address, in the other network
    assert isolated(blue1, "10.0.0.12")  # red2's address
    red2_arp = ip("-n", red2, "neigh", "show", "10.0.0.11")
    assert "02:00:00:00:01:11" in red2_arp  # red1's MAC, answered by h2's VXLAN proxy


def test_a_deleted_neighbour_is_cut_off(cloud: Cloud) -> None:
    ports = build(cloud)
    red1 = f"{cloud.topology.prefix}red1"
    assert pings(red1, "10.0.0.12", wait=3)
    gone = neighbor(ports["red2"], RED)
    cloud.programmers[cloud.h1].delete(common_pb2.NEIGHBOR, gone.id, gone)
    assert isolated(red1, "10.0.0.12")
    assert "02:00:00:00:01:12" not in ip("-n", cloud.h1, "neigh", "show", "dev", f"alcvx{RED}")


def test_re_applying_changes_nothing_also_after_a_restart(cloud: Cloud) -> None:
    build(cloud)
    dumps = {ns: cloud.topology.dump(ns) for ns in cloud.topology.made}
    for host, goal in cloud.goal.items():
        for kind, resource_id, config in goal:  # the same goal state again, as updates
            cloud.programmers[host].apply(kind, resource_id, config, config)
    assert {ns: cloud.topology.dump(ns) for ns in cloud.topology.made} == dumps
    for host, goal in cloud.goal.items():  # a restarted agent: full goal state, all creates
        restarted = cloud.programmer(host)
        for kind, resource_id, config in goal:
            restarted.apply(kind, resource_id, config, None)
        restarted.sweep()
    assert {ns: cloud.topology.dump(ns) for ns in cloud.topology.made} == dumps
    assert pings(f"{cloud.topology.prefix}red1", "10.0.0.12", wait=3)


def test_the_first_full_goal_state_sweeps_what_nobody_asked_for(cloud: Cloud) -> None:
    build(cloud)
    h1 = cloud.h1
    ip("-n", h1, "link", "add", f"alcbr{4242}", "type", "bridge")  # not the agent's
    keep = [(kind, rid, config) for kind, rid, config in cloud.goal[h1]
            if "net-blue" not in (rid, getattr(config, "vpc_id", ""))
            and rid != "L2/22222222-aaaa-4000-8000-000000000002"]
    state = AgentState(cloud.programmer(h1), H1_IP)  # restarted; blue and red2 are gone
    report = state.apply([Desired(kind, rid, common_pb2.CREATE, config)
                          for kind, rid, config in keep], generation=1)
    assert report.failures() == {} and state.swept
    links = ip("-n", h1, "link", "show")
    assert f"alcbr{BLUE}" not in links and f"alcvx{BLUE}" not in links
    assert "tap33333333-bb" not in links  # blue1's veth, and with it blue1's eth0
    assert "eth0" not in ip("-n", f"{cloud.topology.prefix}blue1", "link", "show")
    assert "alcbr4242" in links and f"alcbr{RED}" in links and "tap11111111-aa" in links
    assert "02:00:00:00:01:12" not in ip("-n", h1, "neigh", "show", "dev", f"alcvx{RED}")
    assert isolated(f"{cloud.topology.prefix}red1", "10.0.0.12")
    sweeps_again = state.apply([Desired(kind, rid, common_pb2.CREATE, config)
                                for kind, rid, config in keep], generation=2)
    assert sweeps_again.programmed == 0


def test_a_nova_tap_is_attached_when_it_appears(cloud: Cloud) -> None:
    build(cloud)
    vm = cloud.workload("vm4")
    nova = port("55555555-aaaa-4000-8000-000000000004", "net-red", "sub-red", "10.0.0.14",
                "02:00:00:00:01:14", H2_IP)
    cloud.give(cloud.h2, common_pb2.PORT, nova)
    cloud.give(cloud.h1, common_pb2.NEIGHBOR, neighbor(nova, RED))
    tap = "tap55555555-aa"
    assert tap not in ip("-n", cloud.h2, "link", "show")
    ip("-n", cloud.h2, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", vm)
    ip("-n", vm, "link", "set", "eth0", "address", "02:00:00:00:01:14", "mtu", "1450", "up")
    ip("-n", vm, "addr", "add", "10.0.0.14/24", "dev", "eth0")
    assert pings(f"{cloud.topology.prefix}red1", "10.0.0.14", wait=5)
    assert "master alcbr100" in ip("-n", cloud.h2, "link", "show", tap)


def test_dhcp_leases_carry_the_subnet_and_network_facts(cloud: Cloud) -> None:
    dhcp = RecordingDhcp()
    ports = build(cloud, dhcp)
    red = subnet("sub-red", "net-red", RED, "10.0.0.0/24", "10.0.0.1")
    red.dns_entry_list.add(entry="192.0.2.53")
    red.extra_dhcp_options.add(name="classless-static-route", value="172.16.0.0/16,10.0.0.254")
    cloud.give(cloud.h1, common_pb2.SUBNET, red)
    red1 = ports["red1"]
    lease_id = f"{red1.id}/sub-red"
    config = dhcp_pb2.DHCPConfiguration(id=lease_id, subnet_id="sub-red",
                                        mac_address=red1.mac_address, ipv4_address="10.0.0.11",
                                        port_host_name="host-10-0-0-11")
    cloud.give(cloud.h1, common_pb2.DHCP, config)
    assert dhcp.served == {"tap11111111-aa": Lease(
        mac="02:00:00:00:01:11", ip="10.0.0.11", prefixlen=24, gateway="10.0.0.1",
        dns=("192.0.2.53",), mtu=1450, routes=(("172.16.0.0/16", "10.0.0.254"),),
        hostname="host-10-0-0-11", server_ip="10.0.0.1")}
    cloud.programmers[cloud.h1].delete(common_pb2.DHCP, lease_id, config)
    assert dhcp.served == {}


def test_a_port_of_an_unknown_subnet_fails_with_a_reason(cloud: Cloud) -> None:
    programmer = cloud.programmer(cloud.h1)
    orphan = port("66666666-aaaa-4000-8000-000000000006", "net-x", "sub-x", "10.9.0.5",
                  "02:00:00:00:09:05", H1_IP, cloud.workload("w6"))
    with pytest.raises(UnknownResource, match="subnet sub-x is not known"):
        programmer.apply(common_pb2.PORT, orphan.id, orphan, None)
