"""Local ports against the real kernel, inside namespaces this test makes (see netns_hosts):
a veth into a workload netns (by name or by path) configured as the port says, plugged again
without a change, moved, removed; a Nova-style tap attached when it appears (and detached,
not deleted, when the port goes); the sweep of stale taps."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator

import pytest

from alcor.agent.linux.overlay import Overlay
from alcor.agent.linux.workloads import LocalPort, WorkloadError, Workloads, tap_name
from tests.linux.netns_hosts import Hosts, hosts, ip, pings

pytestmark = pytest.mark.timeout(60)

PORT_A = "a1b2c3d4-0000-4000-8000-000000000001"
PORT_B = "b1b2c3d4-0000-4000-8000-000000000002"


class Host:
    def __init__(self, topology: Hosts) -> None:
        self.topology = topology
        self.ns = f"{topology.prefix}h1"
        self.overlay = Overlay("192.0.2.1", self.ns)
        self.attached: list[str] = []
        self.event = threading.Event()
        self.workloads = Workloads(self.overlay, self.ns, on_attached=self._attached)
        self.overlay.ensure_segment(100, 1450)

    def _attached(self, port: LocalPort) -> None:
        self.attached.append(port.tap)
        self.event.set()

    def link(self, name: str, ns: str | None = None) -> dict[str, object]:
        found: list[dict[str, object]] = json.loads(
            ip("-j", "-d", "-n", ns or self.ns, "link", "show", name))
        return found[0]


@pytest.fixture
def host() -> Iterator[Host]:
    with hosts("h1") as topology:
        made = Host(topology)
        try:
            yield made
        finally:
            made.workloads.close()


def veth_port(workload: str, port_id: str = PORT_A, address: str = "10.0.0.11") -> LocalPort:
    return LocalPort(port_id=port_id, mac="02:00:00:00:00:11", vni=100, mtu=1450,
                     network_ns=workload, veth_name="eth0", addresses=((address, 24),),
                     gateways=("10.0.0.1",), routes=(("172.16.0.0/16", "10.0.0.254"),))


def test_a_veth_port_is_built_as_the_port_says(host: Host) -> None:
    workload = host.topology.add_netns("w1")
    tap = host.workloads.plug(veth_port(workload))
    assert tap == tap_name(PORT_A) == "tapa1b2c3d4-00"
    host_end = host.link(tap)
    assert host_end["master"] == "alcbr100" and host_end["mtu"] == 1450
    assert host_end["ifalias"] == f"alcor:port:{PORT_A}"
    assert "UP" in host_end["flags"]  # type: ignore[operator]
    eth0 = host.link("eth0", workload)
    assert eth0["address"] == "02:00:00:00:00:11" and eth0["mtu"] == 1450
    assert "UP" in eth0["flags"]  # type: ignore[operator]
    assert "inet 10.0.0.11/24" in ip("-n", workload, "addr", "show", "eth0")
    routes = ip("-n", workload, "route", "show")
    assert "default via 10.0.0.1 dev eth0" in routes
    assert "172.16.0.0/16 via 10.0.0.254 dev eth0" in routes
    assert "UP" in host.link("lo", workload)["flags"]  # type: ignore[operator]


def test_plugging_again_changes_nothing(host: Host) -> None:
    workload = host.topology.add_netns("w1")
    host.workloads.plug(veth_port(workload))
    before = (host.topology.dump(host.ns), host.topology.dump(workload))
    host.workloads.plug(veth_port(workload))
    Workloads(host.overlay, host.ns).plug(veth_port(workload))  # as after a restart
    assert (host.topology.dump(host.ns), host.topology.dump(workload)) == before


def test_a_changed_port_is_converged_and_a_path_names_the_netns(host: Host) -> None:
    workload = host.topology.add_netns("w1")
    host.workloads.plug(veth_port(workload))
    host.workloads.plug(veth_port(f"/run/netns/{workload}", address="10.0.0.12"))
    addresses = ip("-n", workload, "addr", "show", "eth0")
    assert "10.0.0.12/24" in addresses and "10.0.0.11" not in addresses
    other = host.topology.add_netns("w2")
    host.workloads.plug(veth_port(other))  # moved to another namespace
    assert "eth0" not in ip("-n", workload, "link", "show")
    assert "10.0.0.11/24" in ip("-n", other, "addr", "show", "eth0")
    assert host.link(tap_name(PORT_A))["master"] == "alcbr100"


def test_two_ports_on_one_bridge_reach_each_other_and_unplug_removes(host: Host) -> None:
    w1, w2 = host.topology.add_netns("w1"), host.topology.add_netns("w2")
    host.workloads.plug(veth_port(w1))
    host.workloads.plug(LocalPort(port_id=PORT_B, mac="02:00:00:00:00:12", vni=100, mtu=1450,
                                  network_ns=w2, addresses=(("10.0.0.12", 24),)))
    assert pings(w1, "10.0.0.12", wait=3)
    host.workloads.unplug(PORT_A)
    assert tap_name(PORT_A) not in ip("-n", host.ns, "link", "show")
    assert "eth0" not in ip("-n", w1, "link", "show")


def test_a_workload_interface_that_is_not_ours_is_refused(host: Host) -> None:
    workload = host.topology.add_netns("w1")
    ip("-n", workload, "link", "add", "eth0", "type", "bridge")
    with pytest.raises(WorkloadError, match="already has an interface eth0"):
        host.workloads.plug(veth_port(workload))


def nova_tap(host: Host, port_id: str, workload: str) -> str:
    """What a hypervisor does: a tap (here a veth) whose other end is the VM."""
    tap = tap_name(port_id)
    ip("-n", host.ns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns",
       workload)
    return tap


def test_a_tap_that_appears_later_is_attached(host: Host) -> None:
    workload = host.topology.add_netns("w1")
    port = LocalPort(port_id=PORT_A, mac="02:00:00:00:00:11", vni=100, mtu=1450)
    host.workloads.plug(port)
    assert host.attached == []
    tap = nova_tap(host, PORT_A, workload)
    assert host.event.wait(5), "the tap was not attached"
    link = host.link(tap)
    assert link["master"] == "alcbr100" and link["mtu"] == 1450
    assert "UP" in link["flags"]  # type: ignore[operator]
    assert "ifalias" not in link  # not the agent's
    host.workloads.unplug(PORT_A)
    assert "master" not in host.link(tap)  # detached, still there


def test_a_tap_that_exists_is_attached_at_once_and_again_when_it_returns(host: Host) -> None:
    workload = host.topology.add_netns("w1")
    tap = nova_tap(host, PORT_A, workload)
    host.workloads.plug(LocalPort(port_id=PORT_A, mac="02:00:00:00:00:11", vni=100, mtu=1450))
    assert host.link(tap)["master"] == "alcbr100" and host.attached == [tap]
    host.event.clear()
    ip("-n", host.ns, "link", "del", tap)
    nova_tap(host, PORT_A, workload)  # the VM rebooted
    assert host.event.wait(5), "the tap was not attached again"
    assert host.link(tap)["master"] == "alcbr100"


def test_sweep_deletes_stale_owned_taps_and_detaches_foreign_ones(host: Host) -> None:
    w1, w2, w3 = (host.topology.add_netns(f"w{n}") for n in (1, 2, 3))
    host.workloads.plug(veth_port(w1))
    host.workloads.plug(LocalPort(port_id=PORT_B, mac="02:00:00:00:00:12", vni=100, mtu=1450,
                                  network_ns=w2))
    stranger = "tapforeign0001"
    ip("-n", host.ns, "link", "add", stranger, "type", "veth", "peer", "name", "eth0", "netns",
       w3)
    ip("-n", host.ns, "link", "set", stranger, "master", "alcbr100")
    after_restart = Workloads(host.overlay, host.ns)
    after_restart.plug(veth_port(w1))  # only port A is asked for
    assert after_restart.sweep({PORT_A}) == 2
    links = ip("-n", host.ns, "link", "show")
    assert tap_name(PORT_A) in links and tap_name(PORT_B) not in links
    assert "master" not in host.link(stranger)  # detached, not deleted
    assert after_restart.sweep({PORT_A}) == 0


def test_ipv6_is_off_on_the_host_end(host: Host) -> None:
    subprocess.run(["ip", "netns", "exec", host.ns, "sysctl", "-qw",
                    "net.ipv6.conf.default.disable_ipv6=0"], check=True)  # a host's default
    workload = host.topology.add_netns("w1")
    tap = host.workloads.plug(veth_port(workload))
    sysctl = subprocess.run(
        ["ip", "netns", "exec", host.ns, "cat", f"/proc/sys/net/ipv6/conf/{tap}/disable_ipv6"],
        capture_output=True, text=True, check=True).stdout
    assert sysctl.strip() == "1"
    assert "inet6" not in ip("-n", host.ns, "addr", "show", tap)
